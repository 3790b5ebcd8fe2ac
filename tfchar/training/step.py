"""Compiled training and evaluation steps: cross-entropy, global-norm clipping, gradient norm.

Example:
    step = make_train_step(model, keras.optimizers.Adam(2e-3), grad_clip=5.0)
    loss, grad_norm = step(x, y)  # x, y: int32[B, T]
"""

from __future__ import annotations

import keras
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


def _split_at_logits(model: keras.Model, batch_elements: int):
    """(body, logits layer, chunks) when the model's logits are too large to hold whole, else None.

    body maps ids to the logits layer's input; it shares the model's layers (and stateful RNN states)."""
    try:
        layer = model.get_layer("logits")
        body = keras.Model(model.inputs, layer.input)
    except (ValueError, AttributeError, TypeError):  # not a tfchar functional model: no split
        return None
    chunks = -(-batch_elements * layer.units * 4 // LOGITS_CHUNK_BYTES)
    return (body, layer, chunks) if chunks > 1 else None


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, grad_clip: float,
                    loss_weights=None):
    """A `tf.function` (x, y) -> (mean loss in nats, global gradient norm before clipping).

    Args:
        model: maps int32[B, T] to logits [B, T, V].
        optimizer: a Keras optimizer; its `iterations` counts steps (and drives any LR schedule).
        grad_clip: clip the global gradient norm to this value (0 = no clipping).
        loss_weights: optional float32[T] position weights (schemes that score only some positions).
    """
    weights = None if loss_weights is None else tf.constant(loss_weights, tf.float32)
    variables = model.trainable_variables
    batch_shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    split = None
    if batch_shape is not None and None not in batch_shape:  # stateful models: [B, T] known
        split = _split_at_logits(model, batch_shape[0] * batch_shape[1])

    def nll(x, y):
        if split is None:
            return token_nll(y, model(x, training=True))  # [B, T] from logits [B, T, V]
        body, layer, chunks = split
        h = body(x, training=True)  # [B, T, E]
        flat = chunked_logits_nll(tf.reshape(h, [-1, h.shape[-1]]), tf.convert_to_tensor(layer.kernel),
                                  tf.convert_to_tensor(layer.bias), tf.reshape(y, [-1]), chunks)
        return tf.reshape(flat, tf.shape(y))

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = weighted_mean(nll(x, y), weights)
        # The embedding's gradient arrives as IndexedSlices with one row per occurrence of a character;
        # global_norm over those rows is not the gradient's norm. Densify ([V, E] is small).
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
        norm = tf.linalg.global_norm(grads)
        if grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, grad_clip, use_norm=norm)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, norm

    return train_step


def make_eval_step(model: keras.Model):
    """A `tf.function` (x, y) -> (sum of nats, number of scored characters), no dropout."""

    @tf.function(reduce_retracing=True)
    def eval_step(x, y):
        nll = token_nll(y, model(x, training=False))  # [B, T]
        return tf.reduce_sum(nll), tf.cast(tf.size(nll), tf.float32)

    return eval_step
