"""`python -m tfchar.study {schemes,cells}`: train every training scheme (or cell) at one budget and tabulate the results.

Example:
    python -m tfchar.study schemes --chars 1500000                 # docs/study/schemes.{md,csv,png}
    python -m tfchar.study cells --chars 1500000                   # docs/study/cells.{md,csv,png}
    python -m tfchar.study schemes --chars 50000 --out /tmp/s --rnn_size 32 --batch_size 8 --seq_length 32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfchar.cli import Parser, guard
from tfchar.core.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser("study", __doc__)
    p.add_argument("study", choices=("schemes", "cells"),
                   help="schemes: stateful/windows/overlap/single_loss on two corpora; cells: lstm/gru/rnn at equal size")
    p.add_argument("--chars", type=int, default=1_500_000, help="processed training characters per run (the budget)")
    p.add_argument("--out", default="docs/study", help="where the table (.md, .csv) and the plot (.png) go")
    p.add_argument("--runs", default="", help="keep the training runs here ('' = a temporary dir, deleted after)")
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--seq_length", type=int, default=50, help="T: training window, also the windowed-sampling K")
    p.add_argument("--rnn_size", type=int, default=128, help="H of the LSTM; the cells study matches its parameters")
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--embedding_dim", type=int, default=64)
    p.add_argument("--evals", type=int, default=6, help="validation points per run")
    p.add_argument("--learning_rate", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--stdlib_bytes", type=int, default=2_000_000, help="size of the Python-source corpus")
    p.add_argument("--corpora", default="tiny_shakespeare,python", help="schemes study: comma-separated corpora")
    a = p.parse_args(argv)
    for key in ("chars", "batch_size", "seq_length", "rnn_size", "num_layers", "embedding_dim", "evals", "stdlib_bytes"):
        if getattr(a, key) < 1:
            raise ConfigError(f"--{key} {getattr(a, key)} must be positive")
    return a


@guard
def main(argv=None) -> int:
    a = parse_args(argv)
    import tensorflow as tf  # after the flags are known to parse

    from tfchar.studies.cells import run_cells
    from tfchar.studies.runs import Setup
    from tfchar.studies.schemes import run_schemes

    tf.get_logger().setLevel("ERROR")  # each run's fresh sampler re-traces its functions: expected, not news

    setup = Setup(chars=a.chars, batch_size=a.batch_size, seq_length=a.seq_length, rnn_size=a.rnn_size,
                  num_layers=a.num_layers, embedding_dim=a.embedding_dim, evals=a.evals,
                  learning_rate=a.learning_rate, seed=a.seed)
    out, runs = Path(a.out), Path(a.runs) if a.runs else None
    if a.study == "schemes":
        run_schemes(out, setup, runs_dir=runs, stdlib_bytes=a.stdlib_bytes,
                    names=tuple(c.strip() for c in a.corpora.split(",") if c.strip()))
    else:
        run_cells(out, setup, runs_dir=runs)
    print((out / f"{a.study}.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
