"""Where a float `generate` step's time goes: the exported loop with parts of its body taken out (timing only).

A 2x128 LSTM on the tiny-shakespeare alphabet (random weights: speed does not depend on them), converted to
TFLite (`generate` alone) and run with the LiteRT interpreter, 1 thread, temperature 0.8, truncation off.
Variants of the loop body, each a separate conversion:
  * whole step: the exported loop as it is
  * draw = argmax: the sampler replaced by an argmax of the logits (what remains: the network)
  * no recurrent layers: the logits read from the carried state (what remains: the draw and the loop)
  * no layers, no draw: the loop, its output buffer and the output layer
  * unrolled xU: U characters per turn of the loop (the same text; --unroll)
The differences say what the layers, the draw and the loop cost per character.

Example:
    python benchmarks/sample_step_breakdown.py --unroll 2,4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def timed(gen, args: dict, repeats: int) -> tuple[float, np.ndarray]:
    """(best seconds of one `generate` call over `repeats` after a warm-up, its code points)."""
    from ai_edge_litert.interpreter import Interpreter

    from tfchar.runtimes.convert import function_tflite

    from sample_throughput import best_time

    g = Interpreter(model_content=function_tflite(gen.generate.get_concrete_function(), gen),
                    num_threads=1).get_signature_runner()
    return best_time(lambda: g(**args), repeats)[0], g(**args)["codepoints"]


def unrolled_sample(u: int):
    """A `CharGenerator._sample` doing u characters per turn (no stop; n a multiple of u, as here)."""
    import tensorflow as tf

    from tfchar.nn.generator import Position
    from tfchar.ops import rng as rng_ops

    def _sample(self, n, pos, knobs, pick, stop):
        size = self.chunk_size

        def body(t, n, token, rng, buf, *parts):
            parts = list(parts)
            for j in range(u):
                x, parts = self._advance(token, parts)
                rng = rng_ops.next_rng64(rng)
                token = pick(self._logits(x), rng_ops.top_bits(rng), knobs)
                buf = tf.where(tf.range(size) == t + j, token, buf)
            return (t + u, n, token, rng, buf, *parts)

        t, _, token, rng, buf, *parts = tf.while_loop(
            lambda t, n, *_: t < n, body,
            (tf.constant(0), n, pos.token - 1, pos.rng, tf.zeros([size], tf.int32), *pos.parts))
        return buf, t, Position(parts, rng, token + 1)

    return _sample


def variants(unroll: list[int]) -> list[tuple[str, dict]]:
    """(name, {attribute of CharGenerator or draw: replacement}) for each variant."""
    import tensorflow as tf

    argmax = lambda logits, bits, s: tf.argmax(logits, axis=1, output_type=tf.int32)
    no_layers = lambda self, token, parts: (parts[0] + tf.cast(token[:, None], tf.float32), parts)
    nothing = lambda self, token, parts: (parts[0], parts)
    constant = lambda logits, bits, s: tf.zeros([1], tf.int32) + tf.cast(bits[0, 0] > 5, tf.int32)
    out = [("whole step", {}), ("draw = argmax", {"pick_full": argmax}),
           ("no recurrent layers", {"_advance": no_layers}),
           ("no layers, no draw", {"_advance": nothing, "pick_full": constant})]
    return out + [(f"unrolled x{u}", {"_sample": unrolled_sample(u)}) for u in unroll]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=8000, help="characters per call (a multiple of 64 and of U)")
    p.add_argument("--unroll", default="2,4", help="characters per loop turn to try, comma-separated ('' = none)")
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()

    from sample_throughput import PRIME, machine, make_run

    from tfchar.nn import generator
    from tfchar.nn.checkpoint import load_run, load_weights
    from tfchar.nn.models import build_from_config
    from tfchar.ops import draw

    print(machine())
    with tempfile.TemporaryDirectory(prefix="tfchar-breakdown-") as root:
        cfg, vocab, ckpt = load_run(make_run(Path(root), 128, 2, 0))
        model = build_from_config(cfg.model, len(vocab))
        load_weights(model, ckpt)
    args = dict(prime=vocab.codepoints[vocab.encode(PRIME)], length=np.int32(a.length),
                temperature=np.float32(0.8), top_k=np.int32(0), top_p=np.float32(1.0), seed=np.int32(7))
    print(f"2x128 LSTM, float generate, {a.length} characters per call, best of {a.repeats}, 1 thread")
    reference = None
    for name, patch in variants([int(u) for u in a.unroll.split(",") if u]):
        owners = {k: (draw if k == "pick_full" else generator.CharGenerator) for k in patch}
        saved = {k: getattr(owners[k], k) for k in patch}
        try:
            for k, v in patch.items():
                setattr(owners[k], k, v)
            seconds, out = timed(generator.CharGenerator.from_keras(model, vocab), args, a.repeats)
        finally:
            for k, v in saved.items():
                setattr(owners[k], k, v)
        reference = out if reference is None else reference
        same = ("same text" if np.array_equal(out, reference) else "DIFFERENT text") if name.startswith("unrolled") else ""
        print(f"  {name:24s} {a.length / seconds:>9,.0f} chars/s {1e6 * seconds / a.length:>7.2f} us/char  {same}",
              flush=True)


if __name__ == "__main__":
    main()
