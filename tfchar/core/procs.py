"""This process and this machine's others: whether a pid is alive (for leftovers of killed writers), and
handing freed memory back to the system between the phases of a long job."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
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


def release_memory() -> None:
    """Collect garbage and return the freed heap to the system (glibc keeps it in per-thread arenas otherwise,
    so a finished phase's tensors would still count in the process's resident memory)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to trim
        pass
