"""`python -m tfchar.fit [PIPELINE.toml] [--section.key=value ...]`: train a char-RNN."""

from __future__ import annotations

import sys

from tfchar.cli import guard, pipeline_command_line

USAGE = """usage: python -m tfchar.fit [PIPELINE.toml] [--section.key=value ...]

Train a character-level language model. With no pipeline, the default pipeline (pipelines/tiny_shakespeare.toml,
shipped with tfchar) is used, except when fine-tuning: --train.init_from takes the model from its source and
the fine-tuning defaults. Examples:
  python -m tfchar.fit
  python -m tfchar.fit pipelines/tiny_shakespeare.toml --model.rnn_size=256 --train.epochs=10
  python -m tfchar.fit --data.source=data/mytext.txt --train.max_steps=200
  python -m tfchar.fit --data.source=data/mytext.txt --train.init_from=tiny_shakespeare
  python -m tfchar.fit --train.resume=true --train.run_dir=runs/tiny_shakespeare
"""


@guard
def main(argv: list[str] | None = None) -> int:
    parsed = pipeline_command_line(sys.argv[1:] if argv is None else argv, USAGE)
    if parsed is None:
        return 0
    from tfchar.training.run import run  # imports TensorFlow: after the command line is known to parse

    run(*parsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
