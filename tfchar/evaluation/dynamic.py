"""Dynamic evaluation (Graves 2013, Krause et al. 2017): score a segment, then take one gradient step on it.

Each prediction is made before its character is trained on, so the figure stays a fair sequential score.
Weights are adapted in memory only; nothing is written to disk. The text is read in the progressive layout
of `ops.streams` (`streams` contiguous rows, state carried), `segment` characters per row between updates.

Shapes: B streams, t segment length.

Example:
    dynamic_score(cfg.model, len(vocab), ckpt, ids, lr=1e-3)["bpc"]
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfchar.core.choices import DYNAMIC_OPTIMIZERS
from tfchar.core.errors import ConfigError
from tfchar.nn.checkpoint import load_weights
from tfchar.nn.models import build_from_config, reset_states
from tfchar.ops.loss import token_nll
from tfchar.ops.metrics import summary
from tfchar.ops.streams import fitting_streams, progressive


def dynamic_score(model_cfg, vocab_size: int, ckpt: Path, ids: np.ndarray, streams: int = 1, segment: int = 50,
                  lr: float = 3e-4, optimizer: str = "adam", grad_clip: float = 5.0) -> dict:
    """Dynamic evaluation: score each segment, then one gradient step on it (in memory only).

    Args:
        model_cfg, vocab_size, ckpt: the model and the checkpoint its weights start from (never written): a
            checkpoint dir, or an export dir holding model.keras (`nn.checkpoint.load_weights`).
        ids: int[N] token ids.
        streams: B contiguous rows adapted together (1 = one sequential pass, as Krause et al.).
        segment: characters per row between updates (truncated BPTT length of the adaptation).
        lr: learning rate of the adaptation; optimizer: "sgd" or "adam".
        grad_clip: global gradient norm clip (as training's default).

    Returns:
        `ops.metrics.summary` of the dynamic score plus "updates" (gradient steps taken).
    """
    if optimizer not in DYNAMIC_OPTIMIZERS:
        raise ConfigError(f"--dynamic_optimizer {optimizer!r} is not one of: {', '.join(DYNAMIC_OPTIMIZERS)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"--dynamic_lr {lr} must be a positive number, e.g. 0.001")
    if segment < 1:
        raise ConfigError(f"--segment {segment} must be >= 1, e.g. 50")
    streams = fitting_streams(len(ids), streams)
    model = build_from_config(model_cfg, vocab_size, batch_size=streams, seq_length=None, stateful=True)
    load_weights(model, ckpt)
    opt = keras.optimizers.SGD(lr) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    variables = model.trainable_variables

    @tf.function(input_signature=[tf.TensorSpec((streams, None), tf.int32)] * 2, reduce_retracing=True)
    def adapt(x, y):
        # The carried state enters as a constant (a variable read), so gradients stop at the segment start.
        with tf.GradientTape() as tape:
            nll = token_nll(y, model(x, training=False))  # [B, t]; scored before this update
            loss = tf.reduce_mean(nll)
        grads = tape.gradient(loss, variables)
        if grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, grad_clip)
        opt.apply_gradients(zip(grads, variables))
        return tf.reduce_sum(tf.cast(nll, tf.float64))

    updates = 0

    def score_segment(x, y):
        nonlocal updates
        updates += 1
        return float(adapt(x, y))

    reset_states(model)
    return {**summary(*progressive(score_segment, ids, streams, segment)), "updates": updates}
