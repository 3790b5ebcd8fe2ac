"""This machine's processes: whether a pid is alive (for leftovers of killed writers)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a pid of another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
