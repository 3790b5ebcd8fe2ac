"""Fine-tuning benchmark: on a small English text that is not Shakespeare, fine-tuning the shipped model beats
training the same architecture from scratch at equal wall time.

The text is every distinct licence text Debian keeps in /usr/share/common-licenses, concatenated in name order
(~240 KB, offline on any Debian or Ubuntu machine). Both runs train the shipped model's architecture on it
with tfchar's defaults (the fine-tuning defaults for the fine-tuned one: README, Fine-tuning), the same
data settings and the same wall time: `train.time_budget` where this tfchar has it, else the same number
of optimizer steps, chosen from a timed calibration run so that each takes about `--minutes`. The
best checkpoint of each (by validation) is scored on the test split (exact: one stream, whole left
context). Prints both runs' wall time and test bpc, the curve of validation bpc against seconds, and a
Markdown table for the README; `--plot FILE` also draws the curves.

    python benchmarks/finetune.py                               # 2 x 5 minutes from saved_models/tiny_shakespeare
    python benchmarks/finetune.py --minutes 1 --base runs/mine  # a quick check with another base model
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LICENCES = Path("/usr/share/common-licenses")
EVALUATIONS = 15  # points on each curve


def licence_text(path: Path) -> Path:
    """Write every distinct licence text (by content), in name order, into `path`."""
    seen, parts = set(), []
    for f in sorted(LICENCES.iterdir()):
        data = f.read_bytes() if f.is_file() else b""
        digest = hashlib.sha1(data).hexdigest()
        if data and digest not in seen:
            seen.add(digest)
            parts.append(data.decode("utf-8").rstrip("\n") + "\n\n")
    if not parts:
        sys.exit(f"no licence texts in {LICENCES}: pass --text FILE (a few hundred KB of English)")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def fit(args: list[str], log: Path) -> Path:
    """`python -m tfchar.fit` with `args` (no export); returns the run dir. Output goes to `log`."""
    with open(log, "w") as out:
        p = subprocess.run([sys.executable, "-m", "tfchar.fit", *args, "--export.on_finish=false"], cwd=ROOT,
                           stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = log.read_text()
    if p.returncode != 0:
        sys.exit(f"fit failed ({log}):\n" + "\n".join(text.splitlines()[-5:]))
    return Path(next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("run directory: ")))


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line]


def test_bpc(run_dir: Path) -> float:
    from tfchar.evaluation.evaluate import evaluate

    return evaluate(run_dir, split="test", streams=1)["bpc"]


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--base", default="saved_models/tiny_shakespeare", help="model to fine-tune (with model.keras)")
    a.add_argument("--minutes", type=float, default=5.0, help="wall time of each run")
    a.add_argument("--text", help="the small text (default: Debian's licence texts)")
    a.add_argument("--steps", type=int, default=0, help="optimizer steps of each run (0 = calibrate to --minutes)")
    a.add_argument("--work", help="folder for the runs (default: a temporary one)")
    a.add_argument("--plot", help="write the curves to this PNG (needs matplotlib)")
    args = a.parse_args()
    from tfchar.core.startup import import_tensorflow_quietly

    import_tensorflow_quietly()
    from tfchar.training.finetune import open_source

    work = Path(args.work or tempfile.mkdtemp(prefix="tfchar-finetune-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    text = Path(args.text).resolve() if args.text else licence_text(work / "licences.txt")
    base = open_source(str(ROOT / args.base) if (ROOT / args.base).exists() else args.base)
    m = base.config.model
    arch = model_flags(base.config) + [f"--data.unit={base.config.data.unit}"]
    common = [f"--data.source={text}", f"--data.cache_dir={work / 'cache'}", "--train.sample_length=0",
              "--train.keep_checkpoints=1"]
    print(f"text: {text} ({text.stat().st_size:,} bytes); base: {base.path} ({m.num_layers}x{m.rnn_size} {m.cell})")
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.1f} at start")

    budget = time_budget(args, common + arch, work)
    runs = {}
    for name, extra in (("from scratch", arch), ("fine-tuned", [f"--train.init_from={base.path}"])):
        started = time.time()
        run_dir = fit(common + extra + budget + [f"--train.run_dir={work / name.replace(' ', '_')}"],
                      work / f"{name.replace(' ', '_')}.log")
        result = json.loads((run_dir / "result.json").read_text())
        runs[name] = {"run_dir": run_dir, "wall": result["wall_time_s"], "total": time.time() - started,
                      "steps": result["steps"],
                      "val": result["best_val_bpc"], "test": test_bpc(run_dir), "curve": history(run_dir),
                      "lr": _config_value(run_dir, "learning_rate")}
        print(f"{name}: {result['steps']} steps in {result['wall_time_s']:.0f} s of training "
              f"({runs[name]['total']:.0f} s with start-up), best val {result['best_val_bpc']:.4f} bpc, "
              f"test {runs[name]['test']:.4f} bpc")
    report(runs, budget, text)
    if args.plot:
        plot(runs, Path(args.plot))


def model_flags(cfg) -> list[str]:
    """The base model's whole [model] section as flags: the run from scratch builds the same network (layer
    norm, locked dropout, residual adds and initialisation included), only its weights are new."""
    flags = []
    for key, value in dataclasses.asdict(cfg.model).items():
        if key != "implementation":  # how the kernels run, not what they compute
            flags.append(f"--model.{key}={str(value).lower() if isinstance(value, bool) else value}")
    return flags


def time_budget(args, scratch: list[str], work: Path) -> list[str]:
    """The flags that give each run the same wall time: train.time_budget where tfchar has it, else a step
    count (train.max_steps) from a timed calibration run, evaluations included at the same density."""
    from tfchar.core.config import field_types

    seconds = int(args.minutes * 60)
    if not args.steps and "time_budget" in field_types("train"):
        print(f"budget: train.time_budget={seconds} (seconds, evaluations included)")
        return [f"--train.time_budget={seconds}", f"--train.eval_period={seconds / EVALUATIONS:g}",
                "--train.eval_every=0", "--train.epochs=1000"]
    steps = args.steps
    if not steps:
        calib = fit(scratch + ["--train.max_steps=60", "--train.eval_every=20", f"--train.run_dir={work / 'calibrate'}"],
                    work / "calibrate.log")
        per_step = json.loads((calib / "result.json").read_text())["wall_time_s"] / 60
        steps = max(EVALUATIONS, int(seconds / per_step))
        print(f"budget: calibration {per_step:.3f} s/step -> train.max_steps={steps} per run")
    return [f"--train.max_steps={steps}", f"--train.eval_every={max(1, steps // EVALUATIONS)}", "--train.epochs=1000"]


def _config_value(run_dir: Path, key: str):
    from tfchar.core.config import load_resolved

    return getattr(load_resolved(run_dir / "config.toml").train, key)


def report(runs: dict, budget: list[str], text: Path) -> None:
    print("\nvalidation bpc against seconds of training:")
    for name, r in runs.items():
        print(f"  {name:13s} " + "  ".join(f"{h['time']:.0f}s {h['val_bpc']:.3f}" for h in r["curve"]))
    print(f"\n{time.strftime('%Y-%m-%d')}, {' '.join(b for b in budget if 'epochs' not in b)}:\n")
    print("| run | learning rate | steps | training time | best val bpc | test bpc |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in runs.items():
        print(f"| {name} | {r['lr']:g} | {r['steps']} | {r['wall']:.0f} s | {r['val']:.3f} | {r['test']:.3f} |")
    scratch, tuned = runs["from scratch"]["test"], runs["fine-tuned"]["test"]
    verdict = "beats" if tuned < scratch else "does NOT beat"
    print(f"\nfine-tuning {verdict} training from scratch on the test split: {tuned:.3f} vs {scratch:.3f} bpc "
          f"({tuned - scratch:+.3f})")


def plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        ax.plot([h["time"] for h in r["curve"]], [h["val_bpc"] for h in r["curve"]], marker="o", label=name)
    ax.set_xlabel("seconds of training")
    ax.set_ylabel("validation bpc")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
