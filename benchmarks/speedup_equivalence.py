"""The fused CPU layers learn what the Keras layers learn: same seed and config -> same validation bpc.

Trains the same small char-RNN (same seed, same batches) twice on the first ~200k characters of Tiny
Shakespeare, once with the Keras recurrent layers and once with `tfchar.fused`, then prints both validation
bpc values, their difference, and (with --noise-seed) a third Keras run with another seed for the scale of
seed-to-seed noise. The two implementations differ only by float round-off, so the gap should be far below
that noise.

    python benchmarks/speedup_equivalence.py                 # 2x128 LSTM, 300 steps (~1-2 min)
    python benchmarks/speedup_equivalence.py --cell gru --steps 200 --noise-seed 1
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from tfchar.data.pipeline import make_dataset  # noqa: E402
from tfchar.nn.models import build_model, reset_states  # noqa: E402
from tfchar.training.step import make_eval_step, make_train_step  # noqa: E402

DEFAULT_TEXT = "/work/shared/data/tinyshakespeare/input.txt"


def load_ids(path: str, n_chars: int, val_frac: float):
    text = Path(path).read_text(encoding="utf-8")[:n_chars]
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int32)
    split = int(len(ids) * (1 - val_frac))
    return ids[:split], ids[split:], len(chars)


def train_and_validate(fast: str, seed: int, args, train, val, vocab: int) -> tuple[float, float, float]:
    """(validation bpc, final training loss in bpc, seconds) of one run."""
    keras.utils.set_random_seed(seed)
    model = build_model(vocab, cell=args.cell, rnn_size=args.rnn_size, num_layers=args.layers,
                        dropout=args.dropout, batch_size=args.batch, seq_length=args.seq, stateful=True, seed=seed,
                        fast=fast)
    step = make_train_step(model, keras.optimizers.Adam(args.lr), grad_clip=5.0)
    evaluate = make_eval_step(model)
    t0 = time.perf_counter()
    done, loss = 0, float("nan")
    while done < args.steps:
        reset_states(model)  # each epoch starts from zero state, as the trainer does
        for x, y in make_dataset(train, args.batch, args.seq, scheme="stateful", seed=seed, epoch=0):
            loss = float(step(x, y)[0])
            done += 1
            if done == args.steps:
                break
    seconds = time.perf_counter() - t0
    reset_states(model)
    nats, count = 0.0, 0.0
    for x, y in make_dataset(val, args.batch, args.seq, scheme="stateful"):
        s, c = evaluate(x, y)
        nats += float(s)
        count += float(c)
    return nats / count / math.log(2), loss / math.log(2), seconds


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--chars", type=int, default=200_000)
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--rnn-size", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-seed", type=int, default=None, help="also train Keras with this seed (noise scale)")
    args = p.parse_args(argv)

    train, val, vocab = load_ids(args.text, args.chars, args.val_frac)
    print(f"{args.text}: {len(train):,} train / {len(val):,} val chars, vocab {vocab}; "
          f"{args.layers}x{args.rnn_size} {args.cell}, B={args.batch} T={args.seq}, {args.steps} steps, "
          f"seed {args.seed}")
    runs = [("keras", args.seed), ("fused", args.seed)]
    if args.noise_seed is not None:
        runs.append(("keras", args.noise_seed))
    bpc = {}
    for fast, seed in runs:
        val_bpc, train_bpc, secs = train_and_validate(fast, seed, args, train, val, vocab)
        bpc[(fast, seed)] = val_bpc
        print(f"  {fast:5s} seed {seed}: validation bpc {val_bpc:.4f}  (last train batch {train_bpc:.4f} bpc, "
              f"{secs:.1f}s)", flush=True)
    gap = abs(bpc[("fused", args.seed)] - bpc[("keras", args.seed)])
    line = f"|fused - keras| = {gap:.4f} bpc"
    if args.noise_seed is not None:
        line += f"; seed-to-seed (keras {args.seed} vs {args.noise_seed}): " \
                f"{abs(bpc[('keras', args.noise_seed)] - bpc[('keras', args.seed)]):.4f} bpc"
    print(line)


if __name__ == "__main__":
    main()
