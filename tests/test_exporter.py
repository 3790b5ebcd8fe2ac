"""Export: SavedModel + TFLite files that match the Keras model, sample alike, and load without tfchar."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from tfchar.core import config
from tfchar.exporting import exporter
from tfchar.runtimes.saved_model import SavedModelRuntime
from tfchar.runtimes.tflite import TFLiteRuntime
from tfchar.sampling.sample import sample
from tfchar.nn.checkpoint import point, save_checkpoint
from tfchar.ops.streams import stream_view
from tfchar.core.errors import CheckpointError
from tfchar.nn.generator import CharGenerator
from tfchar.nn.models import build_model
from tfchar.core.vocab import Vocab

_MEMO: dict = {}  # trained runs and exports, shared by every test module that imports the fixtures


def train_run(root: Path, text: str, cell: str = "lstm", unit: str = "char", rnn_size: int = 32,
              num_layers: int = 2, steps: int = 30, model_keys: dict | None = None) -> SimpleNamespace:
    """A run dir with a model trained for a few seconds on `text` (so its logits are far from uniform).

    The text is split 90/5/5 into train/val/test ids; the splits are returned for the exporter.
    `model_keys`: more [model] keys (build_model arguments of the same names), e.g. {"residual": True}.
    """
    model_keys = {"embedding_dim": 16, **(model_keys or {})}
    root.mkdir(parents=True, exist_ok=True)
    (root / "input.txt").write_text(text, encoding="utf-8")
    vocab = Vocab.from_codepoints(text.encode("utf-8") if unit == "byte" else map(ord, text), unit)
    ids = vocab.encode(text)
    a, b = int(len(ids) * 0.9), int(len(ids) * 0.95)
    model = build_model(len(vocab), cell, rnn_size, num_layers, seed=0, **model_keys)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    n = a // 65
    windows = ids[:n * 65].reshape(n, 65)
    model.fit(windows[:, :-1], windows[:, 1:], batch_size=32, epochs=1, steps_per_epoch=min(steps, n // 32),
              shuffle=False, verbose=0)  # no shuffling: the same weights every session
    cfg = config.Config().replace(
        data={"source": str(root / "input.txt"), "unit": unit, "cache_dir": str(root / "cache")},
        model={"cell": cell, "rnn_size": rnn_size, "num_layers": num_layers, **model_keys})
    run = root / "run"
    run.mkdir()
    config.save(cfg, run / "config.toml")
    vocab.save(run / "vocab.json")
    save_checkpoint(run / "checkpoints", "epoch1.00_val2.0000", model, None, {"step": steps})
    point(run / "checkpoints", "best", "epoch1.00_val2.0000")
    return SimpleNamespace(run=run, model=model, vocab=vocab, splits={"val": ids[a:b], "test": ids[b:]})


def exported(tmp_path_factory, text: str, cell: str, int8: bool = True, unit: str = "char",
             model_keys: dict | None = None) -> SimpleNamespace:
    """A trained run and its export, built once per session."""
    key = (cell, int8, unit, tuple(sorted((model_keys or {}).items())))
    if key not in _MEMO:
        root = tmp_path_factory.mktemp(f"{cell}_{unit}")
        r = train_run(root, text, cell, unit, model_keys=model_keys)
        r.out = root / "export"
        r.metrics = exporter.export_run(r.run, r.out, int8=int8, splits=r.splits, log=lambda s: None)
        _MEMO[key] = r
    return _MEMO[key]


@pytest.fixture(scope="session")
def lstm_export(tmp_path_factory, shakespeare_text):
    return exported(tmp_path_factory, shakespeare_text[:60_000], "lstm")


def keras_logits(model, ids) -> np.ndarray:
    return np.asarray(model(np.asarray(ids, np.int32)[None, :], training=False))[0]  # [N, V]


def keras_logits_batch(model, ids) -> np.ndarray:
    return np.asarray(model(np.asarray(ids, np.int32), training=False))  # [B, T, V]


def run_steps(step, ids, state_size) -> np.ndarray:
    state, out = np.zeros([1, state_size], np.float32), []
    for token in ids:
        logits, state = step(np.array([token], np.int32), state)
        out.append(np.asarray(logits)[0])
    return np.array(out)


def tflite_generate(path, prime, length, temperature=1.0, top_k=0, top_p=1.0, seed=0) -> np.ndarray:
    runner = Interpreter(model_path=str(path)).get_signature_runner("generate")
    return runner(prime=np.asarray(prime, np.int32), length=np.int32(length), temperature=np.float32(temperature),
                  top_k=np.int32(top_k), top_p=np.float32(top_p), seed=np.int32(seed))["codepoints"]


# ------------------------------------------------------------------------------------------ the step

@pytest.mark.parametrize("cell", ["lstm", pytest.param("gru", marks=pytest.mark.slow),
                                  pytest.param("rnn", marks=pytest.mark.slow)])
def test_exported_step_matches_keras_on_real_text(tmp_path_factory, shakespeare_text, cell):
    r = exported(tmp_path_factory, shakespeare_text[:60_000], cell, int8=(cell == "lstm"))
    ids = r.splits["test"][:200]
    want = keras_logits(r.model, ids)
    assert want.std() > 1.0  # trained: far from uniform
    s = r.metrics["state_size"]
    for step in (SavedModelRuntime(r.out / "saved_model").step, TFLiteRuntime(r.out / "model.tflite").step):
        np.testing.assert_allclose(run_steps(step, ids, s), want, atol=1e-5, rtol=0)
    assert max(r.metrics["parity"]["saved_model"], r.metrics["parity"]["tflite"]) <= 1e-5


# Residual adds (the first layer's too: E = H) and layer norm between the layers, trained with locked dropout.
RECIPE_KEYS = {"embedding_dim": 32, "residual": True, "layer_norm": True, "dropout": 0.1, "input_dropout": 0.1,
               "locked_dropout": True}


@pytest.mark.parametrize("cell", ["lstm", pytest.param("gru", marks=pytest.mark.slow)])
def test_recipe_model_exports_in_parity(tmp_path_factory, shakespeare_text, cell):
    keys = dict(RECIPE_KEYS)
    r = exported(tmp_path_factory, shakespeare_text[:60_000], cell, int8=False, model_keys=keys)
    assert {"residual_0", "residual_1", "norm_1"} <= {l.name for l in r.model.layers}
    ids = r.splits["test"][:120]
    want = keras_logits(r.model, ids)
    assert want.std() > 1.0
    s = r.metrics["state_size"]
    for step in (SavedModelRuntime(r.out / "saved_model").step, TFLiteRuntime(r.out / "model.tflite").step):
        np.testing.assert_allclose(run_steps(step, ids, s), want, atol=1e-5, rtol=0)
    assert max(r.metrics["parity"]["saved_model"], r.metrics["parity"]["tflite"]) <= 1e-5
    prime = [ord(c) for c in "ROMEO:"]
    want_text = CharGenerator.from_keras(r.model, r.vocab).generate(
        tf.constant(prime), 60, 0.8, 0, 1.0, 5)["codepoints"].numpy().tolist()
    assert tflite_generate(r.out / "model.tflite", prime, 60, temperature=0.8, seed=5).tolist() == want_text


def test_step_runs_parallel_streams(lstm_export):
    r = lstm_export
    ids = r.splits["test"][:60].reshape(3, 20)  # 3 streams at once must equal 3 separate runs
    step = TFLiteRuntime(r.out / "model.tflite").step
    state, got = np.zeros([3, r.metrics["state_size"]], np.float32), []
    for t in range(20):
        logits, state = step(ids[:, t], state)
        got.append(logits)
    got = np.stack(got, axis=1)  # [B, T, V]
    for b in range(3):
        np.testing.assert_allclose(got[b], keras_logits(r.model, ids[b]), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ generate

KNOBS = [dict(temperature=1.0), dict(temperature=0.7, top_k=10), dict(temperature=1.2, top_p=0.9),
         dict(temperature=0.0)]


@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: "-".join(f"{a}{b}" for a, b in k.items()))
def test_generate_agrees_across_routes(lstm_export, knobs):
    r = lstm_export
    prime = r.vocab.codepoints[r.vocab.encode("ROMEO:")]
    loaded = tf.saved_model.load(str(r.out / "saved_model"))
    saved = loaded.signatures["generate"]
    gen = CharGenerator.from_keras(r.model, r.vocab)
    k = dict(temperature=0.0, top_k=0, top_p=1.0) | knobs
    for seed in (0, 1, 77):
        lite = tflite_generate(r.out / "model.tflite", prime, 300, seed=seed, **k)
        sm = saved(prime=tf.constant(prime), length=tf.constant(300), temperature=tf.constant(k["temperature"]),
                   top_k=tf.constant(k["top_k"]), top_p=tf.constant(k["top_p"]), seed=tf.constant(seed))
        py = np.concatenate(list(gen.stream(r.vocab.encode("ROMEO:"), 300, seed=seed, **k)), axis=1)
        np.testing.assert_array_equal(lite, sm["codepoints"].numpy())
        np.testing.assert_array_equal(lite, r.vocab.codepoints[py[0]])
        assert len(lite) == 300 and set(lite) <= set(r.vocab.codepoints)


def test_int8_is_seeded_and_reproducible(lstm_export):
    path, prime = lstm_export.out / "model_int8.tflite", [ord(c) for c in "ROMEO:"]
    a = tflite_generate(path, prime, 200, seed=4)
    np.testing.assert_array_equal(a, tflite_generate(path, prime, 200, seed=4))
    assert (a != tflite_generate(path, prime, 200, seed=5)).any()


def test_tflite_uses_builtin_ops_only(lstm_export):
    for name in ("model.tflite", "model_int8.tflite"):
        interpreter = Interpreter(model_path=str(lstm_export.out / name))
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert "WHILE" in ops and not any(o.startswith("Flex") or o == "CUSTOM" for o in ops), ops
        assert b"Flex" not in (lstm_export.out / name).read_bytes()
        assert set(interpreter.get_signature_list()) == {"generate", "step", "vocabulary"}


# ------------------------------------------------------------------------------------------ files and metrics

def test_export_dir_layout_and_metrics(lstm_export):
    r, m = lstm_export, lstm_export.metrics
    assert {p.name for p in r.out.iterdir()} == {"saved_model", "model.tflite", "model_int8.tflite", "model.keras",
                                                  "vocab.json", "config.toml", "metrics.json"}
    assert json.loads((r.out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert Vocab.load(r.out / "vocab.json") == r.vocab
    cfg = config.load_resolved(r.out / "config.toml")
    assert (cfg.model.cell, cfg.model.rnn_size, cfg.data.unit) == ("lstm", 32, "char")
    assert 0.2 < m["int8_size_ratio"] < 0.8  # ~0.35 for 2x128; fixed overhead weighs more in this tiny model
    assert abs(m["int8_bpc_change"]) < 0.05 and abs(m["tflite_test_bpc"] - m["test_bpc"]) < 1e-4
    assert m["test_bpc"] < math.log2(len(r.vocab)) - 1  # learned something


def reference_bpc(model, ids, streams=exporter.EVAL_STREAMS) -> float:
    """bpc of the Keras model in fit's validation layout: `streams` contiguous rows, each from zero state."""
    view = stream_view(np.asarray(ids), streams)  # [B, L + 1]
    logp = tf.nn.log_softmax(keras_logits_batch(model, view[:, :-1]).astype(np.float64)).numpy()  # [B, L, V]
    y = view[:, 1:]
    nll = -np.take_along_axis(logp, y[..., None].astype(np.int64), axis=-1)
    return nll.sum() / y.size / math.log(2)


def test_bpc_is_measured_through_step(lstm_export):
    r = lstm_export
    for split in ("val", "test"):
        assert r.metrics[f"{split}_bpc"] == pytest.approx(reference_bpc(r.model, r.splits[split]), abs=1e-4)


SCRIPT = """
import json, sys
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
args = dict(prime=tf.constant([82, 79, 77, 69, 79, 58]), length=tf.constant(80), temperature=tf.constant(0.8),
            top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(3))
out = m.signatures["generate"](**args)["codepoints"].numpy().tolist()
same = m.signatures["serving_default"](**args)["codepoints"].numpy().tolist() == out
step = m.signatures["step"]
s = step.structured_input_signature[1]["state"].shape[1]
r = step(token=tf.constant([1, 2]), state=tf.zeros([2, s]))
print(json.dumps({"tfchar": [k for k in sys.modules if k.startswith("tfchar")], "out": out, "same": same,
                  "logits": r["logits"].shape.as_list(), "state": r["state"].shape.as_list(), "s": s}))
"""


@pytest.mark.slow
def test_saved_model_loads_without_tfchar_and_shows_in_cli(lstm_export, tmp_path):
    sm = str(lstm_export.out / "saved_model")
    load = subprocess.Popen([sys.executable, "-c", SCRIPT, sm], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    show = subprocess.Popen(["saved_model_cli", "show", "--all", "--dir", sm], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (out, err), (shown, show_err) = load.communicate(timeout=120), show.communicate(timeout=120)
    assert load.returncode == 0, err[-2000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got["tfchar"] == [] and got["same"]
    s, v = lstm_export.metrics["state_size"], len(lstm_export.vocab)
    assert (got["s"], got["logits"], got["state"]) == (s, [2, v], [2, s])
    want = CharGenerator.from_keras(lstm_export.model, lstm_export.vocab).generate(
        tf.constant([82, 79, 77, 69, 79, 58]), 80, 0.8, 0, 1.0, 3)["codepoints"].numpy().tolist()
    assert got["out"] == want
    assert show.returncode == 0, show_err[-2000:]
    for name in ("signature_def['generate']", "signature_def['step']", "signature_def['serving_default']",
                 "signature_def['vocabulary']"):
        assert name in shown


@pytest.mark.slow
def test_byte_model_exports_byte_values(tmp_path_factory, shakespeare_text):
    text = shakespeare_text[:20_000] + "\nCAFÉ: déjà vu, naïve café.\n" * 20
    r = exported(tmp_path_factory, text, "gru", int8=False, unit="byte")
    vocabulary = Interpreter(model_path=str(r.out / "model.tflite")).get_signature_runner("vocabulary")()
    assert int(vocabulary["byte_unit"]) == 1 and vocabulary["codepoints"].max() < 256
    prime = list("CAFÉ".encode())
    out = tflite_generate(r.out / "model.tflite", prime, 100, seed=1)
    assert out.max() < 256
    texts = sample(r.out / "model.tflite", prime="CAFÉ", length=100, seed=1, out=False)
    assert texts == [bytes(prime + out.tolist()).decode("utf-8", "replace")]


def test_export_refuses_to_replace_a_foreign_dir(lstm_export, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a tfchar export"):
        exporter.export_run(lstm_export.run, tmp_path, log=lambda s: None)
    assert (tmp_path / "notes.txt").read_text() == "mine"
