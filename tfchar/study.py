"""`python -m tfchar.study {schemes,cells,recipe}`: train every training scheme (or cell, or recipe variant) at one budget and tabulate the results.

Example:
    python -m tfchar.study schemes --chars 1500000                 # docs/study/schemes.{md,csv,png}
    python -m tfchar.study cells --chars 1500000                   # docs/study/cells.{md,csv,png}
    python -m tfchar.study schemes --chars 50000 --out /tmp/s --rnn_size 32 --batch_size 8 --seq_length 32
    python -m tfchar.study recipe --budget 10m --seeds 1,2 --runs runs/recipe_study   # docs/study/recipe.*
    python -m tfchar.study recipe --budget 20s --variants cosine,dropout --set model.rnn_size=32 --out /tmp/r
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfchar.cli import Parser, guard
from tfchar.core.config import parse_duration
from tfchar.core.errors import ConfigError

RECIPE_DESIGNS = ("add", "remove", "both")  # tfchar.studies.recipe.DESIGNS (this module must not import TensorFlow)


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser("study", __doc__)
    p.add_argument("study", choices=("schemes", "cells", "recipe"),
                   help="schemes: stateful/windows/overlap/single_loss on two corpora; cells: lstm/gru/rnn at equal "
                        "size; recipe: each addition to a recipe on and off at equal wall time")
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
    r = p.add_argument_group("recipe study (the flags above, but --evals, --out and --runs, do not apply)")
    r.add_argument("--budget", default="10m", help="training time per run, evaluations included (seconds or 10m)")
    r.add_argument("--seeds", default="1,2", help="comma-separated train.seed of each variant's runs")
    r.add_argument("--design", default="both", choices=RECIPE_DESIGNS,
                   help="add: each addition alone on the base; remove: each off from the base; both: add, combine "
                        "the ones that helped, remove")
    r.add_argument("--base", default="", help="the base recipe, a pipeline file ('' = char-rnn's at 2x512, B64 T100)")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the base recipe (repeatable), e.g. --set data.val_frac=0.1")
    r.add_argument("--variants", default="", help="comma-separated additions to try ('' = all)")
    r.add_argument("--eval_chars", type=int, default=30_000, help="characters each evaluation during a run scores")
    r.add_argument("--min_gain", type=float, default=0.005, help="bpc an addition must gain on every seed")
    a = p.parse_args(argv)
    for key in ("chars", "batch_size", "seq_length", "rnn_size", "num_layers", "embedding_dim", "evals", "stdlib_bytes"):
        if getattr(a, key) < 1:
            raise ConfigError(f"--{key} {getattr(a, key)} must be positive")
    a.budget = parse_duration(a.budget, "--budget")
    if a.budget <= 0:
        raise ConfigError("--budget must be a positive duration, e.g. 10m")
    try:
        a.seeds = tuple(int(x) for x in a.seeds.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--seeds {a.seeds!r} is not a comma-separated list of integers, e.g. 1,2") from None
    if not a.seeds:
        raise ConfigError("--seeds needs at least one seed, e.g. 1,2")
    a.set = dict(_key_value(item) for item in a.set)
    a.variants = tuple(v.strip() for v in a.variants.split(",") if v.strip())
    return a


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. --set data.val_frac=0.1")
    return key.strip().lstrip("-"), value


@guard
def main(argv=None) -> int:
    a = parse_args(argv)
    import tensorflow as tf  # after the flags are known to parse

    from tfchar.studies.cells import run_cells
    from tfchar.studies.recipe import ADDITION_NAMES, ADDITIONS, RecipeSetup, run_recipe
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
    elif a.study == "cells":
        run_cells(out, setup, runs_dir=runs)
    else:
        unknown = [v for v in a.variants if v not in ADDITION_NAMES]
        if unknown:
            raise ConfigError(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(ADDITION_NAMES)}")
        additions = tuple(x for x in ADDITIONS if not a.variants or x.name in a.variants)
        recipe = RecipeSetup(budget=a.budget, seeds=a.seeds, base=a.base or None, overrides=a.set, evals=a.evals,
                             eval_chars=a.eval_chars, min_gain=a.min_gain, additions=additions)
        run_recipe(out, recipe, design=a.design, runs_dir=runs)
    print((out / f"{a.study}.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
