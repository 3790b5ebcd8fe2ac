"""`python -m tfchar.evaluate`: agreement with fit's validation figure, exported routes, dynamic evaluation, errors."""

import hashlib
import json
import math

import numpy as np
import pytest

from conftest import tiny_overrides
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.data.corpus import load_corpus
from tfchar.core.errors import ConfigError
from tfchar.evaluate import main
from tfchar.evaluation.evaluate import evaluate, report
from tfchar.training.run_dir import resolve_config
from tfchar.training.trainer import fit


@pytest.fixture(scope="module")
def run(small_text_file, tmp_path_factory):
    """A briefly trained tiny model: past the unigram plateau, far from converged (dynamic evaluation helps).
    A constant rate (char-rnn's schedule does not decay within 200 steps), not an annealed one that settles it."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    cfg, rd = resolve_config(None, tiny_overrides(small_text_file, run_dir, **{
        "train.max_steps": 200, "train.eval_every": 50, "train.learning_rate": 0.01, "train.sample_length": 0,
        "train.lr_schedule": "char-rnn"}))
    fit(cfg, rd, log=lambda s: None)
    return run_dir


def naive_progressive_nats(run_dir, ids):
    """Reference: one stream, whole text in one call of a non-stateful model, mean -log p in float64."""
    model, cfg, vocab = ckpt_lib.load_inference_model(run_dir, batch_size=1, stateful=False)
    logits = np.asarray(model(np.asarray(ids[:-1], np.int32)[None]), np.float64)[0]  # [N - 1, V]
    top = logits.max(-1)
    log_z = top + np.log(np.exp(logits - top[:, None]).sum(-1))
    return float((log_z - logits[np.arange(len(ids) - 1), ids[1:]]).mean())


def test_matches_fits_validation_figure(run):
    """fit scores validation with 8 contiguous streams from fresh state: --streams 8 is the same computation."""
    state = ckpt_lib.read_trainer_state(ckpt_lib.resolve_checkpoint(run, "best"))
    history = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    result = evaluate(run, split="val", streams=8)
    assert result["nats"] == pytest.approx(state["best_val_loss"], abs=1e-5)
    assert result["nats"] == pytest.approx(min(h["val_loss"] for h in history), abs=1e-5)
    # One stream gives every character its whole left context: a different (exact) figure, same ballpark.
    one = evaluate(run, split="val")
    assert abs(one["nats"] - result["nats"]) < 0.05 and one["chars"] > result["chars"]


def test_one_stream_equals_a_naive_full_pass(run, small_text_file):
    cfg, vocab, _ = ckpt_lib.load_run(run)
    ids = np.asarray(load_corpus(cfg.data).val[:700])
    path = small_text_file.parent / "val700.txt"
    path.write_text(vocab.decode(ids), encoding="utf-8")
    result = evaluate(run, text=path, chunk=64)  # 11 chunks, the state carried between them
    assert result["chars"] == len(ids) - 1 and result["skipped"] == 0
    assert result["nats"] == pytest.approx(naive_progressive_nats(run, ids), abs=1e-4)
    assert result["bpc"] == pytest.approx(result["nats"] / math.log(2)) and \
        result["perplexity"] == pytest.approx(math.exp(result["nats"]))


def test_unknown_characters_are_counted_not_hidden(run, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Hello wörld, €€ to be or not\n", encoding="utf-8")
    result = evaluate(run, text=path)
    assert result["skipped"] == 3 and result["skipped_chars"] == ["ö", "€"]
    assert result["chars"] == len("Hello wörld, €€ to be or not\n") - 3 - 1
    assert "skipped 3 character(s)" in report(result)


def test_exported_routes_agree_with_the_run_dir(run, tmp_path):
    from tfchar.exporting.exporter import export_run

    out = tmp_path / "export"
    export_run(run, out, int8=False, log=lambda s: None)
    keras = evaluate(run, split="test", streams=8)
    for model in (out, out / "saved_model", out / "model.tflite"):
        exported = evaluate(model, split="test", streams=8)
        assert exported["chars"] == keras["chars"]
        assert exported["nats"] == pytest.approx(keras["nats"], abs=1e-4), model  # float32 ops, other order
    (out / "model.keras").unlink()  # an export written before exports carried their Keras weights
    with pytest.raises(ConfigError, match="--dynamic needs trainable weights"):
        evaluate(out / "model.tflite", split="test", dynamic=True)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dynamic_evaluation_lowers_bpc_and_leaves_weights_untouched(run):
    files = sorted(p for p in (run / "checkpoints").rglob("*") if p.is_file())
    before = {p: sha(p) for p in files}
    result = evaluate(run, split="val", dynamic=True, dynamic_lr=1e-3, segment=50)
    d = result["dynamic"]
    assert d["chars"] == result["chars"] and d["updates"] == math.ceil(result["chars"] / 50)
    assert d["bpc"] < result["bpc"] - 0.01, (d["bpc"], result["bpc"])
    assert {p: sha(p) for p in files} == before
    assert "static" in report(result) and "dynamic" in report(result)


def test_dynamic_with_a_zero_step_is_the_static_score(run):
    """A tiny learning rate changes nothing measurable: dynamic scoring itself is the progressive score."""
    result = evaluate(run, split="val", dynamic=True, dynamic_lr=1e-12, dynamic_optimizer="sgd", segment=37)
    assert result["dynamic"]["nats"] == pytest.approx(result["nats"], abs=1e-5)


def test_cli_prints_the_figures(run, capsys):
    main([str(run), "--split", "val", "--streams", "8"])
    out = capsys.readouterr().out
    assert "nats/char" in out and "bpc" in out and "perplexity" in out


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--split", "val"], "does not exist"),
    (["{run}", "--text", "{missing}"], "is not a file"),
    (["{run}", "--split", "dev"], "invalid choice: 'dev'"),
    (["{run}", "--split", "val", "--text", "x.txt"], "not allowed with"),
])
def test_bad_inputs_are_one_line_errors(run, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(run=run, missing=tmp_path / "nope") for a in args])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfchar: error:") and message in lines[0], lines
