"""The sampling step as TensorFlow ops: logits in, token ids out, with a seeded integer PRNG.

These ops are the ONE sampling code path: `generator.CharGenerator` bakes them into the exported
SavedModel and TFLite graphs, and the Python route (`sample_text`, `python -m tfchar.sample RUN_DIR`)
runs the same module. They use TFLite builtin ops only (no stateless random ops, which need Flex).

Randomness comes from the Park-Miller "minimal standard" generator x <- 16807 x mod (2^31 - 1),
computed with Schrage's method so every intermediate fits in int32. A uniform u in [0, 1) is the
state's top 24 bits times 2^-24: exact in float32, so every runtime sees the same u.

A token is drawn by inverse CDF over the logits sorted high to low:
    e_i = exp((l_i - l_max) * (1 / temperature))    (not divided by the sum: fewer rounding steps)
    keep the k highest (top_k > 0), then the shortest prefix whose mass reaches top_p of the rest
    pick the first kept rank whose cumulative e exceeds u * (kept mass)
temperature <= 0 means greedy (argmax); top_k = 0 and top_p = 1 switch truncation off.

Shapes: B batch (parallel streams), V vocabulary.

Example:
    rng = seed_rng(tf.constant([7]))                     # int32[B]
    rng = next_rng(rng)
    ids = sample_ids(logits, uniform(rng), 0.8, 0, 0.95)  # logits float32[B, V] -> int32[B]
"""

from __future__ import annotations

import codecs
import math
import sys
import weakref
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfchar.errors import CheckpointError, ConfigError
from tfchar.vocab import Vocab

MODULUS = 2147483647  # 2^31 - 1, a prime
MULTIPLIER = 16807  # 7^5: Park & Miller's minimal standard
_Q, _R = MODULUS // MULTIPLIER, MODULUS % MULTIPLIER  # Schrage: MODULUS = MULTIPLIER * Q + R, R < Q
# Consecutive seeds start as consecutive states; a few steps spread them over the whole range.
WARMUP = 4


def next_rng(x):
    """One generator step: int32[B] states in [1, 2^31 - 2] -> the next states (same range)."""
    hi = tf.math.floordiv(x, _Q)
    lo = x - hi * _Q
    x = MULTIPLIER * lo - _R * hi  # in (-MODULUS, MODULUS): no int32 overflow
    return tf.where(x > 0, x, x + MODULUS)


def seed_rng(seed):
    """Generator states for int32 seeds (any value, negative too): int32[B] -> int32[B]."""
    x = tf.math.floormod(seed, MODULUS - 1) + 1
    for _ in range(WARMUP):
        x = next_rng(x)
    return x


def uniform(x):
    """The state's top 24 bits as a float32 in [0, 1), exactly (float32 has a 24-bit mantissa)."""
    return tf.cast(tf.math.floordiv(x, 128), tf.float32) * (1.0 / (1 << 24))


class Settings(NamedTuple):
    """Loop-invariant sampling knobs, prepared once per call so each step runs fewer ops."""

    inv_temperature: tf.Tensor  # float32[], 1 when greedy
    u_scale: tf.Tensor  # float32[], 0 when greedy: u = 0 picks rank 0, the argmax
    k_mask: tf.Tensor  # float32[1, V], 1 on the ranks top_k keeps
    k: tf.Tensor  # int32[], ranks top_k keeps (V when off)
    p: tf.Tensor  # float32[], top_p, or 2 when off (so no rank is cut by rounding)


def settings(temperature, top_k, top_p, vocab_size) -> Settings:
    """Turn user knobs (scalars) into `Settings` for a vocabulary of `vocab_size` tokens."""
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    top_k = tf.convert_to_tensor(top_k, tf.int32)
    top_p = tf.convert_to_tensor(top_p, tf.float32)
    greedy = temperature <= 0.0
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab_size), vocab_size)
    return Settings(inv_temperature=tf.where(greedy, 1.0, 1.0 / tf.where(greedy, 1.0, temperature)),
                    u_scale=tf.where(greedy, 0.0, 1.0),
                    k_mask=tf.cast(tf.range(vocab_size) < k, tf.float32)[None, :],
                    k=k,
                    p=tf.where(top_p >= 1.0, 2.0, top_p))


def draw(logits, u, s: Settings):
    """One token per row by inverse CDF: logits float32[B, V], uniforms float32[B] -> int32[B]."""
    sorted_logits, order = tf.math.top_k(logits, k=tf.shape(logits)[1])  # [B, V] high to low; ties: lower id first
    e = tf.exp((sorted_logits - sorted_logits[:, :1]) * s.inv_temperature) * s.k_mask  # [B, V], e[:, 0] == 1
    cdf = tf.cumsum(e, axis=1)  # [B, V]
    # Nucleus: rank r stays if the mass before it is below p of the total, so rank 0 always stays.
    n_keep = tf.minimum(1 + _count(cdf < s.p * cdf[:, -1:]), s.k)  # [B]
    kept_mass = tf.gather(cdf, n_keep - 1, batch_dims=1)  # [B]
    threshold = u * s.u_scale * kept_mass  # [B]
    pick = tf.minimum(_count(cdf <= tf.expand_dims(threshold, 1)), n_keep - 1)  # [B] rank of the first cdf above it
    return tf.gather(order, pick, batch_dims=1)


def _count(mask):
    return tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


def sample_ids(logits, u, temperature, top_k, top_p):
    """Draw one token per row by inverse CDF.

    Args:
        logits: float32[B, V] unnormalized log-probabilities.
        u: float32[B] uniforms in [0, 1), e.g. `uniform(state)`.
        temperature: float32 scalar; <= 0 means greedy (argmax, u unused).
        top_k: int32 scalar; keep only the k most likely tokens (0 = all).
        top_p: float32 scalar in (0, 1]; keep the fewest top tokens whose probability reaches top_p (1 = all).

    Returns:
        int32[B] token ids.

    Example:
        sample_ids(tf.constant([[0., 2., 1.]]), tf.constant([0.5]), 1.0, 0, 1.0)  # -> [1] (p = .24, .67, .09)
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    return draw(logits, tf.convert_to_tensor(u, tf.float32), settings(temperature, top_k, top_p, tf.shape(logits)[1]))


# ============================================================================================ Python route

def sample_seeds(seed: int, num_samples: int) -> np.ndarray:
    """Seed of each sample: seed, seed + 1, ... (wrapped to int32), i.e. what `generate` gets per sample."""
    return ((np.arange(num_samples, dtype=np.int64) + seed + 2**31) % 2**32 - 2**31).astype(np.int32)


def stream_ids(gen, ids, length: int, num_samples: int = 1, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0, chunk: int = 64):
    """Sample with an in-process `generator.CharGenerator`, yielding int32[num_samples, n] chunks as they come.

    Runs the generator's own loop (`prime_state`, `sample_chunk`), so sample i equals the exported
    `generate(prime, length, temperature, top_k, top_p, seed=sample_seeds(seed, num_samples)[i])`.

    Args:
        gen: a `CharGenerator`.
        ids: int32[N] prime token ids; empty means "as if after token id 0", as in `generate`.
        length: tokens to sample per stream.
        num_samples: B, parallel streams.
        temperature, top_k, top_p: as `sample_ids` (temperature <= 0: greedy).
        seed: seed of the first stream; stream i uses seed + i.
        chunk: tokens per yielded piece.

    Example:
        text = vocab.decode(np.concatenate(list(stream_ids(gen, vocab.encode("ROMEO:"), 100)), axis=1)[0])
    """
    ids = np.asarray(ids, np.int32).reshape(-1)
    if ids.size == 0:
        ids = np.zeros([1], np.int32)
    state = gen.prime_state(ids[:-1], num_samples)  # [B, S]
    token = tf.fill([num_samples], ids[-1])  # [B]
    rng = seed_rng(tf.constant(sample_seeds(seed, num_samples)))  # [B]
    for done in range(0, length, chunk):
        n = min(chunk, length - done)
        out, token, state, rng = gen.sample_chunk(token, state, rng, n, temperature, top_k, top_p)
        yield out.numpy()


_GENERATORS = weakref.WeakKeyDictionary()  # Keras model -> its CharGenerator (traced once, weights re-copied)


def sample_text(model, vocab, prime: str = "\n", length: int = 200, temperature: float = 1.0,
                top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> str:
    """The continuation of `prime` sampled from a Keras char-RNN (the trainer's TensorBoard preview).

    Copies the model's current weights into a cached `CharGenerator`, so it is the exported sampler.
    Unknown prime characters are skipped.

    Example:
        sample_text(model, vocab, prime="ROMEO:", length=100, temperature=0.8, seed=1)
    """
    from tfchar.generator import CharGenerator

    gen = _GENERATORS.get(model)
    if gen is None:
        gen = _GENERATORS[model] = CharGenerator.from_keras(model, vocab)
    else:
        gen.assign_from_keras(model)
    if length <= 0:
        return ""
    chunks = list(stream_ids(gen, vocab.encode(prime, unknown="skip"), length, 1, temperature, top_k, top_p, seed))
    return vocab.decode(np.concatenate(chunks, axis=1)[0])


# ============================================================================================ any model path

def check_options(length: int, temperature: float, greedy: bool, top_k: int, top_p: float,
                  num_samples: int, seed: int, unknown: str) -> None:
    """Raise ConfigError naming the first impossible sampling option."""
    if length <= 0:
        raise ConfigError(f"--length {length} must be positive, e.g. --length 2000")
    if not greedy and not (temperature > 0 and math.isfinite(temperature)):
        raise ConfigError(f"--temperature {temperature} must be a positive number, e.g. 0.8 (or pass --greedy)")
    if top_k < 0:
        raise ConfigError(f"--top_k {top_k} must be >= 0 (0 = off)")
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"--top_p {top_p} must be in (0, 1], e.g. 0.9 (1 = off)")
    if num_samples < 1:
        raise ConfigError(f"--num_samples {num_samples} must be >= 1")
    if not -2**31 <= seed < 2**31:
        raise ConfigError(f"--seed {seed} must fit in 32 bits")
    if unknown not in ("error", "skip"):
        raise ConfigError(f"--unknown {unknown!r} must be error or skip")


def sample(model_path, prime: str = "\n", length: int = 2000, temperature: float = 1.0, greedy: bool = False,
           top_k: int = 0, top_p: float = 1.0, seed: int = 123, num_samples: int = 1, unknown: str = "error",
           out=None, window: int = 0) -> list[str]:
    """Print samples (prime, then continuation) from any tfchar model and return them.

    Args:
        model_path: a run dir (its best checkpoint), an export dir, a SavedModel dir or a .tflite file.
        prime: text read before sampling (printed first; unknown characters: `unknown`).
        length: characters (bytes for byte models) to sample after the prime.
        temperature, greedy, top_k, top_p: sampling knobs (greedy = argmax).
        seed: sample i uses seed + i, on every route, so routes print the same text.
        num_samples: samples to draw (one batch on the run-dir route), printed one after another.
        unknown: "error" or "skip" for prime characters outside the vocabulary.
        out: text stream to print to (None: sys.stdout; False: print nothing).
        window: 0 = progressive sampling (state carried); K > 0 = windowed: each new character is read
            from a fresh state over the last K characters (what a model trained on reset windows saw).

    Returns:
        The samples, each prime + continuation.

    Example:
        sample("runs/shakespeare", prime="ROMEO:", length=500, temperature=0.8, seed=7)
    """
    check_options(length, temperature, greedy, top_k, top_p, num_samples, seed, unknown)
    if window < 0:
        raise ConfigError(f"--window {window} must be >= 0 (0 = progressive sampling)")
    out = sys.stdout if out is None else out
    route = open_model(model_path)
    vocab = route.vocab
    ids = vocab.encode(prime, unknown=unknown)
    seeds = sample_seeds(seed, num_samples)
    texts, current, text = [], -1, None
    t = 0.0 if greedy else temperature
    if window:
        from tfchar.windowed import route_samples  # windowed imports this module

        pieces = route_samples(route, model_path, ids, length, window, t, top_k, top_p, seed, num_samples)
    else:
        pieces = route.samples(ids, length, t, top_k, top_p, seed, num_samples)
    for i, codepoints in pieces:
        if i != current:
            if text is not None:
                texts.append(text.finish(out))
            if num_samples > 1:
                _write(out, f"--- sample {i + 1}/{num_samples} (seed {seeds[i]}) ---\n")
            current, text = i, _Text(vocab.unit)
            text.add(vocab.codepoints[ids], out)
        text.add(codepoints, out)
    texts.append(text.finish(out))
    return texts


class _Text:
    """Code points -> printed text, decoding byte models' UTF-8 incrementally (a character may span chunks)."""

    def __init__(self, unit: str):
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace") if unit == "byte" else None
        self._parts = []

    def add(self, codepoints, out, final: bool = False) -> None:
        cps = np.asarray(codepoints).reshape(-1)
        s = (self._decoder.decode(bytes(cps.astype(np.uint8)), final) if self._decoder
             else "".join(map(chr, cps)))
        self._parts.append(s)
        _write(out, s)

    def finish(self, out) -> str:
        self.add([], out, final=True)
        _write(out, "\n")
        return "".join(self._parts)


def _write(out, s: str) -> None:
    if out and s:
        out.write(s)
        out.flush()


def open_model(path):
    """The sampling route for a path: `_RunRoute`, `_SavedModelRoute` or `_TFLiteRoute`."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist: give a run dir, an export dir, a SavedModel dir or a .tflite file")
    if p.is_file():
        if p.suffix != ".tflite":
            raise CheckpointError(f"{p} is a file but not a .tflite model: give a .tflite file or a directory")
        return _TFLiteRoute(p)
    if (p / "saved_model.pb").is_file():
        return _SavedModelRoute(p)
    if (p / "saved_model" / "saved_model.pb").is_file():
        return _SavedModelRoute(p / "saved_model")
    if any((p / f).exists() for f in ("config.toml", "checkpoints", "model.weights.h5")):
        return _RunRoute(p)
    raise CheckpointError(f"{p} is not a run dir (no config.toml), an export dir (no saved_model/), "
                          f"a SavedModel (no saved_model.pb) or a .tflite file")


def _vocab_of(codepoints, byte_unit) -> Vocab:
    return Vocab([chr(int(c)) for c in np.asarray(codepoints).reshape(-1)], "byte" if int(byte_unit) else "char")


class _RunRoute:
    """A run dir: its best checkpoint in an in-process `CharGenerator`; streams text as it samples."""

    def __init__(self, path):
        from tfchar.checkpoint import load_inference_model
        from tfchar.generator import CharGenerator

        model, _, self.vocab = load_inference_model(path, batch_size=1, stateful=False)
        self.gen = CharGenerator.from_keras(model, self.vocab)

    def samples(self, ids, length, temperature, top_k, top_p, seed, num_samples):
        """Yield (sample index, code points) pieces in print order."""
        chunks = stream_ids(self.gen, ids, length, num_samples, temperature, top_k, top_p, seed)
        if num_samples == 1:
            for chunk in chunks:
                yield 0, self.vocab.codepoints[chunk[0]]
            return
        ids = np.concatenate(list(chunks), axis=1)  # [B, length]: batched, so printed when all are done
        for i in range(num_samples):
            yield i, self.vocab.codepoints[ids[i]]


class _ExportedRoute:
    """An exported generator: one `generate` call per sample, with seed + i."""

    def samples(self, ids, length, temperature, top_k, top_p, seed, num_samples):
        prime = self.vocab.codepoints[ids].astype(np.int32)
        for i, s in enumerate(sample_seeds(seed, num_samples)):
            yield i, self.generate(prime, length, temperature, top_k, top_p, s)


class _SavedModelRoute(_ExportedRoute):
    def __init__(self, path):
        try:
            self.model = tf.saved_model.load(str(path))
        except Exception as e:  # protobuf, OSError, NotFoundError...: all mean "not a loadable SavedModel"
            raise CheckpointError(f"cannot load SavedModel {path} ({type(e).__name__}: {_first_line(e)}): "
                                  f"re-export it with python -m tfchar.export RUN_DIR") from None
        sigs = self.model.signatures
        if "generate" not in sigs or "vocabulary" not in sigs:
            raise CheckpointError(f"SavedModel {path} has no generate/vocabulary signature: it is not a tfchar "
                                  f"export; make one with python -m tfchar.export RUN_DIR")
        v = sigs["vocabulary"]()
        self.vocab = _vocab_of(v["codepoints"].numpy(), v["byte_unit"].numpy())
        self._generate = sigs["generate"]

    def generate(self, prime, length, temperature, top_k, top_p, seed) -> np.ndarray:
        out = self._generate(prime=tf.constant(prime, tf.int32), length=tf.constant(length, tf.int32),
                             temperature=tf.constant(temperature, tf.float32), top_k=tf.constant(top_k, tf.int32),
                             top_p=tf.constant(top_p, tf.float32), seed=tf.constant(seed, tf.int32))
        return out["codepoints"].numpy()


class _TFLiteRoute(_ExportedRoute):
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=str(path))
        except Exception as e:  # ValueError/RuntimeError for a file that is not a TFLite flatbuffer
            raise CheckpointError(f"cannot read {path} as a TFLite model ({_first_line(e)}): "
                                  f"re-export it with python -m tfchar.export RUN_DIR") from None
        sigs = interpreter.get_signature_list()
        if "generate" not in sigs or "vocabulary" not in sigs:
            raise CheckpointError(f"{path} has no generate/vocabulary signature: it is not a tfchar export; "
                                  f"make one with python -m tfchar.export RUN_DIR")
        v = interpreter.get_signature_runner("vocabulary")()
        self.vocab = _vocab_of(v["codepoints"], v["byte_unit"])
        self._generate = interpreter.get_signature_runner("generate")

    def generate(self, prime, length, temperature, top_k, top_p, seed) -> np.ndarray:
        return self._generate(prime=np.asarray(prime, np.int32), length=np.int32(length),
                              temperature=np.float32(temperature), top_k=np.int32(top_k),
                              top_p=np.float32(top_p), seed=np.int32(seed))["codepoints"]


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__
