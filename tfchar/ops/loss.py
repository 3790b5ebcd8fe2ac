"""The training loss: cross-entropy of each target character, its weighted mean, and a blocked form for
large vocabularies that never holds the whole [N, V] logits.

Shapes: B batch, T time, V vocabulary, N = B*T rows, E width of the output layer's input.

Example:
    nll = token_nll(y, logits)           # y int32[B, T], logits [B, T, V] -> float32[B, T] nats
    loss = weighted_mean(nll, None)
"""

from __future__ import annotations

import tensorflow as tf


def token_nll(y, logits):
    """Negative log-likelihood in nats of each target: y int32[B, T], logits [B, T, V] -> float32[B, T]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32),
                                                          logits=tf.cast(logits, tf.float32))


def weighted_mean(nll, weights):
    """Mean over scored positions; `weights` float32[T] marks which positions count (None = all)."""
    if weights is None:
        return tf.reduce_mean(nll)
    w = tf.broadcast_to(weights[None, :], tf.shape(nll))  # [B, T]
    return tf.reduce_sum(nll * w) / tf.reduce_sum(w)


# Logits larger than this are never materialised whole in training (see `chunked_logits_nll`): with a
# 6,562-symbol vocabulary (a 100 MB Unicode corpus) at B=64, T=100 they would be 168 MB, plus as much again
# for their gradient.
LOGITS_CHUNK_BYTES = 32 << 20


def chunked_logits_nll(h, kernel, bias, y, chunks: int):
    """Per-row NLL of `y` under logits `h @ kernel + bias`, computed `chunks` rows-blocks at a time.

    Equal to `token_nll(y, h @ kernel + bias)` (the same ops on the same rows), but the forward keeps only
    softmax's gradient factor (one [N, V] buffer) and never the logits, and the backward turns it into
    d(h), d(kernel), d(bias) block by block, so the peak holds one [N, V] buffer instead of three.

    Args:
        h: float32[N, E] inputs of the output layer; kernel float32[E, V], bias float32[V].
        y: int32[N] targets.
        chunks: number of row blocks (N need not divide by it).
    Returns:
        float32[N] nats.
    """
    n = h.shape[0]
    sizes = [n // chunks + (1 if i < n % chunks else 0) for i in range(chunks)]
    ys = tf.split(tf.cast(y, tf.int32), sizes)

    @tf.custom_gradient
    def run(h, kernel, bias):
        hs = tf.split(h, sizes)
        losses, factors = zip(*[tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
            features=tf.nn.bias_add(tf.matmul(hc, kernel), bias), labels=yc) for hc, yc in zip(hs, ys)])

        def grad(dloss):
            dh, dkernel, dbias = [], tf.zeros_like(kernel), tf.zeros_like(bias)
            for hc, f, dl in zip(hs, factors, tf.split(dloss, sizes)):
                d = f * dl[:, None]  # [n_c, V] d(logits) of this block
                dh.append(tf.matmul(d, kernel, transpose_b=True))
                dkernel += tf.matmul(hc, d, transpose_a=True)
                dbias += tf.reduce_sum(d, 0)
            return tf.concat(dh, 0), dkernel, dbias

        return tf.concat(losses, 0), grad

    return run(h, kernel, bias)
