"""The public Python API: tfchar.load / Model (generate, stream, score), tfchar.train / Run, tfchar.export,
their one-line errors, and the names staying lazy (no TensorFlow on `import tfchar`)."""

from __future__ import annotations

import importlib
import json
import math
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tfchar
from conftest import ROOT, tiny_overrides
from test_exporter import lstm_export, train_run  # noqa: F401  (session fixture: a trained run and its export)
from tfchar.core.errors import CheckpointError, ConfigError, DataError, TfcharError, TrainingInterrupted
from tfchar.runtimes.keras import IN_PROCESS_CHUNK
from tfchar.sampling.sample import sample


def tiny(extra: dict | None = None) -> dict:
    """The sections of a seconds-long run (conftest.tiny_overrides) as keyword arguments of tfchar.train."""
    base = {"data": {"batch_size": 8, "seq_length": 32}, "model": {"rnn_size": 32, "num_layers": 2, "embedding_dim": 16},
            "train": {"eval_every": 10, "max_steps": 20, "sample_length": 20}}
    for section, values in (extra or {}).items():
        base.setdefault(section, {}).update(values)
    return base


# ------------------------------------------------------------------------------------------ the package

def test_api_names_are_lazy_and_the_command_modules_do_not_shadow_them():
    code = ("import sys, importlib, tfchar; names = sorted(tfchar.__all__); "
            "print('tensorflow' in sys.modules); "
            "importlib.import_module('tfchar.export'); importlib.import_module('tfchar.tune'); "
            "print(callable(tfchar.export) and callable(tfchar.tune) and callable(tfchar.load), "
            "tfchar.export.__module__, tfchar.tune.__module__, sys.modules['tfchar.tune'].main.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "tfchar.api.tasks", "tfchar.api.tasks", "tfchar.tune"]
    assert {"load", "Model", "train", "Run", "export", "tune", "TfcharError"} <= set(tfchar.__all__)


def test_every_public_name_is_in_docs_api_md_with_its_signature():
    import inspect
    doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")

    def shown(name, obj):
        params = []
        for p in inspect.signature(obj).parameters.values():
            if p.name == "self":
                continue
            if p.kind == p.KEYWORD_ONLY and not any(x.startswith("*") for x in params):
                params.append("*")
            params.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
        return f"{name}({', '.join(params)})"

    names = [("tfchar.load", tfchar.load), ("tfchar.train", tfchar.train), ("tfchar.export", tfchar.export),
             ("tfchar.tune", tfchar.tune)]
    names += [(f"Model.{m}", getattr(tfchar.Model, m)) for m in ("generate", "stream", "score")]
    missing = [shown(n, o) for n, o in names if shown(n, o) not in doc]
    assert not missing, "docs/api.md lacks: " + "; ".join(missing)
    for name in tfchar.__all__:
        assert f"`{name}`" in doc or f"tfchar.{name}" in doc, name


# ------------------------------------------------------------------------------------------ Model

@pytest.fixture(scope="module")
def routes(lstm_export):
    """The same trained weights through every route: run dir (Keras), export dir (SavedModel), .tflite."""
    r = lstm_export
    return {"keras": tfchar.load(r.run), "saved_model": tfchar.load(r.out), "tflite": tfchar.load(r.out / "model.tflite")}


def test_generate_prints_what_the_command_line_prints_on_every_route(routes, lstm_export):
    knobs = dict(length=120, temperature=0.8, top_k=0, top_p=1.0, seed=7)
    want = sample(lstm_export.out / "model.tflite", prime="ROMEO:", out=False, **knobs)[0]
    assert want.startswith("ROMEO:") and len(want) == 6 + 120
    for kind, lm in routes.items():
        assert lm.kind == kind
        assert lm.generate("ROMEO:", **knobs) == want, kind
    lm = routes["keras"]
    assert lm.vocab.tokens == lstm_export.vocab.tokens and lm.config.model.rnn_size == 32
    assert lm.path == lstm_export.run


def test_a_list_of_primes_is_sampled_as_the_command_line_samples_several(routes, lstm_export):
    lm = routes["keras"]
    same = lm.generate(["KING:", "KING:", "KING:"], length=50, seed=11)
    assert same == sample(lstm_export.run, prime="KING:", length=50, seed=11, num_samples=3, out=False)
    assert len(set(same)) == 3  # seeds 11, 12, 13
    mixed = lm.generate(["KING:", "ROMEO:"], length=50, seed=11)
    assert mixed == [lm.generate("KING:", length=50, seed=11), lm.generate("ROMEO:", length=50, seed=12)]
    assert routes["tflite"].generate(["KING:", "ROMEO:"], length=50, seed=11) == mixed


def test_stream_yields_the_text_piece_by_piece(routes, lstm_export):
    # one piece per generate_chunk call: the export's K on the TFLite route, IN_PROCESS_CHUNK in process
    k = lstm_export.metrics["chunk_size"]
    for lm, chunks in ((routes["keras"], math.ceil(300 / IN_PROCESS_CHUNK)), (routes["tflite"], math.ceil(300 / k))):
        pieces = list(lm.stream("ROMEO:", length=300, seed=3))
        assert pieces[0] == "ROMEO:" and len(pieces) == 1 + chunks
        assert "".join(pieces) == lm.generate("ROMEO:", length=300, seed=3)


def test_stop_ends_the_text_at_the_first_stop_string(routes):
    lm = routes["keras"]
    full = lm.generate("ROMEO:", length=600, seed=5)
    stop = "e "
    cut = lm.generate("ROMEO:", length=600, seed=5, stop=stop)
    end = full.index(stop, len("ROMEO:")) + len(stop)
    assert cut == full[:end] and cut.endswith(stop)
    assert "".join(routes["tflite"].stream("ROMEO:", length=600, seed=5, stop=stop)) == cut


def test_empty_prime_starts_after_a_newline(routes):
    lm = routes["saved_model"]
    text = lm.generate("", length=40, seed=9)
    assert len(text) == 40
    assert "\n" + text == lm.generate("\n", length=40, seed=9)


def test_score_is_the_mean_cross_entropy_of_each_next_character(routes, lstm_export):
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
    ids = lstm_export.vocab.encode(text)
    logits = np.asarray(lstm_export.model(ids[None, :-1], training=False), np.float64)[0]  # [N-1, V]
    log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    nats = float(np.mean(log_z - logits[np.arange(len(ids) - 1), ids[1:]]))  # naive reference
    for lm in routes.values():
        got = lm.score(text)
        assert set(got) == {"nats", "bpc", "perplexity", "chars"} and got["chars"] == len(text) - 1
        assert got["nats"] == pytest.approx(nats, abs=1e-5)
        assert got["bpc"] == pytest.approx(nats / math.log(2), abs=1e-5)
    assert [s["chars"] for s in routes["tflite"].score([text, "abc"])] == [len(text) - 1, 2]


@pytest.mark.parametrize("call, error, words", [
    (lambda lm: lm.generate("ROMEO:", length=0), ConfigError, "--length 0 must be positive"),
    (lambda lm: lm.generate("ROMEO:", length=-5), ConfigError, "must be positive"),
    (lambda lm: lm.generate("ROMEO:", stop=""), ConfigError, "non-empty string"),
    (lambda lm: lm.generate("ROMEO:", stop="€"), ConfigError, "could never be generated"),
    (lambda lm: lm.generate("ROMEO€:"), DataError, "not in the model's vocabulary: '€'; remove them or pass --unknown skip"),
    (lambda lm: lm.generate("ROMEO:", unknown="drop"), ConfigError, "--unknown 'drop' must be one of: error, skip"),
    (lambda lm: lm.generate("ROMEO:", temperature=0), ConfigError, "--temperature 0 must be a positive number"),
    (lambda lm: lm.generate("ROMEO:", top_p=0), ConfigError, "--top_p"),
    (lambda lm: lm.generate("ROMEO:", seed=2**40), ConfigError, "must fit in 32 bits"),
    (lambda lm: lm.generate([]), ConfigError, "non-empty list"),
    (lambda lm: lm.generate(["ROMEO:", 3]), ConfigError, "list of strings"),
    (lambda lm: lm.stream(["ROMEO:"]), ConfigError, "one prime"),
    (lambda lm: lm.score(""), DataError, "at least 2 characters"),
    (lambda lm: lm.score("€€€"), DataError, "not in the model's vocabulary"),
    (lambda lm: lm.score("€€€", unknown="skip"), DataError, "at least 2 characters"),
])
def test_bad_arguments_are_one_line_errors(routes, call, error, words):
    for lm in (routes["keras"], routes["tflite"]):
        with pytest.raises(error) as e:
            call(lm)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_unknown_characters_can_be_skipped(routes):
    lm = routes["keras"]
    assert lm.generate("ROM€EO:", unknown="skip", length=30, seed=1) == lm.generate("ROMEO:", length=30, seed=1)
    assert lm.score("To be€ or", unknown="skip") == lm.score("To be or")


def test_empty_prime_without_a_newline_in_the_vocabulary_is_an_error(tmp_path):
    run = train_run(tmp_path / "nonl", "the cat sat on a mat, and a rat ate the hat. " * 400, rnn_size=16, steps=2)
    lm = tfchar.load(run.run)
    assert "\n" not in lm.vocab.tokens
    for prime, unknown in (("", "error"), ("\n", "skip")):
        with pytest.raises(ConfigError, match="vocabulary has none: give a prime") as e:
            lm.generate(prime, length=10, unknown=unknown)
        assert "\n" not in str(e.value)
    assert lm.generate("the", length=10).startswith("the")


def test_load_refuses_what_is_not_a_model(tmp_path):
    for what, words in ((tmp_path / "missing", "does not exist"), ("no_such_model", "shipped model's name"),
                        (tmp_path, "is not a run dir")):
        with pytest.raises(CheckpointError, match=words) as e:
            tfchar.load(what)
        assert "\n" not in str(e.value)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a .tflite model"):
        tfchar.load(tmp_path / "x.txt")
    with pytest.raises(ConfigError, match="'best' or 'last'"):
        tfchar.load(tmp_path, which="worst")


def test_a_shipped_model_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from tfchar.core.shipped import shipped
    from tfchar.evaluation.evaluate import evaluate

    monkeypatch.chdir(tmp_path)
    lm = tfchar.load("tiny_shakespeare")
    assert lm.path == shipped("saved_models/tiny_shakespeare") and lm.config.model.rnn_size == 320
    text = lm.generate("ROMEO:", length=40, seed=7)
    assert text == sample("tiny_shakespeare", prime="ROMEO:", length=40, seed=7, out=False)[0]
    (tmp_path / "t.txt").write_text("To be, or not to be, that is the question.\n")
    assert evaluate("tiny_shakespeare", text=tmp_path / "t.txt")["bpc"] == pytest.approx(
        lm.score("To be, or not to be, that is the question.\n")["bpc"], abs=1e-4)


# ------------------------------------------------------------------------------------------ train / Run / export

def test_train_reports_progress_and_returns_the_run(small_text_file, tmp_path):
    calls = []
    run = tfchar.train(small_text_file, run_dir=tmp_path / "run", log=None,
                       progress=lambda step, bpc, sample: calls.append((step, bpc, sample)), **tiny())
    assert [c[0] for c in calls] == [10, 20]
    assert all(isinstance(b, float) and 0 < b < 10 and isinstance(s, str) and len(s) == 20 for _, b, s in calls)
    assert [h["step"] for h in run.history] == [10, 20]
    assert [h["val_bpc"] for h in run.history] == pytest.approx([c[1] for c in calls])
    assert run.run_dir == tmp_path / "run" and run.result["steps"] == 20
    assert run.result["best_val_bpc"] == pytest.approx(min(c[1] for c in calls))
    assert not (tmp_path / "saved_models").exists()  # the API exports only when asked
    assert run.best.kind == "keras" and run.best.generate("the", length=20, seed=1).startswith("the")
    metrics = tfchar.export(run, tmp_path / "export", int8=False, log=None)
    assert (tmp_path / "export" / "model.keras").is_file() and metrics["parity"]["keras"] <= 1e-5
    exported = tfchar.load(tmp_path / "export")
    assert exported.generate("the", length=40, seed=2) == run.best.generate("the", length=40, seed=2)


def test_train_arguments_are_checked_like_flags(small_text_file, tmp_path):
    cases = [(dict(model={"rnn_size": "256"}), "model.rnn_size expects int, got str '256'"),
             (dict(model={"rnn_sise": 256}), "unknown key model.rnn_sise"),
             (dict(train={"learning_rate": -1.0}), "train.learning_rate = -1.0 must be a positive number"),
             (dict(model=[256]), "model= takes a dict"),
             (dict(data={"unit": "word"}), "data.unit = 'word' is not one of: char, byte")]
    for kwargs, words in cases:
        with pytest.raises(ConfigError) as e:
            tfchar.train(small_text_file, run_dir=tmp_path / "x", log=None, **kwargs)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        tfchar.train(tmp_path / "missing.txt", log=None)


def test_ctrl_c_during_train_writes_a_checkpoint_and_raises_with_the_run(small_text_file, tmp_path):
    run_dir = tmp_path / "int"
    script = textwrap.dedent(f"""
        import tfchar
        try:
            tfchar.train({str(small_text_file)!r}, run_dir={str(run_dir)!r}, log=None,
                         data={{"batch_size": 8, "seq_length": 32}}, model={{"rnn_size": 32, "embedding_dim": 16}},
                         train={{"eval_every": 10, "epochs": 1000, "sample_length": 0}})
        except tfchar.TrainingInterrupted as e:
            print("interrupted", e.run.run_dir, len(e.run.history) > 0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        deadline = time.time() + 180
        while not (run_dir / "checkpoints" / "last").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (run_dir / "checkpoints" / "last").exists(), "training never wrote a checkpoint"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert out.split()[-3:] == ["interrupted", str(run_dir), "True"]
    assert (run_dir / "checkpoints" / "last").resolve().name.endswith("_interrupted")


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path, shakespeare_text):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = readme.split("\n## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_text.txt").write_text(shakespeare_text[200_000:300_000], encoding="utf-8")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    assert "ROMEO:" in out and "step 200:" in out  # generated text, and the progress of the last evaluation
    history = [json.loads(line) for line in (tmp_path / "runs" / "mine" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 200
    assert (tmp_path / "saved_models" / "mine" / "model.keras").is_file()


def test_tune_runs_the_command_line_search(tmp_path, monkeypatch, small_text_file):
    monkeypatch.chdir(tmp_path)
    result = tfchar.tune(small_text_file, log=None, data={"batch_size": 8, "seq_length": 20},
                         model={"num_layers": 1, "embedding_dim": 8},
                         train={"max_steps": 5, "sample_length": 0},
                         tune={"algorithm": "random", "max_trials": 2, "max_epochs": 1, "project": "p",
                               "space": str(ROOT / "tuning" / "smoke_space.toml")})
    from tfchar.tuning.trials import OBJECTIVE
    assert len(result["rows"]) == 2 and result["best"][OBJECTIVE] == min(r[OBJECTIVE] for r in result["rows"])
    best = (tmp_path / "tuning" / "p" / "best.toml").read_text()
    assert "rnn_size" in best and result["best_toml"].endswith("best.toml")
    with pytest.raises(ConfigError, match="train.init_from is set per trial by tune"):
        tfchar.tune(small_text_file, log=None, train={"init_from": "x"})
