"""`python -m tfchar.fit [PIPELINE.toml] [--section.key=value ...]`: train a char-RNN."""

from __future__ import annotations

import sys

from tfchar.errors import cli_guard

USAGE = """usage: python -m tfchar.fit [PIPELINE.toml] [--section.key=value ...]

Train a character-level language model. With no pipeline, pipelines/tiny_shakespeare.toml is used when
it exists, else the built-in defaults. Examples:
  python -m tfchar.fit
  python -m tfchar.fit pipelines/tiny_shakespeare.toml --model.rnn_size=256 --train.epochs=10
  python -m tfchar.fit --data.source=data/mytext.txt --train.max_steps=200
  python -m tfchar.fit --train.resume=true --train.run_dir=runs/tiny_shakespeare
"""


@cli_guard
def main(argv: list[str] | None = None) -> int:
    from tfchar.config import parse_command_line

    parsed = parse_command_line(sys.argv[1:] if argv is None else argv, USAGE)
    if parsed is None:
        return 0
    from tfchar.trainer import run

    run(*parsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
