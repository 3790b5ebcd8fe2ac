"""Drawing a token from logits as TensorFlow ops: temperature, top-k and top-p, by inverse CDF.

These ops are the ONE sampling code path: the exported generator (`tfchar.nn.generator`) bakes them into
the SavedModel and TFLite graphs, and every runtime runs that graph. TFLite builtin ops only.

A token is drawn by inverse CDF over the logits sorted high to low:
    e_i = exp((l_i - l_max) * (1 / temperature))    (not divided by the sum: fewer rounding steps)
    keep the k highest (top_k > 0), then the shortest prefix whose mass reaches top_p of the rest
    pick the first kept rank whose cumulative e exceeds u * (kept mass)
temperature <= 0 means greedy (argmax); top_k = 0 and top_p = 1 switch truncation off.

Shapes: B batch (parallel streams), V vocabulary.

Example:
    ids = sample_ids(logits, uniform(rng), 0.8, 0, 0.95)  # logits float32[B, V] -> int32[B]
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class Settings(NamedTuple):
    """Loop-invariant sampling knobs, prepared once per call so each step runs fewer ops."""

    inv_temperature: tf.Tensor  # float32[], 1 when greedy
    u_scale: tf.Tensor  # float32[], 0 when greedy: u = 0 picks rank 0, the argmax
    k_mask: tf.Tensor  # float32[1, V], 1 on the ranks top_k keeps
    k: tf.Tensor  # int32[], ranks top_k keeps (V when off)
    p: tf.Tensor  # float32[], top_p, or 2 when off (so no rank is cut by rounding)


def settings(temperature, top_k, top_p, vocab_size) -> Settings:
    """Turn user knobs (scalars) into `Settings` for a vocabulary of `vocab_size` tokens."""
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    top_k = tf.convert_to_tensor(top_k, tf.int32)
    top_p = tf.convert_to_tensor(top_p, tf.float32)
    greedy = temperature <= 0.0
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab_size), vocab_size)
    return Settings(inv_temperature=tf.where(greedy, 1.0, 1.0 / tf.where(greedy, 1.0, temperature)),
                    u_scale=tf.where(greedy, 0.0, 1.0),
                    k_mask=tf.cast(tf.range(vocab_size) < k, tf.float32)[None, :],
                    k=k,
                    p=tf.where(top_p >= 1.0, 2.0, top_p))


def draw(logits, u, s: Settings):
    """One token per row by inverse CDF: logits float32[B, V], uniforms float32[B] -> int32[B]."""
    sorted_logits, order = tf.math.top_k(logits, k=tf.shape(logits)[1])  # [B, V] high to low; ties: lower id first
    e = tf.exp((sorted_logits - sorted_logits[:, :1]) * s.inv_temperature) * s.k_mask  # [B, V], e[:, 0] == 1
    cdf = tf.cumsum(e, axis=1)  # [B, V]
    # Nucleus: rank r stays if the mass before it is below p of the total, so rank 0 always stays.
    n_keep = tf.minimum(1 + _count(cdf < s.p * cdf[:, -1:]), s.k)  # [B]
    kept_mass = tf.gather(cdf, n_keep - 1, batch_dims=1)  # [B]
    threshold = u * s.u_scale * kept_mass  # [B]
    pick = tf.minimum(_count(cdf <= tf.expand_dims(threshold, 1)), n_keep - 1)  # [B] rank of the first cdf above it
    return tf.gather(order, pick, batch_dims=1)


def _count(mask):
    return tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


def sample_ids(logits, u, temperature, top_k, top_p):
    """Draw one token per row by inverse CDF.

    Args:
        logits: float32[B, V] unnormalized log-probabilities.
        u: float32[B] uniforms in [0, 1), e.g. `rng.uniform(state)`.
        temperature: float32 scalar; <= 0 means greedy (argmax, u unused).
        top_k: int32 scalar; keep only the k most likely tokens (0 = all).
        top_p: float32 scalar in (0, 1]; keep the fewest top tokens whose probability reaches top_p (1 = all).

    Returns:
        int32[B] token ids.

    Example:
        sample_ids(tf.constant([[0., 2., 1.]]), tf.constant([0.5]), 1.0, 0, 1.0)  # -> [1] (p = .24, .67, .09)
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    return draw(logits, tf.convert_to_tensor(u, tf.float32), settings(temperature, top_k, top_p, tf.shape(logits)[1]))
