"""The training step's loss: large-vocabulary logits are computed in row blocks with the same result."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfchar.ops import loss as loss_ops
from tfchar.training import step as ts
from tfchar.nn.models import build_model


def test_chunked_logits_nll_equals_token_nll_with_gradients():
    rng = np.random.default_rng(0)
    n, e, v = 23, 7, 11  # 23 rows in 4 blocks of 6, 6, 6, 5
    h, kernel, bias = (tf.constant(rng.normal(0, 1, s).astype("float32")) for s in ((n, e), (e, v), (v,)))
    y = tf.constant(rng.integers(0, v, n), tf.int32)
    upstream = tf.constant(rng.normal(0, 1, n).astype("float32"))  # a non-uniform weighting of the rows

    def loss_and_grads(f):
        with tf.GradientTape() as tape:
            tape.watch([h, kernel, bias])
            nll = f()
            loss = tf.reduce_sum(nll * upstream)
        return [nll, *tape.gradient(loss, [h, kernel, bias])]

    want = loss_and_grads(lambda: loss_ops.token_nll(y, tf.matmul(h, kernel) + bias))
    got = loss_and_grads(lambda: loss_ops.chunked_logits_nll(h, kernel, bias, y, chunks=4))
    for g, w, name in zip(got, want, ["nll", "d_h", "d_kernel", "d_bias"]):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("fast", ["fused", "keras"])
def test_train_step_with_blocked_logits_trains_like_the_plain_step(monkeypatch, fast):
    kw = dict(vocab_size=37, cell="lstm", rnn_size=8, num_layers=2, dropout=0.0, embedding_dim=4, batch_size=3,
              seq_length=5, stateful=True, fast=fast)
    rng = np.random.default_rng(1)
    x, y = (tf.constant(rng.integers(0, 37, (3, 5)), tf.int32) for _ in range(2))
    results = {}
    for name, chunk_bytes in [("plain", 1 << 30), ("blocked", 3 * 5 * 37 * 4 // 3)]:  # 3+ row blocks
        monkeypatch.setattr(ts, "LOGITS_CHUNK_BYTES", chunk_bytes)
        model = build_model(**kw, seed=2)
        step = ts.make_train_step(model, keras.optimizers.Adam(1e-2), grad_clip=1.0)
        assert (ts._split_at_logits(model, 15) is None) == (name == "plain")
        curve = [[float(v) for v in step(x, y)] for _ in range(3)]  # (loss, grad norm) per step
        results[name] = curve, [w.numpy() for w in model.weights]
    np.testing.assert_allclose(results["blocked"][0], results["plain"][0], rtol=1e-5)
    for a, b in zip(results["blocked"][1], results["plain"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
