"""Learning-rate schedules, as Keras schedules of the optimizer's step count (saved with the optimizer).

Example:
    optimizer = keras.optimizers.Adam(learning_rate=EpochDecay(2e-3, 0.97, 10, steps_per_epoch=400))
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("tfchar")
class EpochDecay(keras.optimizers.schedules.LearningRateSchedule):
    """char-rnn's schedule: full rate for `decay_after` epochs, then times `decay` after every epoch.

    Args:
        base: initial learning rate.
        decay: factor per epoch once decay starts (1 = constant).
        decay_after: epochs at the full rate.
        steps_per_epoch: optimizer steps per epoch (turns the optimizer's step count into epochs).
    """

    def __init__(self, base: float, decay: float, decay_after: int, steps_per_epoch: int):
        self.base, self.decay, self.decay_after, self.steps_per_epoch = base, decay, decay_after, steps_per_epoch

    def __call__(self, step):
        epoch = tf.math.floordiv(tf.cast(step, tf.float32), float(self.steps_per_epoch))
        return self.base * tf.pow(self.decay, tf.maximum(0.0, epoch - self.decay_after + 1.0))

    def get_config(self):
        return {"base": self.base, "decay": self.decay, "decay_after": self.decay_after,
                "steps_per_epoch": self.steps_per_epoch}
