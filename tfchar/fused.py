"""Fast CPU recurrent layers, weight-compatible with `keras.layers.LSTM`, `GRU(reset_after=True)`, `SimpleRNN`.

Keras 3 runs a recurrent layer on CPU as a `tf.while_loop` over a generic cell and differentiates it with
autodiff, which on CPU spends most of its time in per-step bookkeeping rather than in the matrix products.
The layers here compute the same function faster:

* the input projection `x @ kernel + bias` of all T steps is one large matmul outside the recurrence;
* the recurrence is a lean loop whose only matmul is `h @ recurrent_kernel`;
* the backward pass is written by hand (`tf.custom_gradient` over the whole sequence, as torch-rnn's LSTM):
  the loop carries only the recurrent gradient, and the weight gradients are large matmuls after it.

They subclass the Keras layers and replace only `inner_loop`, so everything else is Keras' own: the same
constructor, `get_config()`, weight variables (`cell.kernel`, `cell.recurrent_kernel`, `cell.bias`, same
names, shapes, gate order and initializers), `stateful` state variables (`layer.states`, `reset_states()`),
`return_sequences`/`return_state`. A `.weights.h5` file saved from one loads into the other, and an exporter
sees the same variables. Configurations the fast path does not cover (masking, `go_backwards`, dropout
inside the layer, other activations, non-float32 compute, GRU with `reset_after=False`) fall back to the
Keras implementation, so results never depend on which class was chosen.

Shapes: B batch, T time, E input width, H hidden units (`units`), G gate width (4H LSTM, 3H GRU, H RNN).

Example:
    layer = FusedLSTM(512, return_sequences=True, stateful=True)
    y = layer(x)  # x: float32[B, T, E] -> y: float32[B, T, H]
    layer.reset_states()
"""

from __future__ import annotations

import keras
import tensorflow as tf

# The time loops' `parallel_iterations`: 1 keeps memory flat and was as fast as larger values on CPU.
PARALLEL_ITERATIONS = 1


# ----------------------------------------------------------------------------------------------------------
# Loop helpers


def _loop(body, n, loop_vars):
    """Run `body(t, *loop_vars)` for t = 0 .. n-1 with a `tf.while_loop`; returns the final loop vars."""
    out = tf.while_loop(lambda t, *_: t < n, lambda t, *v: (t + 1, *body(t, *v)), (tf.constant(0), *loop_vars),
                        parallel_iterations=PARALLEL_ITERATIONS)
    return out[1:]


def _ta(n, elems=None, shape=None):
    """A float32 TensorArray of length n (filled from `elems` [n, ...] when given)."""
    ta = tf.TensorArray(tf.float32, size=n, element_shape=shape, infer_shape=shape is None)
    return ta.unstack(elems) if elems is not None else ta


def _shift_in(first, seq):
    """[first, seq[0], ..., seq[T-2]]: each step's previous value. first [B, H], seq [T, B, H] -> [T, B, H]."""
    return tf.concat([first[None], seq[:-1]], axis=0)


def _flat(x):
    """[T, B, K] -> [T*B, K]."""
    return tf.reshape(x, [-1, x.shape[-1]])


# ----------------------------------------------------------------------------------------------------------
# LSTM. Gates in Keras order (i, f, c, o): z = x @ W + h @ U + b, i f o sigmoid, g = tanh,
# c' = f * c + i * g, h' = o * tanh(c').


def lstm_sequence(xw, h0, c0, u, save_for_backward=True):
    """The LSTM recurrence over time-major pre-projected inputs, differentiable by a hand-written backward.

    Args:
        xw: float32[T, B, 4H], x @ kernel + bias per step.
        h0, c0: float32[B, H], initial state.
        u: float32[H, 4H], the recurrent kernel.
        save_for_backward: keep the per-step gate derivatives for the backward pass (training); when False
            the forward saves only c, and a gradient (if one is taken) recomputes the gates.

    Returns:
        (hs float32[T, B, H], c_T float32[B, H]).
    """

    @tf.custom_gradient
    def run(xw, h0, c0, u):
        n = tf.shape(xw)[0]
        H = u.shape[0]
        xs = _ta(n, xw)

        def step(t, h, c, hs, cs, ps):
            z = xs.read(t) + tf.matmul(h, u)  # [B, 4H]
            i, f, g, o = tf.split(z, 4, axis=1)
            i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
            c_new = f * c + i * g
            tc = tf.tanh(c_new)
            h_new = o * tc
            if save_for_backward:
                # d(loss)/dz = [dc*g*i', dc*c*f', dc*i*(1-g^2), dh*tanh(c')*o'] with dc += dh*o*(1-tanh(c')^2)
                p = tf.concat([g * i * (1 - i), c * f * (1 - f), i * (1 - g * g), tc * o * (1 - o),
                               o * (1 - tc * tc), f], axis=1)  # [B, 6H]
                ps = ps.write(t, p)
            return h_new, c_new, hs.write(t, h_new), cs.write(t, c_new), ps

        h, c, hs, cs, ps = _loop(step, n, (h0, c0, _ta(n), _ta(n), _ta(n if save_for_backward else 0)))
        hs = hs.stack()  # [T, B, H]
        cs = cs.stack()  # [T, B, H]

        def grad(dhs, dc_last):
            if save_for_backward:
                pta = ps
            else:  # recompute the gate derivatives from the saved states
                hprev = _shift_in(h0, hs)
                z = xw + tf.reshape(tf.matmul(_flat(hprev), u), tf.shape(xw))
                i, f, g, o = tf.split(z, 4, axis=2)
                i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
                tc = tf.tanh(cs)
                cprev = _shift_in(c0, cs)
                pta = _ta(n, tf.concat([g * i * (1 - i), cprev * f * (1 - f), i * (1 - g * g), tc * o * (1 - o),
                                        o * (1 - tc * tc), f], axis=2))
            dhs_ta = _ta(n, dhs)
            if dc_last is None:
                dc_last = tf.zeros_like(c0)

            def back(s, dh_next, dc, dzs):
                t = n - 1 - s
                p = pta.read(t)  # [B, 6H]
                dh = dhs_ta.read(t) + dh_next
                dc = dc + dh * p[:, 4 * H:5 * H]
                dz = tf.concat([dc, dc, dc, dh], axis=1) * p[:, :4 * H]  # [B, 4H]
                return tf.matmul(dz, u, transpose_b=True), dc * p[:, 5 * H:], dzs.write(t, dz)

            dh0, dc0, dzs = _loop(back, n, (tf.zeros_like(h0), dc_last, _ta(n)))
            dz = dzs.stack()  # [T, B, 4H]
            du = tf.matmul(_flat(_shift_in(h0, hs)), _flat(dz), transpose_a=True)  # [H, 4H]
            return dz, dh0, dc0, du

        return (hs, c), grad

    return run(xw, h0, c0, u)


# ----------------------------------------------------------------------------------------------------------
# GRU, reset_after (the cuDNN variant, Keras' default). Gates (z, r, n):
# x @ W + b_in = [xz, xr, xn]; h @ U + b_rec = [rz, rr, rn]; z = sig(xz+rz), r = sig(xr+rr),
# n = tanh(xn + r * rn), h' = z * h + (1 - z) * n.


def gru_sequence(xw, h0, u, b_rec, save_for_backward=True):
    """The GRU (reset_after) recurrence over time-major pre-projected inputs, with a hand-written backward.

    Args:
        xw: float32[T, B, 3H], x @ kernel + input bias per step.
        h0: float32[B, H], initial state.
        u: float32[H, 3H], the recurrent kernel.
        b_rec: float32[3H], the recurrent bias (row 1 of Keras' bias[2, 3H]).
        save_for_backward: keep the per-step derivatives for the backward pass (see `lstm_sequence`).

    Returns:
        hs float32[T, B, H].
    """

    @tf.custom_gradient
    def run(xw, h0, u, b_rec):
        n = tf.shape(xw)[0]
        H = u.shape[0]
        xs = _ta(n, xw)

        def derivs(h, z, r, nn, rn):
            # Per step, with dh the total gradient of h':
            #   d(rec)  = dh * [(h - n) z', (1-z)(1-n^2) rn r', (1-z)(1-n^2) r]   (rec = h @ U + b_rec)
            #   d(xw)   = dh * [(h - n) z', (1-z)(1-n^2) rn r', (1-z)(1-n^2)]
            #   dh_prev = dh * z + d(rec) @ U^T
            a = (h - nn) * z * (1 - z)
            bn = (1 - z) * (1 - nn * nn)
            return a, bn * rn * r * (1 - r), bn * r, z, bn  # 5 x [..., H]

        def step(t, h, hs, ps):
            rec = tf.matmul(h, u) + b_rec  # [B, 3H]
            xz, xr, xn = tf.split(xs.read(t), 3, axis=1)
            rz, rr, rn = tf.split(rec, 3, axis=1)
            z = tf.sigmoid(xz + rz)
            r = tf.sigmoid(xr + rr)
            nn = tf.tanh(xn + r * rn)
            h_new = nn + z * (h - nn)
            if save_for_backward:
                ps = ps.write(t, tf.concat(derivs(h, z, r, nn, rn), axis=1))  # [B, 5H]
            return h_new, hs.write(t, h_new), ps

        h, hs, ps = _loop(step, n, (h0, _ta(n), _ta(n if save_for_backward else 0)))
        hs = hs.stack()  # [T, B, H]

        def grad(dhs):
            hprev = _shift_in(h0, hs)
            if save_for_backward:
                pta = ps
            else:
                rec = tf.reshape(tf.matmul(_flat(hprev), u), [n, -1, 3 * H]) + b_rec
                xz, xr, xn = tf.split(xw, 3, axis=2)
                rz, rr, rn = tf.split(rec, 3, axis=2)
                z = tf.sigmoid(xz + rz)
                r = tf.sigmoid(xr + rr)
                nn = tf.tanh(xn + r * rn)
                pta = _ta(n, tf.concat(derivs(hprev, z, r, nn, rn), axis=2))
            dhs_ta = _ta(n, dhs)

            def back(s, dh_next, ds):
                t = n - 1 - s
                p = pta.read(t)  # [B, 5H]
                dh = dhs_ta.read(t) + dh_next
                d = tf.concat([dh, dh, dh, dh, dh], axis=1) * p  # [B, 5H]
                return d[:, 3 * H:4 * H] + tf.matmul(d[:, :3 * H], u, transpose_b=True), ds.write(t, d)

            dh0, ds = _loop(back, n, (tf.zeros_like(h0), _ta(n)))
            d = ds.stack()  # [T, B, 5H]
            drec = d[:, :, :3 * H]
            dxw = tf.concat([d[:, :, :2 * H], d[:, :, 4 * H:]], axis=2)
            du = tf.matmul(_flat(hprev), _flat(drec), transpose_a=True)  # [H, 3H]
            db_rec = tf.reduce_sum(drec, axis=[0, 1])
            return dxw, dh0, du, db_rec

        return hs, grad

    return run(xw, h0, u, b_rec)


# ----------------------------------------------------------------------------------------------------------
# SimpleRNN (tanh): h' = tanh(x @ W + b + h @ U).


def rnn_sequence(xw, h0, u, save_for_backward=True):
    """The tanh RNN recurrence over time-major pre-projected inputs, with a hand-written backward.

    Args:
        xw: float32[T, B, H], x @ kernel + bias per step.
        h0: float32[B, H], initial state.
        u: float32[H, H], the recurrent kernel.
        save_for_backward: unused (the backward needs only the outputs); kept for a uniform signature.

    Returns:
        hs float32[T, B, H].
    """
    del save_for_backward

    @tf.custom_gradient
    def run(xw, h0, u):
        n = tf.shape(xw)[0]
        xs = _ta(n, xw)

        def step(t, h, hs):
            h_new = tf.tanh(xs.read(t) + tf.matmul(h, u))
            return h_new, hs.write(t, h_new)

        h, hs = _loop(step, n, (h0, _ta(n)))
        hs = hs.stack()  # [T, B, H]

        def grad(dhs):
            dact = 1 - hs * hs  # tanh' for every step, [T, B, H]
            dhs_ta = _ta(n, dhs)
            dact_ta = _ta(n, dact)

            def back(s, dh_next, das):
                t = n - 1 - s
                da = (dhs_ta.read(t) + dh_next) * dact_ta.read(t)  # [B, H]
                return tf.matmul(da, u, transpose_b=True), das.write(t, da)

            dh0, das = _loop(back, n, (tf.zeros_like(h0), _ta(n)))
            da = das.stack()  # [T, B, H]
            du = tf.matmul(_flat(_shift_in(h0, hs)), _flat(da), transpose_a=True)  # [H, H]
            return da, dh0, du

        return hs, grad

    return run(xw, h0, u)


# ----------------------------------------------------------------------------------------------------------
# Keras layers


def _project(sequences, kernel, bias):
    """x @ kernel + bias for all steps at once, time-major: [B, T, E] -> [T, B, G]."""
    x = tf.transpose(sequences, [1, 0, 2])  # [T, B, E]
    xw = tf.matmul(_flat(x), kernel)  # [T*B, G]
    if bias is not None:
        xw = tf.nn.bias_add(xw, bias)
    return tf.reshape(xw, tf.concat([tf.shape(x)[:2], [kernel.shape[-1]]], axis=0))


def _batch_major(hs, sequences, units):
    """[T, B, H] -> [B, T, H] with the static shape of `sequences` kept."""
    out = tf.transpose(hs, [1, 0, 2])
    out.set_shape(sequences.shape[:2].concatenate([units]))
    return out


class _FusedMixin:
    """Shared checks: the fast path needs exactly the computation it implements, else Keras runs."""

    def _fusable(self, sequences, mask, training):
        cell = self.cell
        return (mask is None and not self.go_backwards and tf.is_tensor(sequences)
                and sequences.dtype == tf.float32 and cell.compute_dtype == "float32"
                and not (training and (cell.dropout or cell.recurrent_dropout))
                and cell.activation is keras.activations.tanh
                and getattr(cell, "recurrent_activation", keras.activations.sigmoid) is keras.activations.sigmoid)


@keras.saving.register_keras_serializable(package="tfchar")
class FusedLSTM(_FusedMixin, keras.layers.LSTM):
    """`keras.layers.LSTM` with a fast CPU implementation (same weights, config and state handling).

    Args:
        units: H, hidden units.
        **kwargs: every `keras.layers.LSTM` argument (e.g. `return_sequences`, `stateful`,
            `kernel_initializer`). Masking, `go_backwards`, in-layer dropout and non-default activations
            fall back to the Keras implementation.

    Example:
        layer = FusedLSTM(128, return_sequences=True)
        y = layer(tf.zeros([2, 5, 8]))  # [B, T, H] = [2, 5, 128]
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fusable(sequences, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        cell = self.cell
        h0, c0 = initial_state
        xw = _project(sequences, cell.kernel, cell.bias if cell.use_bias else None)  # [T, B, 4H]
        hs, c = lstm_sequence(xw, h0, c0, tf.convert_to_tensor(cell.recurrent_kernel),
                              save_for_backward=bool(training))
        h = hs[-1]
        return h, _batch_major(hs, sequences, self.units), [h, c]


@keras.saving.register_keras_serializable(package="tfchar")
class FusedGRU(_FusedMixin, keras.layers.GRU):
    """`keras.layers.GRU` (reset_after=True, cuDNN-compatible) with a fast CPU implementation.

    Args:
        units: H, hidden units.
        **kwargs: every `keras.layers.GRU` argument. `reset_after=False`, masking, `go_backwards`, in-layer
            dropout and non-default activations fall back to the Keras implementation.

    Example:
        layer = FusedGRU(128, return_sequences=True, stateful=True)
        y = layer(tf.zeros([2, 5, 8]))  # [B, T, H]
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not (self._fusable(sequences, mask, training) and self.cell.reset_after):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        cell = self.cell
        h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        if cell.use_bias:
            b_in, b_rec = tf.unstack(tf.convert_to_tensor(cell.bias))  # [3H] each
        else:
            b_in, b_rec = None, tf.zeros([3 * self.units])
        xw = _project(sequences, cell.kernel, b_in)  # [T, B, 3H]
        hs = gru_sequence(xw, h0, tf.convert_to_tensor(cell.recurrent_kernel), b_rec,
                          save_for_backward=bool(training))
        h = hs[-1]
        return h, _batch_major(hs, sequences, self.units), [h]


@keras.saving.register_keras_serializable(package="tfchar")
class FusedRNN(_FusedMixin, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` (tanh) with a fast CPU implementation.

    Args:
        units: H, hidden units.
        **kwargs: every `keras.layers.SimpleRNN` argument; masking, `go_backwards`, in-layer dropout and
            other activations fall back to the Keras implementation.

    Example:
        layer = FusedRNN(128, return_sequences=True)
        y = layer(tf.zeros([2, 5, 8]))  # [B, T, H]
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fusable(sequences, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        cell = self.cell
        h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        xw = _project(sequences, cell.kernel, cell.bias if cell.use_bias else None)  # [T, B, H]
        hs = rnn_sequence(xw, h0, tf.convert_to_tensor(cell.recurrent_kernel))
        h = hs[-1]
        return h, _batch_major(hs, sequences, self.units), [h]


FUSED = {"lstm": FusedLSTM, "gru": FusedGRU, "rnn": FusedRNN}
