"""tfchar: character-level RNN language models on TensorFlow/Keras (char-rnn reborn).

    import tfchar
    lm = tfchar.load("tiny_shakespeare")                    # or a run dir, export dir, SavedModel, .tflite
    lm.generate("ROMEO:", length=500, temperature=0.8, seed=7)
    run = tfchar.train("my_text.txt", model={"rnn_size": 256}, train={"epochs": 5})
    tfchar.export(run, "saved_models/mine")

Importing the package does not import TensorFlow (the command lines start fast); the public names below
load their modules on first use. Every name is documented in docs/api.md.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "load": "tfchar.api.model", "Model": "tfchar.api.model",
    "train": "tfchar.api.run", "Run": "tfchar.api.run",
    "export": "tfchar.api.tasks", "tune": "tfchar.api.tasks",
    "TfcharError": "tfchar.core.errors", "ConfigError": "tfchar.core.errors", "DataError": "tfchar.core.errors",
    "CheckpointError": "tfchar.core.errors", "TrainingInterrupted": "tfchar.core.errors",
    "TrainingDiverged": "tfchar.core.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'tfchar' has no attribute {name!r}")
    if _LAZY[name].startswith("tfchar.api."):  # these import TensorFlow: without its start-up chatter
        from tfchar.core.startup import import_tensorflow_quietly

        import_tensorflow_quietly()
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__():
    return sorted(__all__)


class _Package(types.ModuleType):
    """The package module: the API functions `export` and `tune` share their names with the command modules
    `tfchar/export.py` and `tfchar/tune.py` (`python -m tfchar.export`). Importing such a module must not
    replace the function on the package (Python sets `tfchar.export = <module>` after the import); the
    modules stay reachable as `sys.modules["tfchar.export"]` and through `importlib.import_module`."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
