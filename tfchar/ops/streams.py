"""The stateful layout of a text, and the one progressive scoring loop over it.

A text of N ids is laid out as B contiguous rows (char-rnn's streams): row i = ids[i*L : i*L + L + 1],
L = (N - 1) // B, as a strided view (no copy). Scoring reads each row from zero state with the state
carried through it, `chunk` time steps per call, so memory stays bounded for any length; every route
(the Keras model, an exported `step`, dynamic evaluation) scores through `progressive`.

Shapes: B rows (streams), L row length, t chunk length.

Example:
    total, count = progressive(score_chunk, ids, streams=8, chunk=256)   # score_chunk(x, y) -> sum of nats
    metrics.summary(total, count)
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def stream_view(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """The stateful layout without copying: [B, L + 1], row i = ids[i*L : i*L + L + 1], L = (N - 1) // B."""
    row = (len(ids) - 1) // batch_size
    return np.lib.stride_tricks.as_strided(ids, shape=(batch_size, row + 1),
                                           strides=(row * ids.strides[0], ids.strides[0]), writeable=False)


def fitting_streams(n_ids: int, streams: int) -> int:
    """`streams`, or 1 when the text is too short to give every row a character to score."""
    return streams if (n_ids - 1) // streams >= 1 else 1


def progressive(score_chunk: Callable[[np.ndarray, np.ndarray], float], ids, streams: int,
                chunk: int, limit: int = 0, progress: Callable[[int, int], None] | None = None) -> tuple[float, int]:
    """Score ids int[N] row by row, chunk after chunk: (sum of nats, characters scored).

    Args:
        score_chunk: (x int32[B, t], y int32[B, t]) -> sum of nats of y; it carries the state from one call to
            the next (the caller starts it from zero). B = `streams` (use `fitting_streams` first).
        ids: token ids; the last (N - 1) % streams are left out.
        streams: B; chunk: t, time steps per call.
        limit: score at most about this many characters: the first ceil(limit / B) of every row, so they
            stay spread over the whole text and are the same ones every time (0 = all).
        progress: called as progress(characters scored so far, characters to score) after each chunk.
    """
    view = stream_view(np.asarray(ids), streams)  # [B, L + 1]
    length = view.shape[1] - 1
    if limit > 0:
        length = min(length, -(-limit // streams))
    total = 0.0
    for start in range(0, length, chunk):
        w = view[:, start:min(length, start + chunk) + 1].astype(np.int32)  # [B, t + 1]
        total += float(score_chunk(w[:, :-1], w[:, 1:]))
        if progress is not None:
            progress(streams * min(length, start + chunk), streams * length)
    return total, streams * length
