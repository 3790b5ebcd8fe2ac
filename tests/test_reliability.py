"""Long runs on unreliable machines: SIGTERM, backup checkpoints and kill -9, resume fallback, the writer lock,
writes that fail for real (file-size limit, read-only folder, a full tmpfs), all on tiny models."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_overrides
from tfchar.core.errors import CheckpointError, ConfigError, RunLocked, StorageError
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.training.lock import LOCK_NAME, RunLock
from tfchar.training.run_dir import resolve_config
from tfchar.training.signals import Abort, StopFlag
from tfchar.training.trainer import fit

REPO = Path(__file__).resolve().parents[1]


def train(source, run_dir, log=None, **extra):
    cfg, rd = resolve_config(None, tiny_overrides(source, run_dir, **extra))
    return fit(cfg, rd, log=log or (lambda s: None))


def resume(run_dir, log=None, *extra):
    cfg, rd = resolve_config(None, [f"--train.run_dir={run_dir}", "--train.resume=true", *extra])
    return fit(cfg, rd, log=log or (lambda s: None))


def fit_process(source, run_dir, cwd, preexec_fn=None, **extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "tfchar.fit", *tiny_overrides(source, run_dir, **extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                            preexec_fn=preexec_fn)


def wait_for(predicate, proc, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"fit exited ({proc.returncode}) before {what}:\n{proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if ".tmp-" in p.name)


def named(run_dir: Path) -> list[Path]:
    return [p for p in (run_dir / "checkpoints").iterdir() if p.is_dir() and not p.is_symlink()]


# ---------------------------------------------------------------- signals


def test_first_signal_sets_the_flag_while_training_a_second_aborts():
    with StopFlag() as stop:
        with pytest.raises(Abort) as outside:  # before training starts: nothing to save, stop at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert outside.value.exit_code == 143 and stop.stop  # recorded too, in case a finalizer swallows Abort
    with StopFlag() as stop:
        with stop.deferring():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            assert stop.stop and stop.exit_code == 143 and stop.name == "SIGTERM"
            with pytest.raises(Abort, match="stopped by SIGINT"):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sigterm_writes_a_checkpoint_and_exits_143(small_text_file, tmp_path):
    run_dir = tmp_path / "term"
    proc = fit_process(small_text_file, run_dir, tmp_path, **{"train.max_steps": 0, "train.epochs": 1000})
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "last").exists(), proc, "the first checkpoint")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err
    assert f"--train.resume=true --train.run_dir={run_dir}" in err
    last = (run_dir / "checkpoints" / "last").resolve()
    assert last.name.endswith("_interrupted") and not leftovers(run_dir)
    ckpt_lib.load_inference_model(last)
    assert (run_dir / LOCK_NAME).read_text() == ""  # released cleanly: nothing for the next writer to take over


# ---------------------------------------------------------------- backups and kill -9


@pytest.fixture(scope="module")
def one_long_epoch_file(tmp_path_factory, shakespeare_text) -> Path:
    """600,000 characters: one epoch of the tiny model is about 2,100 steps, so 2,000 steps end no epoch."""
    path = tmp_path_factory.mktemp("long") / "input.txt"
    path.write_text(shakespeare_text[:600_000], encoding="utf-8")
    return path


def test_kill_9_resumes_from_the_backup_on_the_same_curve(one_long_epoch_file, tmp_path):
    # dropout 0 (the command line's default pipeline has 0.1): the resumed run must reproduce the curve exactly.
    # Every evaluation's checkpoint replaces the backup, and an epoch ends with one: within a single epoch and with
    # no evaluation before the end, a backup (one a second, after the traced first step) stays on disk for the
    # rest of the run, however fast the machine steps.
    steps = {"train.max_steps": 2000, "train.eval_every": 0, "train.backup_every_s": 1, "train.sample_length": 0,
             "model.dropout": 0.0}
    straight = tmp_path / "straight"
    train(one_long_epoch_file, straight, **steps)
    assert json.loads((straight / "history.jsonl").read_text().splitlines()[0])["step"] == 2000  # one evaluation
    run_dir = tmp_path / "killed"
    proc = fit_process(one_long_epoch_file, run_dir, tmp_path, **steps)
    backups = lambda: [p for p in (run_dir / "checkpoints").glob("backup_step*") if p.is_dir()]  # noqa: E731
    try:
        wait_for(lambda: (run_dir / "checkpoints").is_dir() and backups(), proc, "a backup checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    ckpts = run_dir / "checkpoints"
    assert len(backups()) <= 1
    assert not (ckpts / "best").exists() or not (ckpts / "best").resolve().name.startswith("backup")
    lines = []
    resume(run_dir, lines.append)
    resumed = [line for line in lines if line.startswith("resuming")][0]
    assert "from backup_step" in resumed or "from epoch" in resumed
    assert "note: took over the lock" in "\n".join(lines)  # the killed writer's lock
    a, b = history(straight), history(run_dir)
    assert [h["step"] for h in b][-1] == 2000
    assert b[-1]["val_loss"] == pytest.approx(a[-1]["val_loss"], abs=1e-5)  # exact data position, optimizer, state
    assert not list(ckpts.glob("backup_step*"))  # the final evaluation's checkpoint replaced the backup


# ---------------------------------------------------------------- resume fallback


@pytest.fixture(scope="module")
def three_checkpoints(small_text_file, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("three") / "r"
    train(small_text_file, run_dir, **{"train.max_steps": 30, "train.keep_checkpoints": 0})
    return run_dir


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(three_checkpoints, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(three_checkpoints, run_dir, symlinks=True)
    last = (run_dir / "checkpoints" / "last").resolve()
    weights = last / ckpt_lib.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated file
    lines = []
    resume(run_dir, lines.append, "--train.max_steps=40")
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and last.name in notes[0] and "resuming from" in notes[0], lines
    assert "step 20" in [line for line in lines if line.startswith("resuming")][0]
    assert history(run_dir)[-1]["step"] == 40


def test_resume_with_no_loadable_checkpoint_is_one_line(three_checkpoints, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(three_checkpoints, run_dir, symlinks=True)
    for ckpt in named(run_dir):
        (ckpt / ckpt_lib.TRAINER_STATE).write_text("{not json")
    with pytest.raises(CheckpointError, match="no checkpoint of .* loads") as e:
        resume(run_dir)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- one writer per run dir


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that holds run_dir's writer lock until it is killed."""
    code = ("import sys; from tfchar.training.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); sys.stdin.read()")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(three_checkpoints, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(three_checkpoints, run_dir, symlinks=True)
    live_tmp = run_dir / "checkpoints" / ".tmp-epoch9.00_val1.0000-4242"  # the holder's write in progress
    live_tmp.mkdir()
    holder = hold_lock(run_dir)
    try:
        with pytest.raises(RunLocked) as e:
            resume(run_dir)
        message = str(e.value)
        assert f"pid {holder.pid} on {os.uname().nodename} since " in message and "\n" not in message
        assert live_tmp.is_dir()  # never deletes a live run's temporaries
    finally:
        holder.kill()
        holder.wait()
    lines = []
    resume(run_dir, lines.append, "--train.max_steps=40")
    assert any(line.startswith(f"note: took over the lock of {run_dir} from pid {holder.pid}") for line in lines)
    assert not live_tmp.exists()  # a dead writer's leftovers are removed


def test_lock_is_reentrant_in_one_process_and_released_empty(tmp_path):
    with RunLock(tmp_path / "r") as outer:
        with RunLock(tmp_path / "r"):
            pass
        assert json.loads(outer.path.read_text())["pid"] == os.getpid()  # still held by the outer block
    assert (tmp_path / "r" / LOCK_NAME).read_text() == ""


def test_a_new_run_never_trains_into_a_finished_one(three_checkpoints, small_text_file):
    # Two new runs started on one run dir: the second gets the lock only once the first has finished.
    cfg, _ = resolve_config(None, tiny_overrides(small_text_file, three_checkpoints.parent / "unused"))
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(cfg.replace(train={"run_dir": str(three_checkpoints)}), three_checkpoints, log=lambda s: None)


# ---------------------------------------------------------------- writes that fail


def assert_failed_cleanly(run_dir: Path, message: str, before: list[str]) -> None:
    """One line naming a file; no temporary; every checkpoint written before still loads."""
    assert "\n" not in message.strip() and str(run_dir) in message, message
    assert not leftovers(run_dir)
    for name in before:
        ckpt_lib.load_inference_model(run_dir / "checkpoints" / name)


def test_file_size_limit_ends_the_run_with_one_line(three_checkpoints, small_text_file, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(three_checkpoints, run_dir, symlinks=True)
    last = (run_dir / "checkpoints" / "last").resolve()
    limit = (last / ckpt_lib.WEIGHTS).stat().st_size + 1000  # room for the weights, not the optimizer's slots
    assert (last / ckpt_lib.OPTIMIZER).stat().st_size > limit
    before = [p.name for p in named(run_dir)]
    set_limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # noqa: E731
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "tfchar.fit", f"--train.run_dir={run_dir}", "--train.resume=true",
                           "--train.max_steps=40"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          preexec_fn=set_limit, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.startswith("tfchar:")]
    assert len(err) == 1 and "File too large" in err[0], proc.stderr[-2000:]
    assert "(model.keras:" in err[0] or "(optimizer.npz:" in err[0]  # the weights fit, the next file does not
    assert "Traceback" not in proc.stderr
    assert_failed_cleanly(run_dir, err[0], before)
    assert sorted(p.name for p in named(run_dir)) == sorted(before)


def read_only(path: Path):
    """Make `path` read-only for this process, also as root (a read-only bind mount); None if impossible."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True).returncode == 0:
        return lambda: subprocess.run(["umount", str(path)], check=True)
    if ok:
        subprocess.run(["umount", str(path)])
    return None


def test_read_only_checkpoint_folder_ends_the_run_with_one_line(three_checkpoints, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(three_checkpoints, run_dir, symlinks=True)
    before = [p.name for p in named(run_dir)]
    undo = read_only(run_dir / "checkpoints")
    if undo is None:
        pytest.skip("cannot make a folder read-only here (root without mount permission)")
    try:
        with pytest.raises(StorageError) as e:
            resume(run_dir, None, "--train.max_steps=40")
    finally:
        undo()
    assert "Read-only file system" in str(e.value) or "Permission denied" in str(e.value)
    assert_failed_cleanly(run_dir, str(e.value), before)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MB tmpfs (root with mount permission only)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_ends_the_run_with_one_line(small_text_file, small_tmpfs):
    run_dir = small_tmpfs / "run"
    with pytest.raises(StorageError) as e:  # ~130 KB per checkpoint, all kept: the disk fills up
        train(small_text_file, run_dir, **{"model.rnn_size": 64, "train.max_steps": 0, "train.epochs": 1000,
                                           "train.eval_every": 5, "train.keep_checkpoints": 0,
                                           "train.sample_length": 0})
    assert "No space left on device" in str(e.value)
    written = [p.name for p in named(run_dir)]
    assert len(written) >= 2
    assert_failed_cleanly(run_dir, str(e.value), written)
