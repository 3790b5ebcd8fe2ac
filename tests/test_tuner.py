"""`python -m tfchar.tune`: space parsing, bad input, a tiny search end to end, Hyperband continuation,
failed (diverged) trials, resume, and Keras Tuner's chief/worker mode on loopback.

Every search here uses a ~20k-character text and 1-layer models of 16-32 units, so a trial takes seconds.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfchar.core import config as config_lib
from tfchar.tuning import search, space, trials
from tfchar.core.errors import ConfigError, TrainingInterrupted

tune_cli = importlib.import_module("tfchar.tune")  # the command module (the name tfchar.tune is the API's)

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = [REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt",
               Path("/work/shared/data/tinyshakespeare/input.txt")]


def _tiny_text(n: int = 20_000) -> str:
    for p in SHAKESPEARE:
        if p.is_file():
            return p.read_text(encoding="utf-8")[:n]
    rng = random.Random(0)  # no shared data: pseudo-English is enough for a few-second training run
    words = "the king shall not be what is done my lord and you to me in his love of this".split()
    return " ".join(rng.choice(words) + ("\n" if rng.random() < 0.1 else "") for _ in range(n // 4))[:n]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working directory with tiny.txt; tuning/ and runs/ are created inside it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(_tiny_text(), encoding="utf-8")
    return tmp_path


def tiny_args(work: Path, *extra: str) -> list[str]:
    return ["--data.source=tiny.txt", f"--data.cache_dir={work / 'cache'}", "--data.batch_size=8",
            "--data.seq_length=20", "--model.num_layers=1", "--model.embedding_dim=8", "--train.sample_length=0",
            f"--tune.space={REPO / 'tuning' / 'smoke_space.toml'}", *extra]


def write_space(work: Path, text: str) -> Path:
    p = work / "space.toml"
    p.write_text(text, encoding="utf-8")
    return p


# ---------------------------------------------------------------- space files


@pytest.mark.parametrize("name", ["default_space.toml", "smoke_space.toml", "cpu_space.toml"])
def test_shipped_spaces_parse(name):
    import keras_tuner

    params = space.load_space(REPO / "tuning" / name, config_lib.Config())
    names = [p.name for p in params]
    assert "model.rnn_size" in names and "train.learning_rate" in names
    hp = keras_tuner.HyperParameters()
    cfg = trials.ConfigHyperModel(config_lib.Config(), params).build(hp)
    assert cfg.model.rnn_size == hp.values["model.rnn_size"]
    if name == "default_space.toml":
        assert {"model.num_layers", "model.dropout"} <= set(names)


def test_space_kinds():
    params = {p.name: p for p in space.load_space(REPO / "tuning" / "default_space.toml", config_lib.Config())}
    assert params["model.rnn_size"].choices == (128, 256, 384)
    layers = params["model.num_layers"]
    assert layers.kind is int and (layers.min, layers.max) == (1, 3)
    assert params["train.learning_rate"].sampling == "log"


BAD_SPACES = [
    ("[model.rnn_size\nchoices = [1", "is not valid TOML"),
    ("[model.foo]\nchoices = [1, 2]", "model.foo is an unknown key"),
    ("[foo.bar]\nchoices = [1, 2]", "unknown section [foo]"),
    ("[tune.max_trials]\nchoices = [1, 2]", "unknown section [tune]"),
    ("[train.epochs]\nchoices = [1, 2]", "train.epochs cannot be tuned"),
    ("[model.rnn_size]\nchoices = []", "choices must be a non-empty list"),
    ("[model.dropout]\nmin = 0.4\nmax = 0.1", "empty range: min 0.4 > max 0.1"),
    ("[model.rnn_size]\nchoices = [64]\nmin = 1\nmax = 2", "both choices and a range"),
    ("[model.rnn_size]\nmin = 64", "needs choices = [...], or both min and max"),
    ("[train.learning_rate]\nmin = 1e-3\nmax = 1e-2\nsampling = \"cubic\"", "sampling = 'cubic' is not one of"),
    ("[model.dropout]\nmin = 0.0\nmax = 0.5\nsampling = \"log\"", "log sampling needs min > 0"),
    ("[model.dropout]\nmin = 0.0\nmax = 0.5\nstep = 0.0", "step = 0.0 must be > 0"),
    ("[model.rnn_size]\nmin = 64.5\nmax = 128", "min must be int values, got 64.5"),
    ("[model.cell]\nchoices = [\"lstm\", 3]", "choices must be str values, got 3"),
    ("[model.cell]\nmin = 1\nmax = 2", "takes choices only"),
    ("[model.cell]\nchoices = [\"lstm\", \"transformer\"]", "allows 'transformer', which is not a valid setting"),
    ("[model.dropout]\nmin = 0.0\nmax = 1.0", "allows 1.0, which is not a valid setting"),
    ("[model.rnn_size]\nvalues = [64, 128]", "unknown entries values"),
    ("[model]\nrnn_size = [64, 128]", "model.rnn_size must be a table"),
    ("# nothing to search\n", "defines no parameters"),
]


@pytest.mark.parametrize("text,message", BAD_SPACES)
def test_bad_space_is_a_one_line_config_error(tmp_path, text, message):
    path = write_space(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        space.load_space(path, config_lib.Config())
    assert message in str(e.value)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(ConfigError, match="search space file .*nope.toml does not exist"):
        space.find_space(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize("args,message", [
    (["--tune.space=nope.toml"], "search space file nope.toml does not exist"),
    (["--tune.max_trials=0"], "tune.max_trials = 0 must be positive"),
    (["--tune.algorithm=grid"], "tune.algorithm = 'grid' is not one of"),
    (["--train.run_dir=x"], "train.run_dir is set per trial by tune"),
    (["--tune.project=a/b"], "must be a plain folder name"),
])
def test_cli_bad_input_prints_one_line_and_exits_2(work, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        tune_cli.main(tiny_args(work) + args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfchar: error: ") and message in err and "\n" not in err and "Traceback" not in err


def test_bad_space_through_cli(work, capsys):
    write_space(work, "[model.foo]\nchoices = [1]")
    with pytest.raises(SystemExit) as e:
        tune_cli.main(tiny_args(work) + ["--tune.space=space.toml"])
    assert e.value.code == 2
    assert "model.foo is an unknown key" in capsys.readouterr().err


# ---------------------------------------------------------------- searches


def trial_files(project: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(project.glob("trial_*/trial.json"))}


def test_random_search_writes_summary_best_toml_and_resumes(work, monkeypatch, capsys):
    cleared = []
    real_clear = trials.keras.backend.clear_session
    monkeypatch.setattr(trials.keras.backend, "clear_session", lambda: (cleared.append(1), real_clear()))
    args = tiny_args(work, "--tune.algorithm=random", "--tune.max_trials=2", "--tune.max_epochs=1",
                     "--train.max_steps=30", "--tune.project=p")
    result = search.run(None, args)
    project = work / "tuning" / "p"
    assert len(cleared) == 2  # memory released after every trial
    rows = result["rows"]
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["val_bpc"] <= rows[1]["val_bpc"]
    assert all(r["status"] == "COMPLETED" and r["params"] > 0 for r in rows)
    # Each trial is a full fit run dir, TensorBoard logs (with the HParams session) included.
    for r in rows:
        run_dir = project / f"trial_{r['trial']}"
        assert (run_dir / "result.json").is_file() and (run_dir / "checkpoints" / "best").exists()
        assert list((run_dir / "logs").glob("events.out.tfevents.*")), "no HParams/root event file"
        assert json.loads((run_dir / "result.json").read_text())["best_val_bpc"] == pytest.approx(r["val_bpc"])
    summary = (project / "summary.md").read_text()
    assert "| rank | trial | model.rnn_size | model.dropout | train.learning_rate |" in summary
    assert "| rank | trial |" in capsys.readouterr().out  # also printed

    # best.toml: overrides only, with a comment, and it trains the winning configuration.
    best_text = (project / "best.toml").read_text()
    assert best_text.startswith("# Best of 2 trials") and "[tune]" not in best_text
    best_cfg = config_lib.load_config(project / "best.toml")
    win = rows[0]["values"]
    assert best_cfg.model.rnn_size == win["model.rnn_size"]
    assert best_cfg.train.learning_rate == win["train.learning_rate"]
    assert best_cfg.model.dropout == pytest.approx(win["model.dropout"])
    assert best_cfg.data.seq_length == 20 and best_cfg.train.epochs == 1
    from tfchar import fit as fit_cli

    assert fit_cli.main([str(project / "best.toml"), "--train.max_steps=3", "--export.on_finish=false"]) == 0
    trained = config_lib.load_resolved(work / "runs" / "p-best" / "config.toml")
    assert trained.model.rnn_size == win["model.rnn_size"]

    # An existing project is never silently reused...
    with pytest.raises(SystemExit) as e:
        tune_cli.main(args)
    assert e.value.code == 2 and "--tune.resume=true" in capsys.readouterr().err
    # ...but resumes: the finished trials are kept, only the missing one runs.
    stamps = {t: (project / f"trial_{t}" / "result.json").stat().st_mtime_ns for t in ("0", "1")}
    again = search.run(None, [a.replace("max_trials=2", "max_trials=3") for a in args] + ["--tune.resume=true"])
    assert len(again["rows"]) == 3 and len(trial_files(project)) == 3
    assert {t: (project / f"trial_{t}" / "result.json").stat().st_mtime_ns for t in stamps} == stamps


def test_interrupted_search_resumes_the_interrupted_trial(work, monkeypatch, capsys):
    real_fit = trials.trainer.fit

    def fit_then_ctrl_c(cfg, run_dir, log):  # train 10 steps (a checkpoint), then act like Ctrl-C
        real_fit(cfg.replace(train={"max_steps": 10}), run_dir, log)
        raise TrainingInterrupted("stopped at step 10")

    monkeypatch.setattr(trials.trainer, "fit", fit_then_ctrl_c)
    args = tiny_args(work, "--tune.algorithm=random", "--tune.max_trials=1", "--tune.max_epochs=1",
                     "--tune.project=int")
    with pytest.raises(SystemExit) as e:
        tune_cli.main(args)
    assert e.value.code == 130 and "--tune.resume=true" in capsys.readouterr().err
    monkeypatch.setattr(trials.trainer, "fit", real_fit)
    result = search.run(None, args + ["--tune.resume=true"])
    assert [r["status"] for r in result["rows"]] == ["COMPLETED"]
    history = (work / "tuning" / "int" / "trial_0" / "history.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in history]
    assert steps[0] == 10 and steps[-1] > 10  # continued from step 10, not restarted


def test_executions_per_trial_are_averaged(work):
    result = search.run(None, tiny_args(work, "--tune.algorithm=random", "--tune.max_trials=1",
                                       "--tune.max_epochs=1", "--tune.executions_per_trial=2",
                                       "--train.max_steps=5", "--tune.project=ex"))
    trial = work / "tuning" / "ex" / "trial_0"
    runs = [json.loads((trial / f"trial_0-{k}" / "result.json").read_text()) for k in (1, 2)]
    assert result["rows"][0]["val_bpc"] == pytest.approx((runs[0]["best_val_bpc"] + runs[1]["best_val_bpc"]) / 2)
    seeds = {config_lib.load_resolved(trial / f"trial_0-{k}" / "config.toml").train.seed for k in (1, 2)}
    assert len(seeds) == 2  # different seeds, or averaging would measure nothing


def test_resume_refuses_another_algorithm(work):
    project = work / "tuning" / "p"
    project.mkdir(parents=True)
    config_lib.save(config_lib.Config(), project / "config.toml")  # a hyperband search
    (project / "oracle.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a hyperband search: resume it with --tune.algorithm=hyperband"):
        search.run(None, tiny_args(work, "--tune.algorithm=random", "--tune.project=p", "--tune.resume=true"))


def test_diverged_trial_is_failed_and_the_search_goes_on(work):
    # 1e38 overflows float32 within two steps: fit raises TrainingDiverged for that trial only.
    write_space(work, "[train.learning_rate]\nchoices = [1e38, 0.005]\n")
    result = search.run(None, tiny_args(work, "--tune.space=space.toml", "--tune.algorithm=random",
                                       "--tune.max_trials=2", "--tune.max_epochs=1", "--train.grad_clip=0",
                                       "--train.max_steps=20", "--tune.project=nan"))
    rows = {r["values"]["train.learning_rate"]: r for r in result["rows"]}
    assert rows[1e38]["status"] == "FAILED" and "rank" not in rows[1e38]
    assert rows[0.005]["status"] == "COMPLETED" and rows[0.005]["rank"] == 1
    assert "| - |" in (work / "tuning" / "nan" / "summary.md").read_text()
    assert config_lib.load_config(result["best_toml"]).train.learning_rate == 0.005


def test_all_trials_diverged_is_an_error(work, capsys):
    # Three failures in a row stop Keras Tuner; the summary is still written, then exit status 3.
    write_space(work, "[train.learning_rate]\nchoices = [1e38, 2e38, 3e38]\n")
    with pytest.raises(SystemExit) as e:
        tune_cli.main(tiny_args(work, "--tune.space=space.toml", "--tune.algorithm=random", "--tune.max_trials=4",
                                "--tune.max_epochs=1", "--train.grad_clip=0", "--tune.project=nan"))
    assert e.value.code == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfchar: error: no trial of tuning/nan completed (3 failed)") and "\n" not in err
    assert (work / "tuning" / "nan" / "summary.md").read_text().count("| failed |") == 3
    assert not (work / "tuning" / "nan" / "best.toml").exists()


@pytest.mark.slow
def test_hyperband_continues_promoted_trials(work):
    (work / "tiny.txt").write_text(_tiny_text(8_000), encoding="utf-8")  # ~50 steps per epoch
    result = search.run(None, tiny_args(work, "--tune.max_epochs=3", "--tune.project=hb"))
    project = work / "tuning" / "hb"
    assert len(result["rows"]) == search.hyperband_budget(3)[0] == 6
    assert all(r["status"] == "COMPLETED" for r in result["rows"])
    continued = [t for t in trial_files(project)
                 if json.loads((project / t / "tfchar_trial.json").read_text())["continued_from"]]
    assert continued, "Hyperband promoted no trial"
    run_dir = project / continued[0]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    res = json.loads((run_dir / "result.json").read_text())
    # It trained epochs 2-3 on top of its predecessor's epoch 1, not 3 epochs from scratch.
    assert [h["epoch"] for h in history] == [2.0, 3.0] and res["epochs"] == 3.0
    assert res["steps"] == 3 * history[0]["step"] // 2
    assert config_lib.load_config(result["best_toml"]).train.epochs == result["best"]["epochs"]


# ---------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_on_loopback(work):
    port = _free_port()
    args = [sys.executable, "-m", "tfchar.tune", *tiny_args(work, "--tune.algorithm=random", "--tune.max_trials=4",
                                                              "--tune.max_epochs=1", "--tune.project=dist")]
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = {}
    try:
        for tuner_id in ("chief", "worker0", "worker1"):
            procs[tuner_id] = subprocess.Popen(
                args, cwd=work, env={**env, "KERASTUNER_TUNER_ID": tuner_id},
                stdout=open(work / f"{tuner_id}.log", "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        for tuner_id, p in procs.items():
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
            log = (work / f"{tuner_id}.log").read_text()
            assert p.returncode == 0, f"{tuner_id} exited {p.returncode}:\n{log[-3000:]}"
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    project = work / "tuning" / "dist"
    trials = trial_files(project)
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials.values())
    ran_by = {json.loads((project / t / "tfchar_trial.json").read_text())["tuner_id"] for t in trials}
    assert ran_by == {"worker0", "worker1"}
    assert (project / "best.toml").is_file() and config_lib.load_config(project / "best.toml")
    assert "| rank | trial |" in (project / "summary.md").read_text()
