"""`python -m tfchar.export RUN_DIR --out DIR`: write a run's best checkpoint as SavedModel + TFLite files.

Example:
    python -m tfchar.export runs/shakespeare --out saved_models/shakespeare
    python -m tfchar.sample saved_models/shakespeare/model.tflite --prime "ROMEO:"
"""

from __future__ import annotations

import argparse
import sys

from tfchar.cli import Parser, guard
from tfchar.core.errors import ConfigError


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser("export", __doc__)
    p.add_argument("run_dir", help="run directory (runs/<name>) or one of its checkpoints")
    p.add_argument("--out", default="", help="export directory ('' = the run's export.out, else saved_models/<name>)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="checkpoint of a run dir to export (default: best)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="do not write model_int8.tflite")
    p.add_argument("--eval_chars", type=int, default=None,
                   help="characters of each split to score for metrics.json (0 = the whole splits; default: the "
                        "run's export.eval_chars)")
    p.add_argument("--chunk_size", type=int, default=None,
                   help="K, code points per generate_chunk call (its static size; default: the run's export.chunk_size, 64)")
    return p.parse_args(argv)


@guard
def main(argv=None) -> int:
    a = parse_args(argv)
    from tfchar.exporting.exporter import interruptible_export  # imports TensorFlow: after the flags parse

    if a.eval_chars is not None and a.eval_chars < 0:
        raise ConfigError(f"--eval_chars {a.eval_chars} must be >= 0 (0 = the whole splits)")
    interruptible_export(a.run_dir, a.out or None, int8=a.int8, which=a.which, eval_chars=a.eval_chars,
                         chunk_size=a.chunk_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
