"""Which runtime a path names: a run dir or checkpoint (Keras), an export dir or SavedModel dir, a .tflite file.

Example:
    runtime = load_runtime("saved_models/tiny_shakespeare")   # SavedModelRuntime, with the export's config
"""

from __future__ import annotations

from pathlib import Path

from tfchar.core import config as config_lib
from tfchar.core.errors import CheckpointError
from tfchar.runtimes.base import Runtime
from tfchar.runtimes.keras import open_run
from tfchar.runtimes.saved_model import SavedModelRuntime
from tfchar.runtimes.tflite import TFLiteRuntime


def load_runtime(path, which: str = "best") -> Runtime:
    """The runtime for MODEL, exactly as every command resolves it.

    Args:
        path: a run dir (its `which` checkpoint), a checkpoint dir, an export dir (its SavedModel), a
            SavedModel dir or a .tflite file.
        which: "best" or "last", for run dirs.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist: give a run dir, an export dir, a SavedModel dir or a .tflite file")
    if p.is_file():
        if p.suffix != ".tflite":
            raise CheckpointError(f"{p} is a file but not a .tflite model: give a .tflite file or a directory")
        return TFLiteRuntime(p, config=export_config(p))
    if (p / "saved_model.pb").is_file():
        return SavedModelRuntime(p, config=export_config(p))
    if (p / "saved_model" / "saved_model.pb").is_file():
        return SavedModelRuntime(p / "saved_model", config=export_config(p))
    if any((p / f).exists() for f in ("config.toml", "checkpoints", "model.weights.h5")):
        return open_run(p, which)
    raise CheckpointError(f"{p} is not a run dir (no config.toml), an export dir (no saved_model/), "
                          f"a SavedModel (no saved_model.pb) or a .tflite file")


def export_config(p: Path):
    """The export's config.toml ([data], [model]) for an export dir, its saved_model/ or its .tflite; else None."""
    for d in (p, p.parent, p.parent.parent) if p.is_dir() else (p.parent,):
        if (d / "config.toml").is_file() and (d / "vocab.json").is_file():
            return config_lib.load_resolved(d / "config.toml")
    return None
