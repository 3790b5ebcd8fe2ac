"""tfchar: character-level RNN language models on TensorFlow/Keras (char-rnn reborn).

Importing the package does not import TensorFlow (the command lines start fast); the public names below
load their modules on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "TfcharError": "tfchar.core.errors", "ConfigError": "tfchar.core.errors", "DataError": "tfchar.core.errors",
    "CheckpointError": "tfchar.core.errors", "TrainingInterrupted": "tfchar.core.errors",
    "TrainingDiverged": "tfchar.core.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'tfchar' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__():
    return sorted(__all__)
