"""Training the PyTorch LSTM reference with char-rnn's recipe, for a number of steps or a wall-clock budget.

The training text is laid out as B contiguous streams (tfchar's and char-rnn's layout: L = (N - 1) // B
characters per stream, the remainder dropped) cut into consecutive windows of T; row i of batch k+1
continues row i of batch k, so the (detached) LSTM state is carried across batches and reset at each epoch
start. Adam; the learning rate is multiplied by `decay` after every epoch once `decay_after` epochs are done
(tfchar's EpochDecay); gradients are clipped to a global norm. The schedule does not depend on the budget, so
the weights after t seconds are the t-second result: `train_lstm` keeps snapshots when `snapshot_due` says.

The clock counts training steps only (batch slicing, forward, backward, optimizer), not snapshots.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LSTMRecipe:
    batch: int = 64  # B streams
    seq: int = 100  # T steps per window
    lr: float = 2e-3
    decay: float = 0.97
    decay_after: int = 10
    clip: float = 5.0
    eps: float = 1e-8  # Adam's epsilon: PyTorch's default (Keras: 1e-7)
    # Keras adds eps to sqrt(v) before the bias correction, PyTorch after: True applies eps Keras's way
    # (PyTorch's eps at step t = eps / sqrt(1 - beta2^t)).
    keras_eps: bool = False


@dataclass(eq=False)  # compared by identity (weights are tensors)
class Snapshot:
    seconds: float  # training clock
    step: int
    chars: int  # characters trained on: step * B * T
    weights: dict  # a copy of the model's state_dict


def stream_batches(train_ids: np.ndarray, batch: int, seq: int):
    """The stateful layout: a [B, L + 1] tensor (row i = ids[i*L : i*L + L + 1]) and the steps per epoch."""
    length = (len(train_ids) - 1) // batch
    steps = length // seq
    if steps < 1:
        raise ValueError(f"{len(train_ids)} training characters are too few for batch {batch} x seq {seq}")
    view = np.stack([train_ids[i * length:i * length + length + 1] for i in range(batch)])
    return torch.from_numpy(view.astype(np.int64)), steps


def learning_rate(recipe: LSTMRecipe, step: int, steps_per_epoch: int) -> float:
    """char-rnn's rate at a step: full for `decay_after` epochs, then x decay after each epoch."""
    epoch = step // steps_per_epoch
    return recipe.lr * recipe.decay ** max(0, epoch - recipe.decay_after + 1)


def train_lstm(model, train_ids: np.ndarray, recipe: LSTMRecipe, seconds: float | None = None,
               steps: int | None = None, snapshot_due=lambda seconds, step: False, log=print) -> list:
    """Train until `seconds` of training clock or `steps` steps; return the snapshots (the last one always).

    Args:
        model: a `CharLSTM` (trained in place).
        snapshot_due: called after every step with (clock seconds, step); True keeps a snapshot.
    """
    if seconds is None and steps is None:
        raise ValueError("give seconds or steps")
    view, per_epoch = stream_batches(train_ids, recipe.batch, recipe.seq)  # [B, L + 1]
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, eps=recipe.eps)
    model.train()
    T, step, clock, state, snaps = recipe.seq, 0, 0.0, None, []
    shown_at, shown_step, loss_sum = time.perf_counter(), 0, 0.0

    def keep():
        snaps.append(Snapshot(clock, step, step * recipe.batch * T, copy.deepcopy(model.state_dict())))

    while (seconds is None or clock < seconds) and (steps is None or step < steps):
        t0 = time.perf_counter()
        k = step % per_epoch
        if k == 0:
            state = None  # epoch start: zero state
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step, per_epoch)
            if recipe.keras_eps:
                group["eps"] = recipe.eps / (1.0 - group["betas"][1] ** (step + 1)) ** 0.5
        window = view[:, k * T:k * T + T + 1]  # [B, T + 1]
        logits, state = model(window[:, :-1], state)  # [B, T, V]
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
        optimizer.step()
        clock += time.perf_counter() - t0
        step += 1
        loss_sum += loss.item()
        if time.perf_counter() - shown_at > 30:
            log(f"  lstm step {step} ({clock:.0f}s): train loss {loss_sum / (step - shown_step):.4f}, "
                f"{(step - shown_step) * recipe.batch * T / (time.perf_counter() - shown_at):,.0f} chars/s")
            shown_at, shown_step, loss_sum = time.perf_counter(), step, 0.0
        if snapshot_due(clock, step):
            keep()
    if not snaps or snaps[-1].step != step:
        keep()
    return snaps


class TimeMarks:
    """`snapshot_due` for a list of clock times: due at the first step at or past each time."""

    def __init__(self, times):
        self.pending = sorted(set(float(t) for t in times))

    def __call__(self, seconds: float, step: int) -> bool:
        due = False
        while self.pending and seconds >= self.pending[0]:
            self.pending.pop(0)
            due = True
        return due
