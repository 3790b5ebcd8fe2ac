"""`python -m tfchar.fit` as one library call: resolve the config and run dir, train, export the best checkpoint.

Example:
    result = run("pipelines/tiny_shakespeare.toml", ["--train.max_steps=100"])
    result["best_val_bpc"], result["export"]["test_bpc"]
"""

from __future__ import annotations

from pathlib import Path

from tfchar.exporting.exporter import export_run
from tfchar.training.run_dir import resolve_config
from tfchar.training.trainer import fit


def run(pipeline: str | None, overrides: list[str], log=print, progress=None) -> dict:
    """Train the run a pipeline file and `--section.key=value` overrides describe; export it if asked.

    `progress(step, val_bpc, sample)` is called after each evaluation (`trainer.fit`).
    """
    cfg, run_dir = resolve_config(pipeline, overrides)
    log(f"run directory: {run_dir}")
    result = fit(cfg, run_dir, log, progress)
    if cfg.export.on_finish and result.get("run_dir"):
        out = Path(cfg.export.out) if cfg.export.out else Path("saved_models") / run_dir.name
        result["export"] = export_run(run_dir, out, int8=cfg.export.int8, log=log)
    return result
