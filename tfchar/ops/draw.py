"""Drawing a token from logits as TensorFlow ops: temperature, top-k and top-p, by inverse CDF.

These ops are the ONE sampling code path: the exported generator (`tfchar.nn.generator`) bakes them into
the SavedModel and TFLite graphs, and every runtime runs that graph. TFLite builtin ops only.

A token is drawn by inverse CDF over the logits sorted high to low:
    e_i = exp((l_i - l_max) * (1 / temperature))    (not divided by the sum: fewer rounding steps)
    keep the k highest (top_k > 0), then the shortest prefix whose mass reaches top_p of the rest
    pick the first kept rank whose cumulative e exceeds u * (kept mass)
temperature <= 0 means greedy (argmax); top_k = 0 and top_p = 1 switch truncation off.

`draw` is the definition. The sampling loops run a shortcut of it, chosen once per call by `Settings.mode`,
because every op in a loop body costs time on every character; each returns exactly the token `draw`
returns (the same float ops on the same values in the same order; tested):
    FULL       no truncation (and greedy): the kept mass is the whole sum, no mask, no nucleus count
    TRUNCATED  top-k/top-p without the rank mask: ranks past k never count and are never picked

Shapes: B batch (parallel streams), V vocabulary.

Example:
    ids = sample_ids(logits, uniform(rng), 0.8, 0, 0.95)  # logits float32[B, V] -> int32[B]
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from tfchar.ops.rng import UNIT

GREEDY, FULL, TRUNCATED = 0, 1, 2  # Settings.mode


class Settings(NamedTuple):
    """Loop-invariant sampling knobs, prepared once per call so each step runs fewer ops."""

    inv_temperature: tf.Tensor  # float32[], 1 when greedy
    u_scale: tf.Tensor  # float32[], 0 when greedy: u = 0 picks rank 0, the argmax
    k_mask: tf.Tensor  # float32[1, V], 1 on the ranks top_k keeps
    k: tf.Tensor  # int32[], ranks top_k keeps (V when off)
    p: tf.Tensor  # float32[], top_p, or 2 when off (so no rank is cut by rounding)
    mode: tf.Tensor  # int32[]: GREEDY, FULL or TRUNCATED (greedy also means no truncation)
    u_unit: tf.Tensor  # float32[], u_scale * 2^-24: top bits of the generator state -> u * u_scale


def settings(temperature, top_k, top_p, vocab_size) -> Settings:
    """Turn user knobs (scalars) into `Settings` for a vocabulary of `vocab_size` tokens."""
    temperature = tf.convert_to_tensor(temperature, tf.float32)
    top_k = tf.convert_to_tensor(top_k, tf.int32)
    top_p = tf.convert_to_tensor(top_p, tf.float32)
    greedy = temperature <= 0.0
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab_size), vocab_size)
    truncated = tf.logical_or(k < vocab_size, top_p < 1.0)
    return Settings(inv_temperature=tf.where(greedy, 1.0, 1.0 / tf.where(greedy, 1.0, temperature)),
                    u_scale=tf.where(greedy, 0.0, 1.0),
                    k_mask=tf.cast(tf.range(vocab_size) < k, tf.float32)[None, :],
                    k=k,
                    p=tf.where(top_p >= 1.0, 2.0, top_p),
                    mode=tf.where(greedy, GREEDY, tf.where(truncated, TRUNCATED, FULL)),  # greedy ignores k, p
                    u_unit=tf.where(greedy, 0.0, UNIT))


def sort_desc(logits):
    """(logits sorted high to low, their token ids), each [B, V]; equal logits: lower id first (TOPK_V2)."""
    return tf.math.top_k(logits, k=tf.shape(logits)[1])


def draw(logits, u, s: Settings):
    """One token per row by inverse CDF: logits float32[B, V], uniforms float32[B] -> int32[B]."""
    sorted_logits, order = sort_desc(logits)  # [B, V] high to low; ties: lower id first
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


# ============================================================================================ loop shortcuts

def pick_full(logits, bits, s: Settings):
    """FULL (k = V, p >= 1, or greedy): `draw` with the kept mass = the whole sum, the same float ops in the
    same order. Greedy: u_unit is 0, the threshold 0, and rank 0 (cdf 1) the first above it.

    Each pick_* takes logits float32[B, V] and bits float32[B, 1], `rng.top_bits` of the generator states
    (u = bits * 2^-24, exact), and returns int32[B].

    The threshold bits * (2^-24 * u_scale) * total equals draw's u * u_scale * kept_mass bit for bit (the
    first product is exact either way), and since it is below the total (u < 1), the first cdf above it
    exists: its rank is draw's `pick` without the clamp.
    """
    sorted_logits, order = sort_desc(logits)  # [B, V]
    e = tf.exp((sorted_logits - sorted_logits[:, :1]) * s.inv_temperature)  # [B, V]
    cdf = tf.cumsum(e, axis=1)  # [B, V]
    threshold = bits * s.u_unit * cdf[:, -1:]  # [B, 1]
    pick = tf.argmax(cdf > threshold, axis=1, output_type=tf.int32)  # [B] first rank above it
    return tf.gather(order, pick, batch_dims=1)


def pick_truncated(logits, bits, s: Settings):
    """TRUNCATED: `draw` without the k mask. Unmasked, the cdf of ranks < k is unchanged and the mass of the
    top k is cdf[k - 1]; ranks >= k have cdf >= that, so the nucleus count never counts them, and the kept
    rank n_keep - 1 = min(count, k - 1) is at most k - 1. The pick is FULL's, under the kept mass."""
    sorted_logits, order = sort_desc(logits)  # [B, V]
    e = tf.exp((sorted_logits - sorted_logits[:, :1]) * s.inv_temperature)  # [B, V]
    cdf = tf.cumsum(e, axis=1)  # [B, V]
    top_k_mass = tf.gather(cdf, [s.k - 1], axis=1)  # [B, 1]
    last = tf.minimum(_count(cdf < s.p * top_k_mass), s.k - 1)  # [B] rank of the last kept token
    threshold = bits * s.u_unit * tf.gather(cdf, last[:, None], batch_dims=1)  # [B, 1]
    pick = tf.argmax(cdf > threshold, axis=1, output_type=tf.int32)  # [B] first rank above it
    return tf.gather(order, pick, batch_dims=1)


PICKS = {GREEDY: pick_full, FULL: pick_full, TRUNCATED: pick_truncated}  # Settings.mode -> the loop's pick


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
