"""model.keras: every checkpoint and export dir holds the weights as a stock Keras model that opens without
tfchar and gives tfchar's logits; an export dir therefore works where trainable weights are needed
(dynamic evaluation); and what Keras 3's own LiteRT export makes of that model."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT
from test_exporter import keras_logits_batch, lstm_export  # noqa: F401  (session fixture: a trained run and its export)
from tfchar.evaluation.evaluate import evaluate
from tfchar.nn.checkpoint import KERAS_FILE, keras_twin, resolve_checkpoint
from tfchar.runtimes.load import load_runtime

# Runs in a fresh interpreter with the checkout off sys.path: only Keras, never tfchar.
WITHOUT_TFCHAR = textwrap.dedent("""
    import sys
    sys.path = [p for p in sys.path if p not in ("", {root!r})]
    import keras, numpy as np
    model = keras.saving.load_model(sys.argv[1])
    logits = np.asarray(model(np.load(sys.argv[2]), training=False))
    np.save(sys.argv[3], logits)
    print(sorted({{type(l).__module__.split(".")[0] for l in model.layers}}), "tfchar" in sys.modules)
""")


def logits_without_tfchar(keras_file, ids, tmp_path) -> np.ndarray:
    np.save(tmp_path / "ids.npy", np.asarray(ids, np.int32))
    env_free = subprocess.run([sys.executable, "-c", WITHOUT_TFCHAR.format(root=str(ROOT)), str(keras_file),
                               str(tmp_path / "ids.npy"), str(tmp_path / "logits.npy")],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert env_free.returncode == 0, env_free.stderr[-3000:]
    assert env_free.stdout.split("\n")[-2] == "['keras'] False"  # stock layers only; tfchar never imported
    return np.load(tmp_path / "logits.npy")


def test_checkpoint_and_export_model_keras_open_without_tfchar_and_match_its_logits(lstm_export, tmp_path):
    r = lstm_export
    ids = np.asarray(r.splits["test"][:4 * 64], np.int32).reshape(4, 64)  # real text, 4 rows
    want = keras_logits_batch(r.model, ids)  # tfchar's model (fused layers on this CPU)
    assert want.std() > 1.0
    checkpoint = resolve_checkpoint(r.run)
    for keras_file in (checkpoint / KERAS_FILE, r.out / KERAS_FILE):
        np.testing.assert_allclose(logits_without_tfchar(keras_file, ids, tmp_path), want, atol=1e-5, rtol=0)
    assert r.metrics["parity"]["keras"] <= 1e-5


def test_dynamic_evaluation_of_an_export_dir_equals_the_run_dir(lstm_export, tmp_path):
    r = lstm_export
    runtime = load_runtime(r.out)
    assert runtime.kind == "saved_model" and runtime.checkpoint == r.out
    text = tmp_path / "t.txt"
    text.write_text(r.vocab.decode(r.splits["test"][:1500]), encoding="utf-8")
    from_run = evaluate(r.run, text=text, dynamic=True)
    from_export = evaluate(r.out, text=text, dynamic=True)
    assert from_export["dynamic"]["bpc"] == pytest.approx(from_run["dynamic"]["bpc"], abs=1e-5)
    assert from_export["dynamic"]["bpc"] < from_export["bpc"]  # it adapted: a real dynamic evaluation


def test_keras_twin_is_stateless_and_made_of_keras_layers(lstm_export):
    twin = keras_twin(lstm_export.model)
    assert twin.input_shape == (None, None)
    assert all(type(l).__module__.startswith("keras") for l in twin.layers)
    assert not any(getattr(l, "stateful", False) for l in twin.layers)


@pytest.mark.slow
def test_keras_litert_export_of_the_stateless_model_needs_flex_ops(lstm_export, tmp_path):
    """What Keras 3's own `model.export(format="litert")` gives: a full-sequence scorer ids [B, T] -> logits
    [B, T, V] with no state, no sampler and TensorList (Flex) ops, which the builtin LiteRT interpreter
    refuses; tfchar's export (a stateful `step` and an in-graph `generate`, builtins only) is what runs on a
    phone or in a browser. docs/export.md says when to use which."""
    from ai_edge_litert.interpreter import Interpreter

    twin = keras_twin(lstm_export.model)
    path = tmp_path / "keras.tflite"
    twin.export(str(path), format="litert")
    interpreter = Interpreter(model_path=str(path))
    signatures = interpreter.get_signature_list()
    assert list(signatures) == ["serving_default"] and signatures["serving_default"]["inputs"] == ["ids"]
    out = interpreter.get_output_details()[0]
    assert list(out["shape_signature"]) == [-1, -1, len(lstm_export.vocab)]  # logits for every position
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert any(op.startswith("Flex") for op in ops), ops
    runner = interpreter.get_signature_runner()
    with pytest.raises(RuntimeError, match="Flex"):
        runner(ids=np.zeros([1, 8], np.int32))


def test_each_save_holds_the_weights_of_its_moment(lstm_export, tmp_path):
    # a training run writes model.keras with every checkpoint from one cached twin: never a stale copy
    import keras

    from tfchar.nn.checkpoint import save_keras_file

    model = keras.models.clone_model(lstm_export.model)
    model.set_weights(lstm_export.model.get_weights())
    saved = []
    for k in range(2):
        save_keras_file(model, tmp_path / f"{k}.keras")
        saved.append([w.copy() for w in model.get_weights()])
        model.set_weights([w * 0.5 + 0.01 for w in model.get_weights()])  # the next "step"
    for k, want in enumerate(saved):
        got = keras.saving.load_model(tmp_path / f"{k}.keras").get_weights()
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
