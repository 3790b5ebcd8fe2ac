"""`python -m tfchar.fit` as one library call: resolve the config and run dir, train, export the best checkpoint.

Example:
    result = run("pipelines/tiny_shakespeare.toml", ["--train.max_steps=100"])
    result["best_val_bpc"], result["export"]["test_bpc"]
"""

from __future__ import annotations

from pathlib import Path

import keras

from tfchar.core.errors import TrainingInterrupted
from tfchar.core.procs import release_memory
from tfchar.exporting.exporter import export_run
from tfchar.training.run_dir import resolve_config
from tfchar.training.signals import Abort, StopFlag
from tfchar.training.trainer import fit


def run(pipeline: str | None, overrides: list[str], log=print) -> dict:
    """Train the run a pipeline file and `--section.key=value` overrides describe; export it if asked."""
    cfg, run_dir = resolve_config(pipeline, overrides)
    log(f"run directory: {run_dir}")
    result = fit(cfg, run_dir, log)
    keras.backend.clear_session()  # the training model, optimizer, scorer and their kernels: the export's
    release_memory()  # TFLite conversions need the room (a 2x512 model with a 6,562-symbol vocabulary: ~400 MB)
    if cfg.export.on_finish and result.get("run_dir"):
        out = Path(cfg.export.out) if cfg.export.out else Path("saved_models") / run_dir.name
        result["export"] = _export(run_dir, out, cfg, log)
    return result


def _export(run_dir: Path, out: Path, cfg, log) -> dict:
    """export_run; Ctrl-C or SIGTERM stops it at once (its temporary files are removed), the run stays complete."""
    with StopFlag():
        try:
            return export_run(run_dir, out, int8=cfg.export.int8, log=log)
        except Abort as e:
            raise TrainingInterrupted(f"{e} during the export; the run is complete: export it with python -m "
                                      f"tfchar.export {run_dir} --out {out}", e.exit_code) from None
