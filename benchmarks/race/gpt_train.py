"""Training nanoGPT's GPT for a wall-clock budget, nanoGPT's way, with the schedule annealed to the budget.

Each step draws `batch` random windows of `block` + 1 characters from the training text (nanoGPT's
`get_batch`), takes an AdamW step (`configure_optimizers`: weight decay on 2-D weights) after clipping the
gradient's global norm to 1. The learning rate is a function of the elapsed training clock t out of the
budget: linear warm-up over the first `warmup` fraction, then cosine decay to `lr * min_lr_frac` at the end
of the budget (nanoGPT's `get_lr` with iterations replaced by seconds), so every budget is a full run.

Batch 32 x block 64 and lr 2e-3 (see benchmarks/quality_race.py for why) for a 10-minute CPU budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from race.nanogpt import configure_adamw


@dataclass(frozen=True)
class GPTRecipe:
    batch: int = 32
    block: int = 64
    lr: float = 2e-3
    min_lr_frac: float = 0.1  # nanoGPT: min_lr = lr / 10
    warmup: float = 0.02  # fraction of the budget (nanoGPT's shakespeare_char: 100 of 5000 iterations)
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.99)  # shakespeare_char's beta2 for small batches
    clip: float = 1.0


def learning_rate(recipe: GPTRecipe, seconds: float, budget: float) -> float:
    """Warm-up then cosine decay to lr * min_lr_frac, as a function of the training clock."""
    warm = recipe.warmup * budget
    if seconds < warm:
        return recipe.lr * (seconds + 1e-3) / warm
    progress = min(1.0, (seconds - warm) / max(budget - warm, 1e-9))
    low = recipe.lr * recipe.min_lr_frac
    return low + 0.5 * (1.0 + math.cos(math.pi * progress)) * (recipe.lr - low)


def train_gpt(model, train_ids: np.ndarray, recipe: GPTRecipe, budget: float, seed: int = 0, log=print) -> dict:
    """Train for `budget` seconds of training clock; returns {"seconds", "steps", "chars"}."""
    rng = np.random.default_rng(seed)
    data = torch.from_numpy(train_ids.astype(np.int64))
    offsets = torch.arange(recipe.block)
    optimizer = configure_adamw(model, recipe.lr, recipe.weight_decay, recipe.betas)
    model.train()
    step, clock = 0, 0.0
    shown_at, shown_step, loss_sum = time.perf_counter(), 0, 0.0
    while clock < budget:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, clock, budget)
        starts = torch.from_numpy(rng.integers(0, len(data) - recipe.block, recipe.batch))
        x = data[starts[:, None] + offsets]  # [B, block]
        y = data[starts[:, None] + offsets + 1]  # [B, block]
        _, loss = model(x, y)  # nanoGPT's mean cross-entropy over [B, block]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
        optimizer.step()
        clock += time.perf_counter() - t0
        step += 1
        loss_sum += loss.item()
        if time.perf_counter() - shown_at > 30:
            log(f"  gpt step {step} ({clock:.0f}s): train loss {loss_sum / (step - shown_step):.4f}, "
                f"{(step - shown_step) * recipe.batch * recipe.block / (time.perf_counter() - shown_at):,.0f} chars/s")
            shown_at, shown_step, loss_sum = time.perf_counter(), step, 0.0
    model.eval()
    return {"seconds": clock, "steps": step, "chars": step * recipe.batch * recipe.block}
