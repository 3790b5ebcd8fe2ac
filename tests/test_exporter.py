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
from tfchar.core.errors import CheckpointError, ConfigError
from tfchar.core.vocab import Vocab
from tfchar.exporting import exporter, model_card
from tfchar.nn.checkpoint import point, save_checkpoint
from tfchar.nn import generator as generator_lib
from tfchar.nn.generator import CharGenerator
from tfchar.nn.models import build_model
from tfchar.ops.rng import sample_seeds
from tfchar.ops.streams import stream_view
from tfchar.runtimes.chunked import ChunkSignature, chunked_samples
from tfchar.runtimes.keras import KerasRuntime
from tfchar.runtimes.saved_model import SavedModelRuntime
from tfchar.runtimes.tflite import TFLiteRuntime, compiled_model_chunks, interpreter_chunks
from tfchar.sampling.sample import sample

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
    (run / "result.json").write_text(json.dumps({"steps": steps, "epochs": 1.0, "wall_time_s": 12.3,
                                                 "best_val_loss": 1.3863, "best_val_bpc": 2.0}))
    (run / "history.jsonl").write_text('{"step": 15, "val_bpc": 2.5}\n{"step": 30, "val_bpc": 2.0}\n')
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


def tflite_generate(path, prime, length, temperature=1.0, top_k=0, top_p=1.0, seed=0, stop=None) -> np.ndarray:
    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner("generate" if stop is None else "generate_until")
    extra = {} if stop is None else {"stop": np.int32(stop)}
    return runner(prime=np.asarray(prime, np.int32), length=np.int32(length), temperature=np.float32(temperature),
                  top_k=np.int32(top_k), top_p=np.float32(top_p), seed=np.int32(seed), **extra)["codepoints"]


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


def test_a_large_input_table_is_not_folded_and_the_step_stays_in_parity(tmp_path_factory, shakespeare_text,
                                                                       monkeypatch, tmp_path):
    # A large vocabulary's [V, GH] table would dwarf the embedding and kernel it replaces: layer 0 then gathers
    # the embedding row and multiplies (here forced on the recipe model, whose first layer also adds its input).
    r = exported(tmp_path_factory, shakespeare_text[:60_000], "lstm", int8=False, model_keys=dict(RECIPE_KEYS))
    monkeypatch.setattr(generator_lib, "FOLD_LIMIT", 0)
    gen = CharGenerator.from_keras(r.model, r.vocab)
    assert "input_table" not in gen.layers[0] and {"embedding", "kernel", "input_bias"} <= set(gen.layers[0])
    tf.saved_model.save(gen, str(tmp_path / "saved_model"), signatures=gen.signatures())
    (tmp_path / "model.tflite").write_bytes(exporter.to_tflite(tmp_path / "saved_model"))
    ids = r.splits["test"][:120]
    want = keras_logits(r.model, ids)
    for step in (SavedModelRuntime(tmp_path / "saved_model").step, TFLiteRuntime(tmp_path / "model.tflite").step):
        np.testing.assert_allclose(run_steps(step, ids, r.metrics["state_size"]), want, atol=1e-5, rtol=0)


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
        py = gen.generate(tf.constant(prime), 300, k["temperature"], k["top_k"], k["top_p"], seed)["codepoints"]
        np.testing.assert_array_equal(lite, sm["codepoints"].numpy())
        np.testing.assert_array_equal(lite, py.numpy())
        assert len(lite) == 300 and set(lite) <= set(r.vocab.codepoints)


def chunk_routes(r) -> dict:
    """generate_chunk of the export on every runtime: the SavedModel (TensorFlow), both TFLite files on the
    LiteRT interpreter, and model.tflite through LiteRT's CompiledModel API."""
    signature = tf.saved_model.load(str(r.out / "saved_model")).signatures["generate_chunk"]
    k, s = signature.structured_input_signature[1]["prime"].shape[0], r.metrics["state_size"]
    routes = {"saved_model": ChunkSignature(lambda **x: signature(**{n: tf.constant(v) for n, v in x.items()}),
                                            k, s, r.vocab, "SavedModel")}
    for name in ("model.tflite", "model_int8.tflite"):
        routes[name] = interpreter_chunks(Interpreter(model_path=str(r.out / name)), r.vocab, name)
    routes["compiled_model"] = compiled_model_chunks(r.out / "model.tflite", r.vocab)
    return routes


def uneven_chain(chunks, prime, lengths, seed, stop=-1, **knobs) -> list[int]:
    """Call generate_chunk with the prime in pieces of at most K and then `lengths` code points per call."""
    state, carry = chunks.zeros()
    out = []
    for i in range(0, len(prime), chunks.size):
        piece = prime[i:i + chunks.size]
        r = chunks(piece, len(piece), 0, state, carry, seed=seed, stop=stop, **knobs)
        state, carry = r["state"], r["carry"]
        assert r["valid"] == 0
    for n in lengths:
        r = chunks([], 0, n, state, carry, seed=seed, stop=stop, **knobs)
        state, carry = r["state"], r["carry"]
        out += r["codepoints"][:r["valid"]].tolist()
    return out


CHUNK_KNOBS = [dict(temperature=1.0, top_k=0, top_p=1.0), dict(temperature=0.7, top_k=10, top_p=0.9),
               dict(temperature=0.0, top_k=0, top_p=1.0)]


def test_chained_chunks_equal_generate_on_every_runtime(lstm_export):
    r = lstm_export
    routes = chunk_routes(r)
    assert routes["model.tflite"].size == r.metrics["chunk_size"] == 64
    prime = [int(c) for c in r.vocab.codepoints[r.vocab.encode(r.vocab.decode(r.splits["test"][:150]))]]  # > 2 K
    for knobs in CHUNK_KNOBS:
        for seed in (0, 7, -123):
            want = tflite_generate(r.out / "model.tflite", prime, 300, seed=seed, **knobs).tolist()
            want8 = tflite_generate(r.out / "model_int8.tflite", prime, 300, seed=seed, **knobs).tolist()
            for name, chunks in routes.items():
                expect = want8 if name == "model_int8.tflite" else want
                lengths = [64, 64, 64, 64, 44] if seed else [1, 63, 5, 64, 64, 64, 39]  # boundaries move
                assert uneven_chain(chunks, prime, lengths, seed, **knobs) == expect, (name, knobs, seed)


def test_chunks_stop_where_generate_until_stops(lstm_export):
    r = lstm_export
    routes = chunk_routes(r)
    prime = [ord(c) for c in "ROMEO:"]
    for seed in (1, 2, 3):
        full = tflite_generate(r.out / "model.tflite", prime, 400, seed=seed, temperature=0.8).tolist()
        until = tflite_generate(r.out / "model.tflite", prime, 400, seed=seed, temperature=0.8, stop=ord(" ")).tolist()
        assert until == full[:full.index(ord(" ")) + 1]
        for name, chunks in routes.items():
            if name == "model_int8.tflite":
                continue
            first = uneven_chain(chunks, prime, [64], seed, stop=ord(" "), temperature=0.8, top_k=0, top_p=1.0)
            assert first == until, name
            pieces = chunked_samples(chunks, r.vocab.encode("ROMEO:"), 400, 0.8, 0, 1.0, seed, 1, [ord("e"), ord(" ")])
            text = [int(c) for _, piece in pieces for c in piece]
            end = next((i + 2 for i in range(len(full) - 1) if full[i:i + 2] == [ord("e"), ord(" ")]), len(full))
            assert text == full[:end], name


def test_a_wrong_size_state_is_an_error_not_a_crash(lstm_export):
    runner = Interpreter(model_path=str(lstm_export.out / "model.tflite")).get_signature_runner("generate_chunk")
    s = lstm_export.metrics["state_size"]
    args = dict(prime=np.zeros([64], np.int32), prime_length=np.int32(0), length=np.int32(8),
                state=np.zeros([1, s - 1], np.float32), carry=np.zeros([2], np.int32), temperature=np.float32(1),
                top_k=np.int32(0), top_p=np.float32(1), seed=np.int32(1), stop=np.int32(-1))
    with pytest.raises((RuntimeError, ValueError)):
        runner(**args)  # the raw runtime refuses it
    runner = Interpreter(model_path=str(lstm_export.out / "model.tflite")).get_signature_runner("generate_chunk")
    garbage = runner(**(args | {"state": np.zeros([1, s], np.float32), "carry": np.array([-5, 10**6], np.int32),
                                "length": np.int32(10**6), "stop": np.int32(10**7)}))
    assert int(garbage["valid"]) == 64  # out-of-range values are clamped in the graph
    with pytest.raises(ConfigError, match=f"state must be float32\\[1, {s}\\]"):
        TFLiteRuntime(lstm_export.out / "model.tflite").chunks()([], 0, 8, np.zeros([1, s - 1]), np.zeros([2]),
                                                                1.0, 0, 1.0, 1)


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
        assert set(interpreter.get_signature_list()) == set(exporter.SIGNATURES)
        chunk = interpreter.get_signature_runner("generate_chunk")
        assert all(-1 not in d["shape_signature"] for d in [*chunk.get_input_details().values(),
                                                             *chunk.get_output_details().values()])


# ------------------------------------------------------------------------------------------ files and metrics

def test_export_dir_layout_and_metrics(lstm_export):
    r, m = lstm_export, lstm_export.metrics
    assert {p.name for p in r.out.iterdir()} == {"saved_model", "model.tflite", "model_int8.tflite", "model.keras",
                                                  "vocab.json", "config.toml", "metrics.json", "MODEL_CARD.md"}
    assert json.loads((r.out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert Vocab.load(r.out / "vocab.json") == r.vocab
    cfg = config.load_resolved(r.out / "config.toml")
    assert (cfg.model.cell, cfg.model.rnn_size, cfg.data.unit) == ("lstm", 32, "char")
    # int8 stores matrix weights in 1 byte instead of 4, plus per-channel scales for each loop that reads them:
    # ~0.34x the float file for 2x384 (benchmarks/sample_throughput.py), barely smaller for this 2x32 model
    assert m["int8_size_ratio"] < 1.0
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
                 "signature_def['vocabulary']", "signature_def['generate_chunk']", "signature_def['generate_until']"):
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


def test_model_card_says_what_the_export_is(lstm_export):
    r, m = lstm_export, lstm_export.metrics
    card = (r.out / "MODEL_CARD.md").read_text(encoding="utf-8")
    params = r.model.count_params()
    for fact in (f"{params:,}", f"{len(r.vocab)} characters", f"{m['test_bpc']:.4f}", f"{m['int8_test_bpc']:.4f}",
                 f"{m['int8_size_ratio']:.2f}x", "python -m tfchar.fit --data.source=", "--model.rnn_size=32",
                 "`generate_chunk` | `prime` int32[64]", f"`state` float32[1,{m['state_size']}]", "`valid` int32[]",
                 "`generate_until`", "`step`", "verbatim", "30 steps (1.00 epochs) in 12 s", "epoch1.00_val2.0000",
                 "2 evaluations): 2.500 bpc at step 15, 2.000 at best"):
        assert fact in card, fact
    facts = model_card.CardFacts(name="x", metrics={"state_size": 8}, config=config.Config(), vocab=r.vocab,
                                 run=r.out / "nowhere", params=10, signatures={})
    assert "not recorded (the run has no result.json" in model_card.model_card(facts)


def test_export_refuses_a_chunk_size_below_one(lstm_export, tmp_path):
    with pytest.raises(ConfigError, match="--chunk_size 0 must be positive"):
        exporter.export_run(lstm_export.run, tmp_path / "out", chunk_size=0, log=lambda s: None)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="export.chunk_size = -3 must be positive"):
        config.Config().replace(export={"chunk_size": -3})


def test_export_refuses_to_replace_a_foreign_dir(lstm_export, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not a tfchar export"):
        exporter.export_run(lstm_export.run, tmp_path, log=lambda s: None)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bounded_scoring_says_how_many_characters_each_figure_scored(lstm_export, tmp_path):
    r = lstm_export
    assert r.metrics["chars"]["test_bpc"] == r.metrics["split_chars"]["test"] - 1 - (len(r.splits["test"]) - 1) % 8
    m = exporter.export_run(r.run, tmp_path / "bounded", int8=True, splits=r.splits, log=lambda s: None,
                            eval_chars=1000)
    assert set(m["chars"].values()) == {1000}  # 125 characters of each of the 8 streams, on every route
    view = stream_view(np.asarray(r.splits["test"]), 8)[:, :126]  # [8, 126]: the first 125 scored per stream
    logp = tf.nn.log_softmax(keras_logits_batch(r.model, view[:, :-1]).astype(np.float64)).numpy()
    nll = -np.take_along_axis(logp, view[:, 1:, None].astype(np.int64), axis=-1)
    assert m["test_bpc"] == pytest.approx(nll.mean() / math.log(2), abs=1e-4)
    assert abs(m["tflite_test_bpc"] - m["test_bpc"]) < 1e-4 and "first 1,000 characters" in m["bpc_method"]
    saved = json.loads((tmp_path / "bounded" / "metrics.json").read_text())
    assert saved["chars"] == m["chars"] and saved["split_chars"] == r.metrics["split_chars"]


def test_a_killed_exports_leftovers_are_removed(lstm_export, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.tmp-{dead.pid}"
    (stale / "saved_model").mkdir(parents=True)
    exporter.export_run(lstm_export.run, tmp_path / "model", int8=False, splits={}, log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
