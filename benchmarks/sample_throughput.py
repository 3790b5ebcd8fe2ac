"""Characters per second of each sampling route, for a 2x128 LSTM on the tiny-shakespeare vocabulary.

Routes: the `generate` signature in the float and int8 TFLite files (LiteRT interpreter, default
options) and in the SavedModel, and the Python sampler (`sampler.stream_ids`, the run-dir route of
`python -m tfchar.sample`). Each is timed as the best of --repeats runs after one warm-up run, by the
wall clock and by this process' CPU time (the two agree on an idle machine).
Random weights by default: speed does not depend on what the model learned (--train_steps trains a bit).

Example:
    python benchmarks/sample_throughput.py --length 2000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"
ALPHABET = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tiny-shakespeare's 65


def make_run(root: Path, rnn_size: int, num_layers: int, train_steps: int) -> Path:
    """A run dir holding a freshly built (optionally briefly trained) LSTM."""
    import keras

    from tfchar.core import config
    from tfchar.nn.checkpoint import point, save_checkpoint
    from tfchar.nn.models import build_model
    from tfchar.core.vocab import Vocab

    vocab = Vocab(list(ALPHABET))
    model = build_model(len(vocab), "lstm", rnn_size, num_layers, seed=0)
    if train_steps:
        ids = vocab.encode(SHAKESPEARE.read_text(encoding="utf-8"), unknown="skip")
        n = min(len(ids) // 101, 32 * train_steps)
        w = ids[:n * 101].reshape(n, 101)
        model.compile(optimizer=keras.optimizers.Adam(2e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(w[:, :-1], w[:, 1:], batch_size=32, epochs=1, verbose=0)
    cfg = config.Config().replace(model={"cell": "lstm", "rnn_size": rnn_size, "num_layers": num_layers})
    run = root / "run"
    run.mkdir(parents=True)
    config.save(cfg, run / "config.toml")
    vocab.save(run / "vocab.json")
    save_checkpoint(run / "checkpoints", "bench", model, None, {"step": train_steps})
    point(run / "checkpoints", "best", "bench")
    return run


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(best wall-clock seconds, best CPU seconds of this process) over `repeats` runs after a warm-up.

    On a shared machine the wall clock includes time spent waiting for a core; the single-threaded
    routes' CPU time is what they would take on an idle one.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=2000)
    p.add_argument("--rnn_size", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--train_steps", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tfchar.exporting import exporter
    from tfchar.runtimes.keras import open_run

    root = Path(tempfile.mkdtemp(prefix="tfchar-bench-"))
    run = make_run(root, a.rnn_size, a.num_layers, a.train_steps)
    out = root / "export"
    exporter.export_run(run, out, int8=True, splits={}, log=lambda s: None)
    prime = np.array([ord(c) for c in "ROMEO:"], np.int32)
    knobs = dict(temperature=0.8, top_k=0, top_p=1.0, seed=7)

    def tflite(name):
        g = Interpreter(model_path=str(out / name)).get_signature_runner("generate")
        return lambda: g(prime=prime, length=np.int32(a.length), temperature=np.float32(0.8), top_k=np.int32(0),
                         top_p=np.float32(1.0), seed=np.int32(7))

    loaded = tf.saved_model.load(str(out / "saved_model"))
    saved = loaded.signatures["generate"]
    runtime = open_run(run)
    vocab = runtime.vocab
    ids = vocab.encode("ROMEO:")
    routes = {
        "tflite float32 (generate)": tflite("model.tflite"),
        "tflite int8 (generate)": tflite("model_int8.tflite"),
        "saved_model (generate)": lambda: saved(prime=tf.constant(prime), length=tf.constant(a.length),
                                                **{k: tf.constant(v) for k, v in knobs.items()}),
        "python sampler (run dir)": lambda: runtime.generate(ids, a.length, **knobs),
    }
    print(f"{a.num_layers}x{a.rnn_size} LSTM, {len(vocab)} chars, {a.length} chars per run, best of {a.repeats}")
    print(f"  {'route':28s} {'chars/s':>9s} {'(CPU time)':>12s}")
    for name, fn in routes.items():
        wall, cpu = best_time(fn, a.repeats)
        print(f"  {name:28s} {a.length / wall:>9,.0f} {a.length / cpu:>12,.0f}")


if __name__ == "__main__":
    main()
