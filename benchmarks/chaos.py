"""The fault matrix: a training run killed again and again, a tuner worker killed mid-trial, two writers on one run
dir, a full disk. Prints a Markdown table of what happened (docs/reliability.md holds a measured one).

1. Kills. One run (tiny-shakespeare, 2x128 LSTM, `--steps` steps, an evaluation every `--eval_every`, backups
   every `--backup_every_s` s, export at the end) is started, then killed `--kills` times with SIGKILL or
   SIGTERM at a random moment of a chosen phase (a training step, an evaluation, a checkpoint write, the
   export), each time resumed with `--train.resume=true`, until it finishes. The phase and the step at each
   kill come from a small shared-memory record the child keeps (it runs `python -m tfchar.fit` with a few of
   tfchar's functions wrapped to write it). Reported: resumes that succeeded, the most steps and seconds of
   training lost, whether every checkpoint and the export load, temporaries left, and the final validation
   loss against an uninterrupted run with the same seed.
2. A tuner worker killed (SIGKILL) mid-trial and restarted with the same KERASTUNER_TUNER_ID (as a scheduler
   does): the search completes and best.toml is written.
3. Two `fit` processes on one run dir: the second gets a one-line error naming the first.
4. A full disk (a tmpfs, root only): a one-line error, older checkpoints load, no temporary; after space is
   freed the run resumes.

    python benchmarks/chaos.py [--kills 20] [--seed 0] [--only kills,tuner,writers,disk] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = Path(os.environ.get("TFCHAR_SHAKESPEARE", REPO.parent / "shared/data/tinyshakespeare/input.txt"))
PHASES = ["start", "step", "evaluation", "checkpoint", "export"]
TARGETS = ["step", "evaluation", "checkpoint"]  # the export is targeted once training is over
RECORD = struct.Struct("<iqdd")  # phase, step, when the state a resume would restore was current, now
MAX_DELAY = {"step": 3.0, "evaluation": 0.4, "checkpoint": 0.005, "export": 8.0}  # random wait into the phase

# The child: python -m tfchar.fit with a few tfchar functions wrapped to keep RECORD up to date in a shared file.
CHILD = r"""
import mmap, os, struct, sys, time
from tfchar.nn import checkpoint
from tfchar.training import run, trainer
rec = struct.Struct("<iqdd")
mem = mmap.mmap(os.open(os.environ["CHAOS_RECORD"], os.O_RDWR), rec.size)
state = {"phase": 1, "step": 0, "saved": 0.0}
def put(**kw):
    state.update(kw)
    rec.pack_into(mem, 0, state["phase"], state["step"], state["saved"], time.time())
def phase(code, fn, after=None):
    def wrapped(*a, **k):
        before = state["phase"]
        put(phase=code)
        try:
            out = fn(*a, **k)
        finally:
            put(phase=before)
        if after:
            after(*a)
        return out
    return wrapped
count = trainer._count_step
def counted(s, *a):
    count(s, *a)
    put(step=s.state.step, phase=state["phase"] or 1)  # "step" from the first step done in this process
trainer._count_step = counted
prepare = trainer.prepare
def prepared(s):
    prepare(s)
    put(step=s.state.step, saved=time.time())  # training (re)starts here, from a checkpoint of this state
trainer.prepare = prepared
trainer._score_validation = phase(2, trainer._score_validation)
trainer._preview_text = phase(2, trainer._preview_text)
checkpoint.save_checkpoint = phase(3, checkpoint.save_checkpoint, after=lambda *a: put(saved=time.time()))
run.interruptible_export = phase(4, run.interruptible_export)
put(phase=0)
from tfchar.fit import main
sys.exit(main(sys.argv[1:]))
"""


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def fit_args(run_dir: Path, work: Path, steps: int, eval_every: int, backup_every_s: int, seed: int) -> list[str]:
    return [f"--data.source={SHAKESPEARE}", f"--data.cache_dir={work / 'cache'}", "--data.batch_size=32",
            "--data.seq_length=64", "--model.rnn_size=128", "--model.dropout=0", f"--train.max_steps={steps}",
            f"--train.eval_every={eval_every}", "--train.eval_chars=50000", f"--train.backup_every_s={backup_every_s}",
            "--train.sample_length=200", f"--train.seed={seed}", f"--train.run_dir={run_dir}",
            f"--export.out={run_dir.parent / (run_dir.name + '-export')}", "--export.eval_chars=20000"]


@dataclass
class Kill:
    signal: str
    phase: str  # the phase the record showed when the signal was sent
    step: int
    seconds_since_save: float
    exit_code: int
    resumed_from: int | None = None  # the step the next run started from


@dataclass
class KillRun:
    kills: list[Kill] = field(default_factory=list)
    failed_resumes: list[str] = field(default_factory=list)
    final_val_loss: float | None = None
    reference_val_loss: float | None = None
    evaluations: tuple[int, int] = (0, 0)  # evaluations equal to the uninterrupted run's (to 1e-5), of its count
    checkpoints_load: bool = False
    export_loads: bool = False
    temporaries: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class Child:
    """One `fit` process with its shared record."""

    def __init__(self, args: list[str], record: Path, log: Path):
        self.record = record
        self.mem = mmap.mmap(os.open(record, os.O_RDWR), RECORD.size)
        self.log = open(log, "a")
        self.log.write(f"\n$ fit {' '.join(args)}\n")
        self.log.flush()
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], env={**env(), "CHAOS_RECORD": str(record)},
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=record.parent)

    def read(self) -> tuple[str, int, float, float]:
        code, step, saved, now = RECORD.unpack_from(self.mem, 0)
        return PHASES[code], step, saved, now


def new_record(path: Path) -> Path:
    path.write_bytes(b"\0" * RECORD.size)
    return path


def kill_once(child: Child, target: str, sig: int, rng: random.Random, timeout: float = 600) -> Kill | None:
    """Wait for `target`, a random moment into it, then send `sig`; None if the run ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline and child.proc.poll() is None:
        phase, *_ = child.read()
        if phase != target:
            time.sleep(0.0005)
            continue
        time.sleep(rng.uniform(0, MAX_DELAY[target]))
        phase, step, saved, _ = child.read()
        if phase != target or child.proc.poll() is not None:
            continue
        now = time.time()
        child.proc.send_signal(sig)
        code = child.proc.wait(timeout=300)
        return Kill(signal.Signals(sig).name, phase, step, now - saved if saved else float("nan"), code)
    return None


def plan(n: int, rng: random.Random) -> list[tuple[str, int]]:
    """(phase, signal) of each kill: training phases in turn, the last fifth in the export; signals at random."""
    export = max(1, n // 5)
    return [(TARGETS[i % len(TARGETS)] if i < n - export else "export", rng.choice([signal.SIGKILL, signal.SIGTERM]))
            for i in range(n)]


def kills(work: Path, n: int, seed: int, steps: int, eval_every: int, backup_every_s: int,
          schedule: list[tuple[str, int]] | None = None) -> KillRun:
    """Kill one run `n` times (or as `schedule` says) and resume it each time; see the module docstring."""
    rng, out = random.Random(seed), KillRun()
    schedule = schedule or plan(n, rng)
    t0 = time.time()
    reference = work / "reference"
    subprocess.run([sys.executable, "-m", "tfchar.fit", *fit_args(reference, work, steps, eval_every, backup_every_s,
                                                                  seed), "--export.on_finish=false"],
                   env=env(), cwd=work, check=True, capture_output=True)
    out.reference_val_loss = last_val_loss(reference)
    run_dir, log = work / "chaos", work / "chaos.log"
    args = fit_args(run_dir, work, steps, eval_every, backup_every_s, seed)
    record = new_record(work / "record")
    child = Child(args, record, log)
    for target, sig in schedule:
        kill = kill_once(child, target, sig, rng)
        if kill is None and target != "export":  # training ended first: the rest go to the export
            kill = kill_once(child, "export", sig, rng)
        if kill is None:
            break
        out.kills.append(kill)
        has_checkpoint = (run_dir / "checkpoints").is_dir() and any(
            p for p in (run_dir / "checkpoints").iterdir() if not p.name.startswith("."))
        child = Child(args + (["--train.resume=true"] if has_checkpoint else []), new_record(record), log)
        time.sleep(0.2)
    code = child.proc.wait(timeout=1800)
    if code != 0:
        out.failed_resumes.append(f"last run exited {code}")
    for k, nxt in zip(out.kills, _resumes(log)[1:]):
        k.resumed_from = nxt
    out.final_val_loss = last_val_loss(run_dir)
    mine, ref = evaluations(run_dir), evaluations(reference)
    out.evaluations = (sum(abs(mine.get(step, 1e9) - loss) < 1e-5 for step, loss in ref.items()), len(ref))
    out.checkpoints_load, out.export_loads = check_loads(run_dir, run_dir.parent / (run_dir.name + "-export"))
    out.temporaries = [str(p) for p in work.rglob("*") if ".tmp-" in p.name]
    out.wall_s = time.time() - t0
    return out


def _resumes(log: Path) -> list[int]:
    """The step each run in the log started from (0 for a fresh start), in order."""
    steps = []
    for block in log.read_text().split("\n$ fit ")[1:]:
        found = re.search(r"^resuming .* step (\d+), epoch", block, re.M)
        steps.append(int(found.group(1)) if found else 0)
    return steps


def evaluations(run_dir: Path) -> dict[int, float]:
    """{step: validation loss} of a run's history.jsonl."""
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return {json.loads(l)["step"]: json.loads(l)["val_loss"] for l in lines}


def last_val_loss(run_dir: Path) -> float | None:
    lines = (run_dir / "history.jsonl").read_text().splitlines() if (run_dir / "history.jsonl").exists() else []
    return json.loads(lines[-1])["val_loss"] if lines else None


def check_loads(run_dir: Path, export: Path) -> tuple[bool, bool]:
    """Every checkpoint of the run loads; the export's three files load and agree."""
    code = ("import sys; from pathlib import Path; from tfchar.nn.checkpoint import load_inference_model; "
            "from tfchar.runtimes.load import load_runtime\n"
            "for p in sorted((Path(sys.argv[1]) / 'checkpoints').iterdir()): load_inference_model(p)\n"
            "print('checkpoints ok', flush=True)\n"
            "for f in ('saved_model', 'model.tflite', 'model_int8.tflite'): load_runtime(Path(sys.argv[2]) / f)\n"
            "print('export ok')")
    r = subprocess.run([sys.executable, "-c", code, str(run_dir), str(export)], env=env(), capture_output=True,
                       text=True)
    return "checkpoints ok" in r.stdout, "export ok" in r.stdout


# ---------------------------------------------------------------- the other cases


def tuner(work: Path) -> dict:
    """Chief + 2 workers on loopback; worker0 is killed mid-trial and restarted with the same id."""
    folder = work / "tune"
    folder.mkdir(exist_ok=True)
    (folder / "tiny.txt").write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "tfchar.tune", "--data.source=tiny.txt", f"--data.cache_dir={folder / 'cache'}",
            "--data.batch_size=8", "--data.seq_length=20", "--model.num_layers=1", "--model.embedding_dim=8",
            "--train.sample_length=0", f"--tune.space={REPO / 'tuning' / 'smoke_space.toml'}",
            "--tune.algorithm=random", "--tune.max_trials=4", "--tune.max_epochs=2", "--tune.project=chaos"]
    base = {**env(), "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}

    def start(tuner_id: str) -> subprocess.Popen:
        return subprocess.Popen(args, cwd=folder, env={**base, "KERASTUNER_TUNER_ID": tuner_id},
                                stdout=open(folder / f"{tuner_id}.log", "a"), stderr=subprocess.STDOUT)

    procs = {t: start(t) for t in ("chief", "worker0", "worker1")}
    project = folder / "tuning" / "chaos"
    deadline, killed_in = time.time() + 600, None
    while time.time() < deadline and killed_in is None:
        for trial in project.glob("trial_*"):
            meta = trial / "tfchar_trial.json"
            if meta.is_file() and json.loads(meta.read_text())["tuner_id"] == "worker0" and \
                    list((trial / "checkpoints").glob("epoch*")) and not (trial / "result.json").exists():
                procs["worker0"].send_signal(signal.SIGKILL)
                procs["worker0"].wait()
                killed_in = trial.name
                break
        time.sleep(0.05)
    procs["worker0"] = start("worker0")
    codes = {t: p.wait(timeout=900) for t, p in procs.items()}
    log0 = (folder / "worker0.log").read_text()
    return {"killed_in": killed_in, "exit_codes": codes, "best_toml": (project / "best.toml").is_file(),
            "took_over": "took over the lock" in log0, "continued": "continuing its interrupted run" in log0,
            "summary": (project / "summary.md").read_text() if (project / "summary.md").exists() else ""}


def two_writers(work: Path) -> dict:
    """A second `fit` on a live run dir, as a new run and as a resume."""
    run_dir = work / "writers"
    args = [sys.executable, "-m", "tfchar.fit", *fit_args(run_dir, work, 3000, 500, 2, 0), "--export.on_finish=false"]
    first = subprocess.Popen(args, env=env(), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (run_dir / "checkpoints" / "last").exists():
        if first.poll() is not None:
            raise SystemExit(f"the first writer failed: {first.stderr.read()[-1000:]}")
        time.sleep(0.1)
    second = subprocess.run(args[:-1] + ["--train.resume=true"], env=env(), cwd=work, capture_output=True, text=True)
    first.wait(timeout=600)
    ok, _ = check_loads(run_dir, run_dir)
    return {"second_exit": second.returncode, "second_error": second.stderr.strip().splitlines()[-1:],
            "first_exit": first.returncode, "checkpoints_load": ok}


def full_disk(work: Path) -> dict | None:
    """The run dir on a small tmpfs: the run ends with one line; after remounting bigger, it resumes."""
    mnt = work / "disk"
    mnt.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True).returncode:
        return None
    try:
        run_dir = mnt / "run"
        args = [sys.executable, "-m", "tfchar.fit", *fit_args(run_dir, work, 400, 20, 2, 0),
                "--train.keep_checkpoints=0", "--export.on_finish=false"]
        r = subprocess.run(args, env=env(), cwd=work, capture_output=True, text=True)
        written = [p for p in (run_dir / "checkpoints").iterdir() if p.is_dir() and not p.is_symlink()]
        loads, _ = check_loads(run_dir, run_dir)
        temporaries = [p.name for p in (run_dir / "checkpoints").iterdir() if ".tmp-" in p.name]
        subprocess.run(["mount", "-o", "remount,size=200m", str(mnt)], check=True)
        again = subprocess.run(args + ["--train.resume=true"], env=env(), cwd=work, capture_output=True, text=True)
        return {"exit": r.returncode, "error": r.stderr.strip().splitlines()[-1:], "checkpoints": len(written),
                "checkpoints_load": loads, "temporaries": temporaries, "resumed_exit": again.returncode}
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


# ---------------------------------------------------------------- report


def report(k: KillRun | None, backup_every_s: int, tune: dict | None, writers: dict | None,
           disk: dict | None) -> str:
    lines = ["| case | result |", "| --- | --- |"]
    if k is not None:
        lost = [x.step - x.resumed_from for x in k.kills if x.resumed_from is not None]
        secs = [x.seconds_since_save for x in k.kills if x.signal == "SIGKILL" and x.seconds_since_save == x.seconds_since_save]
        by_phase = {}
        for x in k.kills:
            by_phase.setdefault(f"{x.signal} in {x.phase}", []).append(x)
        resumes = len(k.kills) - len(k.failed_resumes)
        lines += [
            f"| kills | {len(k.kills)}: " + ", ".join(f"{v} {len(l)}" for v, l in sorted(by_phase.items())) + " |",
            f"| resumes that succeeded | {resumes}/{len(k.kills)}" +
            (f" ({'; '.join(k.failed_resumes)})" if k.failed_resumes else "") + " |",
            f"| SIGTERM exit codes | {sorted({x.exit_code for x in k.kills if x.signal == 'SIGTERM'})} |",
            f"| most steps lost | {max(lost, default=0)} (SIGTERM: {max((x.step - x.resumed_from for x in k.kills if x.signal == 'SIGTERM' and x.resumed_from is not None), default=0)}) |",
            f"| most seconds of training lost to a SIGKILL | {max(secs, default=0):.2f} s "
            f"(backup interval {backup_every_s:g} s) |",
            f"| every checkpoint loads / the export loads | {'yes' if k.checkpoints_load else 'NO'} / "
            f"{'yes' if k.export_loads else 'NO'} |",
            f"| temporaries left | {len(k.temporaries)} |",
            f"| final validation loss: killed run / uninterrupted run | {k.final_val_loss:.6f} / "
            f"{k.reference_val_loss:.6f} (difference {abs(k.final_val_loss - k.reference_val_loss):.1e}) |",
            f"| evaluations equal to the uninterrupted run's | {k.evaluations[0]}/{k.evaluations[1]} |",
            f"| wall time of the kills case | {k.wall_s:.0f} s |"]
    if tune is not None:
        lines.append(f"| tuner worker SIGKILLed mid-trial ({tune['killed_in']}), restarted with the same id | exit "
                     f"codes {tune['exit_codes']}; lock taken over: {tune['took_over']}; trial continued: "
                     f"{tune['continued']}; best.toml written: {tune['best_toml']} |")
    if writers is not None:
        lines.append(f"| a second `fit --train.resume=true` on a live run dir | exit {writers['second_exit']}: "
                     f"`{' '.join(writers['second_error'])}`; the first finished with exit {writers['first_exit']}, "
                     f"its checkpoints load: {writers['checkpoints_load']} |")
    if disk is not None:
        lines.append(f"| full disk (12 MB tmpfs) | exit {disk['exit']}: `{' '.join(disk['error'])}`; "
                     f"{disk['checkpoints']} earlier checkpoints load: {disk['checkpoints_load']}; temporaries: "
                     f"{len(disk['temporaries'])}; resumed after remounting bigger: exit {disk['resumed_exit']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1500, help="training steps of the killed run")
    ap.add_argument("--eval_every", type=int, default=150)
    ap.add_argument("--backup_every_s", type=int, default=2)
    ap.add_argument("--only", default="kills,tuner,writers,disk")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tfchar-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    k = kills(work, args.kills, args.seed, args.steps, args.eval_every, args.backup_every_s) if "kills" in only else None
    if k is not None:
        for x in k.kills:
            print(f"  {x.signal:7s} in {x.phase:10s} at step {x.step:5d} -> exit {x.exit_code:4d}, resumed from "
                  f"{x.resumed_from}")
    t = tuner(work) if "tuner" in only else None
    w = two_writers(work) if "writers" in only else None
    d = full_disk(work) if "disk" in only else None
    print(f"\nwork dir: {work}\n")
    print(report(k, args.backup_every_s, t, w, d))


if __name__ == "__main__":
    sys.exit(main())
