"""Fine-tuning: a new run that starts from another model's weights (`train.init_from`), on any text.

The source is a run dir (its best checkpoint), a checkpoint, an export dir holding model.keras, or a
shipped model's name (`tiny_shakespeare`).

- **Config**: the new run takes its `[model]` section and `data.unit` from the source. A flag that changes
  the network (`fixed_keys`: cell, sizes, ...) or the unit is an error naming it; the dropout keys and
  `model.implementation` may be changed (the same weights compute the same function at inference).
  Train keys the user did not set take `FINETUNE_DEFAULTS`.
- **Vocabulary**: the source's, followed by the new text's other characters in ascending code point order.
  Shared characters keep their trained embedding row and output column; new ones keep the fresh
  initialisation of the new model. A byte model grows only by byte values its text never held.

Example:
    cfg = apply_source(cfg, explicit={"data": {"source"}, "train": {"init_from"}})
    vocab, note = grown_vocab(open_source(cfg.train.init_from).vocab, text_vocab)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfchar.core import config as config_lib
from tfchar.core.errors import CheckpointError, ConfigError
from tfchar.core.shipped import model_path
from tfchar.core.vocab import Vocab
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.nn.models import build_from_config

FREE_KEYS = ("implementation",)  # besides the *dropout keys: [model] keys a fine-tuning run may change
# Train keys a fine-tuning run starts from unless the pipeline or a flag sets them (README: Fine-tuning).
FINETUNE_DEFAULTS = {
    "learning_rate": 1e-3,  # half the from-scratch rate: large early updates would wash out what was learned
    "lr_decay_after": 0,  # with char-rnn's schedule, decay from the first epoch: a small text is seen many times
}


@dataclass(frozen=True)
class Source:
    """What `train.init_from` names: its config, vocabulary and weights (a checkpoint or an export dir)."""

    path: Path
    config: config_lib.Config
    vocab: Vocab
    weights: Path


def open_source(init_from: str) -> Source:
    """The model `train.init_from` names (a run dir, a checkpoint, an export dir or a shipped model's name)."""
    path = model_path(init_from)
    cfg, vocab, weights = ckpt_lib.load_run(path)
    return Source(path, cfg, vocab, weights)


def explicit_keys(pipeline: str | None, overrides) -> dict[str, set[str]]:
    """{section: keys} the pipeline file and the `--section.key=value` overrides set."""
    keys: dict[str, set[str]] = {}
    if pipeline:
        for section, values in config_lib.read_toml(pipeline).items():
            if isinstance(values, dict):
                keys.setdefault(section, set()).update(values)
    for section, values in config_lib.parse_overrides(overrides).items():
        keys.setdefault(section, set()).update(values)
    return keys


def fixed_keys() -> list[str]:
    """The [model] keys a fine-tuning run must share with its source (all but dropout and implementation)."""
    return [k for k in config_lib.field_types("model") if k not in FREE_KEYS and not k.endswith("dropout")]


def apply_source(cfg: config_lib.Config, explicit: dict[str, set[str]]) -> config_lib.Config:
    """`cfg` with the source's [model] section and data.unit, and the fine-tuning defaults of unset train keys.

    Raises ConfigError naming a set key that contradicts the source.
    """
    src = open_source(cfg.train.init_from)
    model = {}
    for key, value in dataclasses.asdict(src.config.model).items():
        if key not in explicit.get("model", ()):
            model[key] = value
        elif key in fixed_keys() and getattr(cfg.model, key) != value:
            raise ConfigError(f"model.{key}={getattr(cfg.model, key)} contradicts train.init_from={cfg.train.init_from} "
                              f"(its {key} is {value}): drop the flag, or train from scratch without init_from")
    unit = src.config.data.unit
    if "unit" in explicit.get("data", ()) and cfg.data.unit != unit:
        raise ConfigError(f"data.unit={cfg.data.unit} contradicts train.init_from={cfg.train.init_from} (a {unit} "
                          f"model): drop the flag")
    train = {k: v for k, v in FINETUNE_DEFAULTS.items() if k not in explicit.get("train", ())}
    return cfg.replace(model=model, data={"unit": unit}, train=train)


def grown_vocab(source: Vocab, text: Vocab) -> tuple[Vocab, str]:
    """The fine-tuning run's vocabulary (the source's, then the text's other characters, ascending) and a
    log line saying what was carried over and added."""
    known = set(source.tokens)
    added = [t for t in text.tokens if t not in known]  # text.tokens is sorted by code point
    shared = len(text.tokens) - len(added)
    shown = "".join(added[:40]) if source.unit == "char" else " ".join(f"{ord(t):02x}" for t in added[:40])
    note = (f"vocabulary: {len(source)} characters carried over from the source ({shared} of them in the new text), "
            f"{len(added)} added" + (f": {shown!r}" if added else ""))
    return Vocab(source.tokens + added, source.unit), note


def check_shape(model_cfg, src: Source) -> None:
    """Raise CheckpointError naming the first [model] key that makes another network than the source's."""
    for key in fixed_keys():
        mine, theirs = getattr(model_cfg, key), getattr(src.config.model, key)
        if mine != theirs:
            raise CheckpointError(f"cannot fine-tune from {src.path}: its model.{key} is {theirs}, this run's is "
                                  f"{mine}; drop model.{key} to take the source's")


def load_source_weights(model, src: Source) -> None:
    """Put the source's weights into `model`, whose vocabulary starts with the source's (`grown_vocab`): the
    embedding rows and output columns of the source's characters are copied, the rest stay as initialised."""
    n = len(src.vocab)
    if model.get_layer("embedding").input_dim == n:
        ckpt_lib.load_weights(model, src.weights)
        return
    old = build_from_config(src.config.model, n, fast="keras")
    ckpt_lib.load_weights(old, src.weights)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(_grown(layer.name, layer.get_weights(), old.get_layer(layer.name).get_weights(), n))


def _grown(name: str, fresh: list[np.ndarray], trained: list[np.ndarray], n: int) -> list[np.ndarray]:
    """A layer's weights: the trained ones, with the first n of V rows (embedding [V, E]) or columns (logits
    kernel [H, V], bias [V]) taken from training and the rest from `fresh`."""
    if name == "embedding":
        return [np.concatenate([trained[0], fresh[0][n:]])]
    if name == "logits":
        return [np.concatenate([trained[0], fresh[0][:, n:]], axis=1), np.concatenate([trained[1], fresh[1][n:]])]
    return trained
