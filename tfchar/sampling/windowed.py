"""Windowed sampling (De Boom et al. 2018): each new character is predicted from the last K characters alone.

Progressive sampling (`Runtime.samples`, the default) reads one character per step and carries the state,
so the model conditions on everything generated so far. Windowed sampling instead re-reads the last
`window` characters (prime included) from a zero state for every new character, which is how a model
trained on windows from zero state (schemes `windows`, `overlap`, `single_loss`) saw its inputs. It costs
`window` steps per character instead of one.

The draw is the exported sampler's own (`ops.rng.seed_rng`, `next_rng`, `uniform`, `ops.draw.draw`), one
generator step per character, so temperature, top-k, top-p and seeds mean the same as in progressive sampling; with a window
at least as long as prime + length the two give the same text.

Shapes: B samples (streams), K window, V vocabulary, S packed state.

Example:
    runtime = load_runtime("runs/shakespeare")
    ids = windowed_sample(runtime, runtime.vocab.encode("ROMEO:"), 200, window=50, seed=7)
    runtime.vocab.decode(ids[0])
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

from tfchar.core.errors import ConfigError
from tfchar.ops import draw
from tfchar.ops import rng as rng_ops
from tfchar.runtimes.base import Runtime, pieces


def windowed_stream(model: Runtime, prime_ids, length: int, window: int, temperature: float = 1.0, top_k: int = 0,
                    top_p: float = 1.0, seed: int = 0, num_samples: int = 1, chunk: int = 64) -> Iterator[np.ndarray]:
    """Sample by windows, yielding int32[B, n] pieces as they come.

    Args:
        model: any runtime (its `run` reads each window).
        prime_ids: int32[N] token ids read first; empty means "as if after token id 0", as in `generate`.
        length: tokens to sample per sample.
        window: K >= 1, characters re-read from zero state before each new one.
        temperature, top_k, top_p: as `ops.draw.sample_ids` (temperature <= 0: greedy).
        seed: seed of sample 0; sample i uses `ops.rng.sample_seeds(seed, B)[i]`, as progressive sampling.
        num_samples: B, samples drawn together.
        chunk: tokens per yielded piece.
    """
    if window < 1:
        raise ConfigError(f"--window {window} must be >= 1 (characters re-read per new character), e.g. 50")
    ids = np.asarray(prime_ids, np.int32).reshape(-1)
    if ids.size == 0:
        ids = np.zeros([1], np.int32)
    context = np.tile(ids[-window:], (num_samples, 1))  # [B, <= K]: only the last K ever matter
    rng = rng_ops.seed_rng(tf.constant(rng_ops.sample_seeds(seed, num_samples)))  # [B]
    knobs = draw.settings(temperature, top_k, top_p, model.vocab_size)

    @tf.function
    def pick(logits, rng):  # the progressive loop's draw: advance the generator, then inverse CDF
        rng = rng_ops.next_rng(rng)
        return draw.draw(tf.cast(logits, tf.float32), rng_ops.uniform(rng), knobs), rng

    piece = []
    for _ in range(length):
        logits, _, _ = model.run(context, context, model.zeros(num_samples))  # [B, V] after reading the window
        token, rng = pick(logits, rng)
        token = token.numpy()[:, None]  # [B, 1]
        context = np.concatenate([context, token], axis=1)[:, -window:]
        piece.append(token)
        if len(piece) == chunk:
            yield np.concatenate(piece, axis=1)
            piece = []
    if piece:
        yield np.concatenate(piece, axis=1)


def windowed_sample(model: Runtime, prime_ids, length: int, window: int, temperature: float = 1.0, top_k: int = 0,
                    top_p: float = 1.0, seed: int = 0, num_samples: int = 1) -> np.ndarray:
    """All of `windowed_stream` at once: int32[B, length] sampled token ids (B = num_samples).

    Example:
        windowed_sample(model, vocab.encode("ROMEO:"), 100, window=50, temperature=0.8, seed=7)
    """
    pieces = list(windowed_stream(model, prime_ids, length, window, temperature, top_k, top_p, seed, num_samples))
    return np.concatenate(pieces, axis=1) if pieces else np.zeros([num_samples, 0], np.int32)


def windowed_samples(runtime: Runtime, ids, length: int, window: int, temperature: float, top_k: int,
                     top_p: float, seed: int, num_samples: int):
    """`Runtime.samples` for windowed sampling: (sample index, code points) pieces in print order.

    Args: as `windowed_stream`.
    """
    chunks = windowed_stream(runtime, ids, length, window, temperature, top_k, top_p, seed, num_samples)
    return pieces(chunks, runtime.vocab.codepoints, num_samples)
