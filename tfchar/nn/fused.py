"""Fast CPU recurrent layers, weight-compatible with `keras.layers.LSTM`, `GRU(reset_after=True)`, `SimpleRNN`.

Keras 3 runs a recurrent layer on CPU as a `tf.while_loop` over a generic cell and differentiates it with
autodiff through the loop; on CPU most of that time goes to per-step bookkeeping, not to the matrix
products. The layers here compute the same function faster:

* the input projection `x @ kernel + bias` of all T steps is one large (oneDNN) matmul outside the loop;
* the recurrence is a lean loop whose only matmul is `h @ recurrent_kernel`;
* the backward pass is written by hand (`tf.custom_gradient` over the whole sequence, like torch-rnn's
  LSTM): its loop carries only the recurrent gradient (one `dz @ recurrent_kernel^T` per step), and the
  weight gradients are three large matmuls after it;
* the loops themselves are C++ kernels (`tfchar/nn/kernels/rnn_loops.cc`, built on first use by
  `tfchar.nn.native`): a step is one small GEMM plus one vectorised pass of element-wise work, and the batch
  rows are split across the cores for the whole sequence, so no core waits for another. Without a C++
  compiler the same loops run as TensorFlow while-loops, compiled with XLA when the shapes are static.

They subclass the Keras layers and replace only `inner_loop`, so everything else is Keras' own: the
constructor, `get_config()`, the weight variables (`cell.kernel`, `cell.recurrent_kernel`, `cell.bias`:
same names, paths, shapes, gate order and initializers), the `stateful` state variables (`layer.states`,
`reset_states()`), `return_sequences`/`return_state`. The classes even carry the Keras class names, because
`.weights.h5` files address a model's layers by class name: files saved from either load into the other.
Configurations the fast path does not cover (masking, `go_backwards`, in-layer dropout, other activations,
non-float32 compute, GRU with `reset_after=False`) run the Keras implementation unchanged.

Shapes: B batch, T time, E input width, H hidden units (`units`), G gate width (4H LSTM, 3H GRU, H RNN).

Example:
    layer = FusedLSTM(512, return_sequences=True, stateful=True)
    y = layer(x)  # x: float32[B, T, E] -> y: float32[B, T, H]
    layer.reset_states()
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfchar.nn import native

# Which implementation runs the time loops. Module-level so benchmarks and tests can compare:
# USE_NATIVE: the C++ kernels of tfchar/nn/kernels/rnn_loops.cc (any shapes; built on first use, see
#     tfchar.nn.native); when they are off or cannot be built, the TensorFlow loops below run instead:
# USE_XLA: compile those loops with XLA when T and B are static (see `_use_xla`); unknown shapes (sampling,
#     evaluation with seq_length=None) always use plain TensorFlow loops, so no shape triggers a recompilation.
USE_NATIVE = True
USE_XLA = True


# ==========================================================================================================
# Helpers


def _loop(body, n, loop_vars):
    """Run `body(t, *loop_vars) -> loop_vars` for t = 0 .. n-1 (a `tf.while_loop`)."""
    out = tf.while_loop(lambda t, *_: t < n, lambda t, *v: (t + 1, *body(t, *v)), (tf.constant(0), *loop_vars),
                        parallel_iterations=1)
    return out[1:]


def _steps(seq):
    """T of a time-major [T, ...] tensor: a Python int when static (so loop outputs keep static shapes)."""
    return seq.shape[0] if seq.shape[0] is not None else tf.shape(seq)[0]


def _ta(n, batch, width):
    """An empty float32 TensorArray of n elements [batch, width] (XLA needs the static element shape)."""
    return tf.TensorArray(tf.float32, size=n, element_shape=tf.TensorShape([batch, width]))


def _shift_in(first, seq):
    """[first, seq[:, 0], ..., seq[:, T-2]] along time: each step's previous value. [B, H], [B, T, H] -> [B, T, H]."""
    return tf.concat([first[:, None], seq[:, :-1]], axis=1)


def _flat(x):
    """[B, T, K] -> [B*T, K]. K may be unknown when a reduce_retracing trace relaxed every dimension."""
    k = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    return tf.reshape(x, [-1, k])


def _projection(x, kernel, bias):
    """x [B, T, E] -> x @ kernel + bias [B, T, G]: one large matmul for all steps."""
    xw = tf.nn.bias_add(tf.matmul(_flat(x), kernel), bias)  # [B*T, G]
    return tf.reshape(xw, tf.concat([tf.shape(x)[:2], [kernel.shape[-1]]], axis=0))


def _input_grads(dxw, x, kernel):
    """Gradients of x @ kernel from d(xw) [B, T, G]: (dx [B, T, E], dkernel [E, G])."""
    dx = tf.reshape(tf.matmul(_flat(dxw), kernel, transpose_b=True), tf.shape(x))
    return dx, tf.matmul(_flat(x), _flat(dxw), transpose_a=True)


def _recurrent_grad(hprev, dz):
    """d(h @ U) summed over steps: hprev^T @ dz, [H, G], with hprev = [h0, h_1 .. h_{T-1}] [B, T, H]."""
    return tf.matmul(_flat(hprev), _flat(dz), transpose_a=True)


def _batch_major(loop):
    """A time-major TF loop function wrapped to take and return batch-major sequences (rank-3 tensors):
    the layers are written batch-major, as Keras lays sequences out and the native loops take them."""
    def swap(t):
        return tf.transpose(t, [1, 0, 2]) if tf.is_tensor(t) and t.shape.rank == 3 else t

    return lambda *args: tuple(swap(t) for t in tf.nest.flatten(loop(*[swap(a) for a in args])))


def _tf_loops(x, graph, xla):
    """The TensorFlow loops, `xla` = (forward, backward) when `_use_xla(x)` else `graph`, batch-major; the
    forward's outputs end with hprev = None (the caller shifts hs instead)."""
    fwd, bwd = xla if _use_xla(x) else graph
    fwd = _batch_major(fwd)
    return (lambda *args: (*fwd(*args), None)), _batch_major(bwd)


def _compile(fn):
    """`fn` as a TensorFlow graph function (any shapes) and as an XLA-compiled one: (graph_fn, xla_fn)."""
    return (tf.function(fn, autograph=False, reduce_retracing=True),
            tf.function(fn, jit_compile=True, autograph=False))


def _native_ops():
    """The native loop ops, or None (switched off, or no compiler: see tfchar.native)."""
    return native.ops() if USE_NATIVE else None


def _use_xla(x):
    """XLA only inside a traced function with static shapes (training steps), so that eager calls and
    variable-length calls (sampling, evaluation) never compile once per new sequence length."""
    return USE_XLA and tf.inside_function() and x.shape.is_fully_defined()


def _untaped(*tensors):
    """The tensors cut from any recording GradientTape: the loops inside `tf.custom_gradient` are
    differentiated by hand, so autodiff must not record them (nor build its accumulators, which XLA
    cannot compile)."""
    return [tf.stop_gradient(t) for t in tensors]


# ==========================================================================================================
# LSTM. Keras gate order (i, f, c, o): z = x @ W + b + h @ U; i, f, o = sigmoid, g = tanh;
# c' = f * c + i * g; h' = o * tanh(c').


def _lstm_derivatives(i, f, g, o, c_prev, tc):
    """Per-step factors of the backward pass, [..., 6H]: with dh the total gradient of h' and
    dc = dc_next + dh * P5, the gradient of z = [i f g o] pre-activations is [dc, dc, dc, dh] * P[:4H],
    and dc_prev = dc * f. (i f g o: activated gates; tc = tanh(c').)"""
    return tf.concat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tc * o * (1 - o),
                      o * (1 - tc * tc), f], axis=-1)


def _lstm_forward(xw, h0, c0, u, save, H):
    """xw [T, B, 4H] -> (hs [T, B, H], c_T [B, H], saved): with `save`, P [T, B, 6H] backward factors;
    without, the cell states cs [T, B, H] (enough to recompute P)."""
    n = _steps(xw)

    def step(t, h, c, hs, saved):
        z = xw[t] + tf.matmul(h, u)  # [B, 4H]
        i, f, g, o = tf.split(z, 4, axis=1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c_new = f * c + i * g
        tc = tf.tanh(c_new)
        h = o * tc
        # the factors are computed here, while the gates are at hand, so the backward loop is a few multiplies
        saved = saved.write(t, _lstm_derivatives(i, f, g, o, c, tc) if save else c_new)
        return h, c_new, hs.write(t, h), saved

    B = h0.shape[0]
    _, c, hs, saved = _loop(step, n, (h0, c0, _ta(n, B, H), _ta(n, B, 6 * H if save else H)))
    return hs.stack(), c, saved.stack()


def _lstm_backward(dhs, dc_last, ps, u, H):
    """Backward through the recurrence: (dz [T, B, 4H] = d(xw), db [4H], dh0, dc0)."""
    n = _steps(dhs)
    B = dc_last.shape[0]

    def step(s, dh_next, dc, db, dzs):
        t = n - 1 - s
        p = ps[t]  # [B, 6H]
        dh = dhs[t] + dh_next
        dc = dc + dh * p[:, 4 * H:5 * H]
        dz = tf.concat([dc, dc, dc, dh], axis=1) * p[:, :4 * H]  # [B, 4H]
        return tf.matmul(dz, u, transpose_b=True), dc * p[:, 5 * H:], db + tf.reduce_sum(dz, 0), dzs.write(t, dz)

    dh0, dc0, db, dzs = _loop(step, n, (tf.zeros_like(dhs[0]), dc_last, tf.zeros_like(u[0]), _ta(n, B, 4 * H)))
    return dzs.stack(), db, dh0, dc0


_LSTM_FWD, _LSTM_FWD_XLA = _compile(_lstm_forward)
_LSTM_BWD, _LSTM_BWD_XLA = _compile(_lstm_backward)


def _lstm_loops(x):
    """Batch-major (forward, backward) with the signatures of `_lstm_forward`/`_lstm_backward`; the forward
    also returns the states before each step, hprev [B, T, H] (the native loops keep them; None: shift hs)."""
    ops = _native_ops()
    if ops is None:
        return _tf_loops(x, (_LSTM_FWD, _LSTM_BWD), (_LSTM_FWD_XLA, _LSTM_BWD_XLA))
    return (lambda xw, h0, c0, u, save, H: ops.tfchar_lstm_forward(xw, h0, c0, u, save=save),
            lambda dhs, dc_last, ps, u, H: ops.tfchar_lstm_backward(dhs, dc_last, ps, u))


def lstm(x, kernel, recurrent_kernel, bias, h0, c0, training=True):
    """The LSTM layer on a whole sequence, with a hand-written backward pass.

    Args:
        x: float32[B, T, E] inputs.
        kernel, recurrent_kernel, bias: float32[E, 4H], [H, 4H], [4H] (Keras layout, gates i f c o).
        h0, c0: float32[B, H] initial state.
        training: save the backward pass's per-step factors; if False the forward saves only the states
            and a gradient, should one be taken anyway, recomputes them.

    Returns:
        (hs float32[B, T, H], c_T float32[B, H]).
    """
    fwd, bwd = _lstm_loops(x)
    units = recurrent_kernel.shape[0]

    @tf.custom_gradient
    def run(x, kernel, recurrent_kernel, bias, h0, c0):
        xw = _projection(x, kernel, bias)  # [B, T, 4H]
        hs, c_last, saved, hprev = fwd(*_untaped(xw, h0, c0, recurrent_kernel), bool(training), units)

        def grad(dout, dc_last):
            hp = _shift_in(h0, hs) if hprev is None else hprev
            factors = saved
            if not training:  # recompute the gates from the saved states
                cs = saved
                z = xw + tf.reshape(tf.matmul(_flat(hp), recurrent_kernel), tf.shape(xw))
                i, f, g, o = tf.split(z, 4, axis=2)
                i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
                factors = _lstm_derivatives(i, f, g, o, _shift_in(c0, cs), tf.tanh(cs))
            if dc_last is None:
                dc_last = tf.zeros_like(c0)
            dz, db, dh0, dc0 = bwd(dout, dc_last, factors, recurrent_kernel, units)
            dx, dkernel = _input_grads(dz, x, kernel)
            return dx, dkernel, _recurrent_grad(hp, dz), db, dh0, dc0

        return (hs, c_last), grad

    return run(x, kernel, recurrent_kernel, bias, h0, c0)


# ==========================================================================================================
# GRU, reset_after (the cuDNN variant, Keras' default). Gates (z, r, n):
# x @ W + b_in = [xz, xr, xn]; h @ U + b_rec = [rz, rr, rn];
# z = sigmoid(xz + rz), r = sigmoid(xr + rr), n = tanh(xn + r * rn), h' = z * h + (1 - z) * n.


def _gru_derivatives(h_prev, z, r, nn, rn):
    """Per-step factors of the backward pass, [..., 5H]. With dh the total gradient of h' and
    D = [dh, dh, dh, dh, dh] * P: d(h @ U + b_rec) = D[:3H], d(xw) = [D[:2H], D[4H:]],
    dh_prev = D[3H:4H] + d(h @ U + b_rec) @ U^T. (z r: gates; nn = candidate; rn = recurrent part of n.)"""
    dz = (h_prev - nn) * z * (1 - z)
    dn = (1 - z) * (1 - nn * nn)
    return tf.concat([dz, dn * rn * r * (1 - r), dn * r, z, dn], axis=-1)


def _gru_forward(xw, h0, u, b_rec, save, H):
    """xw [T, B, 3H] -> (hs [T, B, H], P [T, B, 5H] backward factors, or [0] if not save)."""
    n = _steps(xw)

    def step(t, h, hs, ps):
        xz, xr, xn = tf.split(xw[t], 3, axis=1)
        rz, rr, rn = tf.split(tf.matmul(h, u) + b_rec, 3, axis=1)
        z = tf.sigmoid(xz + rz)
        r = tf.sigmoid(xr + rr)
        nn = tf.tanh(xn + r * rn)
        if save:
            ps = ps.write(t, _gru_derivatives(h, z, r, nn, rn))
        h = nn + z * (h - nn)
        return h, hs.write(t, h), ps

    B = h0.shape[0]
    _, hs, ps = _loop(step, n, (h0, _ta(n, B, H), _ta(n if save else 0, B, 5 * H)))
    return hs.stack(), ps.stack() if save else tf.zeros([0])


def _gru_backward(dhs, ps, u, H):
    """Backward: (d(xw) [T, B, 3H], d(h @ U + b_rec) [T, B, 3H], d(b_in) [3H], d(b_rec) [3H], dh0)."""
    n = _steps(dhs)
    B = dhs.shape[1]

    def step(s, dh_next, db_in, db_rec, dxws, drecs):
        t = n - 1 - s
        dh = dhs[t] + dh_next
        d = tf.concat([dh, dh, dh, dh, dh], axis=1) * ps[t]  # [B, 5H]
        drec = d[:, :3 * H]
        dxw = tf.concat([d[:, :2 * H], d[:, 4 * H:]], axis=1)
        return (d[:, 3 * H:4 * H] + tf.matmul(drec, u, transpose_b=True), db_in + tf.reduce_sum(dxw, 0),
                db_rec + tf.reduce_sum(drec, 0), dxws.write(t, dxw), drecs.write(t, drec))

    zero_b = tf.zeros_like(u[0])
    dh0, db_in, db_rec, dxws, drecs = _loop(step, n, (tf.zeros_like(dhs[0]), zero_b, zero_b, _ta(n, B, 3 * H),
                                                      _ta(n, B, 3 * H)))
    return dxws.stack(), drecs.stack(), db_in, db_rec, dh0


_GRU_FWD, _GRU_FWD_XLA = _compile(_gru_forward)
_GRU_BWD, _GRU_BWD_XLA = _compile(_gru_backward)


def _gru_loops(x):
    """Batch-major (forward, backward) with the signatures of `_gru_forward`/`_gru_backward`; the forward
    also returns hprev [B, T, H] or None (see `_lstm_loops`)."""
    ops = _native_ops()
    if ops is None:
        return _tf_loops(x, (_GRU_FWD, _GRU_BWD), (_GRU_FWD_XLA, _GRU_BWD_XLA))
    return (lambda xw, h0, u, b_rec, save, H: ops.tfchar_gru_forward(xw, h0, u, b_rec, save=save),
            lambda dhs, ps, u, H: ops.tfchar_gru_backward(dhs, ps, u))


def gru(x, kernel, recurrent_kernel, bias, h0, training=True):
    """The GRU (reset_after) layer on a whole sequence, with a hand-written backward pass.

    Args:
        x: float32[B, T, E] inputs.
        kernel, recurrent_kernel: float32[E, 3H], [H, 3H] (Keras layout, gates z r h).
        bias: float32[2, 3H], Keras' [input bias, recurrent bias].
        h0: float32[B, H] initial state.
        training: save the gates for the backward pass (see `lstm`).

    Returns:
        hs float32[B, T, H].
    """
    fwd, bwd = _gru_loops(x)
    units = recurrent_kernel.shape[0]

    @tf.custom_gradient
    def run(x, kernel, recurrent_kernel, bias, h0):
        xw = _projection(x, kernel, bias[0])  # [B, T, 3H]
        hs, saved, hprev = fwd(*_untaped(xw, h0, recurrent_kernel, bias[1]), bool(training), units)

        def grad(dout):
            hp = _shift_in(h0, hs) if hprev is None else hprev
            factors = saved
            if not training:  # recompute the gates from the saved states
                rec = tf.reshape(tf.matmul(_flat(hp), recurrent_kernel), tf.shape(xw)) + bias[1]
                xz, xr, xn = tf.split(xw, 3, axis=2)
                rz, rr, rn = tf.split(rec, 3, axis=2)
                z, r = tf.sigmoid(xz + rz), tf.sigmoid(xr + rr)
                factors = _gru_derivatives(hp, z, r, tf.tanh(xn + r * rn), rn)
            dxw, drec, db_in, db_rec, dh0 = bwd(dout, factors, recurrent_kernel, units)
            dx, dkernel = _input_grads(dxw, x, kernel)
            return dx, dkernel, _recurrent_grad(hp, drec), tf.stack([db_in, db_rec]), dh0

        return hs, grad

    return run(x, kernel, recurrent_kernel, bias, h0)


# ==========================================================================================================
# SimpleRNN (tanh): h' = tanh(x @ W + b + h @ U).


def _rnn_forward(xw, h0, u):
    """xw [T, B, H] -> hs [T, B, H]."""
    n = _steps(xw)

    def step(t, h, hs):
        h = tf.tanh(xw[t] + tf.matmul(h, u))
        return h, hs.write(t, h)

    _, hs = _loop(step, n, (h0, _ta(n, *h0.shape)))
    return hs.stack()


def _rnn_backward(dhs, hs, u):
    """Backward: (d(xw) [T, B, H], db [H], dh0)."""
    n = _steps(dhs)

    def step(s, dh_next, db, das):
        t = n - 1 - s
        h = hs[t]
        da = (dhs[t] + dh_next) * (1 - h * h)  # [B, H]
        return tf.matmul(da, u, transpose_b=True), db + tf.reduce_sum(da, 0), das.write(t, da)

    dh0, db, das = _loop(step, n, (tf.zeros_like(dhs[0]), tf.zeros_like(u[0]), _ta(n, *dhs.shape[1:])))
    return das.stack(), db, dh0


_RNN_FWD, _RNN_FWD_XLA = _compile(_rnn_forward)
_RNN_BWD, _RNN_BWD_XLA = _compile(_rnn_backward)


def _rnn_loops(x):
    """Batch-major (forward, backward) with the signatures of `_rnn_forward`/`_rnn_backward`; the forward
    also returns hprev [B, T, H] or None (see `_lstm_loops`)."""
    ops = _native_ops()
    if ops is None:
        return _tf_loops(x, (_RNN_FWD, _RNN_BWD), (_RNN_FWD_XLA, _RNN_BWD_XLA))
    return ops.tfchar_rnn_forward, ops.tfchar_rnn_backward


def simple_rnn(x, kernel, recurrent_kernel, bias, h0):
    """The tanh RNN layer on a whole sequence, with a hand-written backward pass.

    Args:
        x: float32[B, T, E] inputs.
        kernel, recurrent_kernel, bias: float32[E, H], [H, H], [H].
        h0: float32[B, H] initial state.

    Returns:
        hs float32[B, T, H].
    """
    fwd, bwd = _rnn_loops(x)

    @tf.custom_gradient
    def run(x, kernel, recurrent_kernel, bias, h0):
        xw = _projection(x, kernel, bias)  # [B, T, H]
        hs, hprev = fwd(*_untaped(xw, h0, recurrent_kernel))

        def grad(dout):
            hp = _shift_in(h0, hs) if hprev is None else hprev
            da, db, dh0 = bwd(dout, hs, recurrent_kernel)
            dx, dkernel = _input_grads(da, x, kernel)
            return dx, dkernel, _recurrent_grad(hp, da), db, dh0

        return hs, grad

    return run(x, kernel, recurrent_kernel, bias, h0)


# ==========================================================================================================
# Keras layers


class _FusedMixin:
    """The fast path runs only the computation it implements; anything else is Keras' own loop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The native loops are TensorFlow ops XLA cannot compile: keep `model.fit(jit_compile="auto")` off XLA.
        self.supports_jit = False

    def _fusable(self, sequences, mask, training):
        cell = self.cell
        return (mask is None and not self.go_backwards and tf.is_tensor(sequences)
                and sequences.dtype == tf.float32 and cell.compute_dtype == "float32"
                and not (training and (cell.dropout or cell.recurrent_dropout))
                and cell.activation is keras.activations.tanh
                and getattr(cell, "recurrent_activation", keras.activations.sigmoid) is keras.activations.sigmoid
                and getattr(cell, "reset_after", True))

    def _weights(self, gate_width):
        cell = self.cell
        bias = cell.bias if cell.use_bias else tf.zeros(gate_width)
        return [tf.convert_to_tensor(w) for w in (cell.kernel, cell.recurrent_kernel, bias)]

    def _states(self, initial_state):
        """The initial states as tensors. A stateful layer passes its state variables, which it assigns the
        final states right after the forward: the backward pass must see the values the forward started from
        (the TF loops' backward reads h0 to rebuild the states before each step)."""
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        return [tf.convert_to_tensor(s) for s in states]


@keras.saving.register_keras_serializable(package="tfchar")
class LSTM(_FusedMixin, keras.layers.LSTM):
    """`keras.layers.LSTM` with a fast CPU implementation (same weights, config and state handling).

    Args:
        units: H, hidden units.
        **kwargs: every `keras.layers.LSTM` argument (`return_sequences`, `stateful`, `kernel_initializer`,
            ...). Masking, `go_backwards`, in-layer dropout and non-default activations run Keras' loop.

    Example:
        layer = FusedLSTM(128, return_sequences=True)
        y = layer(tf.zeros([2, 5, 8]))  # [B, T, H] = [2, 5, 128]
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fusable(sequences, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0, c0 = self._states(initial_state)
        out, c = lstm(sequences, *self._weights([4 * self.units]), h0, c0, training=bool(training))
        h = out[:, -1]
        return h, out, [h, c]


@keras.saving.register_keras_serializable(package="tfchar")
class GRU(_FusedMixin, keras.layers.GRU):
    """`keras.layers.GRU` (reset_after=True, the cuDNN-compatible default) with a fast CPU implementation.

    Args:
        units: H, hidden units.
        **kwargs: every `keras.layers.GRU` argument. `reset_after=False`, masking, `go_backwards`, in-layer
            dropout and non-default activations run Keras' loop.

    Example:
        layer = FusedGRU(128, return_sequences=True, stateful=True)
        y = layer(tf.zeros([2, 5, 8]))  # [B, T, H]
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fusable(sequences, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0 = self._states(initial_state)[0]
        out = gru(sequences, *self._weights([2, 3 * self.units]), h0, training=bool(training))
        h = out[:, -1]
        return h, out, [h]


@keras.saving.register_keras_serializable(package="tfchar")
class SimpleRNN(_FusedMixin, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` (tanh) with a fast CPU implementation.

    Args:
        units: H, hidden units.
        **kwargs: every `keras.layers.SimpleRNN` argument; masking, `go_backwards`, in-layer dropout and
            other activations run Keras' loop.

    Example:
        layer = FusedRNN(128, return_sequences=True)
        y = layer(tf.zeros([2, 5, 8]))  # [B, T, H]
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._fusable(sequences, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        h0 = self._states(initial_state)[0]
        out = simple_rnn(sequences, *self._weights([self.units]), h0)
        h = out[:, -1]
        return h, out, [h]


# Keras' .weights.h5 files address a model's layers by snake-cased class name (`layers/lstm`, `layers/gru_1`,
# ...), not by layer name, so the fused classes carry the Keras class names and files load interchangeably.
# The Fused* aliases are for readers; the registered names are "tfchar>LSTM", "tfchar>GRU", "tfchar>SimpleRNN".
FusedLSTM, FusedGRU, FusedRNN = LSTM, GRU, SimpleRNN
FUSED = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
