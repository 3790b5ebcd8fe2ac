"""One time step of each recurrent cell, in Keras's gate order, on pre-computed gate inputs.

The exported generator (`tfchar.nn.generator`) runs these; the Keras layers, the fused layers' TensorFlow
loops and the native C++ loops compute the same functions (their parity tests hold them together).

    LSTM (gates i, f, g, o):  c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')
    GRU, reset_after (z, r, n): h' = z * h + (1 - z) * tanh(xn + r * hn), the recurrent part with its bias
    RNN:                      h' = tanh(x + h)

and what may stand between stacked layers: `layer_norm` (Keras's LayerNormalization over the last axis).

Shapes: B batch, H hidden; gx = x @ W + b and gh = h @ U (+ b_rec for GRU) are [B, G*H].

Example:
    h, parts = cell_step("lstm", gx, gh, [h, c])
"""

from __future__ import annotations

import tensorflow as tf

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # gate blocks per cell: the recurrent kernel is [H, GATES * H]
STATES_PER_LAYER = {"lstm": 2, "gru": 1, "rnn": 1}  # state tensors per layer, each [B, H]: LSTM (h, c), others h


def lstm_step(gx, gh, c):
    """(gx, gh [B, 4H], c [B, H]) -> (h', c')."""
    i, f, g, o = tf.split(gx + gh, 4, axis=1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


def gru_step(gx, gh, h):
    """(gx, gh [B, 3H] with the recurrent bias in gh, h [B, H]) -> h' (Keras reset_after)."""
    xz, xr, xn = tf.split(gx, 3, axis=1)
    hz, hr, hn = tf.split(gh, 3, axis=1)
    z = tf.sigmoid(xz + hz)
    r = tf.sigmoid(xr + hr)
    return z * h + (1.0 - z) * tf.tanh(xn + r * hn)


def rnn_step(gx, gh):
    """(gx, gh [B, H]) -> h'."""
    return tf.tanh(gx + gh)


def cell_step(cell: str, gx, gh, parts: list) -> tuple:
    """One step of `cell` from its state parts ([h, c] for LSTM, [h] otherwise): (h', new parts)."""
    if cell == "lstm":
        h, c = lstm_step(gx, gh, parts[1])
        return h, [h, c]
    h = gru_step(gx, gh, parts[0]) if cell == "gru" else rnn_step(gx, gh)
    return h, [h]


def layer_norm(x, gamma, beta, epsilon: float):
    """Keras's LayerNormalization of x [B, H] over H: (x - mean) / sqrt(variance + epsilon) * gamma + beta."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)  # [B, 1]
    centered = x - mean
    variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)  # [B, 1]
    return centered * tf.math.rsqrt(variance + epsilon) * gamma + beta
