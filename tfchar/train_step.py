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

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)  # [B, T, V]
            loss = weighted_mean(token_nll(y, logits), weights)
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
