"""What an evaluation costs a time-budgeted run: scoring, the checkpoint, the TensorBoard sample, per interval.

The trainer's evaluation scores `train.eval_chars` validation characters (8 contiguous streams), writes a
checkpoint (weights, Adam state, carried state) and samples `train.sample_length` characters for
TensorBoard with the exported generator. This times each part for one model, after the warm-up the trainer
does before its clock starts (the sampler's and the scorer's graphs are traced in `prepare`), and prints
each as a share of an evaluation interval, plus the training speed and the recipe's cost per step
(layer norm and residual adds between the layers):

    python benchmarks/evaluation_cost.py                              # 2x512 LSTM, B64 x T100
    python benchmarks/evaluation_cost.py --rnn_size 256 --interval 60

Other processes on the CPU slow every figure alike; the shares are what to read (`lscpu` names the CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402

from tfchar.core import config as config_lib  # noqa: E402
from tfchar.core.vocab import Vocab  # noqa: E402
from tfchar.nn import checkpoint as ckpt_lib  # noqa: E402
from tfchar.nn.models import build_from_config, get_states  # noqa: E402
from tfchar.runtimes.keras import KerasRuntime, KerasScorer  # noqa: E402
from tfchar.training.step import make_train_step  # noqa: E402

V = 65


def timed(fn, repeats: int = 3) -> float:
    """Best of `repeats` wall times of fn() (the least disturbed by other work)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def step_seconds(model_cfg, batch: int, seq: int) -> float:
    """Seconds per training step of a stateful model, after warm-up."""
    model = build_from_config(model_cfg, V, batch_size=batch, seq_length=seq, stateful=True, seed=1)
    step = make_train_step(model, keras.optimizers.Adam(2e-3), 5.0)
    x = np.random.default_rng(0).integers(0, V, (batch, seq)).astype("int32")
    step(x, x)
    return timed(lambda: [float(step(x, x)[0]) for _ in range(3)]) / 3, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rnn_size", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seq_length", type=int, default=100)
    p.add_argument("--eval_chars", type=int, default=30_000)
    p.add_argument("--sample_length", type=int, default=300)
    p.add_argument("--interval", type=float, default=120.0, help="seconds between evaluations (train.eval_period)")
    a = p.parse_args()
    cfg = config_lib.load_config(None, [f"--model.rnn_size={a.rnn_size}"])
    print(f"{a.rnn_size}x2 LSTM, B{a.batch_size} x T{a.seq_length}; load average {os.getloadavg()[0]:.1f}")
    step, model = step_seconds(cfg.model, a.batch_size, a.seq_length)
    print(f"training step {step * 1000:.0f} ms ({a.batch_size * a.seq_length / step:,.0f} chars/s)")
    for name, keys in (("layer_norm", {"layer_norm": True}), ("residual + layer_norm", {"layer_norm": True,
                                                                                       "residual": True})):
        other, _ = step_seconds(cfg.model.__class__(**{**config_lib.to_dict(cfg)["model"], **keys}), a.batch_size,
                                a.seq_length)
        print(f"  with {name}: {other * 1000:.0f} ms per step ({other / step - 1:+.1%})")

    scorer = KerasScorer(cfg.model, V)
    ids = np.random.default_rng(1).integers(0, V, max(a.eval_chars, 1000) + 10).astype("int32")
    scorer.score(model, ids, limit=1)
    parts = {"scoring": timed(lambda: scorer.score(model, ids, limit=a.eval_chars))}
    with tempfile.TemporaryDirectory() as tmp:
        optimizer = keras.optimizers.Adam(2e-3)
        optimizer.build(model.trainable_variables)
        parts["checkpoint"] = timed(lambda: ckpt_lib.save_checkpoint(Path(tmp), f"c{time.time_ns()}", model, optimizer,
                                                                     {"step": 1}, get_states(model)))
    vocab = Vocab.from_codepoints(range(32, 32 + V), "char")
    preview = KerasRuntime(model, vocab, cfg)
    start = time.perf_counter()
    preview.generate(vocab.encode("A"), 1, seed=1)
    trace = time.perf_counter() - start
    parts["sample"] = timed(lambda: (preview.refresh(), preview.generate(vocab.encode("A"), a.sample_length, seed=1)))
    print(f"evaluation ({a.eval_chars:,} characters, {a.sample_length}-character sample), as a share of a "
          f"{a.interval:.0f} s interval:")
    for name, seconds in parts.items():
        print(f"  {name:10s} {seconds:7.3f} s  {seconds / a.interval:6.2%}")
    total = sum(parts.values())
    print(f"  {'total':10s} {total:7.3f} s  {total / a.interval:6.2%}   (sampler trace before the clock: {trace:.1f} s)")


if __name__ == "__main__":
    main()
