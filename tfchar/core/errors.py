"""User-facing errors and the guard that turns them into one-line messages.

Every problem a user can cause (a bad path, a bad flag, a corrupt checkpoint) is raised as a
`TfcharError` whose message names the problem and the fix. Entry points run inside `cli_guard`, which
prints `tfchar: error: <message>` to stderr and exits non-zero, with no traceback.
"""

from __future__ import annotations

import functools
import sys


class TfcharError(Exception):
    """A problem caused by the user's input; the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(TfcharError):
    """An unknown key, a wrong type or an impossible value in a pipeline file or an override."""


class DataError(TfcharError):
    """A text source that cannot be read, decoded or split."""


class CheckpointError(TfcharError):
    """A missing, incompatible or corrupt checkpoint or run directory."""


class TrainingInterrupted(TfcharError):
    """Ctrl-C: a checkpoint was written and the run can be resumed."""

    exit_code = 130


class TrainingDiverged(TfcharError):
    """The loss became NaN or infinite; the last good checkpoint stays."""

    exit_code = 3


def fail(message: str, code: int = 2) -> None:
    print(f"tfchar: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def cli_guard(main=None, *, tensorflow: bool = True):
    """Decorate an entry point so user errors print one line and exit non-zero, without a traceback.

    Args:
        tensorflow: import TensorFlow (quietly) before `main` runs; False for entry points that never need it.
    """
    if main is None:
        return functools.partial(cli_guard, tensorflow=tensorflow)

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            if tensorflow:
                from tfchar import import_tensorflow_quietly

                import_tensorflow_quietly()
            return main(*args, **kwargs)
        except TfcharError as e:
            if isinstance(e, TrainingInterrupted):
                print(f"tfchar: {e}", file=sys.stderr, flush=True)
                raise SystemExit(e.exit_code) from None
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            # `python -m tfchar.sample ... | head` closes stdout early: not an error.
            sys.stderr.close()
            raise SystemExit(0) from None

    return wrapper
