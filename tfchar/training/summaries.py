"""TensorBoard logging for a run: train/validation scalars, text samples and the HParams dashboard.

    logs/train/        loss, bpc, learning_rate, grad_norm, chars_per_sec
    logs/validation/   loss, bpc, sample (text)
    logs/              the run's hyperparameters (HParams), with validation bpc as the metric

Example:
    s = Summaries(run_dir / "logs", cfg, n_params)
    s.train(step, loss, grad_norm, lr, chars_per_sec)
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from tfchar.ops.metrics import bpc

def hparams_of(cfg) -> dict:
    """The hyperparameters shown in the HParams dashboard (flat `section.key` names)."""
    keys = {"data": ("source", "batch_size", "seq_length", "unit"),
            "model": ("cell", "rnn_size", "num_layers", "dropout", "embedding_dim"),
            "train": ("learning_rate", "lr_decay", "grad_clip", "scheme", "seed")}
    return {f"{s}.{k}": getattr(getattr(cfg, s), k) for s, ks in keys.items() for k in ks}


class Summaries:
    """Writers for one run's TensorBoard logs."""

    def __init__(self, logdir: Path, cfg, n_params: int):
        logdir = Path(logdir)
        self._train = tf.summary.create_file_writer(str(logdir / "train"))
        self._val = tf.summary.create_file_writer(str(logdir / "validation"))
        self._root = tf.summary.create_file_writer(str(logdir))
        params = {**hparams_of(cfg), "params": n_params}
        with self._root.as_default():
            hp.hparams_config(
                hparams=[hp.HParam(k) for k in params],
                metrics=[hp.Metric("bpc", group="validation", display_name="val bpc"),
                         hp.Metric("loss", group="validation", display_name="val loss (nats)"),
                         hp.Metric("bpc", group="train", display_name="train bpc")])
            hp.hparams(params, trial_id=str(logdir.parent.name))
        self._root.flush()

    def train(self, step: int, loss: float, grad_norm: float, lr: float, chars_per_sec: float) -> None:
        with self._train.as_default(step=step):
            tf.summary.scalar("loss", loss, description="training cross-entropy, nats per character")
            tf.summary.scalar("bpc", bpc(loss), description="training bits per character")
            tf.summary.scalar("learning_rate", lr)
            tf.summary.scalar("grad_norm", grad_norm, description="global gradient norm before clipping")
            tf.summary.scalar("chars_per_sec", chars_per_sec, description="training characters per second")

    def validation(self, step: int, val: dict, sample: str | None) -> None:
        with self._val.as_default(step=step):
            tf.summary.scalar("loss", val["nats"], description="validation cross-entropy, nats per character")
            tf.summary.scalar("bpc", val["bpc"], description="validation bits per character")
            if sample:
                # Markdown would eat newlines and markup characters: show the sample as a code block.
                tf.summary.text("sample", "```\n" + sample.replace("```", "'''") + "\n```")
        self._val.flush()
        self._train.flush()

    def close(self) -> None:
        for w in (self._train, self._val, self._root):
            w.flush()
            w.close()


