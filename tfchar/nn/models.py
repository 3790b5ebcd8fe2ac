"""The char-RNN: embedding -> stacked LSTM/GRU/SimpleRNN (dropout between) -> dense logits.

Plain Keras layers, so a GPU runs cuDNN kernels where Keras can; on a CPU the weight-compatible fused
layers of `tfchar.nn.fused` run instead (`fast="auto"`), faster and numerically the same. Layer names are a
contract with the exporter and with checkpoints: `embedding`, `rnn_0` ... `rnn_{L-1}`, `logits`, and the
optional `embedding_dropout`, `dropout_i`, `residual_i` (Add) and `norm_i` (LayerNormalization).

Each recurrent layer i, with x its input [B, T, E or H]:

    h = rnn_i(x) -> dropout_i(h) -> h + x if residual (and x is H wide) -> layer norm if layer_norm -> next x

Every layer is a stock Keras layer (the fused ones carry Keras's classes' names and weights), so a saved
model opens in Keras without tfchar.

Example:
    model = build_model(vocab_size=65, cell="lstm", rnn_size=128, num_layers=2, batch_size=50,
                        seq_length=50, stateful=True)
    logits = model(ids)  # ids: int32[B, T] -> float32[B, T, V]
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfchar.core.choices import CELLS, EMBEDDING_INITS, IMPLEMENTATIONS, INITS
from tfchar.nn import fused

KERAS_LAYERS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}


def build_model(vocab_size: int, cell: str = "lstm", rnn_size: int = 128, num_layers: int = 2,
                dropout: float = 0.0, embedding_dim: int = 64, batch_size: int | None = None,
                seq_length: int | None = None, stateful: bool = False, seed: int | None = None,
                fast: str = "auto", input_dropout: float = 0.0, locked_dropout: bool = False,
                residual: bool = False, layer_norm: bool = False, init: str = "keras",
                embedding_init: str = "normal") -> keras.Model:
    """Build the language model.

    Args:
        vocab_size: V, number of token ids.
        cell: "lstm", "gru" (reset_after, as cuDNN) or "rnn" (tanh SimpleRNN).
        rnn_size: H, hidden units per layer.
        num_layers: stacked recurrent layers.
        dropout: rate of the dropout after every recurrent layer (0 = none).
        embedding_dim: E, width of the learned character embedding.
        batch_size: B; required when `stateful` (Keras fixes the state's batch dimension).
        seq_length: T, or None for any length.
        stateful: carry each layer's final state into the next call (reset with `reset_states`).
        seed: seed for weight initializers and dropout, for reproducible runs.
        fast: which implementation runs the recurrent layers: "fused" (`tfchar.nn.fused`, fast on CPU),
            "keras" (the Keras layers: cuDNN on a GPU), or "auto" (fused unless a GPU is visible). Both have
            the same weights and variable paths, so checkpoints and exports do not depend on it.
        input_dropout: rate of the dropout on the embedding (0 = none).
        locked_dropout: every dropout draws one mask per sequence, shared by its time steps (variational).
        residual: add a recurrent layer's input to its output where both are `rnn_size` wide.
        layer_norm: layer-normalise each recurrent layer's output (after the residual add).
        init: "keras" (glorot-uniform, orthogonal, unit forget bias) or "torch" (PyTorch's uniform init).
        embedding_init: "normal" (N(0, 1), PyTorch's) or "uniform" (+-0.05, Keras's).

    Returns:
        A `keras.Model` mapping int32[B, T] token ids to float32[B, T, V] logits.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; use one of {CELLS}")
    if stateful and not batch_size:
        raise ValueError("a stateful model needs a fixed batch_size")
    if init not in INITS or embedding_init not in EMBEDDING_INITS:
        raise ValueError(f"unknown init {init!r} or embedding_init {embedding_init!r}; use one of {INITS}, "
                         f"{EMBEDDING_INITS}")
    layer_cls = rnn_layer_class(cell, fast)
    # Two seed streams: the first draws what today's models draw, in the same order (a seed gives the same
    # weights as before); the second serves the optional parts, so switching one on changes nothing else.
    seeds = iter(range(seed * 1000, seed * 1000 + 500)) if seed is not None else None
    extra = iter(range(seed * 1000 + 500, seed * 1000 + 1000)) if seed is not None else None
    pick = Initializers(seeds, extra)

    def drop(rate, width, name, stream):
        shape = (None, 1, width) if locked_dropout else None  # locked: one mask per sequence
        return keras.layers.Dropout(rate, noise_shape=shape, seed=next(stream) if stream else None, name=name)

    inputs = keras.Input(batch_shape=(batch_size, seq_length), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, embedding_dim, embeddings_initializer=pick.embedding(embedding_init),
                               name="embedding")(inputs)  # [B, T, E]
    if input_dropout > 0:
        x = drop(input_dropout, embedding_dim, "embedding_dropout", extra)(x)
    for i in range(num_layers):
        kwargs = dict(return_sequences=True, stateful=stateful, name=f"rnn_{i}",
                      **pick.recurrent(init, cell, rnn_size))
        if cell == "gru":
            kwargs["reset_after"] = True
        h = layer_cls(rnn_size, **kwargs)(x)  # [B, T, H]
        if dropout > 0:
            h = drop(dropout, rnn_size, f"dropout_{i}", seeds)(h)
        if residual and x.shape[-1] == rnn_size:
            h = keras.layers.Add(name=f"residual_{i}")([x, h])
        if layer_norm:
            h = keras.layers.LayerNormalization(name=f"norm_{i}")(h)
        x = h
    logits = keras.layers.Dense(vocab_size, name="logits", **pick.output(init, rnn_size))(x)  # [B, T, V]
    return keras.Model(inputs, logits, name=f"char_{cell}_{num_layers}x{rnn_size}")


class Initializers:
    """The initializers of each layer under `init` = "keras" or "torch", seeded from two streams (see
    `build_model`): stock Keras initializers only, so a saved model needs nothing of tfchar's to load."""

    def __init__(self, seeds, extra):
        self.seeds, self.extra = seeds, extra

    def _seed(self, stream):
        return next(stream) if stream else None

    def _keras(self, kind):
        return keras.initializers.get({"class_name": kind, "config": {"seed": next(self.seeds)}}) if self.seeds else kind

    def _uniform(self, limit):
        return keras.initializers.RandomUniform(-limit, limit, seed=self._seed(self.extra))

    def embedding(self, kind: str):
        """uniform: Keras's +-0.05; normal: PyTorch's N(0, 1) (a character's vector as wide as its gates' inputs)."""
        if kind == "normal":
            self._seed(self.seeds)  # keep the first stream in step with the uniform case
            return keras.initializers.RandomNormal(0.0, 1.0, seed=self._seed(self.extra))
        return self._keras("RandomUniform")

    def recurrent(self, init: str, cell: str, units: int) -> dict:
        """Keras: glorot-uniform kernel, orthogonal recurrent kernel, zero biases with the LSTM forget gate's at 1.
        torch: every weight uniform in +-1/sqrt(H) as nn.LSTM/GRU/RNN draw them; PyTorch's two bias vectors
        (input and recurrent) are one in Keras's LSTM and RNN, drawn with the variance of their sum."""
        keras_kernels = dict(kernel_initializer=self._keras("GlorotUniform"),
                             recurrent_initializer=self._keras("Orthogonal"))
        if init == "keras":
            return keras_kernels
        k = 1.0 / np.sqrt(units)
        out = dict(kernel_initializer=self._uniform(k), recurrent_initializer=self._uniform(k),
                   bias_initializer=self._uniform(k if cell == "gru" else k * np.sqrt(2.0)))
        if cell == "lstm":
            out["unit_forget_bias"] = False
        return out

    def output(self, init: str, units: int) -> dict:
        """Keras: glorot-uniform kernel, zero bias; torch: nn.Linear's uniform +-1/sqrt(H) for both."""
        keras_kernel = self._keras("GlorotUniform")
        if init == "keras":
            return {"kernel_initializer": keras_kernel}
        k = 1.0 / np.sqrt(units)
        return {"kernel_initializer": self._uniform(k), "bias_initializer": self._uniform(k)}


def build_from_config(model_cfg, vocab_size: int, batch_size: int | None = None, seq_length: int | None = None,
                      stateful: bool = False, seed: int | None = None, fast: str = "auto") -> keras.Model:
    """`build_model` with the fields of a `config.ModelConfig`."""
    m = model_cfg
    return build_model(vocab_size, cell=m.cell, rnn_size=m.rnn_size, num_layers=m.num_layers, dropout=m.dropout,
                       embedding_dim=m.embedding_dim, batch_size=batch_size, seq_length=seq_length,
                       stateful=stateful, seed=seed, fast=fast, input_dropout=m.input_dropout,
                       locked_dropout=m.locked_dropout, residual=m.residual, layer_norm=m.layer_norm,
                       init=m.init, embedding_init=m.embedding_init)


def rnn_layer_class(cell: str, fast: str = "auto"):
    """The recurrent layer class for `cell` under `fast` ("auto": fused on CPU, Keras when a GPU is visible)."""
    if fast not in IMPLEMENTATIONS:
        raise ValueError(f"unknown fast={fast!r}; use one of {IMPLEMENTATIONS}")
    if fast == "auto":
        fast = "keras" if tf.config.list_logical_devices("GPU") else "fused"
    return (KERAS_LAYERS if fast == "keras" else fused.FUSED)[cell]


def rnn_layers(model: keras.Model) -> list:
    """The recurrent layers in order (`rnn_0`, `rnn_1`, ...)."""
    return [layer for layer in model.layers if layer.name.startswith("rnn_")]


def reset_states(model: keras.Model) -> None:
    """Zero every stateful layer's carried state (Keras 3 has no model.reset_states())."""
    for layer in rnn_layers(model):
        if layer.stateful:
            layer.reset_states()


def get_states(model: keras.Model) -> list[np.ndarray]:
    """A copy of every stateful layer's carried state, in layer order."""
    return [np.array(v) for layer in rnn_layers(model) if layer.stateful for v in _state_vars(layer)]


def set_states(model: keras.Model, values: list[np.ndarray]) -> None:
    """Restore states saved by `get_states`."""
    variables = [v for layer in rnn_layers(model) if layer.stateful for v in _state_vars(layer)]
    if len(variables) != len(values):
        raise ValueError(f"expected {len(variables)} state arrays, got {len(values)}")
    for var, value in zip(variables, values):
        var.assign(value)


def _state_vars(layer) -> list:
    states = layer.states
    if states is None or any(s is None for s in states):
        raise RuntimeError(f"{layer.name} has no state yet: call the model once before reading its state")
    return list(states)


def param_count(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
