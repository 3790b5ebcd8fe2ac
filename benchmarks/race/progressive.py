"""Progressive scoring of a text with a recurrent model: the state is carried through the whole text.

The N-1 targets (every character but the first) are cut into `streams` contiguous pieces of nearly equal
length, scored in parallel (batch = streams), each from zero state, in chunks of `chunk` steps. With
`streams=1` every character is predicted from its whole left context; more streams are faster (a batch of
8 rows costs about what one row costs) at the price of `streams - 1` extra resets.

Example:
    score_progressive(model, split.val, streams=1)   # {"nats": ..., "chars": N_val - 1}
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def stream_layout(ids: np.ndarray, streams: int):
    """Inputs x, targets y (int64 [S, L]) and mask (float [S, L]) of `streams` contiguous pieces of `ids`.

    Piece s predicts targets bounds[s] + 1 .. bounds[s + 1] (bounds = the N-1 targets split evenly); shorter
    pieces are padded at the end, where padding never influences a scored position.
    """
    n_targets = len(ids) - 1
    if n_targets < streams:
        raise ValueError(f"{len(ids)} characters are too few for {streams} streams")
    bounds = np.linspace(0, n_targets, streams + 1).astype(np.int64)
    length = int(np.max(np.diff(bounds)))
    x = np.zeros((streams, length), np.int64)
    y = np.zeros((streams, length), np.int64)
    mask = np.zeros((streams, length), np.float32)
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        x[s, :b - a], y[s, :b - a], mask[s, :b - a] = ids[a:b], ids[a + 1:b + 1], 1.0
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


@torch.no_grad()
def score_progressive(model, ids: np.ndarray, streams: int = 1, chunk: int = 1024) -> dict:
    """Mean nats/char over every character but the first of `ids`, the state carried through each stream.

    `model(x [S, t], state)` returns (logits [S, t, V], state), as `CharLSTM` does.
    """
    was_training = model.training
    model.eval()
    x, y, mask = stream_layout(ids, streams)  # [S, L] each
    total, state = 0.0, None
    for t0 in range(0, x.shape[1], chunk):
        logits, state = model(x[:, t0:t0 + chunk], state)  # [S, t, V]
        nll = F.cross_entropy(logits.transpose(1, 2), y[:, t0:t0 + chunk], reduction="none")  # [S, t]
        total += float((nll * mask[:, t0:t0 + chunk]).sum())
    model.train(was_training)
    chars = int(mask.sum())
    return {"nats": total / chars, "chars": chars}
