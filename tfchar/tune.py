"""`python -m tfchar.tune [PIPELINE.toml] [--section.key=value ...]`: Keras Tuner search over a char-RNN."""

from __future__ import annotations

import sys

from tfchar.cli import guard, pipeline_command_line

USAGE = """usage: python -m tfchar.tune [PIPELINE.toml] [--section.key=value ...]

Search hyperparameters (rnn_size, num_layers, dropout, ...) with Keras Tuner; each trial trains like
`python -m tfchar.fit` and is scored by validation bits per character. The space is a TOML file
(--tune.space, default tuning/default_space.toml). Output goes to tuning/<project>/: summary.md, best.toml
(a pipeline: python -m tfchar.fit tuning/<project>/best.toml) and each trial's run with TensorBoard logs.
With KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT set it runs as a chief or a worker
(see docs/tune.md). Examples:
  python -m tfchar.tune
  python -m tfchar.tune --tune.algorithm=random --tune.max_trials=6 --tune.max_epochs=1
  python -m tfchar.tune pipelines/tiny_shakespeare.toml --tune.space=tuning/smoke_space.toml
  python -m tfchar.tune --tune.project=tiny_shakespeare --tune.resume=true
"""


@guard
def main(argv: list[str] | None = None) -> int:
    parsed = pipeline_command_line(sys.argv[1:] if argv is None else argv, USAGE)
    if parsed is None:
        return 0
    from tfchar.tuning.search import run  # imports TensorFlow: after the command line is known to parse

    run(*parsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
