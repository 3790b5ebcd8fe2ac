"""Characters per second of every sampling route, 1 thread: a 2x128 LSTM and the shipped model.

Routes, each with truncation off (temperature 0.8) and on (top-k 20, top-p 0.95):
  * TFLite float / int8 `generate`: one call of the exported signature (LiteRT interpreter, 1 thread)
  * TFLite float `generate_chunk`: K code points per call, chained by the host loop every runtime uses
  * library, export dir: `load_runtime(export dir).generate` (what `python -m tfchar.sample EXPORT` runs)
  * library, run dir: `load_runtime(run dir).generate` (the Keras checkpoint, sampled in process)
  * SavedModel `generate` in TensorFlow (the signature itself, for reference)
Each is the best of --repeats runs after a warm-up, by the wall clock and by this process' CPU time (the
two agree on an idle machine; the CPU time is what a single-threaded route takes when the cores are
shared). "same" says whether the route wrote the float `generate`'s code points for the same seed.

Then the sort's share of a float `generate` step with top-k/top-p on: the step timed with the sort
(`tfchar.ops.draw.sort_desc`, TFLite TOPK_V2) replaced by nothing, for the 2x128 model.

The 2x128 LSTM has random weights (speed does not depend on them; --train_steps trains a bit).

Example:
    python benchmarks/sample_throughput.py --model saved_models/tiny_shakespeare
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

SHAKESPEARE = Path(os.environ.get("TFCHAR_SHAKESPEARE", ROOT.parent / "shared/data/tinyshakespeare/input.txt"))
ALPHABET = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tiny-shakespeare's 65
PRIME = "ROMEO:"
KNOBS = {"plain": dict(temperature=0.8, top_k=0, top_p=1.0), "top-k/p": dict(temperature=0.8, top_k=20, top_p=0.95)}


def machine() -> str:
    """The CPU model (lscpu) and the date: the figures mean little without them."""
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    load = os.getloadavg()[0]
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {load:.1f}; {datetime.date.today()}"


def make_run(root: Path, rnn_size: int, num_layers: int, train_steps: int) -> Path:
    """A run dir holding a freshly built (optionally briefly trained) LSTM."""
    import keras

    from tfchar.core import config
    from tfchar.core.vocab import Vocab
    from tfchar.nn.checkpoint import point, save_checkpoint
    from tfchar.nn.models import build_model

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
    """(best wall-clock seconds, best CPU seconds of this process) over `repeats` runs after a warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def routes(export: Path, run: Path | None, length: int) -> dict:
    """name -> callable(knobs) returning code points, for every route of one model."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tfchar.runtimes.chunked import chunked_samples
    from tfchar.runtimes.load import load_runtime
    from tfchar.runtimes.tflite import interpreter_chunks

    library = load_runtime(export)
    vocab = library.vocab
    ids = vocab.encode(PRIME)
    prime = vocab.codepoints[ids]

    def tflite(name):
        g = Interpreter(model_path=str(export / name), num_threads=1).get_signature_runner("generate")
        return lambda k: g(prime=prime, length=np.int32(length), temperature=np.float32(k["temperature"]),
                           top_k=np.int32(k["top_k"]), top_p=np.float32(k["top_p"]), seed=np.int32(7))["codepoints"]

    chunks = interpreter_chunks(Interpreter(model_path=str(export / "model.tflite"), num_threads=1), vocab, "bench")
    saved = tf.saved_model.load(str(export / "saved_model")).signatures["generate"]
    out = {"TFLite float generate": tflite("model.tflite"), "TFLite int8 generate": tflite("model_int8.tflite")}
    if chunks is None:
        print("  (no generate_chunk: this export predates it; python -m tfchar.export writes it)")
    else:
        out[f"TFLite float generate_chunk (K={chunks.size})"] = lambda k: np.concatenate(
            [p for _, p in chunked_samples(chunks, ids, length, k["temperature"], k["top_k"], k["top_p"], 7, 1, [])])
    out["library, export dir"] = lambda k: library.generate(ids, length, seed=7, **k)[0]
    out["SavedModel generate (TensorFlow)"] = lambda k: saved(
        prime=tf.constant(prime), length=tf.constant(length), temperature=tf.constant(k["temperature"]),
        top_k=tf.constant(k["top_k"]), top_p=tf.constant(k["top_p"]), seed=tf.constant(7))["codepoints"].numpy()
    if run is not None:
        from_run = load_runtime(run)
        out["library, run dir"] = lambda k: from_run.generate(ids, length, seed=7, **k)[0]
    return out


def report(title: str, export: Path, run: Path | None, length: int, repeats: int) -> None:
    print(f"\n{title}: {export}  ({length} characters per call, best of {repeats})")
    print(f"  {'route':44s} {'plain':>9s} {'cpu':>9s} {'top-k/p':>9s} {'cpu':>9s}  same")
    table = routes(export, run, length)
    reference = {name: table["TFLite float generate"](k) for name, k in KNOBS.items()}
    for route, fn in table.items():
        cells, same = [], True
        for name, knobs in KNOBS.items():
            wall, cpu = best_time(lambda: fn(knobs), repeats)
            cells += [length / wall, length / cpu]
            same &= "int8" in route or np.array_equal(np.asarray(fn(knobs)), reference[name])
        print(f"  {route:44s} " + " ".join(f"{c:>9,.0f}" for c in cells) + f"  {'yes' if same else 'NO'}",
              flush=True)


def sort_share(run: Path, length: int, repeats: int) -> None:
    """The sort's share of a float `generate` step with top-k/top-p on (TFLite, 1 thread)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tfchar.nn.checkpoint import load_run, load_weights
    from tfchar.nn.generator import CharGenerator
    from tfchar.nn.models import build_from_config
    from tfchar.ops import draw
    from tfchar.runtimes.convert import function_tflite

    cfg, vocab, ckpt = load_run(run)
    model = build_from_config(cfg.model, len(vocab))
    load_weights(model, ckpt)
    unsorted = lambda logits: (logits, tf.broadcast_to(tf.range(tf.shape(logits)[1]), tf.shape(logits)))
    k = KNOBS["top-k/p"]
    args = dict(prime=vocab.codepoints[vocab.encode(PRIME)], length=np.int32(length),
                temperature=np.float32(k["temperature"]), top_k=np.int32(k["top_k"]), top_p=np.float32(k["top_p"]),
                seed=np.int32(7))
    runners = {}
    for name, sort in (("with the sort", draw.sort_desc), ("sort replaced by nothing", unsorted)):
        original, draw.sort_desc = draw.sort_desc, sort
        try:
            gen = CharGenerator.from_keras(model, vocab)
            g = Interpreter(model_content=function_tflite(gen.generate.get_concrete_function(), gen),
                            num_threads=1).get_signature_runner()
        finally:
            draw.sort_desc = original
        runners[name] = lambda g=g: g(**args)
    times = {name: [] for name in runners}
    for _ in range(3 * repeats):  # interleaved, so both see the same machine
        for name, fn in runners.items():
            times[name].append(best_time(fn, 1))
    (wall, cpu), (wall0, cpu0) = (tuple(min(t[i] for t in times[n]) for i in (0, 1)) for n in runners)
    print(f"\nsort (TOPK_V2 over V={len(vocab)}) in a float generate step, top-k/p on: "
          f"{1e6 * wall / length:.2f} us/step, {1e6 * wall0 / length:.2f} without the sort: "
          f"{100 * (1 - wall0 / wall):.0f}% of the step ({100 * (1 - cpu0 / cpu):.0f}% by CPU time)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=None,
                   help="an export dir to time too (repeatable; default: saved_models/tiny_shakespeare if present)")
    p.add_argument("--length", type=int, default=4000)
    p.add_argument("--rnn_size", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--train_steps", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    from tfchar.exporting import exporter

    print(machine())
    shipped = ROOT / "saved_models" / "tiny_shakespeare"
    models = a.model if a.model is not None else ([str(shipped)] if (shipped / "model.tflite").is_file() else [])
    with tempfile.TemporaryDirectory(prefix="tfchar-bench-") as root:
        root = Path(root)
        run = make_run(root, a.rnn_size, a.num_layers, a.train_steps)
        out = root / "export"
        exporter.export_run(run, out, int8=True, splits={}, log=lambda s: None)
        report(f"{a.num_layers}x{a.rnn_size} LSTM, random weights", out, run, a.length, a.repeats)
        for m in models:
            report("export", Path(m), None, a.length, a.repeats)
        sort_share(run, a.length, a.repeats)
    print("chars/s by the wall clock, then by this process' CPU time; 1 thread everywhere")


if __name__ == "__main__":
    main()
