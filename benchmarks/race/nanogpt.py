"""nanoGPT's GPT from a checkout's `model.py` (never vendored: `--nanogpt DIR` names the checkout).

Example:
    model = build_gpt(load_nanogpt_module("/work/ext/nanoGPT"), vocab_size=65)
    logits = gpt_logits(model, x)   # [B, T, V] for int64 x [B, T], T <= block
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from pathlib import Path

from race.errors import RaceError

# The configuration of nanoGPT's README for a CPU ("baby GPT"): 4 layers, 4 heads, 128 wide, block 64.
GPT_SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0, "bias": False}


def default_nanogpt_dir(repo: Path) -> Path:
    """$NANOGPT_DIR, else ../nanoGPT next to the repository."""
    return Path(os.environ.get("NANOGPT_DIR") or repo.parent / "nanoGPT")


def load_nanogpt_module(directory):
    """Import `model.py` of a nanoGPT checkout as a module; a missing file is a RaceError naming --nanogpt."""
    path = Path(directory) / "model.py"
    if not path.is_file():
        raise RaceError(f"nanoGPT's model.py is not in {directory}: give --nanogpt DIR (a checkout of "
                        f"karpathy/nanoGPT) or set NANOGPT_DIR")
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken checkout: say which file
        raise RaceError(f"could not import {path}: {type(e).__name__}: {e}") from None
    if not hasattr(module, "GPT") or not hasattr(module, "GPTConfig"):
        raise RaceError(f"{path} has no GPT/GPTConfig: is {directory} a nanoGPT checkout?")
    return module


def build_gpt(module, vocab_size: int, **shape):
    """nanoGPT's GPT with GPT_SHAPE (overridden by `shape`), its own initialisation; its print is kept quiet."""
    config = module.GPTConfig(vocab_size=vocab_size, **{**GPT_SHAPE, **shape})
    with contextlib.redirect_stdout(io.StringIO()):
        return module.GPT(config)


def gpt_logits(model, x):
    """Logits at every position, [B, T, V]: nanoGPT computes them all only when given targets (x stands in)."""
    x = x.contiguous()  # nanoGPT views the targets
    logits, _ = model(x, x)
    return logits


def configure_adamw(model, lr: float, weight_decay: float, betas):
    """nanoGPT's AdamW (weight decay on 2-D weights only), its prints kept quiet."""
    with contextlib.redirect_stdout(io.StringIO()):
        return model.configure_optimizers(weight_decay, lr, betas, "cpu")
