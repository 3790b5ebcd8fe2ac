"""A seeded integer PRNG as TensorFlow ops: the same numbers on every runtime (TFLite builtins, no Flex).

Randomness comes from the Park-Miller "minimal standard" generator x <- 16807 x mod (2^31 - 1). A
uniform u in [0, 1) is the state's top 24 bits times 2^-24: exact in float32, so every runtime sees the
same u. Two forms of the same step: `next_rng` on int32 states (Schrage's method: every intermediate fits
in int32) and `next_rng64` on int64 states (two ops: the product fits in int64), which the sampling loops
carry because each op in a loop body costs time on every character.

Shapes: B batch (parallel streams).

Example:
    rng = seed_rng(tf.constant([7]))  # int32[B]
    rng = next_rng(rng)
    u = uniform(rng)                  # float32[B]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

MODULUS = 2147483647  # 2^31 - 1, a prime
MULTIPLIER = 16807  # 7^5: Park & Miller's minimal standard
_Q, _R = MODULUS // MULTIPLIER, MODULUS % MULTIPLIER  # Schrage: MODULUS = MULTIPLIER * Q + R, R < Q
# Consecutive seeds start as consecutive states; a few steps spread them over the whole range.
WARMUP = 4
UNIT = 1.0 / (1 << 24)  # uniform = top_bits * UNIT


def next_rng(x):
    """One generator step: int32[B] states in [1, 2^31 - 2] -> the next states (same range)."""
    hi = tf.math.floordiv(x, _Q)
    lo = x - hi * _Q
    x = MULTIPLIER * lo - _R * hi  # in (-MODULUS, MODULUS): no int32 overflow
    return tf.where(x > 0, x, x + MODULUS)


def next_rng64(x):
    """`next_rng` on int64 states: the same sequence in two ops."""
    return tf.math.floormod(x * MULTIPLIER, MODULUS)


def seed_rng(seed):
    """Generator states for int32 seeds (any value, negative too): int32[B] -> int32[B]."""
    x = tf.cast(tf.math.floormod(seed, MODULUS - 1) + 1, tf.int64)
    for _ in range(WARMUP):
        x = next_rng64(x)  # 2 ops a step: the exported generate_chunk seeds on every call
    return tf.cast(x, tf.int32)


def top_bits(x):
    """The state's top 24 bits (int32 or int64 states) as an exact float32 integer in [0, 2^24)."""
    return tf.cast(tf.math.floordiv(tf.cast(x, tf.int32), 128), tf.float32)  # TFLite divides int32, not int64


def uniform(x):
    """The state's top 24 bits as a float32 in [0, 1), exactly (float32 has a 24-bit mantissa)."""
    return top_bits(x) * UNIT


def sample_seeds(seed: int, num_samples: int) -> np.ndarray:
    """Seed of each sample: seed, seed + 1, ... (wrapped to int32), i.e. what `generate` gets per sample."""
    return ((np.arange(num_samples, dtype=np.int64) + seed + 2**31) % 2**32 - 2**31).astype(np.int32)
