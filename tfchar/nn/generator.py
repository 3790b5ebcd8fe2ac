"""The exportable generator: the trained char-RNN as plain TF ops plus the sampling loop, in one tf.Module.

Keras recurrent layers lower to TensorList ops that TFLite builtins cannot run, so this module rewrites
each cell with matmuls on the trained weights (read by layer name: `embedding`, `rnn_i`, `logits`,
in Keras gate order, and the optional `residual_i` and `norm_i` between layers; dropout is off in
inference) and runs time with `tf.while_loop`, which converts to TFLite `WHILE`. It serves
three callers with the same ops: the SavedModel and the TFLite file (signatures `generate`, `step`,
`vocabulary`) and the in-process runtime (`stream`), so a seed means the same text everywhere.

Packed state S: for each layer in order, LSTM [h, c], GRU [h], RNN [h], each H wide.
Shapes: B batch, N prime length, V vocabulary, E embedding, H hidden, G gates (LSTM 4, GRU 3, RNN 1).

Example:
    gen = CharGenerator.from_keras(model, vocab)
    out = gen.generate(tf.constant([ord(c) for c in "ROMEO:"]), 200, 0.8, 0, 1.0, 42)
    "".join(map(chr, out["codepoints"].numpy()))
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

from tfchar.core.choices import UNITS
from tfchar.ops import draw
from tfchar.ops import rng as rng_ops
from tfchar.ops.cells import GATES, STATES_PER_LAYER, cell_step, layer_norm
MIN_CHUNK = 64  # tokens per inner sampling loop, at least (see _sample_loop)


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

    Layer 0's input projection (and input bias) is folded into a [V, GH] lookup table: a token's
    gate input is then a row gather instead of an embedding lookup plus a matmul.
    """
    emb = np.asarray(weights["embedding"], np.float32)
    out = {"layers": []}
    for i, (kernel, recurrent, bias) in enumerate(weights["layers"]):
        bias = np.asarray(bias, np.float32)
        layer = {"recurrent_kernel": np.asarray(recurrent, np.float32)}
        in_bias = bias
        if bias.ndim == 2:  # GRU reset_after: [input bias, recurrent bias], each [3H]
            in_bias, layer["recurrent_bias"] = bias[0], bias[1]
        if i == 0:
            layer["input_table"] = emb @ np.asarray(kernel, np.float32) + in_bias  # [V, GH]
            if _residual(weights, 0):  # the first layer adds its input: the embedding row itself
                layer["embedding"] = emb  # [V, E = H]
        else:
            layer["kernel"], layer["input_bias"] = np.asarray(kernel, np.float32), in_bias
        norm = (weights.get("norms") or [None] * (i + 1))[i]
        if norm is not None:
            layer["norm_gamma"], layer["norm_beta"] = (np.asarray(a, np.float32) for a in norm[:2])
        out["layers"].append(layer)
    out["logits_kernel"], out["logits_bias"] = (np.asarray(w, np.float32) for w in weights["logits"])
    return out


def _residual(weights: dict, i: int) -> bool:
    return bool((weights.get("residual") or [False] * (i + 1))[i])


def _norm_epsilons(weights: dict) -> list:
    """Each layer's layer-norm epsilon, or None where the layer has no norm."""
    return [None if n is None else float(n[2]) for n in (weights.get("norms") or [None] * len(weights["layers"]))]


class CharGenerator(tf.Module):
    """Step and sampling loop of a trained char-RNN, exportable to SavedModel and TFLite builtins.

    Args:
        weights: `keras_weights(model)`-style dict of arrays.
        codepoints: int32[V], the code point (or byte value) of each token id, as `Vocab.codepoints`.
        unit: "char" or "byte" (then code points in and out of `generate` are byte values).
    """

    def __init__(self, weights: dict, codepoints, unit: str = "char", name: str = "char_generator"):
        super().__init__(name=name)
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
        hidden, gh = np.shape(weights["layers"][0][1])
        self.cell = {g: c for c, g in GATES.items()}[gh // hidden]
        self.hidden = int(hidden)
        self.num_layers = len(weights["layers"])
        self.state_size = self.num_layers * STATES_PER_LAYER[self.cell] * self.hidden
        self.vocab_size = int(np.shape(weights["logits"][1])[0])
        self.unit = unit
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
    def from_keras(cls, model, vocab) -> "CharGenerator":
        """A generator holding a copy of `model`'s current weights (`vocab`: a `tfchar.vocab.Vocab`)."""
        return cls(keras_weights(model), vocab.codepoints, vocab.unit)

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
        return {"serving_default": gen, "generate": gen, "step": self.step.get_concrete_function(),
                "vocabulary": self.vocabulary.get_concrete_function()}

    def _make_functions(self):
        """tf.functions with the state width S in their input shapes (apps read S from `step`'s input)."""
        spec = tf.TensorSpec
        tokens, state = spec([None], tf.int32, name="token"), spec([None, self.state_size], tf.float32, name="state")
        self.generate = tf.function(self._generate, input_signature=[
            spec([None], tf.int32, name="prime"), spec([], tf.int32, name="length"),
            spec([], tf.float32, name="temperature"), spec([], tf.int32, name="top_k"),
            spec([], tf.float32, name="top_p"), spec([], tf.int32, name="seed")])
        self.step = tf.function(self._step, input_signature=[tokens, state])
        self.vocabulary = tf.function(self._vocabulary, input_signature=[])

    # ------------------------------------------------------------------------------------ the network

    def _unpack(self, state):
        """Packed [B, S] -> list of [B, H] (loops carry them apart: no slicing and concatenating per step)."""
        return [state[:, j * self.hidden:(j + 1) * self.hidden] for j in range(self.state_size // self.hidden)]

    def _cell(self, i, token, x, parts):
        """Layer i, one time step: (token int32[B] for layer 0, else x [B, H]) and its [B, H] state parts."""
        layer = self.layers[i]
        if i == 0:
            gx = tf.gather(layer["input_table"], token)  # [B, GH]
        else:
            gx = tf.matmul(x, layer["kernel"]) + layer["input_bias"]
        gh = tf.matmul(parts[0], layer["recurrent_kernel"])  # [B, GH]
        if self.cell == "gru":  # Keras reset_after: the reset gate scales the recurrent part, bias included
            gh = gh + layer["recurrent_bias"]
        return cell_step(self.cell, gx, gh, parts)

    def _between(self, i, token, x, h):
        """What follows layer i's cell: its input x added (residual), then layer norm. h: [B, H] -> [B, H]."""
        layer = self.layers[i]
        if self.residual[i]:
            h = h + (tf.gather(layer["embedding"], token) if i == 0 else x)
        if self.norm_epsilon[i] is not None:
            h = layer_norm(h, layer["norm_gamma"], layer["norm_beta"], self.norm_epsilon[i])
        return h

    def _advance(self, token, parts):
        """Read one token per row: int32[B], state parts -> top layer output [B, H], new state parts."""
        n = STATES_PER_LAYER[self.cell]
        x, new = None, []
        for i in range(self.num_layers):
            h, p = self._cell(i, token, x, parts[i * n:(i + 1) * n])
            x = self._between(i, token, x, h)
            new += p
        return x, new

    def _logits(self, x):
        return tf.matmul(x, self.logits_kernel) + self.logits_bias  # [B, V]

    # ------------------------------------------------------------------------------------ loops

    def _feed(self, ids, parts):
        """Read the same token sequence int32[N] into every row of the state."""
        def body(t, *parts):
            token = tf.fill(tf.shape(parts[0])[:1], ids[t])
            return (t + 1, *self._advance(token, list(parts))[1])

        return list(tf.while_loop(lambda t, *_: t < tf.size(ids), body, (tf.constant(0), *parts))[1:])

    def _sample_loop(self, token, parts, rng, length, knobs):
        """Read `token`, sample the next, repeat `length` times.

        Args:
            token: int32[B] last token read; parts: state parts [B, H]; rng: int32[B] generator states;
            length: int32 scalar; knobs: `draw.Settings`.

        Returns (ids int32[B, length], last sampled token [B], state parts before reading it, rng [B]).
        """
        # Every loop tensor keeps its shape across iterations: one that grew each step would make TFLite
        # re-prepare the loop body each step. Each chunk of C tokens goes into a [B, C] buffer (a one-hot
        # write per step), then is padded into place in the [B, length] output. C ~ sqrt(length) keeps
        # both writes cheap: O(C) per step, O(length) per chunk.
        chunk = tf.maximum(MIN_CHUNK, tf.cast(tf.sqrt(tf.cast(length, tf.float32)), tf.int32))

        def chunk_body(t, token, rng, buf, *parts):
            x, parts = self._advance(token, list(parts))
            rng = rng_ops.next_rng(rng)
            token = draw.draw(self._logits(x), rng_ops.uniform(rng), knobs)
            buf += tf.one_hot(t, chunk, dtype=tf.int32) * tf.expand_dims(token, 1)  # buf[:, t] = token
            return (t + 1, token, rng, buf, *parts)

        def body(done, token, rng, out, *parts):
            n = tf.minimum(chunk, length - done)
            buf = tf.zeros([tf.shape(token)[0], chunk], tf.int32)
            _, token, rng, buf, *parts = tf.while_loop(lambda t, *_: t < n, chunk_body,
                                                       (tf.constant(0), token, rng, buf, *parts))
            out += tf.pad(buf[:, :n], [[0, 0], [done, length - done - n]])  # out[:, done:done + n] = buf
            return (done + n, token, rng, out, *parts)

        out = tf.zeros([tf.shape(token)[0], length], tf.int32)
        vec, mat = tf.TensorShape([None]), tf.TensorShape([None, self.hidden])
        _, token, rng, out, *parts = tf.while_loop(
            lambda done, *_: done < length, body, (tf.constant(0), token, rng, out, *parts),
            shape_invariants=(tf.TensorShape([]), vec, vec, tf.TensorShape([None, None])) + (mat,) * len(parts))
        return out, token, parts, rng

    def _prime_ids(self, prime):
        """Code points int32[N] -> known token ids [M >= 1]; unknown code points are skipped, none known -> [0]."""
        match = tf.cast(tf.equal(prime[:, None], self.codepoints[None, :]), tf.int32)  # [N, V]
        known = tf.reduce_max(match, axis=1) > 0
        ids = tf.boolean_mask(tf.argmax(match, axis=1, output_type=tf.int32), known)
        return tf.concat([ids, tf.zeros([1], tf.int32)], 0)[:tf.maximum(tf.size(ids), 1)]

    # ------------------------------------------------------------------------------------ signatures

    def _generate(self, prime, length, temperature, top_k, top_p, seed):
        """Prime with code points int32[N], then sample `length` code points, all inside the graph."""
        ids = self._prime_ids(prime)
        parts = self._feed(ids[:-1], self._unpack(tf.zeros([1, self.state_size])))
        knobs = draw.settings(temperature, top_k, top_p, self.vocab_size)
        out, _, _, _ = self._sample_loop(ids[-1:], parts, rng_ops.seed_rng(seed[None]), tf.maximum(length, 0), knobs)
        return {"codepoints": tf.gather(self.codepoints, out[0])}

    def _step(self, token, state):
        """One time step for B streams: token ids int32[B] (as vocab.json), packed state [B, S] (zeros to start)."""
        x, parts = self._advance(token, self._unpack(state))
        return {"logits": self._logits(x), "state": tf.concat(parts, axis=1)}

    def _vocabulary(self):
        """The code point (byte value if byte_unit) of each token id, so an app needs no vocab.json."""
        return {"codepoints": tf.identity(self.codepoints), "byte_unit": tf.identity(self.byte_unit)}

    # ------------------------------------------------------------------------------------ in-process sampling

    def stream(self, ids, length: int, num_samples: int = 1, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0, chunk: int = 64) -> Iterator[np.ndarray]:
        """Sample in this process, yielding int32[num_samples, n] token ids chunk by chunk as they come.

        Runs the same loop as `generate` (`prime_state`, `sample_chunk`), so sample i equals the exported
        `generate(prime, length, temperature, top_k, top_p, seed=rng.sample_seeds(seed, num_samples)[i])`.

        Args:
            ids: int32[N] prime token ids; empty means "as if after token id 0", as in `generate`.
            length: tokens to sample per stream.
            num_samples: B, parallel streams.
            temperature, top_k, top_p: as `draw.sample_ids` (temperature <= 0: greedy).
            seed: seed of the first stream; stream i uses seed + i.
            chunk: tokens per yielded piece.

        Example:
            text = vocab.decode(np.concatenate(list(gen.stream(vocab.encode("ROMEO:"), 100)), axis=1)[0])
        """
        ids = np.asarray(ids, np.int32).reshape(-1)
        if ids.size == 0:
            ids = np.zeros([1], np.int32)
        state = self.prime_state(ids[:-1], num_samples)  # [B, S]
        token = tf.fill([num_samples], ids[-1])  # [B]
        states = rng_ops.seed_rng(tf.constant(rng_ops.sample_seeds(seed, num_samples)))  # [B]
        for done in range(0, length, chunk):
            n = min(chunk, length - done)
            out, token, state, states = self.sample_chunk(token, state, states, n, temperature, top_k, top_p)
            yield out.numpy()

    def prime_state(self, ids, batch):
        """Packed state [batch, S] after reading token ids int32[N] (all but the token to sample after)."""
        return self._python_route()[0](ids, batch)

    def sample_chunk(self, token, state, rng, length, temperature, top_k, top_p):
        """`length` more tokens for B streams: (ids [B, length], token, packed state, rng) to continue from."""
        return self._python_route()[1](token, state, rng, length, temperature, top_k, top_p)

    def _python_route(self):
        """The Python route's tf.functions, made on first use so that exports do not carry them."""
        if not hasattr(self, "_route"):
            spec, i, f = tf.TensorSpec, tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)
            self._route = (
                tf.function(self._prime_state, input_signature=[spec([None], tf.int32), i]),
                tf.function(self._sample_chunk, input_signature=[
                    spec([None], tf.int32), spec([None, self.state_size], tf.float32), spec([None], tf.int32),
                    i, f, i, f]))
        return self._route

    def _prime_state(self, ids, batch):
        return tf.concat(self._feed(ids, self._unpack(tf.zeros([batch, self.state_size]))), axis=1)

    def _sample_chunk(self, token, state, rng, length, temperature, top_k, top_p):
        knobs = draw.settings(temperature, top_k, top_p, self.vocab_size)
        out, token, parts, rng = self._sample_loop(token, self._unpack(state), rng, length, knobs)
        return out, token, tf.concat(parts, axis=1), rng
