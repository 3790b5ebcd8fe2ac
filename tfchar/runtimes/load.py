"""Which runtime a path names: a run dir or checkpoint (Keras), an export dir or SavedModel dir, a .tflite file,
or the name of a shipped model (`tiny_shakespeare`).

An export dir that holds Keras weights (model.keras) gives its runtime a `checkpoint`, so what needs
trainable weights (dynamic evaluation) works on it as on a run dir.

Example:
    runtime = load_runtime("tiny_shakespeare")   # SavedModelRuntime of the shipped export, with its config
"""

from __future__ import annotations

from pathlib import Path

from tfchar.core import config as config_lib
from tfchar.core.errors import CheckpointError
from tfchar.core.shipped import model_path
from tfchar.nn.checkpoint import KERAS_FILE
from tfchar.runtimes.base import Runtime
from tfchar.runtimes.keras import open_run
from tfchar.runtimes.saved_model import SavedModelRuntime
from tfchar.runtimes.tflite import TFLiteRuntime


def load_runtime(path, which: str = "best") -> Runtime:
    """The runtime for MODEL, exactly as every command resolves it.

    Args:
        path: a run dir (its `which` checkpoint), a checkpoint dir, an export dir (its SavedModel), a
            SavedModel dir, a .tflite file or a shipped model's name.
        which: "best" or "last", for run dirs.
    """
    p = model_path(path)
    if p.is_file():
        if p.suffix != ".tflite":
            raise CheckpointError(f"{p} is a file but not a .tflite model: give a .tflite file or a directory")
        return with_keras_weights(TFLiteRuntime(p, config=export_config(p)), p.parent)
    if (p / "saved_model.pb").is_file():
        return with_keras_weights(SavedModelRuntime(p, config=export_config(p)), p.parent)
    if (p / "saved_model" / "saved_model.pb").is_file():
        return with_keras_weights(SavedModelRuntime(p / "saved_model", config=export_config(p)), p)
    if any((p / f).exists() for f in ("config.toml", "checkpoints", "model.weights.h5")):
        return open_run(p, which)
    raise CheckpointError(f"{p} is not a run dir (no config.toml), an export dir (no saved_model/), "
                          f"a SavedModel (no saved_model.pb) or a .tflite file")


def with_keras_weights(runtime: Runtime, export_dir: Path) -> Runtime:
    """Give an export's runtime the export's Keras weights (model.keras) as its `checkpoint`, if it has them."""
    if (export_dir / KERAS_FILE).is_file() and (export_dir / "config.toml").is_file():
        runtime.checkpoint = export_dir
    return runtime


def export_config(p: Path):
    """The export's config.toml ([data], [model]) for an export dir, its saved_model/ or its .tflite; else None."""
    for d in (p, p.parent, p.parent.parent) if p.is_dir() else (p.parent,):
        if (d / "config.toml").is_file() and (d / "vocab.json").is_file():
            return config_lib.load_resolved(d / "config.toml")
    return None
