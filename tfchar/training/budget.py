"""The run's horizon: when a time budget is spent, and how much of the run is done (the schedule's progress).

A run ends at the first of its horizons: `total_steps` (max_steps, or epochs x steps per epoch) or a time
budget in seconds, evaluations included. Time runs out at the *deadline*, the budget minus a reserve for
the final evaluation (the longest evaluation so far, or before any the trainer's rehearsal of one), so
that with the final checkpoint evaluated and written the run has taken what was set:

    stop before a step if   elapsed + step_estimate > deadline           (never before the first step)
    skip a periodic evaluation if it would end after the deadline (the final one is near)
    progress of a step  =   max((step + 1) / total_steps, (elapsed + step_estimate) / deadline)

Progress is computed for the end of the coming step, so the step that ends a step-limited run has progress
exactly 1, and the one that ends a timed run is within one step of it. Everything it depends on is in the
checkpoint (step, elapsed time, the longest evaluation), so a resumed run keeps its horizon and its clock.

Shapes are plain Python numbers; times are seconds.

Example:
    budget = Budget(seconds=600.0, total_steps=50 * 400)
    budget.record_step(0.45)
    budget.progress(step=10, elapsed=5.2)   # fraction of the run done after step 11
    budget.spent(elapsed=599.8)             # True: stop and evaluate
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

RECENT_STEPS = 21  # step durations whose median estimates the next one (robust to one slow step)


@dataclass
class Budget:
    """A run's horizons and the measured costs that turn its time budget into a deadline.

    Args:
        seconds: the time budget (0 = none).
        total_steps: the step horizon (0 = none).
        reserve: seconds kept for the final evaluation: the longest evaluation measured so far.
        eval_estimate: seconds an evaluation takes before any is measured (the trainer rehearses one; 0 = unknown).
    """

    seconds: float = 0.0
    total_steps: int = 0
    reserve: float = 0.0
    eval_estimate: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_STEPS))

    def record_step(self, seconds: float) -> None:
        """A training step took `seconds` (evaluations excluded)."""
        self.recent.append(seconds)

    def record_eval(self, seconds: float) -> None:
        """An evaluation (scoring, checkpoint, sample) took `seconds`."""
        self.reserve = max(self.reserve, seconds)

    def step_estimate(self) -> float:
        """Seconds the next step should take: the median of the recent ones (0 before any)."""
        return statistics.median(self.recent) if self.recent else 0.0

    def deadline(self) -> float:
        """When training must stop so that the final evaluation ends at the budget (0 when there is none)."""
        if not self.seconds:
            return 0.0
        return max(self.seconds - (self.reserve or self.eval_estimate), 0.0)

    def eval_fits(self, elapsed: float) -> bool:
        """Whether an evaluation now would end before the deadline. A periodic one that would not is skipped:
        the final evaluation comes within a few steps, and the steps in between still fit the budget."""
        return not self.seconds or elapsed + (self.reserve or self.eval_estimate) <= self.deadline()

    def spent(self, elapsed: float) -> bool:
        """True when the time budget leaves no room for another step before the final evaluation."""
        return bool(self.seconds) and elapsed + self.step_estimate() > self.deadline()

    def progress(self, step: int, elapsed: float) -> float:
        """The fraction of the run done once step `step + 1` ends, in [0, 1] (0 without any horizon)."""
        fractions = [0.0]
        if self.total_steps:
            fractions.append((step + 1) / self.total_steps)
        if self.seconds:
            deadline = self.deadline()
            fractions.append((elapsed + self.step_estimate()) / deadline if deadline > 0 else 1.0)
        return min(max(fractions), 1.0)
