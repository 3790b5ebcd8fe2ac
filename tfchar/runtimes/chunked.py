"""The host side of the `generate_chunk` signature: checked calls, a prime of any length, stop strings.

Every runtime samples through `chunked_samples` over its own `generate_chunk` (the LiteRT interpreter or
CompiledModel, a SavedModel, the generator in process), so the in-graph sampler is the only sampler and
the host logic is written once:

  * the prime goes in K code points per call (the last piece rides along with the first sampling call);
  * each call samples up to K code points; chained calls continue exactly where the last one stopped;
  * a stop string: the graph stops at its last character, the host checks the whole string and, if the
    text does not end with it yet, calls again (the state continues right after that character).

Shapes: K chunk size, S packed state width, V vocabulary.

Example:
    for i, codepoints in chunked_samples(runtime.chunks(), runtime.vocab, ids, 500, 0.8, 0, 1.0, 7, 1, "\\n"):
        print(runtime.vocab.decode_codepoints(codepoints), end="")
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from tfchar.core.errors import ConfigError
from tfchar.core.vocab import Vocab
from tfchar.ops.rng import sample_seeds

NO_STOP = -1  # generate_chunk's stop input meaning "none" (tfchar.nn.generator.NO_STOP)
CARRY = 2  # generate_chunk's carry width (tfchar.nn.generator.CARRY)


class ChunkSignature:
    """A runtime's `generate_chunk`, called with every input checked first (one-line errors, never a crash).

    Args:
        call: callable(**inputs as numpy arrays) -> {"codepoints", "valid", "state", "carry"}.
        size: K; state_size: S; vocab: the model's `Vocab` (stop code points are checked against it).
        name: what runs it, for messages (e.g. "model.tflite (LiteRT interpreter)").
    """

    def __init__(self, call: Callable[..., dict], size: int, state_size: int, vocab: Vocab, name: str):
        self._call, self.size, self.state_size, self.vocab, self.name = call, int(size), int(state_size), vocab, name

    def zeros(self) -> tuple[np.ndarray, np.ndarray]:
        """(state float32[1, S], carry int32[2]) that start a generation."""
        return np.zeros([1, self.state_size], np.float32), np.zeros([CARRY], np.int32)

    def __call__(self, prime, prime_length: int, length: int, state, carry, temperature: float, top_k: int,
                 top_p: float, seed: int, stop: int = NO_STOP) -> dict:
        """One call: read prime[:prime_length] (code points), then sample up to `length` (<= K) code points.

        Returns {"codepoints": int32[K] (the first `valid` are new), "valid": int, "state", "carry"}.
        """
        inputs = self.check(prime, prime_length, length, state, carry, temperature, top_k, top_p, seed, stop)
        out = self._call(**inputs)
        return {"codepoints": np.asarray(out["codepoints"], np.int32).reshape(-1), "valid": int(np.asarray(out["valid"]).reshape(-1)[0]),
                "state": np.asarray(out["state"], np.float32), "carry": np.asarray(out["carry"], np.int32)}

    def check(self, prime, prime_length, length, state, carry, temperature, top_k, top_p, seed, stop) -> dict:
        """The call's inputs as the arrays the signature takes, or a ConfigError naming the first bad one."""
        k, s = self.size, self.state_size
        prime = np.asarray(prime, np.int64).reshape(-1)
        if prime.size > k:
            raise ConfigError(f"generate_chunk reads at most {k} prime code points per call, got {prime.size}: "
                              f"pass a longer prime in pieces of {k}")
        state, carry = np.asarray(state), np.asarray(carry)
        if state.shape != (1, s):
            raise ConfigError(f"generate_chunk state must be float32[1, {s}] for this model, got shape "
                              f"{list(state.shape)}: pass the state the previous call returned, or zeros to start")
        if carry.shape != (CARRY,):
            raise ConfigError(f"generate_chunk carry must be int32[{CARRY}], got shape {list(carry.shape)}: pass the "
                              f"carry the previous call returned, or zeros to start")
        if not (0 <= prime_length <= prime.size and 0 <= length <= k):
            raise ConfigError(f"generate_chunk prime_length {prime_length} and length {length} must be in "
                              f"[0, {prime.size}] and [0, {k}]")
        if stop != NO_STOP and stop not in set(self.vocab.codepoints.tolist()):
            raise ConfigError(f"stop code point {stop} ({_shown(stop, self.vocab)}) is not in the model's "
                              f"vocabulary, so it can never be generated: pick one of its characters, or -1 for none")
        padded = np.zeros([k], np.int32)
        padded[:prime.size] = np.clip(prime, -2**31, 2**31 - 1)
        return {"prime": padded, "prime_length": np.int32(prime_length), "length": np.int32(length),
                "state": state.astype(np.float32), "carry": carry.astype(np.int32),
                "temperature": np.float32(temperature), "top_k": np.int32(top_k), "top_p": np.float32(top_p),
                "seed": np.int32(seed), "stop": np.int32(stop)}


def stop_units(vocab: Vocab, stop: str) -> list[int]:
    """The code points (byte values for byte models) of a stop string, all in the vocabulary, or a ConfigError."""
    units = vocab.units(stop)
    known = set(vocab.codepoints.tolist())
    missing = [u for u in dict.fromkeys(units) if u not in known]
    if missing:
        shown = ", ".join(_shown(u, vocab) for u in missing[:20])
        raise ConfigError(f"the stop text {stop!r} has {len(missing)} character(s) the model never writes: {shown}; "
                          f"it would never stop: use characters of its vocabulary")
    return units


def chunked_samples(chunks: ChunkSignature, ids, length: int, temperature: float, top_k: int, top_p: float,
                    seed: int, num_samples: int, stop: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(sample index, code points) pieces, one sample after another, each as it is generated.

    Sample i is `generate(prime, length, ..., seed=sample_seeds(seed, n)[i])`, cut after the first
    occurrence of the code points `stop` ([] = no stop).
    """
    prime = chunks.vocab.codepoints[np.asarray(ids, np.int64)] if len(ids) else np.zeros([0], np.int32)
    for i, s in enumerate(sample_seeds(seed, num_samples)):
        for piece in _one_sample(chunks, prime, length, temperature, top_k, top_p, int(s), stop):
            yield i, piece


def _one_sample(chunks: ChunkSignature, prime: np.ndarray, length: int, temperature, top_k, top_p, seed,
                stop: list[int]) -> Iterator[np.ndarray]:
    k = chunks.size
    state, carry = chunks.zeros()
    pieces = [prime[i:i + k] for i in range(0, len(prime), k)] or [prime]
    for piece in pieces[:-1]:  # all but the last piece: read only
        out = chunks(piece, len(piece), 0, state, carry, temperature, top_k, top_p, seed)
        state, carry = out["state"], out["carry"]
    piece, done, tail = pieces[-1], 0, []  # tail: the last len(stop) - 1 code points written
    stop_at = stop[-1] if stop else NO_STOP
    while done < length:
        out = chunks(piece, len(piece), min(k, length - done), state, carry, temperature, top_k, top_p, seed,
                     stop_at)
        piece, state, carry = piece[:0], out["state"], out["carry"]
        new = out["codepoints"][:out["valid"]]
        done += len(new)
        yield new
        if stop and len(new) and new[-1] == stop_at:
            seen = tail + new.tolist()
            if seen[max(0, len(seen) - len(stop)):] == stop:
                return
            tail = seen[max(0, len(seen) - len(stop) + 1):] if len(stop) > 1 else []
        elif len(stop) > 1:
            tail = (tail + new.tolist())[-(len(stop) - 1):]


def _shown(unit: int, vocab: Vocab) -> str:
    return f"byte {unit}" if vocab.unit == "byte" else repr(chr(unit)) if 0 <= unit < 0x110000 else str(unit)
