"""`python -m tfchar.evaluate MODEL`: nats/char, bpc and perplexity of a text, scored with the state carried through it.

Example:
    python -m tfchar.evaluate runs/shakespeare --split test
    python -m tfchar.evaluate saved_models/shakespeare/model.tflite --text notes.txt
    python -m tfchar.evaluate runs/shakespeare --split val --streams 8          # = fit's validation figure
    python -m tfchar.evaluate runs/shakespeare --split test --dynamic --dynamic_lr 0.001 --segment 50
"""

from __future__ import annotations

import argparse
import sys
import json

from tfchar.cli import Parser, guard


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser("evaluate", __doc__)
    p.add_argument("model", help="run dir (best checkpoint), checkpoint, export dir, SavedModel dir or .tflite file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", default=None, help="UTF-8 file to score (unknown characters are counted and skipped)")
    src.add_argument("--split", default=None, choices=("train", "val", "test"),
                     help="split of the model's own corpus (default: test, when no --text)")
    p.add_argument("--streams", type=int, default=1,
                   help="contiguous rows scored in parallel, each from zero state (1 = exact; 8 = fit's validation)")
    p.add_argument("--chunk", type=int, default=256, help="time steps per call (bounds memory)")
    p.add_argument("--dynamic", action="store_true",
                   help="also run dynamic evaluation: a gradient step after each scored segment (run dirs only)")
    p.add_argument("--dynamic_lr", type=float, default=3e-4, help="learning rate of dynamic evaluation")
    p.add_argument("--dynamic_optimizer", choices=("sgd", "adam"), default="adam", help="optimizer of dynamic evaluation")
    p.add_argument("--segment", type=int, default=50, help="characters scored between dynamic updates")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object instead of text")
    return p.parse_args(argv)


@guard
def main(argv=None) -> int:
    a = parse_args(argv)
    from tfchar.evaluation.evaluate import evaluate, report  # imports TensorFlow: after the flags parse

    result = evaluate(a.model, text=a.text, split=a.split, streams=a.streams, chunk=a.chunk, dynamic=a.dynamic,
                      dynamic_lr=a.dynamic_lr, segment=a.segment, dynamic_optimizer=a.dynamic_optimizer)
    print(json.dumps(result) if a.json else report(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
