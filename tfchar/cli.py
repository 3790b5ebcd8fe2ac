"""What every `python -m tfchar.<verb>` shares: one argument parser, the pipeline command line and one exit idiom.

A verb module parses its flags with `Parser` (a bad flag is a one-line error), builds what the library
needs and calls one library function inside `guard`, which turns a `TfcharError` into `tfchar: error:
<message>` on stderr and the error's exit code, with no traceback:

    @guard
    def main(argv=None) -> int:
        a = parse_args(argv)
        ...
        return 0

    if __name__ == "__main__":
        sys.exit(main())
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Sequence

from tfchar.core.config import help_text, parse_overrides
from tfchar.core.errors import ConfigError, TfcharError, TrainingInterrupted
from tfchar.core.shipped import DEFAULT_PIPELINE, shipped
from tfchar.core.startup import import_tensorflow_quietly


class Parser(argparse.ArgumentParser):
    """argparse for `python -m tfchar.<verb>`, but a bad flag is a one-line tfchar error instead of usage text.

    Args:
        verb: the command's name (fit, sample, ...).
        doc: the verb module's docstring; its first line after ": " is the description.
    """

    def __init__(self, verb: str, doc: str, **kwargs):
        self.verb = verb
        super().__init__(prog=f"python -m tfchar.{verb}", description=doc.splitlines()[0].split(": ", 1)[-1],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)

    def error(self, message):
        raise ConfigError(f"{message} (see python -m tfchar.{self.verb} --help)")


def pipeline_command_line(argv: Sequence[str], usage: str) -> tuple[str | None, list[str]] | None:
    """`[PIPELINE.toml] [--section.key=value ...]` -> (pipeline, overrides); None after printing --help.

    Without a pipeline argument, the default pipeline is used (`default_pipeline`).
    """
    argv = list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(usage + "\n" + help_text())
        return None
    pipeline = argv.pop(0) if argv and not argv[0].startswith("--") else None
    return pipeline or default_pipeline(argv), argv


def default_pipeline(overrides: Sequence[str]) -> str | None:
    """The pipeline used when none is given: ./pipelines/tiny_shakespeare.toml, else the one tfchar ships; none
    for a fine-tuning run (train.init_from: the model comes from the source, the rest from the key defaults)."""
    if parse_overrides(overrides).get("train", {}).get("init_from"):
        return None
    for path in (Path(DEFAULT_PIPELINE), shipped(DEFAULT_PIPELINE)):
        if path.is_file():
            return str(path)
    return None


def fail(message: str, code: int = 2) -> None:
    """Print `tfchar: error: <message>` and exit with `code`."""
    print(f"tfchar: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def guard(main=None, *, tensorflow: bool = True):
    """Decorate a verb's `main` so user errors print one line and exit non-zero, without a traceback.

    Args:
        tensorflow: import TensorFlow (quietly) before `main` runs; False for verbs that never need it.
    """
    if main is None:
        return functools.partial(guard, tensorflow=tensorflow)

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            if tensorflow:
                import_tensorflow_quietly()
            return main(*args, **kwargs)
        except TrainingInterrupted as e:  # not an error: what was done is saved, and the line says how to go on
            print(f"tfchar: {e}", file=sys.stderr, flush=True)
            raise SystemExit(e.exit_code) from None
        except TfcharError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            # `python -m tfchar.sample ... | head` closes stdout early: not an error.
            sys.stderr.close()
            raise SystemExit(0) from None

    return wrapper
