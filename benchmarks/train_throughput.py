"""Training throughput: characters per second of the compiled train step, Keras vs fused recurrent layers.

Batch 64, seq 100, vocab 65, Adam, global-norm clip 5, as the trainer runs it (`tfchar.nn.models.build_model`
+ `tfchar.train_step.make_train_step`), after warm-up. Each configuration is timed in several interleaved
rounds and the best round is reported, because other processes may share the CPU (the load average is
printed, and so is the throughput per CPU-second of this process, which load disturbs much less: on an
idle machine that keeps both cores busy, chars/s approaches twice it). Also printed: the measured GEMM peak (a large `tf.matmul`), each configuration's share of it (from
the model's training FLOPs per character), the GRU/LSTM cost per parameter, and the input pipeline alone.

    python benchmarks/train_throughput.py            # full table (~10 minutes on 2 cores)
    python benchmarks/train_throughput.py --quick    # fewer steps and rounds (~3 minutes)
    python benchmarks/train_throughput.py --configs lstm:128 gru:512 --impl fused --native off --xla off
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from tfchar.nn.models import build_model, param_count  # noqa: E402
from tfchar.training.step import make_train_step  # noqa: E402

B, T, V, E = 64, 100, 65, 64
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DEFAULT_CONFIGS = ("lstm:128", "lstm:512", "gru:512", "rnn:512", "gru:128", "rnn:128")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def gemm_peak(n: int = 2048, reps: int = 8) -> float:
    """Best GFLOP/s of an n x n x n float32 tf.matmul (eager: one op, so nothing is folded away)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    tf.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def train_flops_per_char(cell: str, hidden: int, layers: int = 2) -> float:
    """Multiply-adds x 2 of the matmuls per trained character: forward, plus twice that for the backward."""
    g = GATES[cell] * hidden
    fwd = 2 * (E * g + hidden * g) + (layers - 1) * 2 * (hidden * g + hidden * g) + 2 * hidden * V
    return 3.0 * fwd


def make_step(cell: str, hidden: int, fast: str):
    model = build_model(V, cell=cell, rnn_size=hidden, num_layers=2, batch_size=B, seq_length=T, stateful=True,
                        seed=0, fast=fast)
    return model, make_train_step(model, keras.optimizers.Adam(2e-3), grad_clip=5.0)


def bench_models(configs, impls, steps: int, rounds: int, peak: float) -> dict:
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, V, (B, T)), tf.int32)
    y = tf.constant(rng.integers(0, V, (B, T)), tf.int32)
    results = {}
    for spec in configs:
        cell, hidden = spec.split(":")
        hidden = int(hidden)
        runs = {}
        for fast in impls:
            model, step = make_step(cell, hidden, fast)
            t0 = time.perf_counter()
            for _ in range(3):  # trace + warm-up
                loss, _ = step(x, y)
            float(loss)
            runs[fast] = (step, param_count(model), time.perf_counter() - t0)
        # interleave the implementations so both see the same background load
        n = max(2, steps * 128 // hidden if hidden < 512 else steps)
        best = {fast: 0.0 for fast in runs}
        cpu = {fast: 0.0 for fast in runs}  # chars per second of this process's CPU time (all threads)
        for _ in range(rounds):
            for fast, (step, _, _) in runs.items():
                t, c = time.perf_counter(), time.process_time()
                for _ in range(n):
                    loss, _ = step(x, y)
                float(loss)
                best[fast] = max(best[fast], n * B * T / (time.perf_counter() - t))
                cpu[fast] = max(cpu[fast], n * B * T / max(time.process_time() - c, 1e-9))
        flops = train_flops_per_char(cell, hidden)
        for fast, (step, params, warm) in runs.items():
            rate = best[fast]
            results[(cell, hidden, fast)] = (rate, params)
            print(f"  2x{hidden:<4d} {cell:4s} {fast:5s}  {rate:9,.0f} chars/s  {rate * flops / 1e9:6.1f} GFLOP/s "
                  f"= {rate * flops / 1e9 / peak:5.1%} of peak   ({cpu[fast]:8,.0f} chars per CPU-second; "
                  f"params {params:,}, warm-up {warm:.1f}s)", flush=True)
        if len(runs) == 2:
            print(f"  2x{hidden:<4d} {cell:4s} speed-up fused/keras x{best['fused'] / best['keras']:.2f}", flush=True)
    return results


def bench_pipeline(n_chars: int, batches: int) -> None:
    try:
        from tfchar.data.pipeline import make_dataset
    except ImportError as e:
        print(f"input pipeline: skipped (tfchar.data.pipeline.make_dataset not available: {e})")
        return
    ids = np.random.default_rng(1).integers(0, V, n_chars).astype(np.int32)
    for scheme in ("stateful", "windows"):
        try:
            ds = make_dataset(ids, B, T, scheme=scheme, seed=0, epoch=0)
        except (TypeError, ValueError) as e:
            print(f"input pipeline {scheme}: skipped ({e})")
            continue
        best = 0.0
        for _ in range(3):
            count = 0
            t = time.perf_counter()
            for x, _ in ds.take(batches):
                count += int(x.shape[0]) * int(x.shape[1])
            best = max(best, count / (time.perf_counter() - t))
        print(f"input pipeline {scheme:8s}: {best:12,.0f} chars/s  (make_dataset alone, B={B} T={T}, "
              f"{batches} batches)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    p.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS), help="cell:hidden pairs")
    p.add_argument("--impl", choices=["both", "keras", "fused"], default="both")
    p.add_argument("--steps", type=int, default=0, help="train steps per timed round at H=512")
    p.add_argument("--rounds", type=int, default=0, help="timed rounds per configuration (best is kept)")
    p.add_argument("--threads", default="", help="INTER,INTRA op threads (default: TensorFlow's)")
    p.add_argument("--native", choices=["on", "off"], default="on",
                   help="fused layers: native C++ time loops (default) or TensorFlow loops")
    p.add_argument("--xla", choices=["on", "off"], default="on",
                   help="with --native off: XLA-compiled TensorFlow loops (default) or plain ones")
    args = p.parse_args(argv)
    if args.threads:
        inter, intra = (int(v) for v in args.threads.split(","))
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    from tfchar.nn import fused, native

    fused.USE_NATIVE = args.native == "on"
    fused.USE_XLA = args.xla == "on"
    loops = "native" if args.native == "on" and native.ops() is not None else f"TF, XLA {args.xla}"
    steps = args.steps or (3 if args.quick else 6)
    rounds = args.rounds or (2 if args.quick else 4)
    impls = ["keras", "fused"] if args.impl == "both" else [args.impl]

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, load {load()}, "
          f"oneDNN {os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default(on)')}, fused layers' loops: {loops}")
    peak = gemm_peak()
    print(f"GEMM peak (2048^3 float32 tf.matmul): {peak:.0f} GFLOP/s")
    print(f"training throughput, B={B} T={T} V={V} E={E}, Adam, clip 5 (best of {rounds} rounds):")
    results = bench_models(args.configs, impls, steps, rounds, peak)
    for fast in impls:
        lstm, gru = results.get(("lstm", 512, fast)), results.get(("gru", 512, fast))
        if lstm and gru:  # seconds per char per parameter, GRU relative to LSTM
            ratio = (1 / gru[0] / gru[1]) / (1 / lstm[0] / lstm[1])
            print(f"  {fast}: 2x512 GRU cost per parameter = {ratio:.2f} x LSTM's")
    bench_pipeline(2_000_000 if args.quick else 5_000_000, 100 if args.quick else 300)
    print(f"load at the end {load()}")


if __name__ == "__main__":
    main()
