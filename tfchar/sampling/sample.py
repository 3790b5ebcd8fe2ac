"""`python -m tfchar.sample`'s job: check the knobs, run any runtime's sampler, print text as it comes.

Every runtime samples with the one in-graph sampler (`tfchar.ops.draw` inside `tfchar.nn.generator`), so
the same seed prints the same text from a run dir, an export dir, a SavedModel or a .tflite file.

Example:
    sample("runs/shakespeare", prime="ROMEO:", length=500, temperature=0.8, seed=7)
"""

from __future__ import annotations

import codecs
import math
import sys

import numpy as np

from tfchar.core.choices import UNKNOWN
from tfchar.core.errors import ConfigError
from tfchar.ops.rng import sample_seeds
from tfchar.runtimes.base import cut_at_stop
from tfchar.runtimes.chunked import stop_units
from tfchar.runtimes.load import load_runtime
from tfchar.sampling.windowed import windowed_samples


def check_options(length: int, temperature: float, greedy: bool, top_k: int, top_p: float,
                  num_samples: int, seed: int, unknown: str, stop: str | None = None) -> None:
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
    if unknown not in UNKNOWN:
        raise ConfigError(f"--unknown {unknown!r} must be one of: {', '.join(UNKNOWN)}")
    if stop == "":
        raise ConfigError("--stop '' is empty: give the text to stop after, e.g. --stop $'\\n' for one line "
                          "(or leave --stop out)")


def sample(model_path, prime: str = "\n", length: int = 2000, temperature: float = 1.0, greedy: bool = False,
           top_k: int = 0, top_p: float = 1.0, seed: int = 123, num_samples: int = 1, unknown: str = "error",
           out=None, window: int = 0, stop: str | None = None) -> list[str]:
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
        stop: end each sample after the first occurrence of this text (None: no stop; "" is an error).

    Returns:
        The samples, each prime + continuation.

    Example:
        sample("runs/shakespeare", prime="ROMEO:", length=500, temperature=0.8, seed=7)
    """
    check_options(length, temperature, greedy, top_k, top_p, num_samples, seed, unknown, stop)
    if window < 0:
        raise ConfigError(f"--window {window} must be >= 0 (0 = progressive sampling)")
    out = sys.stdout if out is None else out
    runtime = load_runtime(model_path)
    vocab = runtime.vocab
    ids = vocab.encode(prime, unknown=unknown)
    seeds = sample_seeds(seed, num_samples)
    t = 0.0 if greedy else temperature
    stop = _checked_stop(vocab, stop)
    if window:
        pieces = windowed_samples(runtime, ids, length, window, t, top_k, top_p, seed, num_samples)
        pieces = cut_at_stop(pieces, vocab.units(stop)) if stop else pieces
    else:
        pieces = runtime.samples(ids, length, t, top_k, top_p, seed, num_samples, stop=stop or "")
    texts, current, text = [], -1, None
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


def _checked_stop(vocab, stop: str | None) -> str | None:
    """The stop text if the model can write it, else a ConfigError (with a hint for a typed backslash escape)."""
    if stop:
        try:
            stop_units(vocab, stop)
        except ConfigError as e:
            hint = " (a backslash is literal: for a newline pass --stop $'\\n' in bash)" if "\\" in stop else ""
            raise ConfigError(f"--stop: {e}{hint}") from None
    return stop


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
