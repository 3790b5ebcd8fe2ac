"""Learning-rate schedules and the time budget: values against naive formulas, the horizon, the stop rule."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfchar.core import config as config_lib
from tfchar.training.budget import Budget
from tfchar.training.schedule import HostRate, Position, char_rnn, cosine, learning_rate


def test_char_rnn_schedule_is_char_rnns_per_epoch_decay():
    # char-rnn: full rate through epoch `decay_after - 1`, then x decay after every epoch
    want = [2e-3] * 10 + [2e-3 * 0.97 ** k for k in range(1, 6)]
    got = [char_rnn(2e-3, 0.97, 10, epoch) for epoch in range(15)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    t = config_lib.TrainConfig(lr_schedule="char-rnn")
    assert learning_rate(t, Position(step=123, epoch=12, progress=0.99)) == pytest.approx(2e-3 * 0.97 ** 3)


def test_cosine_warms_up_then_anneals_to_its_final_value():
    base, ratio, warm = 1e-3, 0.1, 4
    rates = [cosine(base, ratio, warm, step, progress=(step + 1) / 100) for step in range(100)]
    np.testing.assert_allclose(rates[:3], [base * k / warm * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * k / 100)))
                                           for k in (1, 2, 3)], rtol=1e-12)
    assert rates[-1] == pytest.approx(base * ratio, rel=1e-12)  # the step that ends the run: exactly the final rate
    assert all(a >= b for a, b in zip(rates[warm:], rates[warm + 1:]))  # annealing only decreases after warm-up
    assert cosine(base, ratio, 0, 0, progress=0.0) == base and cosine(base, 0.0, 0, 0, progress=2.0) == 0.0
    t = config_lib.TrainConfig(lr_schedule="cosine", learning_rate=4e-3, lr_final_ratio=0.05)
    assert learning_rate(t, Position(step=500, epoch=3, progress=1.0)) == pytest.approx(2e-4)


def test_step_horizon_progress_reaches_one_on_the_last_step():
    budget = Budget(total_steps=40)
    assert [budget.progress(step, elapsed=0.0) for step in (0, 19, 39)] == [1 / 40, 0.5, 1.0]


def simulate(budget: Budget, step_seconds: float, eval_seconds: float, eval_every: int):
    """Run the trainer's stop rule against a clock: (steps run, progress of the last step, total seconds)."""
    elapsed, step, progress = 0.0, 0, 0.0
    while True:
        progress = budget.progress(step, elapsed)
        elapsed += step_seconds
        step += 1
        if step > 1:
            budget.record_step(step_seconds)
        evaluated = step % eval_every == 0 and budget.eval_fits(elapsed)
        if evaluated:
            elapsed += eval_seconds
            budget.record_eval(eval_seconds)
        if budget.spent(elapsed):  # then the final checkpoint is evaluated, unless it just was
            return step, progress, elapsed + (0.0 if evaluated else eval_seconds)


@pytest.mark.parametrize("step_seconds", [0.013, 0.5, 3.0])
def test_time_budget_stops_within_one_step_and_anneals_to_its_end(step_seconds):
    steps, progress, total = simulate(Budget(seconds=600.0), step_seconds, eval_seconds=4.0, eval_every=50)
    assert 600.0 - step_seconds <= total <= 600.0  # what the user waits is the budget, to one step
    assert 1.0 - step_seconds / 596.0 <= progress <= 1.0  # the last step's rate is within one step of the final
    assert steps > 1


def test_the_earlier_horizon_ends_the_run_and_the_schedule():
    budget = Budget(seconds=600.0, total_steps=100)  # 100 steps of 0.5 s end well before 600 s
    assert budget.progress(99, elapsed=50.0) == 1.0 and not budget.spent(50.0)
    tight = Budget(seconds=10.0, total_steps=100)  # ... and 10 s ends before 100 steps
    steps, progress, total = simulate(tight, 0.5, eval_seconds=0.2, eval_every=5)
    assert steps < 100 and progress > 0.9 and total <= 10.0


def test_resume_keeps_the_clock_and_the_reserve():
    first = Budget(seconds=100.0)
    first.record_eval(7.0)
    resumed = Budget(seconds=100.0)  # what restore does with TrainState.elapsed and eval_seconds
    resumed.record_eval(first.reserve)
    assert resumed.deadline() == first.deadline() == 93.0
    assert resumed.progress(500, elapsed=46.5) == first.progress(500, elapsed=46.5) == 0.5


def test_host_rate_adds_no_optimizer_variable_and_steers_the_step():
    rate = HostRate(1e-3)
    variables = [tf.Variable(tf.ones([3]))]
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    optimizer.build(variables)
    store = {}
    optimizer.save_own_variables(store)
    assert len(store) == 3  # iterations and two moments: the layout of checkpoints written with a Keras schedule

    @tf.function
    def step():
        optimizer.apply_gradients([(tf.ones([3]), variables[0])])

    step()
    rate.set(0.0)  # the compiled step reads the new value
    before = variables[0].numpy().copy()
    step()
    np.testing.assert_array_equal(variables[0].numpy(), before)
    assert rate.get() == 0.0
