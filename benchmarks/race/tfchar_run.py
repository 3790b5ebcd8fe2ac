"""tfchar through its command line only: `python -m tfchar.fit` for a budget, then `python -m tfchar.evaluate`.

The fit command is `--tfchar-args` (budget substituted for `{budget}`) plus the race's split and run dir:

    python -m tfchar.fit pipelines/ten_minutes.toml --train.time_budget=600 --data.source=INPUT
        --data.val_frac=<exact nanoGPT fraction> --data.test_frac=0.0 --train.run_dir=RUN --export.on_finish=false
    python -m tfchar.evaluate RUN/checkpoints/last --split val --streams 1 --json

The subprocesses run from the repository root (a bare `python -m tfchar.fit` there uses
pipelines/tiny_shakespeare.toml), so a relative pipeline path in --tfchar-args is relative to the repository.
The weights scored are the last checkpoint's: the model at the end of the budget, as for the references.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from race.errors import RaceError

DEFAULT_ARGS = "pipelines/ten_minutes.toml --train.time_budget={budget} --train.seed={seed}"


def fit_command(fit_args: str, corpus: Path, val_frac: float, run_dir: Path) -> list:
    """The `python -m tfchar.fit` argv: `fit_args`, then the race's split and run dir (which take precedence)."""
    user = shlex.split(fit_args)
    return [sys.executable, "-m", "tfchar.fit", *user, f"--data.source={corpus}", f"--data.val_frac={val_frac!r}",
            "--data.test_frac=0.0", f"--train.run_dir={run_dir}", "--export.on_finish=false"]


def thread_env(threads: int) -> dict:
    """The environment with TensorFlow's (and OpenMP's) thread pools sized to `threads`."""
    env = dict(os.environ)
    env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2")
    return env


def _run(cmd: list, repo: Path, log_path: Path, env: dict, what: str) -> str:
    """Run a tfchar command, its output appended to log_path; a failure is a RaceError quoting its last line."""
    with open(log_path, "a", encoding="utf-8") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=out, text=True)
        out.write(done.stdout)
    if done.returncode != 0:
        lines = [ln for ln in log_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        raise RaceError(f"{what} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'} "
                        f"(full log: {log_path})")
    return done.stdout


def run_fit(repo: Path, split, fit_args: str, run_dir: Path, threads: int, log=print) -> Path:
    """`python -m tfchar.fit` with `fit_args` on the race's split into a fresh `run_dir`; returns its log file."""
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a previous race's run: fit would resume or refuse
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.with_name(run_dir.name + ".log")
    log_path.write_text("", encoding="utf-8")
    cmd = fit_command(fit_args, split.path.resolve(), split.tfchar_val_frac, run_dir.resolve())
    log(f"  $ {shlex.join(cmd[1:])}")
    _run(cmd, repo, log_path, thread_env(threads), "python -m tfchar.fit")
    return log_path


def read_history(run_dir: Path) -> list:
    """The run's history.jsonl: one dict per evaluation (step, epoch, val_loss, val_bpc, time, checkpoint)."""
    lines = (run_dir / "history.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_tfchar(repo: Path, split, budget: int, tfchar_args: str, out_dir: Path, threads: int, log=print) -> dict:
    """Train tfchar for one budget and score its last checkpoint progressively; returns the race's row fields."""
    run_dir = out_dir / f"tfchar_{budget}s"
    log_path = run_fit(repo, split, tfchar_args.replace("{budget}", str(budget)), run_dir, threads, log)
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    cfg = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    chars_per_step = cfg["data"]["batch_size"] * cfg["data"]["seq_length"]
    ev_cmd = [sys.executable, "-m", "tfchar.evaluate", str(run_dir.resolve() / "checkpoints" / "last"), "--split",
              "val", "--streams", "1", "--json"]
    out = _run(ev_cmd, repo, log_path, thread_env(threads), "python -m tfchar.evaluate")
    score = json.loads(out.strip().splitlines()[-1])
    if score["chars"] != len(split.val) - 1:
        raise RaceError(f"tfchar scored {score['chars']:,} validation characters, the split has "
                        f"{len(split.val) - 1:,} targets: its split is not nanoGPT's")
    m = cfg["model"]
    return {"seconds": result["wall_time_s"], "steps": result["steps"], "chars": result["steps"] * chars_per_step,
            "params": result["params"], "nats": score["nats"], "scored": score["chars"],
            "label": f"tfchar {m['num_layers']}x{m['rnn_size']} {m['cell'].upper()}"}
