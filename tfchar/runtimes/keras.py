"""Progressive scoring of a text: nats and bits per character with the state carried through the text.

The text is laid out as `streams` contiguous rows (the stateful layout), each scored from a fresh state
in chunks, so memory stays bounded for any length and every scheme's model is measured the same way.
With `streams=1` every character but the first is scored with its whole left context.

Example:
    scorer = Scorer(model_cfg, vocab_size=65)
    result = scorer.score(train_model, corpus.val)  # {"nats": ..., "bpc": ..., "chars": ...}
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfchar.data import stream_view
from tfchar.models import build_from_config, reset_states
from tfchar.train_step import token_nll

LN2 = math.log(2.0)


def bpc(nats: float) -> float:
    return nats / LN2


class Scorer:
    """Scores id arrays with a stateful copy of a model's weights; the training model is never touched.

    Args:
        model_cfg: `config.ModelConfig` of the model to score.
        vocab_size: V.
        streams: parallel contiguous rows of text (batch size of the scoring model).
        chunk: time steps per call.
    """

    def __init__(self, model_cfg, vocab_size: int, streams: int = 8, chunk: int = 256):
        self.model_cfg, self.vocab_size, self.streams, self.chunk = model_cfg, vocab_size, streams, chunk
        self.model = build_from_config(model_cfg, vocab_size, batch_size=streams, seq_length=None, stateful=True)
        model = self.model

        @tf.function(input_signature=[tf.TensorSpec((streams, None), tf.int32)] * 2, reduce_retracing=True)
        def step(x, y):
            return tf.reduce_sum(token_nll(y, model(x, training=False)))  # sum over [B, T]

        self._step = step

    def score(self, weights_from, ids: np.ndarray) -> dict:
        """Mean nats/char and bpc of `ids` under the weights of `weights_from` (a Keras model)."""
        if weights_from is not None:
            self.model.set_weights(weights_from.get_weights())
        streams = self.streams if (len(ids) - 1) // self.streams >= 1 else 1
        if streams != self.streams:  # a text shorter than one character per stream: score it as one
            return Scorer(self.model_cfg, self.vocab_size, streams=1, chunk=self.chunk).score(self.model, ids)
        view = stream_view(ids, streams)  # [B, L + 1]
        length = view.shape[1] - 1
        reset_states(self.model)
        total = 0.0
        for start in range(0, length, self.chunk):
            w = view[:, start:min(length, start + self.chunk) + 1].astype(np.int32)  # [B, t + 1]
            total += float(self._step(w[:, :-1], w[:, 1:]))
        reset_states(self.model)
        count = streams * length
        nats = total / max(1, count)
        return {"nats": nats, "bpc": bpc(nats), "perplexity": math.exp(min(nats, 700)), "chars": count}
