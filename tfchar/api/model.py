"""`tfchar.load` and the `Model` it returns: generate, stream and score text with any trained tfchar model.

A `Model` wraps one runtime (`tfchar.runtimes`: a run's Keras checkpoint, a SavedModel or a TFLite file)
and samples through its `samples`/`generate`, the one in-graph sampler, so the same seed gives the same
text as `python -m tfchar.sample` on every route. Bad arguments raise the command line's one-line errors.

Example:
    lm = load("tiny_shakespeare")
    lm.generate("ROMEO:", length=200, temperature=0.8, seed=7)    # "ROMEO:..." (prime + continuation)
    lm.score("To be, or not to be")["bpc"]
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from tfchar.core.errors import ConfigError, DataError
from tfchar.core.shipped import model_path
from tfchar.ops.rng import sample_seeds
from tfchar.runtimes.load import load_runtime
from tfchar.sampling.sample import check_options


def load(name_or_path: str | os.PathLike, which: str = "best") -> "Model":
    """Open a trained model: a run dir (its `which` checkpoint: "best" or "last"), a checkpoint, an export dir,
    a SavedModel dir, a .tflite file, or a shipped model's name ("tiny_shakespeare")."""
    if which not in ("best", "last"):
        raise ConfigError(f"which={which!r} must be 'best' or 'last'")
    path = model_path(os.fspath(name_or_path))
    return Model(load_runtime(path, which), path)


class Model:
    """A trained char-RNN (see `load`).

    Attributes:
        path: what it was opened from (a name resolved: the shipped export dir, which `train.init_from` takes);
        vocab: its `Vocab` (`vocab.tokens`: the character of each id);
        config: its `Config` (None for a lone .tflite file); kind: "keras", "saved_model" or "tflite";
        runtime: the underlying `tfchar.runtimes` runtime.
    """

    def __init__(self, runtime, path: Path | None = None):
        self.runtime = runtime
        self.path = Path(path) if path is not None else runtime.path

    @property
    def vocab(self):
        return self.runtime.vocab

    @property
    def config(self):
        return self.runtime.config

    @property
    def kind(self) -> str:
        return self.runtime.kind

    def __repr__(self) -> str:
        return f"<tfchar.Model {self.runtime.describe()}, {len(self.vocab)} {self.vocab.unit}s>"

    def generate(self, prime: str | list[str] = "", *, length: int = 2000, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 123, stop: str | None = None,
                 unknown: str = "error", greedy: bool = False) -> str | list[str]:
        """The prime followed by `length` generated characters (bytes for byte models), as one string; for a
        list of primes, a list of strings (prime i is sampled with seed `seed + i`).

        Args:
            prime: the text the model reads first (unknown characters: `unknown`, "error" or "skip"); "" starts
                at the beginning of a line (after a newline that is not returned).
            length: characters to generate; temperature, top_k, top_p, greedy: the sampling knobs of
                `python -m tfchar.sample`; seed: the same seed gives the same text on every route.
            stop: end each text at the first occurrence of this string (included); None: no stop.
        """
        primes = [prime] if isinstance(prime, str) else prime
        if not isinstance(primes, list) or not primes or not all(isinstance(p, str) for p in primes):
            raise ConfigError("prime must be a string or a non-empty list of strings")
        check_options(length, temperature, greedy, top_k, top_p, len(primes), seed, unknown)
        stop = self._check_stop(stop)
        reads = [self._read(p, unknown) for p in primes]
        knobs = (length, 0.0 if greedy else temperature, top_k, top_p)
        if all(r[0].tolist() == reads[0][0].tolist() for r in reads):  # one prime: one batch, sample i seed + i
            outs = self.runtime.generate(reads[0][0], *knobs, seed=seed, num_samples=len(primes), stop=stop)
        else:
            outs = [self.runtime.generate(ids, *knobs, seed=int(s), num_samples=1, stop=stop)[0]
                    for (ids, _), s in zip(reads, sample_seeds(seed, len(primes)))]
        texts = [self.vocab.decode_codepoints(np.concatenate([shown, out])) for (_, shown), out in zip(reads, outs)]
        return texts[0] if isinstance(prime, str) else texts

    def stream(self, prime: str = "", *, length: int = 2000, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int = 123, stop: str | None = None, unknown: str = "error",
               greedy: bool = False) -> Iterator[str]:
        """`generate` for one prime, as text pieces while they are generated: the prime first, then the
        continuation chunk by chunk; "".join(pieces) == generate(...) with the same arguments."""
        if not isinstance(prime, str):
            raise ConfigError("stream takes one prime (a string); generate takes a list")
        check_options(length, temperature, greedy, top_k, top_p, 1, seed, unknown)
        stop = self._check_stop(stop)
        ids, shown = self._read(prime, unknown)
        pieces = self.runtime.samples(ids, length, 0.0 if greedy else temperature, top_k, top_p, seed, 1, stop)
        return self._decoded(shown, (codepoints for _, codepoints in pieces))

    def score(self, text: str | list[str], *, unknown: str = "error") -> dict | list[dict]:
        """How well the model predicts `text`: {"nats", "bpc", "perplexity", "chars"} per character, every
        character after the first scored with its whole left context (a list of texts: a list of dicts).

        `unknown`: "error" for characters outside the vocabulary, or "skip" to score the text without them.
        """
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ConfigError("score takes a string or a list of strings")
        check_options(1, 1.0, False, 0, 1.0, 1, 0, unknown)
        scores = [self._score(t, unknown) for t in texts]
        return scores[0] if isinstance(text, str) else scores

    # ------------------------------------------------------------------------------------ helpers

    def _read(self, prime: str, unknown: str) -> tuple[np.ndarray, np.ndarray]:
        """(token ids the model reads, code points returned before the continuation) of a prime."""
        ids = self.vocab.encode(prime, unknown=unknown)
        if len(ids):
            return ids, self.vocab.codepoints[ids]
        newline = self.vocab.encode("\n", unknown="skip")
        if not len(newline):
            what = "is empty" if not prime else "has no character the model knows"
            raise ConfigError(f"the prime {what}, so generation would start after a newline, and this model's "
                              f"vocabulary has none: give a prime, e.g. {self.vocab.tokens[0]!r}")
        return newline, np.zeros([0], np.int32)

    def _check_stop(self, stop) -> str:
        """The stop string for `Runtime.samples` ("" = none), checked."""
        if stop is None:
            return ""
        if not isinstance(stop, str) or not stop:
            raise ConfigError(f"stop={stop!r} must be a non-empty string, e.g. stop=\"\\n\\n\" (None: no stop)")
        missing = self.vocab.unknown(stop)
        if missing:
            raise ConfigError(f"stop={stop!r} has characters outside the model's vocabulary "
                              f"({', '.join(map(repr, missing[:10]))}): it could never be generated")
        return stop

    def _decoded(self, shown: np.ndarray, pieces) -> Iterator[str]:
        """Text pieces from code point pieces; a byte model's UTF-8 is decoded incrementally (a character may
        span pieces), as `python -m tfchar.sample` prints it."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace") if self.vocab.unit == "byte" else None

        def text(codepoints, final=False) -> str:
            cps = np.asarray(codepoints).reshape(-1)
            return decoder.decode(bytes(cps.astype(np.uint8)), final) if decoder else "".join(map(chr, cps))

        if s := text(shown):
            yield s
        for codepoints in pieces:
            if s := text(codepoints):
                yield s
        if s := text([], final=True):
            yield s

    def _score(self, text: str, unknown: str) -> dict:
        ids = self.vocab.encode(text, unknown=unknown)
        if len(ids) < 2:
            raise DataError(f"score needs a text of at least 2 characters the model knows (the first is only read), "
                            f"got {len(ids)}")
        return self.runtime.score(ids, streams=1)
