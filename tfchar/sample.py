"""`python -m tfchar.sample MODEL`: print text sampled from a run dir, an export, a SavedModel or a .tflite file.

Example:
    python -m tfchar.sample runs/shakespeare --prime "ROMEO:" --length 500 --temperature 0.8 --seed 7
    python -m tfchar.sample saved_models/shakespeare/model.tflite --prime "ROMEO:" --length 500 --seed 7  # same text
    python -m tfchar.sample saved_models/shakespeare --prime "ROMEO:" --stop $'\n'     # one line
"""

from __future__ import annotations

import argparse
import sys

from tfchar.cli import Parser, guard


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser("sample", __doc__)
    p.add_argument("model", help="run dir (best checkpoint), export dir, SavedModel dir or .tflite file")
    p.add_argument("--prime", default="\n", help="text the model reads first; printed before the continuation "
                                                  "(default: %(default)r)")
    p.add_argument("--length", type=int, default=2000, help="characters (bytes for byte models) to sample")
    p.add_argument("--temperature", type=float, default=1.0, help="> 0; lower is more conservative")
    p.add_argument("--greedy", action="store_true", help="always take the most likely character (argmax)")
    p.add_argument("--top_k", type=int, default=0, help="sample among the K most likely characters (0 = off)")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus: the fewest characters with P mass (1 = off)")
    p.add_argument("--seed", type=int, default=123, help="sample i uses seed + i; same seed, same text on every route")
    p.add_argument("--num_samples", type=int, default=1, help="samples to draw (batched on the run-dir route)")
    p.add_argument("--unknown", choices=("error", "skip"), default="error",
                   help="prime characters outside the vocabulary: fail, or drop them")
    p.add_argument("--stop", default=None, metavar="TEXT",
                   help="end each sample after the first occurrence of TEXT (included), e.g. --stop $'\\n' for "
                        "one line (bash); the model stops at TEXT's last character, so nothing is computed past it")
    p.add_argument("--window", type=int, default=0,
                   help="windowed sampling: re-read the last K characters from a zero state for each new one "
                        "(0 = progressive: carry the state)")
    return p.parse_args(argv)


@guard
def main(argv=None) -> int:
    a = parse_args(argv)
    from tfchar.sampling.sample import sample  # imports TensorFlow: after the flags are known to parse

    sample(a.model, prime=a.prime, length=a.length, temperature=a.temperature, greedy=a.greedy, top_k=a.top_k,
           top_p=a.top_p, seed=a.seed, num_samples=a.num_samples, unknown=a.unknown, window=a.window, stop=a.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
