"""Sampling (placeholder until the sample/export issue lands; keep `sample_text`'s signature)."""

from __future__ import annotations

import numpy as np

from tfchar.models import reset_states


def sample_text(model, vocab, prime: str = "\n", length: int = 200, temperature: float = 1.0,
                top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> str:
    """Generate `length` characters after `prime` with a stateful batch-1 Keras model."""
    rng = np.random.default_rng(seed)
    reset_states(model)
    ids = vocab.encode(prime, unknown="skip")
    if len(ids) == 0:
        ids = np.array([0], np.int32)
    logits = np.asarray(model(ids[None, :], training=False))[0, -1]
    out = []
    for _ in range(length):
        p = np.exp((logits - logits.max()) / temperature)
        p /= p.sum()
        nxt = int(rng.choice(len(p), p=p))
        out.append(nxt)
        logits = np.asarray(model(np.array([[nxt]], np.int32), training=False))[0, -1]
    return vocab.decode(out)
