"""What every way of running a trained model offers: the `Runtime` interface, and the loops they share.

A runtime is one route to a model's numbers: a run's Keras checkpoint (`keras.KerasRuntime`), the exported
SavedModel (`saved_model.SavedModelRuntime`) or a TFLite file (`tflite.TFLiteRuntime`). Evaluation, the
samplers, the exporter's checks, the API and the CLI take a runtime and never ask which one it is.

    kind         "keras", "saved_model" or "tflite" (for messages)
    path         what it was opened from (None for an in-memory model)
    vocab        the `Vocab`; unit and vocab_size follow from it
    config       the model's `Config` when a config.toml is next to it, else None
    checkpoint   Keras weights a trainable copy can be built from (dynamic evaluation), else None
    state_size   S, the packed state width of `step`
    step(token, state)           one character for B streams -> (logits [B, V], state [B, S])
    run(x, y, state)             a chunk [B, t] -> (logits after its last column, sum of nats of y, state)
    score(ids, streams, chunk, limit, progress)
                                 the progressive score of a text (`ops.metrics.summary`), at most `limit`
                                 characters (0 = all), calling progress(done, total) after each chunk
    samples(ids, length, temperature, top_k, top_p, seed, num_samples, stop="")
                                 yields (sample index, code points) pieces in print order; sample i is
                                 `generate(prime, ..., seed=ops.rng.sample_seeds(seed, n)[i])` on every route,
                                 cut after the first occurrence of `stop` (a string; "" = none)
    chunks()                     the model's `generate_chunk` (`chunked.ChunkSignature`), which `samples` runs;
                                 None for an export older than it (then `samples` calls `generate`)

Shapes: B streams, t chunk length, V vocabulary, S packed state width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from tfchar.core.vocab import Vocab
from tfchar.ops.metrics import summary
from tfchar.ops.rng import sample_seeds
from tfchar.ops.streams import fitting_streams, progressive
from tfchar.runtimes.chunked import ChunkSignature, chunked_samples, stop_units


class Runtime:
    """The interface (see the module docstring); subclasses implement `step` and `chunks` (or `_samples`), and
    may run `run` faster than this Python loop over `step`."""

    kind = ""

    def __init__(self, vocab: Vocab, state_size: int, path=None, config=None, checkpoint=None):
        self.vocab, self.state_size, self.config = vocab, int(state_size), config
        self.path = Path(path) if path is not None else None
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def unit(self) -> str:
        return self.vocab.unit

    def describe(self) -> str:
        """A short label for messages, e.g. `saved_models/x/model.tflite (TFLite)`."""
        return f"{self.path or 'in-memory model'} ({self.kind})"

    def zeros(self, batch: int) -> np.ndarray:
        """The zero state of `batch` streams, float32[B, S]."""
        return np.zeros([batch, self.state_size], np.float32)

    def step(self, token, state) -> tuple[np.ndarray, np.ndarray]:
        """One character for B streams: token int32[B], state float32[B, S] -> (logits [B, V], state)."""
        raise NotImplementedError

    def samples(self, ids, length: int, temperature: float, top_k: int, top_p: float, seed: int,
                num_samples: int, stop: str = "") -> Iterator[tuple[int, np.ndarray]]:
        """(sample index, code points int32[n]) pieces in print order (see the module docstring).

        The graph stops at the stop string's last character and the host checks the whole string; a stop
        string with characters outside the vocabulary is a ConfigError (it could never match).
        """
        units = stop_units(self.vocab, stop) if stop else []
        chunks = self.chunks()
        if chunks is not None:
            return chunked_samples(chunks, ids, length, temperature, top_k, top_p, seed, num_samples, units)
        pieces = self._samples(ids, length, temperature, top_k, top_p, seed, num_samples)
        return cut_at_stop(pieces, units) if units else pieces

    def chunks(self) -> ChunkSignature | None:
        """The model's `generate_chunk`, checked; None if the model has none (an older export)."""
        return None

    def _samples(self, ids, length, temperature, top_k, top_p, seed, num_samples):
        """`samples` without `generate_chunk` and without a stop string (older exports)."""
        raise NotImplementedError

    def run(self, x, y, state) -> tuple[np.ndarray, float, np.ndarray]:
        """Read x int32[B, t] from `state`: (logits after the last column [B, V], sum of nats of y, new state)."""
        x, y = np.asarray(x, np.int32), np.asarray(y, np.int32)
        nats, logits = 0.0, None
        for i in range(x.shape[1]):
            logits, state = self.step(x[:, i], state)
            logits = np.asarray(logits, np.float64)
            top = logits.max(axis=1)
            log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))  # [B]
            nats += float((log_z - logits[np.arange(len(x)), y[:, i]]).sum())
        return logits, nats, state

    def score(self, ids, streams: int = 1, chunk: int = 256, limit: int = 0, progress=None) -> dict:
        """Progressive score of ids int[N]: `streams` contiguous rows, each from zero state, state carried;
        at most `limit` characters (`ops.streams.progressive`; 0 = all); progress(done, total) after each chunk."""
        streams = fitting_streams(len(ids), streams)
        state = self.zeros(streams)

        def score_chunk(x, y):
            nonlocal state
            _, nats, state = self.run(x, y, state)
            return nats

        return summary(*progressive(score_chunk, ids, streams, chunk, limit, progress))

    def generate(self, ids, length: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int = 0, num_samples: int = 1, stop: str = "") -> list[np.ndarray]:
        """All of `samples` at once: each sample's code points, int32[length] (shorter if `stop` ended it)."""
        parts: list[list[np.ndarray]] = [[] for _ in range(num_samples)]
        for i, codepoints in self.samples(ids, length, temperature, top_k, top_p, seed, num_samples, stop):
            parts[i].append(np.asarray(codepoints, np.int32).reshape(-1))
        return [np.concatenate(p) if p else np.zeros([0], np.int32) for p in parts]


class GraphSteps:
    """A TensorFlow `step` callable run over a chunk as one `tf.while_loop` (one Python call per chunk).

    Args:
        step: callable(token=int32[B], state=float32[B, S]) -> {"logits": [B, V], "state": [B, S]}: a
            `CharGenerator.step` or a SavedModel's `signatures["step"]`.
        state_size: S; vocab_size: V.
    """

    def __init__(self, step, state_size: int, vocab_size: int):
        self.step, self.vocab_size = step, int(vocab_size)
        self._run = tf.function(self._loop, input_signature=[
            tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, int(state_size)], tf.float32)], reduce_retracing=True)

    def one(self, token, state) -> tuple[np.ndarray, np.ndarray]:
        """One step: token int32[B], state [B, S] -> (logits [B, V], state [B, S])."""
        r = self.step(token=tf.constant(np.asarray(token, np.int32)), state=tf.constant(np.asarray(state, np.float32)))
        return r["logits"].numpy(), r["state"].numpy()

    def run(self, x, y, state) -> tuple[np.ndarray, float, np.ndarray]:
        """As `Runtime.run`, inside one graph loop."""
        logits, nats, state = self._run(np.asarray(x, np.int32), np.asarray(y, np.int32),
                                        np.asarray(state, np.float32))
        return logits.numpy(), float(nats), state.numpy()

    def _loop(self, x, y, state):
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]

        def body(i, state, nats, _):
            r = self.step(token=x[:, i], state=state)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y[:, i], logits=r["logits"])  # [B]
            return i + 1, r["state"], nats + tf.reduce_sum(tf.cast(nll, tf.float64)), r["logits"]

        init = (tf.constant(0), state, tf.constant(0.0, tf.float64), tf.zeros([batch, self.vocab_size]))
        _, state, nats, logits = tf.while_loop(lambda i, *_: i < steps, body, init)
        return logits, nats, state


def pieces(chunks: Iterator[np.ndarray], codepoints: np.ndarray, num_samples: int) -> Iterator[tuple[int, np.ndarray]]:
    """Token id chunks int32[B, n] -> (sample index, code points) pieces in print order: one sample streams as it
    comes; several are sampled as one batch, so each is whole only when the batch is done."""
    if num_samples == 1:
        for chunk in chunks:
            yield 0, codepoints[chunk[0]]
        return
    ids = np.concatenate(list(chunks), axis=1)  # [B, length]
    for i in range(num_samples):
        yield i, codepoints[ids[i]]


def missing_signatures(signatures) -> str:
    """'' if an export has tfchar's signatures, else what is missing: "generate/vocabulary" (not a tfchar export
    at all) or the one signature an older or damaged export lacks."""
    if "generate" not in signatures or "vocabulary" not in signatures:
        return "generate/vocabulary"
    return "" if "step" in signatures else "step"


def cut_at_stop(pieces: Iterator[tuple[int, np.ndarray]], stop: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Pieces of each sample up to and including the first occurrence of the code point sequence `stop`;
    the rest of that sample is dropped. A match may span pieces."""
    tails: dict[int, list[int]] = {}  # sample -> its last len(stop) - 1 code points
    ended: set[int] = set()
    n = len(stop)
    for i, piece in pieces:
        if i in ended:
            continue
        seen = tails.get(i, []) + np.asarray(piece).reshape(-1).tolist()
        offset = len(seen) - len(piece)  # where this piece starts in `seen`
        end = next((j + n for j in range(len(seen) - n + 1) if seen[j:j + n] == stop), None)
        if end is not None:
            ended.add(i)
            yield i, np.asarray(piece)[:end - offset]
            continue
        tails[i] = seen[len(seen) - (n - 1):] if n > 1 else []
        yield i, piece


def vocab_of(codepoints, byte_unit) -> Vocab:
    """The `Vocab` an export's `vocabulary` signature describes."""
    return Vocab([chr(int(c)) for c in np.asarray(codepoints).reshape(-1)], "byte" if int(byte_unit) else "char")


def first_line(e: Exception) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name."""
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


class ExportedRuntime(Runtime):
    """An exported model (SavedModel, TFLite): samples with its `generate_chunk`, or, in an export older than
    that signature, with one `generate` call per sample."""

    def generate_one(self, prime, length: int, temperature: float, top_k: int, top_p: float,
                     seed: int) -> np.ndarray:
        """The exported `generate` signature: code points int32[N] -> code points int32[length]."""
        raise NotImplementedError

    def _samples(self, ids, length, temperature, top_k, top_p, seed, num_samples):
        prime = self.vocab.codepoints[np.asarray(ids, np.int64)].astype(np.int32)
        for i, s in enumerate(sample_seeds(seed, num_samples)):
            yield i, self.generate_one(prime, length, temperature, top_k, top_p, int(s))
