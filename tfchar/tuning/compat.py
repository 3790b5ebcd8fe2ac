"""Every private Keras Tuner API tfchar uses, in one place (checked against keras-tuner 1.4.8).

Keras Tuner has no public way to silence its per-trial tracebacks, to run a tuner without a Keras model
(`BaseTuner`), to ask which role this process has in a distributed search, or to read Hyperband's bracket
plan. If an upgrade moves any of these, only this module changes.
"""

from __future__ import annotations

import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner  # noqa: F401  (the model-free tuner base class)
from keras_tuner.src import config as _kt_config
from keras_tuner.src.distribute import utils as _dist_utils


def quiet_failed_trials() -> None:
    """Keras Tuner prints the traceback of every failed trial (DEBUG is on by default); tfchar reports a
    diverged trial in one line and prints real errors itself."""
    _kt_config.DEBUG = False


def has_chief_oracle() -> bool:
    """Whether KERASTUNER_* variables make this process part of a distributed search (RuntimeError if one of
    the three is missing)."""
    return _dist_utils.has_chief_oracle()


def is_chief_oracle() -> bool:
    return _dist_utils.is_chief_oracle()


def hyperband_plan(max_epochs: int, factor: int, objective) -> list[list[tuple[int, int]]]:
    """One Hyperband iteration: for each bracket, its rounds' (trials, epochs each), in order."""
    oracle = keras_tuner.oracles.HyperbandOracle(objective, max_epochs=max_epochs, factor=factor)
    return [[(oracle._get_size(b, r), oracle._get_epochs(b, r)) for r in range(b + 1)]
            for b in range(oracle._get_num_brackets())]
