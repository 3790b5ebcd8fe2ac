"""The fused CPU layers compute what the Keras layers compute: outputs, gradients, state carry, weight files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfchar.nn import fused, native
from tfchar.nn.models import build_model, get_states, reset_states, rnn_layers

# B = 19 rows: the native loops split them 9 + 10 across two threads (at least 8 rows per thread).
B, T, E, H = 19, 7, 5, 6
KERAS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}
CELLS = sorted(KERAS)


def _pair(cell, **kwargs):
    """A Keras layer and a fused layer with identical (non-trivial) weights, both built for [B, T, E]."""
    ref = KERAS[cell](H, return_sequences=True, **kwargs)
    new = fused.FUSED[cell](H, return_sequences=True, **kwargs)
    x = tf.zeros([B, T, E])
    ref(x), new(x)
    rng = np.random.default_rng(0)
    for w in ref.weights:  # random biases too, so every bias path is exercised
        w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
    new.set_weights(ref.get_weights())
    return ref, new


def _run(layer, x, states, training, mode):
    """Outputs (sequence and final states) and gradients of a fixed loss w.r.t. x, states and weights.

    mode: "eager"; "static" (tf.function with static shapes: the XLA path); "dynamic" (tf.function with
    unknown batch and length: the plain graph path)."""
    n_out = T * B * H

    def f(x, states):
        with tf.GradientTape() as tape:
            tape.watch([x, *states])
            out = layer(x, initial_state=states, training=training)
            w = tf.reshape(tf.sin(tf.range(n_out, dtype=tf.float32) * 0.37), [B, T, H])
            loss = tf.reduce_sum(out[0] * w) + sum(tf.reduce_sum(s * (1.5 + k)) for k, s in enumerate(out[1:]))
        return out, tape.gradient(loss, [x, *states, *layer.trainable_weights])

    if mode != "eager":
        shape = [B, T, E] if mode == "static" else [None, None, E]
        f = tf.function(f, input_signature=[tf.TensorSpec(shape), [tf.TensorSpec(shape[:1] + [H])] * len(states)])
    out, grads = f(x, states)
    return [np.asarray(a) for a in list(out) + list(grads)]


@pytest.fixture(params=["native", "tf"])
def loops(request, monkeypatch):
    """Run the fused layers' time loops as the C++ kernels, or as TensorFlow (XLA / graph) loops."""
    if request.param == "native" and native.ops() is None:
        pytest.skip("no C++ compiler: the native loops cannot be built here")
    monkeypatch.setattr(fused, "USE_NATIVE", request.param == "native")
    return request.param


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode", ["eager", "static", "dynamic"])
def test_outputs_and_gradients_match_keras(cell, training, mode, loops):
    ref, new = _pair(cell, return_state=True)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(0, 1, (B, T, E)).astype("float32"))
    states = [tf.constant(rng.normal(0, 1, (B, H)).astype("float32")) for _ in range(2 if cell == "lstm" else 1)]
    want = _run(ref, x, states, training, mode)
    got = _run(new, x, states, training, mode)
    names = ["outputs"] + [f"state_{k}" for k in range(len(states))] + ["d_x"] + \
        [f"d_state_{k}" for k in range(len(states))] + [f"d_{w.path}" for w in ref.trainable_weights]
    assert len(got) == len(want) == len(names)
    for g, w, name in zip(got, want, names):
        np.testing.assert_allclose(g, w, atol=1e-5, err_msg=name)
    assert [w.path.split("/", 1)[1] for w in new.weights] == [w.path.split("/", 1)[1] for w in ref.weights]


@pytest.mark.parametrize("cell", CELLS)
def test_stateful_carry_equals_one_long_call(cell, loops):
    x = np.random.default_rng(4).normal(0, 1, (B, 2 * T, E)).astype("float32")
    long_ref, _ = _pair(cell)
    _, chunked = _pair(cell, stateful=True)
    want = long_ref(x)
    got = np.concatenate([chunked(x[:, :T]), chunked(x[:, T:])], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(chunked.states) == (2 if cell == "lstm" else 1)
    np.testing.assert_allclose(chunked.states[0], want[:, -1], atol=1e-5)
    chunked.reset_states()
    assert not np.any(chunked.states[0].numpy())
    np.testing.assert_allclose(chunked(x[:, :T]), want[:, :T], atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_weight_files_interchange_between_keras_and_fused_models(cell, tmp_path):
    kw = dict(vocab_size=11, cell=cell, rnn_size=8, num_layers=2, dropout=0.1, embedding_dim=4,
              batch_size=2, seq_length=5, stateful=True)
    ids = np.random.default_rng(5).integers(0, 11, (2, 5)).astype("int32")
    src = build_model(**kw, seed=1, fast="fused")
    dst = build_model(**kw, seed=2, fast="keras")
    assert all(isinstance(l, fused.FUSED[cell]) for l in rnn_layers(src))
    assert not any(isinstance(l, fused.FUSED[cell]) for l in rnn_layers(dst))
    assert [w.path for w in src.weights] == [w.path for w in dst.weights]
    src.save_weights(tmp_path / "fused.weights.h5")
    dst.load_weights(tmp_path / "fused.weights.h5")
    np.testing.assert_allclose(dst(ids), src(ids), atol=1e-5)
    np.testing.assert_allclose(np.concatenate(get_states(dst)), np.concatenate(get_states(src)), atol=1e-5)
    reset_states(src)
    dst.save_weights(tmp_path / "keras.weights.h5")
    back = build_model(**kw, seed=3, fast="fused")
    back.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(back(ids), src(ids), atol=1e-5)


def test_serializable_config_round_trip():
    layer = fused.FusedGRU(4, return_sequences=True, stateful=False, name="rnn_0")
    config = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is fused.FusedGRU and again.get_config() == layer.get_config()


def test_unsupported_configuration_falls_back_to_keras():
    ref, new = _pair("lstm", go_backwards=True)
    x = np.random.default_rng(6).normal(0, 1, (B, T, E)).astype("float32")
    np.testing.assert_allclose(new(x), ref(x), atol=1e-5)


def test_build_model_selects_the_implementation():
    from tfchar.nn.models import rnn_layer_class

    gpu = bool(tf.config.list_logical_devices("GPU"))
    assert rnn_layer_class("gru", "auto") is (keras.layers.GRU if gpu else fused.FusedGRU)
    assert rnn_layer_class("rnn", "keras") is keras.layers.SimpleRNN
    assert rnn_layer_class("lstm", "fused") is fused.FusedLSTM
    with pytest.raises(ValueError, match="fast"):
        rnn_layer_class("lstm", "fastest")


def test_native_loops_build_with_the_local_compiler():
    if native.compiler() is None:
        pytest.skip("no C++ compiler here")
    lib = native.ops()
    assert lib is not None and hasattr(lib, "tfchar_lstm_forward")
    assert native.build().parent.parent == native.cache_root()


def test_broken_compiler_falls_back_to_the_tf_loops(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv("TFCHAR_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    with pytest.raises(RuntimeError, match="failed to compile rnn_loops.cc"):
        native.build()
    with caplog.at_level("WARNING", logger="tfchar"):
        assert native.ops() is None
    assert "native RNN loops unavailable" in caplog.text and "XLA loops" in caplog.text
    assert not list(tmp_path.rglob("*.so"))  # no half-written library left behind
    ref, new = _pair("gru")
    x = np.random.default_rng(7).normal(0, 1, (B, T, E)).astype("float32")
    np.testing.assert_allclose(new(x), ref(x), atol=1e-5)


def test_native_loops_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("TFCHAR_NATIVE", "0")
    monkeypatch.setattr(native, "_state", {})
    assert native.ops() is None and not native.enabled()


@pytest.mark.slow
def test_corrupt_cached_library_is_rebuilt(monkeypatch, tmp_path):
    if native.compiler() is None:
        pytest.skip("no C++ compiler here")
    monkeypatch.setenv("TFCHAR_CACHE", str(tmp_path))
    path = native.library_path()  # where the build is cached: a corrupt file there, as a crash could leave
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a shared library")
    # A fresh process (this one has the ops registered already): it rebuilds (~30 s) rather than falling
    # back to the slow loops, and the rebuilt ops compute an RNN step.
    code = ("import numpy as np, tensorflow as tf; from tfchar.nn import native; lib = native.ops(); "
            "x = tf.constant(np.linspace(-2, 2, 12, dtype='float32').reshape(1, 3, 4)); "
            "hs, _ = lib.tfchar_rnn_forward(x, tf.zeros([1, 4]), tf.eye(4)); "
            "print(float(np.abs(hs[0, 0] - np.tanh(x[0, 0])).max()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-6
    assert path.stat().st_size > 10_000 and "unavailable" not in out.stderr


# The recipe's additions sit between the recurrent layers (stock Keras layers), so a model with all of them
# must train alike whichever layers run the recurrence: dropout masks (same seeds), residual adds, layer norm.
RECIPE = dict(residual=True, layer_norm=True, input_dropout=0.2, dropout=0.3, locked_dropout=True)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", ["eager", "static"])
def test_recipe_model_outputs_and_gradients_match_keras(cell, mode, loops):
    if mode == "static" and loops == "native":
        pytest.skip("the native loops run the same ops eagerly and in graphs; the TF loops compile with XLA")
    # E = H: the first layer is residual too. Stateful, as training runs: the backward pass must see the state
    # the forward started from, not the one the layer stored after it.
    kw = dict(vocab_size=13, cell=cell, rnn_size=H, num_layers=3, embedding_dim=H, batch_size=B,
              seq_length=T, stateful=True, seed=4, **RECIPE)
    ref, new = build_model(**kw, fast="keras"), build_model(**kw, fast="fused")
    rng = np.random.default_rng(8)
    for w in ref.weights:  # layer-norm scales and offsets away from 1 and 0 too
        w.assign(w.numpy() + rng.normal(0, 0.3, w.shape).astype("float32"))
    new.set_weights(ref.get_weights())
    ids = tf.constant(rng.integers(0, 13, (B, T)).astype("int32"))

    def run(model):
        def f(ids):
            with tf.GradientTape() as tape:
                out = model(ids, training=True)
                loss = tf.reduce_sum(out * tf.sin(tf.range(13, dtype=tf.float32))) / (B * T)  # per position
            return [out] + [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_weights)]

        return [np.asarray(a) for a in (f(ids) if mode == "eager" else tf.function(f)(ids))]

    want, got = run(ref), run(new)
    assert {"norm_2", "residual_0", "residual_2", "embedding_dropout"} <= {l.name for l in new.layers}
    for g, w, name in zip(got, want, ["logits"] + [w.path for w in ref.trainable_weights]):
        np.testing.assert_allclose(g, w, atol=1e-5, err_msg=name)
    assert np.mean(want[0] == 0) < 0.01  # logits exist everywhere: dropout masked inputs, not outputs


def test_locked_dropout_keeps_one_mask_per_sequence():
    model = build_model(13, "lstm", 8, 1, embedding_dim=8, batch_size=4, seq_length=6, stateful=False, seed=1,
                        input_dropout=0.5, locked_dropout=True)
    emb = keras.Model(model.inputs[0], model.get_layer("embedding_dropout").output)
    ids = np.zeros((4, 6), np.int32)  # one character everywhere: any difference along time would be a new mask
    dropped = np.asarray(emb(ids, training=True))  # [B, T, E]
    assert np.all(dropped == dropped[:, :1]) and 0 < np.mean(dropped == 0) < 1
