"""Learning-rate schedules: the rate of each step as a function of the run's progress, set by the trainer.

A schedule that anneals to the end of a time budget cannot be a function of the step count alone (how many
steps fit in the budget is only known as they run), so the trainer computes each step's rate in Python from
where the run stands (`Position`: steps done, epoch, and `progress`, the fraction of the run's horizon
spent, see `tfchar.training.budget`) and sets it into the optimizer's `HostRate` before the step:

    char-rnn   full rate for lr_decay_after epochs, then x lr_decay after every epoch (char-rnn's schedule)
    cosine     linear warm-up over warmup_steps, then a half cosine from learning_rate at progress 0 down to
               lr_final_ratio x learning_rate at progress 1, the end of the run (Loshchilov and Hutter 2017)

Every input is in a checkpoint (step, epoch, elapsed time), so a resumed run continues the same schedule.

Example:
    rate = HostRate(2e-3)
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    rate.set(learning_rate(cfg.train, Position(step=0, epoch=0, progress=0.0)))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import tensorflow as tf


@dataclass(frozen=True)
class Position:
    """Where a run stands when a step is about to run.

    Args:
        step: optimizer steps done so far (the coming step is step + 1).
        epoch: completed epochs (char-rnn's decay counts them).
        progress: the fraction of the run's horizon spent once the coming step is done, in [0, 1].
    """

    step: int
    epoch: int
    progress: float


def char_rnn(base: float, decay: float, decay_after: int, epoch: int) -> float:
    """char-rnn's rate: `base` for `decay_after` epochs, then times `decay` after every further epoch."""
    return base * decay ** max(0, epoch - decay_after + 1)


def cosine(base: float, final_ratio: float, warmup_steps: int, step: int, progress: float) -> float:
    """Warm-up to `base` over `warmup_steps` steps, times a half cosine from 1 (progress 0) to `final_ratio`
    (progress 1): exactly `final_ratio * base` for the step that ends the run."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    p = min(max(progress, 0.0), 1.0)
    return base * warm * (final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * p)))


def learning_rate(train_cfg, at: Position) -> float:
    """The rate `train_cfg` (a `config.TrainConfig`) prescribes for the step about to run."""
    t = train_cfg
    if t.lr_schedule == "cosine":
        return cosine(t.learning_rate, t.lr_final_ratio, t.warmup_steps, at.step, at.progress)
    return char_rnn(t.learning_rate, t.lr_decay, t.lr_decay_after, at.epoch)


class HostRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate the host sets before each step (a non-trainable variable the compiled step reads).

    As a schedule rather than a float, it adds no variable to the optimizer's saved state: checkpoints keep
    the layout they had when the rate was a Keras schedule of the step count.
    """

    def __init__(self, initial: float):
        self.value = tf.Variable(float(initial), trainable=False, dtype=tf.float32, name="host_learning_rate")

    def __call__(self, step):
        return tf.convert_to_tensor(self.value)

    def set(self, rate: float) -> None:
        self.value.assign(rate)

    def get(self) -> float:
        return float(self.value.numpy())

    def get_config(self):
        return {"initial": self.get()}
