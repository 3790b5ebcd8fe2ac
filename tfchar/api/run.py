"""`tfchar.train` and the `Run` it returns: a training run's directory, its evaluations and its best model.

`train` resolves its keyword arguments into a config exactly as `python -m tfchar.fit` resolves flags (the
default pipeline, fine-tuning from `train={"init_from": ...}`, resume, the same checks and one-line
errors), then runs the same training.

Example:
    run = train("my_text.txt", model={"rnn_size": 256}, train={"epochs": 5}, run_dir="runs/mine",
                progress=lambda step, bpc, sample: print(step, bpc))
    run.best.generate("The ", length=100)
    [h["val_bpc"] for h in run.history]
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Callable

from tfchar.api.model import Model, load
from tfchar.api.overrides import overrides
from tfchar.cli import default_pipeline
from tfchar.core.errors import CheckpointError, TrainingInterrupted
from tfchar.training.run import run as run_pipeline


class Run:
    """A training run (see `train`); path-like, so `tfchar.export(run, out)` works.

    Attributes:
        run_dir: its directory; result: its result.json (best validation bpc, steps, wall time, ...);
        history: one dict per evaluation (step, epoch, val_loss, val_bpc, time, checkpoint);
        best: the best checkpoint as a loaded `Model`.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "config.toml").is_file():
            raise CheckpointError(f"{self.run_dir} is not a run directory (no config.toml)")

    def __fspath__(self) -> str:
        return str(self.run_dir)

    def __repr__(self) -> str:
        best = self.result.get("best_val_bpc")
        return f"<tfchar.Run {self.run_dir}" + (f", best val {best:.4f} bpc>" if best is not None else ">")

    @property
    def result(self) -> dict:
        path = self.run_dir / "result.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def history(self) -> list[dict]:
        path = self.run_dir / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []

    @cached_property
    def best(self) -> Model:
        return load(self.run_dir, "best")


def train(source: str | os.PathLike | None = None, *, model: dict | None = None, train: dict | None = None,
          data: dict | None = None, export: dict | None = None, run_dir: str | os.PathLike | None = None,
          pipeline: str | os.PathLike | None = None, progress: Callable[[int, float, str], None] | None = None,
          log: Callable[[str], None] | None = print) -> Run | None:
    """Train a char-RNN on `source` (a text file, a folder or "tfds:NAME") and return the run.

    Args:
        source: data.source; None: the pipeline's.
        model, train, data, export: {key: value} of those config sections (README key table), e.g.
            train={"epochs": 5} or train={"init_from": "tiny_shakespeare"} to fine-tune.
        run_dir: train.run_dir (default runs/<name>).
        pipeline: a pipeline file to start from (default: the one `python -m tfchar.fit` uses).
        progress: called after each evaluation as progress(step, val_bpc, sample_text).
        log: receives the log lines (None: silent).

    Unlike `python -m tfchar.fit`, the best checkpoint is not exported unless export={"on_finish": True}:
    call `tfchar.export(run, out)`. Ctrl-C stops after writing a checkpoint and raises TrainingInterrupted
    (its `run` attribute is the `Run`).
    """
    data = {**(data or {}), **({"source": os.fspath(source)} if source is not None else {})}
    train = {**(train or {}), **({"run_dir": os.fspath(run_dir)} if run_dir is not None else {})}
    args = overrides({"data": data, "model": model, "train": train, "export": {"on_finish": False, **(export or {})}})
    pipeline = os.fspath(pipeline) if pipeline is not None else default_pipeline(args)
    try:
        result = run_pipeline(pipeline, args, log=log or (lambda line: None), progress=progress)
    except TrainingInterrupted as e:
        if getattr(e, "run_dir", None) is not None:
            e.run = Run(e.run_dir)
        raise
    return Run(result["run_dir"]) if result.get("run_dir") else None  # None: a multi-worker run's non-chief
