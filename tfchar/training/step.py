"""The optimizer, and the compiled training and evaluation steps: cross-entropy (`ops.loss`), global-norm
clipping, gradient norm.

Example:
    optimizer = make_optimizer(cfg.train, HostRate(2e-3), model.trainable_variables)
    step = make_train_step(model, optimizer, grad_clip=5.0)
    loss, grad_norm = step(x, y)  # x, y: int32[B, T]
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfchar.ops.loss import LOGITS_CHUNK_BYTES, chunked_logits_nll, token_nll, weighted_mean


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


def make_optimizer(train_cfg, rate, variables) -> keras.optimizers.Optimizer:
    """Adam with the config's epsilon and beta2 and, if `weight_decay` > 0, decoupled weight decay (AdamW) of
    the weight matrices (`variables` of rank >= 2: kernels, recurrent kernels, the embedding); biases and
    layer-norm parameters are not decayed.

    Args:
        train_cfg: a `config.TrainConfig`.
        rate: the learning rate (a float or a Keras schedule, e.g. `schedule.HostRate`).
        variables: the model's trainable variables.
    """
    t = train_cfg
    optimizer = keras.optimizers.Adam(learning_rate=rate, beta_2=t.adam_beta2, epsilon=t.adam_epsilon,
                                      weight_decay=t.weight_decay or None)
    if t.weight_decay:
        optimizer.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) < 2])
    return optimizer


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
