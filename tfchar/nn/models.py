"""The char-RNN: embedding -> stacked LSTM/GRU/SimpleRNN (dropout between) -> dense logits.

Plain Keras layers, so a GPU runs cuDNN kernels where Keras can; on a CPU the weight-compatible fused
layers of `tfchar.nn.fused` run instead (`fast="auto"`), faster and numerically the same. Layer names are a
contract with the exporter and with checkpoints: `embedding`, `rnn_0` ... `rnn_{L-1}`, `logits`.

Example:
    model = build_model(vocab_size=65, cell="lstm", rnn_size=128, num_layers=2, batch_size=50,
                        seq_length=50, stateful=True)
    logits = model(ids)  # ids: int32[B, T] -> float32[B, T, V]
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfchar.core.choices import CELLS, IMPLEMENTATIONS
from tfchar.nn import fused

KERAS_LAYERS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}


def build_model(vocab_size: int, cell: str = "lstm", rnn_size: int = 128, num_layers: int = 2,
                dropout: float = 0.0, embedding_dim: int = 64, batch_size: int | None = None,
                seq_length: int | None = None, stateful: bool = False, seed: int | None = None,
                fast: str = "auto") -> keras.Model:
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

    Returns:
        A `keras.Model` mapping int32[B, T] token ids to float32[B, T, V] logits.
    """
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; use one of {CELLS}")
    if stateful and not batch_size:
        raise ValueError("a stateful model needs a fixed batch_size")
    layer_cls = rnn_layer_class(cell, fast)
    seeds = iter(range(seed * 1000, seed * 1000 + 1000)) if seed is not None else None

    def init(kind):
        return keras.initializers.get({"class_name": kind, "config": {"seed": next(seeds)}}) if seeds else kind

    inputs = keras.Input(batch_shape=(batch_size, seq_length), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, embedding_dim, embeddings_initializer=init("RandomUniform"),
                               name="embedding")(inputs)  # [B, T, E]
    for i in range(num_layers):
        kwargs = dict(return_sequences=True, stateful=stateful, name=f"rnn_{i}",
                      kernel_initializer=init("GlorotUniform"), recurrent_initializer=init("Orthogonal"))
        if cell == "gru":
            kwargs["reset_after"] = True
        x = layer_cls(rnn_size, **kwargs)(x)  # [B, T, H]
        if dropout > 0:
            x = keras.layers.Dropout(dropout, seed=next(seeds) if seeds else None, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(vocab_size, kernel_initializer=init("GlorotUniform"), name="logits")(x)  # [B, T, V]
    return keras.Model(inputs, logits, name=f"char_{cell}_{num_layers}x{rnn_size}")


def build_from_config(model_cfg, vocab_size: int, batch_size: int | None = None, seq_length: int | None = None,
                      stateful: bool = False, seed: int | None = None, fast: str = "auto") -> keras.Model:
    """`build_model` with the fields of a `config.ModelConfig`."""
    return build_model(vocab_size, cell=model_cfg.cell, rnn_size=model_cfg.rnn_size,
                       num_layers=model_cfg.num_layers, dropout=model_cfg.dropout,
                       embedding_dim=model_cfg.embedding_dim, batch_size=batch_size, seq_length=seq_length,
                       stateful=stateful, seed=seed, fast=fast)


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
