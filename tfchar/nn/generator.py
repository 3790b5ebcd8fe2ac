"""The exportable generator: the trained char-RNN as plain TF ops plus the sampling loop, in one tf.Module.

Keras recurrent layers lower to TensorList ops that TFLite builtins cannot run, so this module rewrites
each cell with matmuls on the trained weights (read by layer name: `embedding`, `rnn_i`, `logits`,
in Keras gate order, and the optional `residual_i` and `norm_i` between layers; dropout is off in
inference) and runs time with `tf.while_loop`, which converts to TFLite `WHILE`. Every runtime
runs these signatures (SavedModel, TFLite, LiteRT.js, and in process), so a seed means the same text
everywhere:

    generate        prime code points [N], length, knobs, seed -> code points [length]
    generate_until  the same, plus a stop code point: ends after its first occurrence (included)
    generate_chunk  static shapes only: K prime code points in, K code points out per call, the state
                    carried in and out; chained calls give exactly `generate_until`'s code points
    step            one character for B streams (scoring, apps that sample themselves)
    vocabulary      the code point of each token id

`generate` and `generate_until` run the very loop `generate_chunk` runs, K characters at a time, so the
three agree by construction. The loop body has static shapes (batch 1, a K-wide buffer): TFLite then
prepares it once, not once per character.

The carried state of `generate_chunk` is `state` (float32[1, S], packed as `step`'s) and `carry` (int32[2]:
the generator state, 0 = not seeded yet, then the last token id + 1 still to be read, 0 = none); zeros
start a generation.

Packed state S: for each layer in order, LSTM [h, c], GRU [h], RNN [h], each H wide.
Shapes: B batch, N prime length, K chunk, V vocabulary, E embedding, H hidden, G gates (LSTM 4, GRU 3, RNN 1).

Example:
    gen = CharGenerator.from_keras(model, vocab)
    out = gen.generate(tf.constant([ord(c) for c in "ROMEO:"]), 200, 0.8, 0, 1.0, 42)
    "".join(map(chr, out["codepoints"].numpy()))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfchar.core.choices import UNITS
from tfchar.ops import draw
from tfchar.ops import rng as rng_ops
from tfchar.ops.cells import GATES, STATES_PER_LAYER, cell_step, layer_norm

DEFAULT_CHUNK = 64  # K: code points per generate_chunk call (the export option export.chunk_size)
NO_STOP = -1  # the stop code point that means "no stop"
FOLD_LIMIT = 1 << 20  # floats (4 MB): a larger layer-0 input table is folded only if no larger than what it replaces
CARRY = 2  # generate_chunk's carry: [generator state (0 = not seeded), last token id + 1 (0 = none)]


def keras_weights(model) -> dict:
    """The trained arrays of a char-RNN Keras model, by the layer-name contract of `tfchar.models`."""
    rnn = sorted((l for l in model.layers if l.name.startswith("rnn_")), key=lambda l: int(l.name[4:]))
    names = {l.name: l for l in model.layers}
    norms = [names.get(f"norm_{i}") for i in range(len(rnn))]
    return {"embedding": model.get_layer("embedding").get_weights()[0],
            "layers": [tuple(l.get_weights()) for l in rnn],  # (kernel [in, GH], recurrent [H, GH], bias)
            "logits": tuple(model.get_layer("logits").get_weights()),  # (kernel [H, V], bias [V])
            "residual": [f"residual_{i}" in names for i in range(len(rnn))],  # output += input
            "norms": [None if n is None else (*n.get_weights(), float(n.epsilon)) for n in norms]}  # (gamma, beta, epsilon)


def _derived(weights: dict) -> dict:
    """Arrays the graph uses, from Keras arrays.

    Layer 0's input projection (and input bias) is folded into a [V, GH] lookup table, so a token's gate
    input is a row gather instead of an embedding lookup plus a matmul, unless the table is large (over
    FOLD_LIMIT floats) and larger than the embedding and the kernel it replaces: a large vocabulary's
    [6562, 2048] table is 32 times its [6562, 64] embedding, and the TFLite conversion holds several copies
    of every weight.
    """
    emb = np.asarray(weights["embedding"], np.float32)
    out = {"layers": []}
    for i, (kernel, recurrent, bias) in enumerate(weights["layers"]):
        bias = np.asarray(bias, np.float32)
        layer = {"recurrent_kernel": np.asarray(recurrent, np.float32)}
        in_bias = bias
        if bias.ndim == 2:  # GRU reset_after: [input bias, recurrent bias], each [3H]
            in_bias, layer["recurrent_bias"] = bias[0], bias[1]
        if i == 0 and folds(*emb.shape, np.shape(kernel)[1]):
            layer["input_table"] = emb @ np.asarray(kernel, np.float32) + in_bias  # [V, GH]
            if _residual(weights, 0):  # the first layer adds its input: the embedding row itself
                layer["embedding"] = emb  # [V, E = H]
        elif i == 0:
            layer["embedding"], layer["kernel"], layer["input_bias"] = emb, np.asarray(kernel, np.float32), in_bias
        else:
            layer["kernel"], layer["input_bias"] = np.asarray(kernel, np.float32), in_bias
        norm = (weights.get("norms") or [None] * (i + 1))[i]
        if norm is not None:
            layer["norm_gamma"], layer["norm_beta"] = (np.asarray(a, np.float32) for a in norm[:2])
        out["layers"].append(layer)
    out["logits_kernel"], out["logits_bias"] = (np.asarray(w, np.float32) for w in weights["logits"])
    return out


def folds(vocab_size: int, embedding_dim: int, gate_width: int) -> bool:
    """Whether layer 0 reads a [V, GH] input table: when it is small, or no larger than the [V, E] embedding
    plus the [E, GH] kernel it replaces."""
    table = vocab_size * gate_width
    return table <= FOLD_LIMIT or table <= (vocab_size + gate_width) * embedding_dim


def _residual(weights: dict, i: int) -> bool:
    return bool((weights.get("residual") or [False] * (i + 1))[i])


def _norm_epsilons(weights: dict) -> list:
    """Each layer's layer-norm epsilon, or None where the layer has no norm."""
    return [None if n is None else float(n[2]) for n in (weights.get("norms") or [None] * len(weights["layers"]))]


class Position(NamedTuple):
    """Where one generation stands: all it needs to continue exactly."""

    parts: list  # recurrent state parts, each float32[1, H]
    rng: tf.Tensor  # int64[1, 1] generator state
    token: tf.Tensor  # int32[1] last token id + 1, still to be read (0 = none yet)


class CharGenerator(tf.Module):
    """Step and sampling loop of a trained char-RNN, exportable to SavedModel and TFLite builtins.

    Args:
        weights: `keras_weights(model)`-style dict of arrays.
        codepoints: int32[V], the code point (or byte value) of each token id, as `Vocab.codepoints`.
        unit: "char" or "byte" (then code points in and out of `generate` are byte values).
        chunk_size: K, code points per `generate_chunk` call (and per turn of `generate`'s outer loop).
    """

    def __init__(self, weights: dict, codepoints, unit: str = "char", chunk_size: int = DEFAULT_CHUNK,
                 name: str = "char_generator"):
        super().__init__(name=name)
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
        if int(chunk_size) <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        hidden, gh = np.shape(weights["layers"][0][1])
        self.cell = {g: c for c, g in GATES.items()}[gh // hidden]
        self.hidden = int(hidden)
        self.num_layers = len(weights["layers"])
        self.state_size = self.num_layers * STATES_PER_LAYER[self.cell] * self.hidden
        self.vocab_size = int(np.shape(weights["logits"][1])[0])
        self.unit = unit
        self.chunk_size = int(chunk_size)
        self.residual = [_residual(weights, i) for i in range(self.num_layers)]
        self.norm_epsilon = _norm_epsilons(weights)
        d = _derived(weights)
        var = lambda a, n: tf.Variable(a, trainable=False, name=n)
        self.layers = [{k: var(v, f"rnn_{i}/{k}") for k, v in layer.items()} for i, layer in enumerate(d["layers"])]
        self.logits_kernel = var(d["logits_kernel"], "logits/kernel")
        self.logits_bias = var(d["logits_bias"], "logits/bias")
        self.codepoints = var(np.asarray(codepoints, np.int32), "codepoints")
        self.byte_unit = var(np.int32(unit == "byte"), "byte_unit")
        self._make_functions()

    @classmethod
    def from_keras(cls, model, vocab, chunk_size: int = DEFAULT_CHUNK) -> "CharGenerator":
        """A generator holding a copy of `model`'s current weights (`vocab`: a `tfchar.vocab.Vocab`)."""
        return cls(keras_weights(model), vocab.codepoints, vocab.unit, chunk_size)

    def assign_from_keras(self, model) -> None:
        """Copy `model`'s current weights in place (traced functions stay valid)."""
        d = _derived(keras_weights(model))
        for layer_vars, layer in zip(self.layers, d["layers"]):
            for k, v in layer.items():
                layer_vars[k].assign(v)
        self.logits_kernel.assign(d["logits_kernel"])
        self.logits_bias.assign(d["logits_bias"])

    def signatures(self) -> dict:
        """Concrete functions to export; `serving_default` is `generate`."""
        gen = self.generate.get_concrete_function()
        return {"serving_default": gen, "generate": gen,
                "generate_until": self.generate_until.get_concrete_function(),
                "generate_chunk": self.generate_chunk.get_concrete_function(),
                "step": self.step.get_concrete_function(),
                "vocabulary": self.vocabulary.get_concrete_function()}

    def _make_functions(self):
        """tf.functions with the state width S and the chunk size K in their input shapes (traced without
        autograph: the loops are explicit, and tracing is several times faster)."""
        spec, k = tf.TensorSpec, self.chunk_size
        function = lambda f, specs: tf.function(f, input_signature=specs, autograph=False)
        scalar = lambda dtype, name: spec([], dtype, name=name)
        knobs = [scalar(tf.float32, "temperature"), scalar(tf.int32, "top_k"), scalar(tf.float32, "top_p"),
                 scalar(tf.int32, "seed")]
        whole = [spec([None], tf.int32, name="prime"), scalar(tf.int32, "length"), *knobs]
        self.generate = function(self._generate, whole)
        self.generate_until = function(self._generate_until, [*whole, scalar(tf.int32, "stop")])
        self.generate_chunk = function(self._generate_chunk, [
            spec([k], tf.int32, name="prime"), scalar(tf.int32, "prime_length"), scalar(tf.int32, "length"),
            spec([1, self.state_size], tf.float32, name="state"), spec([CARRY], tf.int32, name="carry"),
            *knobs, scalar(tf.int32, "stop")])
        self.step = function(self._step, [spec([None], tf.int32, name="token"),
                                           spec([None, self.state_size], tf.float32, name="state")])
        self.vocabulary = function(self._vocabulary, [])

    # ------------------------------------------------------------------------------------ the network

    def _unpack(self, state):
        """Packed [B, S] -> list of [B, H] (loops carry them apart: no slicing and concatenating per step)."""
        return [state[:, j * self.hidden:(j + 1) * self.hidden] for j in range(self.state_size // self.hidden)]

    def _cell(self, i, token, x, parts):
        """Layer i, one time step: its input (token int32[B] where layer 0 reads a table, else x [B, E or H])
        and its [B, H] state parts."""
        layer = self.layers[i]
        if "input_table" in layer:
            gx = tf.gather(layer["input_table"], token)  # [B, GH]
        else:
            gx = tf.matmul(x, layer["kernel"]) + layer["input_bias"]  # [B, GH]
        gh = tf.matmul(parts[0], layer["recurrent_kernel"])  # [B, GH]
        if self.cell == "gru":  # Keras reset_after: the reset gate scales the recurrent part, bias included
            gh = gh + layer["recurrent_bias"]
        return cell_step(self.cell, gx, gh, parts)

    def _between(self, i, x, h):
        """What follows layer i's cell: its input x added (residual), then layer norm. h: [B, H] -> [B, H]."""
        layer = self.layers[i]
        if self.residual[i]:
            h = h + x
        if self.norm_epsilon[i] is not None:
            h = layer_norm(h, layer["norm_gamma"], layer["norm_beta"], self.norm_epsilon[i])
        return h

    def _advance(self, token, parts):
        """Read one token per row: int32[B], state parts -> top layer output [B, H], new state parts."""
        n = STATES_PER_LAYER[self.cell]
        x, new = None, []
        if "input_table" not in self.layers[0] or self.residual[0]:
            x = tf.gather(self.layers[0]["embedding"], token)  # [B, E]: layer 0's input, gathered once
        for i in range(self.num_layers):
            h, p = self._cell(i, token, x, parts[i * n:(i + 1) * n])
            x = self._between(i, x, h)
            new += p
        return x, new

    def _logits(self, x):
        return tf.matmul(x, self.logits_kernel) + self.logits_bias  # [B, V]

    # ------------------------------------------------------------------------------------ reading

    def _known_ids(self, codepoints, count):
        """The token ids of codepoints[:count] (int32[N]) that are in the vocabulary, first, in order; unknown
        code points are skipped. Returns (ids int32[N], how many are valid)."""
        n = tf.size(codepoints)
        match = tf.equal(codepoints[:, None], self.codepoints[None, :])  # [N, V]
        known = tf.logical_and(tf.reduce_any(match, axis=1), tf.range(n) < count)  # [N]
        ids = tf.argmax(match, axis=1, output_type=tf.int32)  # [N]
        slot = tf.where(known, tf.cumsum(tf.cast(known, tf.int32)) - 1, n)  # [N]; unknown ones go to slot N
        return tf.scatter_nd(slot[:, None], ids, n[None] + 1)[:n], tf.reduce_sum(tf.cast(known, tf.int32))

    def _read(self, ids, n, pos: Position) -> Position:
        """Read the pending token, then ids[:n] but the last, which becomes the pending token."""
        has = tf.cast(pos.token[0] > 0, tf.int32)
        seq = tf.concat([tf.maximum(pos.token - 1, 0), ids], 0)  # [1 + N]: pending token, then the ids
        start, last = 1 - has, n  # read seq[start:last]; seq[last] is read by whatever comes next

        def body(t, *parts):
            return (t + 1, *self._advance(seq[t][None], list(parts))[1])

        parts = tf.while_loop(lambda t, *_: t < last, body, (start, *pos.parts))[1:]
        token = tf.where(last >= start, seq[last][None] + 1, pos.token)
        return Position(list(parts), pos.rng, token)

    # ------------------------------------------------------------------------------------ sampling

    def _sample(self, n, pos: Position, knobs: draw.Settings, pick, stop):
        """Sample up to n <= K tokens after the pending token, ending early after a `stop` token id (None:
        no stop check at all, as `generate` has none: each op here runs once per character).

        Returns (ids int32[K], the first `valid` of which are new, valid, Position after them).
        """
        size = self.chunk_size

        def body(t, n, token, rng, buf, *parts):
            x, parts = self._advance(token, list(parts))
            rng = rng_ops.next_rng64(rng)
            token = pick(self._logits(x), rng_ops.top_bits(rng), knobs)  # [1]
            buf = tf.where(tf.range(size) == t, token, buf)  # buf[t] = token
            if stop is not None:
                n = tf.where(tf.equal(token[0], stop), t + 1, n)  # a stop token ends the loop after it
            return (t + 1, n, token, rng, buf, *parts)

        t, _, token, rng, buf, *parts = tf.while_loop(
            lambda t, n, *_: t < n, body,
            (tf.constant(0), n, pos.token - 1, pos.rng, tf.zeros([size], tf.int32), *pos.parts))
        return buf, t, Position(parts, rng, token + 1)

    def _by_mode(self, knobs: draw.Settings, fn):
        """fn(pick) with the draw shortcut of knobs.mode (a graph branch, taken once per call). Two loops, not
        three: greedy runs FULL's (exact for it too); each loop body is stored once per signature, with its
        weights' quantization parameters in the int8 file."""
        return tf.cond(knobs.mode == draw.TRUNCATED, lambda: fn(draw.pick_truncated), lambda: fn(draw.pick_full))

    def _start(self, pos: Position, n) -> Position:
        """Before sampling n tokens: nothing read at all reads as if after token id 0 (an empty prime)."""
        return pos._replace(token=tf.where(tf.logical_and(n > 0, pos.token == 0), 1, pos.token))

    def _stop_id(self, stop):
        """The token id of code point `stop`, or -1 (never sampled) for NO_STOP or a code point not in the
        vocabulary; None for `generate`, which has no stop."""
        if stop is None:
            return None
        match = tf.equal(self.codepoints, stop)  # [V]
        return tf.where(tf.reduce_any(match), tf.argmax(match, output_type=tf.int32), -1)

    # ------------------------------------------------------------------------------------ signatures

    def _generate(self, prime, length, temperature, top_k, top_p, seed):
        """Prime with code points int32[N], then sample `length` code points, all inside the graph."""
        return self._generate_until(prime, length, temperature, top_k, top_p, seed, None)

    def _generate_until(self, prime, length, temperature, top_k, top_p, seed, stop):
        """`generate`, ending after the first `stop` code point (included): code points int32[<= length]."""
        length = tf.maximum(length, 0)
        zero = self._unpack(tf.zeros([1, self.state_size]))
        pos = Position(zero, tf.cast(rng_ops.seed_rng(tf.reshape(seed, [1, 1])), tf.int64), tf.zeros([1], tf.int32))
        pos = self._start(self._read(*self._known_ids(prime, tf.size(prime)), pos), length)
        knobs = draw.settings(temperature, top_k, top_p, self.vocab_size)
        stop = self._stop_id(stop)

        def run(pick):
            def body(done, end, out, rng, token, *parts):
                n = tf.minimum(self.chunk_size, end - done)
                buf, valid, p = self._sample(n, Position(list(parts), rng, token), knobs, pick, stop)
                out += tf.pad(buf[:valid], [[done, length - done - valid]])  # out[done:done + valid] = buf
                if stop is not None:  # the last token read was the stop: end here (it may fill the chunk)
                    end = tf.where(tf.logical_and(valid > 0, p.token[0] - 1 == stop), done + valid, end)
                return (done + valid, end, out, p.rng, p.token, *p.parts)

            init = (tf.constant(0), length, tf.zeros([length], tf.int32), pos.rng, pos.token, *pos.parts)
            return tf.while_loop(lambda done, end, *_: done < end, body, init)[:3]

        done, _, out = self._by_mode(knobs, run)
        return {"codepoints": tf.gather(self.codepoints, out[:done])}

    def _generate_chunk(self, prime, prime_length, length, state, carry, temperature, top_k, top_p, seed, stop):
        """Read prime[:prime_length], then sample up to `length` (<= K) code points; see the module docstring."""
        size = self.chunk_size
        rng = tf.cast(tf.reshape(carry[0], [1, 1]), tf.int64)
        fresh = tf.logical_or(rng <= 0, rng >= rng_ops.MODULUS)  # 0: not seeded yet (other values: invalid)
        seeded = tf.cast(rng_ops.seed_rng(tf.reshape(seed, [1, 1])), tf.int64)
        pos = Position(self._unpack(state), tf.where(fresh, seeded, rng), tf.clip_by_value(carry[1:], 0, self.vocab_size))
        pos = self._read(*self._known_ids(prime, tf.clip_by_value(prime_length, 0, size)), pos)
        n = tf.clip_by_value(length, 0, size)
        pos = self._start(pos, n)
        knobs = draw.settings(temperature, top_k, top_p, self.vocab_size)
        stop = self._stop_id(stop)
        buf, valid, pos = self._by_mode(knobs, lambda pick: self._sample(n, pos, knobs, pick, stop))
        codepoints = tf.where(tf.range(size) < valid, tf.gather(self.codepoints, buf), 0)
        return {"codepoints": codepoints, "valid": valid, "state": tf.concat(pos.parts, axis=1),
                "carry": tf.concat([tf.cast(pos.rng[0], tf.int32), pos.token], 0)}

    def _step(self, token, state):
        """One time step for B streams: token ids int32[B] (as vocab.json), packed state [B, S] (zeros to start)."""
        x, parts = self._advance(token, self._unpack(state))
        return {"logits": self._logits(x), "state": tf.concat(parts, axis=1)}

    def _vocabulary(self):
        """The code point (byte value if byte_unit) of each token id, so an app needs no vocab.json."""
        return {"codepoints": tf.identity(self.codepoints), "byte_unit": tf.identity(self.byte_unit)}
