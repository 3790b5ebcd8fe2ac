"""Scoring a text with a fixed-context model (a transformer): windows of `block` advanced by `stride`.

Window starts are 0, stride, 2*stride, ... while a whole window fits (its inputs ids[s : s+block], its targets
ids[s+1 : s+block+1]); if the text's end is not reached, one last window ends exactly at the text's end
(start N-1-block). Every target ids[i] with i >= min_context is counted exactly once, in the first window
that reaches it, so its context is ids[s : i] with min_context <= i - s <= block characters; the targets
ids[1 .. min_context-1], which have fewer than min_context characters before them, are not counted. With
block 64, stride 32, min_context 32: ids[32..64] are scored in window 0 (32 to 64 characters of context), every
later target with 33 to 64 characters of context; N - 32 targets in all (the RNNs score all N - 1).

Example:
    score_windows(lambda x: gpt_logits(model, x), split.val)   # {"nats": ..., "chars": N_val - 32}
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def window_plan(n: int, block: int, stride: int, min_context: int):
    """Window starts (int[W]) and, per window, the first counted target's offset in it (int[W]).

    Offset j in a window starting at s is the target ids[s + 1 + j]; offsets j >= first[w] are counted.
    """
    if not 1 <= min_context <= block or not 1 <= stride <= block - min_context + 1:
        raise ValueError(f"need 1 <= min_context <= block and 1 <= stride <= block - min_context + 1 "
                         f"(block {block}, stride {stride}, min_context {min_context})")
    if n < block + 1:
        raise ValueError(f"a text of {n} characters is shorter than one window of {block} + 1")
    starts = list(range(0, n - block, stride))  # windows that fit: s + block <= n - 1
    if starts[-1] + block < n - 1:
        starts.append(n - 1 - block)  # the last window ends at the text's end
    first, done = [], min_context - 1  # done: the last target index already counted
    for s in starts:
        first.append(done - s)  # first uncounted target done + 1 sits at offset done + 1 - (s + 1)
        done = s + block
    return np.array(starts), np.array(first)


@torch.no_grad()
def score_windows(logits_fn, ids: np.ndarray, block: int = 64, stride: int = 32, min_context: int = 32,
                  batch: int = 256) -> dict:
    """Mean nats/char over the counted targets (module docstring); `logits_fn(x [B, T]) -> [B, T, V]`."""
    starts, first = window_plan(len(ids), block, stride, min_context)
    offsets = np.arange(block + 1)
    total, count = 0.0, 0
    for b0 in range(0, len(starts), batch):
        s, f = starts[b0:b0 + batch], first[b0:b0 + batch]
        w = torch.from_numpy(ids[s[:, None] + offsets].astype(np.int64))  # [B, block + 1]
        nll = F.cross_entropy(logits_fn(w[:, :-1]).transpose(1, 2), w[:, 1:], reduction="none")  # [B, block]
        counted = torch.from_numpy(offsets[None, :-1] >= f[:, None])  # [B, block]
        total += float(nll[counted].sum())
        count += int(counted.sum())
    return {"nats": total / count, "chars": count}
