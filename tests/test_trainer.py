"""fit end to end on a small real text: checkpoints, resume, init_from, TensorBoard, divergence, Ctrl-C.

Fine-tuning on another text (vocabulary growth, the source's config) is tests/test_finetune.py."""

import json
import math
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import tiny_overrides
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.core.errors import CheckpointError, ConfigError, TrainingDiverged
from tfchar.nn.models import build_model, reset_states
from tfchar.training.run_dir import resolve_config
from tfchar.training.trainer import fit


def train(source, run_dir, **extra):
    cfg, rd = resolve_config(None, tiny_overrides(source, run_dir, **extra))
    return fit(cfg, rd, log=lambda s: None)


@pytest.fixture(scope="module")
def trained(small_text_file, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "r"
    result = train(small_text_file, run_dir, **{"train.max_steps": 40})
    return run_dir, result


def test_run_dir_describes_itself(trained):
    run_dir, result = trained
    assert (run_dir / "config.toml").is_file() and (run_dir / "vocab.json").is_file()
    ckpts = run_dir / "checkpoints"
    named = sorted(p.name for p in ckpts.iterdir() if not p.is_symlink())
    assert all(re.fullmatch(r"epoch\d+\.\d\d_val\d+\.\d{4}(_step\d+)?", n) for n in named), named
    assert (ckpts / "best").is_symlink() and (ckpts / "last").is_symlink()
    history = [json.loads(l) for l in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [10, 20, 30, 40]
    assert (ckpts / "best").resolve().name == min(history, key=lambda h: h["val_loss"])["checkpoint"]
    assert (ckpts / "last").resolve().name == history[-1]["checkpoint"]
    assert result["best_val_loss"] < math.log(len(json.loads((run_dir / "vocab.json").read_text())))
    model, cfg, vocab = ckpt_lib.load_inference_model(run_dir)  # nothing else is needed to rebuild it
    assert model.get_layer("rnn_0").units == cfg.model.rnn_size == 32


def test_tensorboard_event_files_hold_scalars_text_and_hparams(trained):
    run_dir, _ = trained
    train_ev = EventAccumulator(str(run_dir / "logs" / "train")).Reload()
    val_ev = EventAccumulator(str(run_dir / "logs" / "validation")).Reload()
    root_ev = EventAccumulator(str(run_dir / "logs")).Reload()
    tags = set(train_ev.Tags()["tensors"])
    assert {"loss", "bpc", "learning_rate", "grad_norm", "chars_per_sec"} <= tags
    import tensorflow as tf
    lr = [float(tf.make_ndarray(e.tensor_proto)) for e in train_ev.Tensors("learning_rate")]
    assert lr and all(0 < v <= 2e-3 for v in lr) and lr == sorted(lr, reverse=True)
    assert lr[-1] < 0.5 * lr[0]  # the default schedule, cosine, anneals to the end of the run (0.1x at step 40)
    val_tags = set(val_ev.Tags()["tensors"])
    assert {"loss", "bpc", "sample"} <= val_tags
    import tensorflow as tf
    bpcs = [float(tf.make_ndarray(e.tensor_proto)) for e in val_ev.Tensors("bpc")]
    losses = [float(tf.make_ndarray(e.tensor_proto)) for e in val_ev.Tensors("loss")]
    assert len(bpcs) == 4 and np.allclose(bpcs, np.array(losses) / math.log(2))
    sample = tf.make_ndarray(val_ev.Tensors("sample")[-1].tensor_proto).item().decode()
    assert len(sample) > 20
    from tensorboard.plugins.hparams import plugin_data_pb2
    content = root_ev.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["model.rnn_size"].number_value == 32
    assert session.hparams["model.cell"].string_value == "lstm"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert any(m.name.tag == "bpc" and m.name.group == "validation" for m in experiment.metric_infos)


def test_state_carries_across_batches(small_text_file):
    from tfchar.core.config import DataConfig
    from tfchar.data.corpus import load_corpus
    from tfchar.data.pipeline import make_dataset
    ids = load_corpus(DataConfig(source=str(small_text_file))).train
    model = build_model(80, "lstm", 32, 2, batch_size=4, seq_length=16, stateful=True, seed=1)
    (x1, _), (x2, _) = list(make_dataset(ids, 4, 16).take(2))
    model(x1)
    carried = np.asarray(model(x2))
    reset_states(model)
    fresh = np.asarray(model(x2))
    assert np.abs(carried - fresh).max() > 1e-3  # the state of batch 1 changes batch 2's predictions
    reset_states(model)
    model(x1)
    np.testing.assert_allclose(np.asarray(model(x2)), carried, atol=1e-6)


def test_resume_continues_exactly(small_text_file, tmp_path):
    # a constant rate: the resumed run's horizon grows from 20 to 30 steps, which a cosine schedule would follow
    # (resume with the same horizon under cosine: test_resume_from_an_earlier_checkpoint_repeats_a_cosine_run)
    constant = {"train.lr_schedule": "char-rnn"}
    straight = tmp_path / "straight"
    train(small_text_file, straight, **{"train.max_steps": 30, **constant})
    split = tmp_path / "split"
    train(small_text_file, split, **{"train.max_steps": 20, **constant})
    cfg, rd = resolve_config(None, [f"--train.run_dir={split}", "--train.resume=true", "--train.max_steps=30"])
    assert cfg.model.rnn_size == 32  # taken from the run, not the defaults
    fit(cfg, rd, log=lambda s: None)
    a = [json.loads(l) for l in (straight / "history.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (split / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in b] == [10, 20, 30]
    assert b[-1]["val_loss"] == pytest.approx(a[-1]["val_loss"], abs=1e-5)  # not a restart: the same curve


def test_resume_refuses_model_changes_and_missing_checkpoints(tmp_path, trained):
    run_dir, _ = trained
    with pytest.raises(ConfigError, match="cannot change model.rnn_size when resuming"):
        resolve_config(None, [f"--train.run_dir={run_dir}", "--train.resume=true", "--model.rnn_size=64"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.toml").write_text("")
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        resolve_config(None, [f"--train.run_dir={empty}", "--train.resume=true"])
    with pytest.raises(ConfigError, match="already holds a run"):
        resolve_config(None, [f"--train.run_dir={run_dir}"])


def test_init_from_starts_from_those_weights(trained, small_text_file, tmp_path):
    run_dir, result = trained
    new = tmp_path / "warm"
    r = train(small_text_file, new, **{"train.init_from": str(run_dir), "train.max_steps": 10, "train.learning_rate": 1e-9})
    assert r["best_val_loss"] == pytest.approx(result["best_val_loss"], abs=2e-3)


def test_corrupt_checkpoint_is_a_clear_error(trained, tmp_path):
    import shutil
    run_dir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)
    weights = (copy / "checkpoints" / "best").resolve() / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt_lib.load_inference_model(copy)


def test_unfinished_checkpoint_write_is_ignored(trained, small_text_file, tmp_path):
    import shutil
    run_dir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)
    partial = copy / "checkpoints" / ".tmp-epoch9.00_val0.1000-999"
    partial.mkdir()
    (partial / "model.weights.h5").write_bytes(b"half")
    last = (copy / "checkpoints" / "last").resolve().name
    cfg, rd = resolve_config(None, [f"--train.run_dir={copy}", "--train.resume=true", "--train.max_steps=41"])
    fit(cfg, rd, log=lambda s: None)
    assert not partial.exists()
    assert (copy / "checkpoints" / "last").resolve().name != last


def test_nan_loss_stops_and_keeps_last_good_checkpoint(small_text_file, tmp_path):
    run_dir = tmp_path / "nan"
    train(small_text_file, run_dir, **{"train.max_steps": 10})
    good = (run_dir / "checkpoints" / "last").resolve()
    cfg, rd = resolve_config(None, [f"--train.run_dir={run_dir}", "--train.resume=true", "--train.max_steps=30",
                                    "--train.learning_rate=1e38", "--train.grad_clip=0", "--train.eval_every=1"])
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf)") as e:
        fit(cfg, rd, log=lambda s: None)
    assert str(good) in str(e.value)
    assert (run_dir / "checkpoints" / "last").resolve() == good
    model, _, _ = ckpt_lib.load_inference_model(run_dir, which="last")
    assert all(np.isfinite(w).all() for w in model.get_weights())


def _fit_cmd(*args):
    return [sys.executable, "-m", "tfchar.fit", *args]


def test_ctrl_c_writes_a_checkpoint_and_exits_130(small_text_file, tmp_path):
    run_dir = tmp_path / "int"
    proc = subprocess.Popen(_fit_cmd(*tiny_overrides(small_text_file, run_dir, **{"train.max_steps": 0,
                                                                               "train.epochs": 1000})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while not (run_dir / "checkpoints" / "last").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (run_dir / "checkpoints" / "last").exists(), "training never wrote a checkpoint"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"--train.resume=true --train.run_dir={run_dir}" in err
    last = (run_dir / "checkpoints" / "last").resolve()
    assert last.name.endswith("_interrupted")
    ckpt_lib.load_inference_model(last)


# ------------------------------------------------------------------------------------------ budget and schedule

def _tensorboard_scalars(run_dir, tag, split="train"):
    import tensorflow as tf
    acc = EventAccumulator(str(run_dir / "logs" / split), size_guidance={"tensors": 0}).Reload()
    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def test_cosine_schedule_ends_at_its_final_rate_on_the_last_step(small_text_file, tmp_path):
    run_dir = tmp_path / "cos"
    train(small_text_file, run_dir, **{"train.max_steps": 40, "train.lr_schedule": "cosine",
                                       "train.warmup_steps": 5, "train.lr_final_ratio": 0.1})
    lr = dict(_tensorboard_scalars(run_dir, "learning_rate"))
    # the rate of step k (1-based) is the cosine at progress k / 40: 0.55 x peak at step 20, the final rate at 40
    assert lr[20] == pytest.approx(2e-3 * 0.55, rel=1e-6)
    assert lr[40] == pytest.approx(2e-3 * 0.1, rel=1e-6)


def test_resume_from_an_earlier_checkpoint_repeats_a_cosine_run(small_text_file, tmp_path):
    import shutil
    extra = {"train.max_steps": 30, "train.lr_schedule": "cosine", "train.warmup_steps": 4, "train.keep_checkpoints": 0,
             "train.weight_decay": 0.1}
    straight = tmp_path / "straight"
    train(small_text_file, straight, **extra)
    history = [json.loads(l) for l in (straight / "history.jsonl").read_text().splitlines()]
    copy = tmp_path / "copy"  # the same run, as if it had stopped after its evaluation at step 20
    shutil.copytree(straight, copy, symlinks=True)
    ckpt_lib.point(copy / "checkpoints", "last", history[1]["checkpoint"])
    shutil.rmtree(copy / "checkpoints" / history[2]["checkpoint"])
    (copy / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history[:2]))
    cfg, rd = resolve_config(None, [f"--train.run_dir={copy}", "--train.resume=true"])
    fit(cfg, rd, log=lambda s: None)
    again = [json.loads(l) for l in (copy / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in again] == [10, 20, 30]
    assert again[-1]["val_loss"] == pytest.approx(history[-1]["val_loss"], abs=1e-5)  # same horizon, same rates


def _timed_overrides(source, run_dir, budget, **extra):
    return tiny_overrides(source, run_dir, **{"train.max_steps": 0, "train.epochs": 1000, "train.time_budget": budget,
                                              "train.eval_every": 0, "train.eval_period": 3, "train.eval_chars": 2000,
                                              "train.lr_schedule": "cosine", "train.warmup_steps": 10,
                                              "data.val_frac": 0.02, "data.test_frac": 0.0, **extra})


@pytest.mark.slow
def test_time_budget_ends_the_run_with_an_evaluated_final_checkpoint(shakespeare_path, tmp_path):
    run_dir = tmp_path / "timed"
    cfg, rd = resolve_config(None, _timed_overrides(shakespeare_path, run_dir, "15s"))
    lines = []
    result = fit(cfg, rd, log=lines.append)
    # Training stops when another step would eat into the reserve kept for the final evaluation (the longest
    # evaluation so far): the run ends within a step of the budget, short of it by at most what the final
    # evaluation took less than the longest one.
    reserve = json.loads(((run_dir / "checkpoints" / "last").resolve() / "trainer_state.json").read_text())["eval_seconds"]
    assert 15.0 - reserve - 0.5 <= result["wall_time_s"] <= 15.0 + 2.0  # + a step that a busy machine stalled
    history = [json.loads(l) for l in (run_dir / "history.jsonl").read_text().splitlines()]
    assert len(history) >= 3 and history[-1]["step"] == result["steps"]  # periodic ones, then the final checkpoint
    last = (run_dir / "checkpoints" / "last").resolve().name
    assert last == history[-1]["checkpoint"] and re.fullmatch(r"epoch\d+\.\d\d_val\d+\.\d{4}(_step\d+)?", last)
    assert any(line.startswith("time budget spent: step") for line in lines)
    lr = [v for _, v in _tensorboard_scalars(run_dir, "learning_rate")]
    assert lr[-1] == pytest.approx(2e-4, rel=0.05)  # annealed to the end of the budget


@pytest.mark.slow
def test_resume_keeps_the_time_spent_and_the_schedule_horizon(shakespeare_path, tmp_path):
    run_dir = tmp_path / "timed"
    args = _timed_overrides(shakespeare_path, run_dir, 30)
    proc = subprocess.Popen(_fit_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while not (run_dir / "checkpoints" / "last").exists() and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # early: the resumed process's first (slow, warming-up) step must fit
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    spent = json.loads(((run_dir / "checkpoints" / "last").resolve() / "trainer_state.json").read_text())["elapsed"]
    assert 0.0 < spent < 20.0
    cfg, rd = resolve_config(None, [f"--train.run_dir={run_dir}", "--train.resume=true"])
    result = fit(cfg, rd, log=lambda s: None)
    reserve = json.loads(((run_dir / "checkpoints" / "last").resolve() / "trainer_state.json").read_text())["eval_seconds"]
    assert 30.0 - reserve - 0.5 <= result["wall_time_s"] <= 30.0 + 2.0  # both processes' training time: the budget
    lr = [v for step, v in sorted(_tensorboard_scalars(run_dir, "learning_rate")) if step > 10]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(lr, lr[1:]))  # one annealing across the resume, not two
    assert lr[-1] == pytest.approx(2e-4, rel=0.05)
