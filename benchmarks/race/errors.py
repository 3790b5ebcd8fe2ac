"""One-line errors for the benchmark scripts: a bad input prints `error: ...` and exits with status 2."""

from __future__ import annotations

import functools
import sys


class RaceError(Exception):
    """A bad input or a missing prerequisite, told in one line that says what to do."""


def guard(main):
    """Run `main`, turning a RaceError into one line on stderr (exit 2) and Ctrl-C into exit 130."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except RaceError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapped


def require_torch():
    """Import torch or raise a RaceError saying how to install it (it is never a dependency of tfchar)."""
    try:
        import torch
    except ImportError:
        raise RaceError("PyTorch is not installed: pip install torch (only the benchmarks need it)") from None
    return torch
