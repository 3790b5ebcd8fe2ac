"""`tfchar.export` and `tfchar.tune`: the export and the hyperparameter search of the command lines, called
from Python.

Example:
    metrics = export("runs/mine", "saved_models/mine")    # metrics["test_bpc"]
    result = tune("my_text.txt", tune={"algorithm": "random", "max_trials": 4})
    result["best_toml"]
"""

from __future__ import annotations

import os
from typing import Callable

from tfchar.api.overrides import overrides
from tfchar.cli import default_pipeline
from tfchar.exporting.exporter import export_run
from tfchar.tuning.search import run as run_search


def export(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, int8: bool = True,
           which: str = "best", log: Callable[[str], None] | None = print) -> dict:
    """Export a run's checkpoint as `python -m tfchar.export` does: SavedModel, TFLite, model.keras, vocab,
    config and metrics.json in `out` (default: the run's export.out, else saved_models/<run name>).

    Returns the export's metrics (validation and test bpc through the exported files, sizes, parity).
    """
    return export_run(os.fspath(run_dir), os.fspath(out) if out is not None else None, int8=int8, which=which,
                      log=log or (lambda line: None))


def tune(source: str | os.PathLike | None = None, *, tune: dict | None = None, model: dict | None = None,
         train: dict | None = None, data: dict | None = None, pipeline: str | os.PathLike | None = None,
         log: Callable[[str], None] | None = print) -> dict:
    """The Keras Tuner search of `python -m tfchar.tune` (summary.md and best.toml under tuning/<project>/).

    Args:
        source: data.source; tune, model, train, data: {key: value} of those sections, e.g.
            tune={"algorithm": "random", "max_trials": 6, "space": "tuning/cpu_space.toml"}.
        pipeline: the base pipeline (default: the one `python -m tfchar.tune` uses).

    Returns {"project_dir", "rows" (trials ranked by validation bpc), "best", "best_toml"}.
    """
    data = {**(data or {}), **({"source": os.fspath(source)} if source is not None else {})}
    args = overrides({"data": data, "model": model, "train": train, "tune": tune})
    pipeline = os.fspath(pipeline) if pipeline is not None else default_pipeline(args)
    return run_search(pipeline, args, log=log or (lambda line: None))
