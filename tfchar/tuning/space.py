"""The search space: a TOML file naming config keys and their ranges, parsed and checked against the config.

    [model.rnn_size]
    choices = [128, 256, 512]
    [train.learning_rate]
    min = 1e-3
    max = 1e-2
    sampling = "log"

Example:
    params = load_space(find_space("tuning/default_space.toml"), base_config)
    [p.name for p in params]  # ["model.rnn_size", "train.learning_rate"]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import keras_tuner

from tfchar.core import config as config_lib
from tfchar.core.errors import ConfigError
from tfchar.core.shipped import shipped

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Keys that shape the model or its optimisation. Others (epochs, run_dir, source, ...) are the search's
# own settings or the data's identity: tuning them would compare runs that are not comparable.
TUNABLE = {"model": ("cell", "rnn_size", "num_layers", "dropout", "embedding_dim"),
           "train": ("learning_rate", "lr_decay", "grad_clip"),
           "data": ("seq_length", "batch_size")}
RANGE_KEYS = ("min", "max", "step", "sampling")
SAMPLINGS = ("linear", "log", "reverse_log")
_TUNABLE_LIST = ", ".join(f"{s}.{k}" for s, keys in TUNABLE.items() for k in keys)


@dataclass(frozen=True)
class Param:
    """One searched config key: `choices`, or a `min`..`max` range (`step`, `sampling`) of `kind`."""

    name: str  # "model.rnn_size"
    kind: type  # the config field's type
    choices: tuple | None = None
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    sampling: str = "linear"

    @property
    def section(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1]

    def declare(self, hp: keras_tuner.HyperParameters):
        """Register this parameter with Keras Tuner and return the trial's value for it."""
        if self.choices is not None:
            return hp.Choice(self.name, list(self.choices))
        if self.kind is int:
            return hp.Int(self.name, self.min, self.max, step=self.step, sampling=self.sampling)
        return clean(hp.Float(self.name, self.min, self.max, step=self.step, sampling=self.sampling))

    def extremes(self) -> list:
        return list(self.choices) if self.choices is not None else [self.min, self.max]

    def describe(self) -> str:
        if self.choices is not None:
            return f"choices {list(self.choices)}"
        extra = (f", step {self.step}" if self.step is not None else "") + \
            (f", {self.sampling}" if self.sampling != "linear" else "")
        return f"{self.min}..{self.max}{extra}"


def clean(v):
    """0.30000000000000004 (min + 3 * step) -> 0.3, so configs and best.toml show the value meant."""
    return float(f"{v:.12g}") if isinstance(v, float) else v


def find_space(path: str) -> Path:
    """The space file: relative to the working directory, else among tfchar's shipped files (tuning/*.toml)."""
    p = Path(path)
    if not p.is_file() and not p.is_absolute() and shipped(p).is_file():
        return shipped(p)
    if not p.is_file():
        raise ConfigError(f"search space file {p} does not exist: pass --tune.space=FILE "
                          f"(tuning/default_space.toml is the shipped one)")
    return p


def load_space(path: str | Path, base: config_lib.Config) -> list[Param]:
    """Parse and check a search space file against the config it will modify.

    Args:
        path: TOML file with one `[section.key]` table per searched key.
        base: the config the trials start from; every value the space allows must be valid in it.

    Returns:
        The parameters, in file order.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"search space {path} is not valid TOML ({e}): fix the file") from None
    except OSError as e:
        raise ConfigError(f"cannot read search space {path}: {e.strerror}") from None
    params = []
    for section, keys in raw.items():
        if section not in TUNABLE:
            what = "section" if section in config_lib.SECTIONS or isinstance(keys, dict) else "entry"
            raise ConfigError(f"{path}: unknown {what} [{section}]; tunable keys: {_TUNABLE_LIST}")
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: {section} must be tables like [{section}.KEY]")
        for key, spec in keys.items():
            params.append(_parse_param(path, section, key, spec, base))
    if not params:
        raise ConfigError(f"search space {path} defines no parameters: add e.g. [model.rnn_size] "
                          f"with choices = [128, 256]")
    return params


def _parse_param(path: Path, section: str, key: str, spec, base: config_lib.Config) -> Param:
    name = f"{section}.{key}"
    if key not in TUNABLE[section]:
        known = key in config_lib.field_types(section)
        why = "cannot be tuned" if known else "is an unknown key"
        raise ConfigError(f"{path}: {name} {why}; tunable keys: {_TUNABLE_LIST}")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: {name} must be a table: [{name}] with choices = [...] or min/max")
    kind = config_lib.field_types(section)[key]
    unknown = sorted(set(spec) - {"choices", *RANGE_KEYS})
    if unknown:
        raise ConfigError(f"{path}: [{name}] has unknown entries {', '.join(unknown)}; use choices, or "
                          f"min, max, step, sampling")
    if "choices" in spec:
        if set(spec) & set(RANGE_KEYS):
            raise ConfigError(f"{path}: [{name}] gives both choices and a range: keep one")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{path}: [{name}] choices must be a non-empty list, e.g. choices = "
                              f"{_example(kind)}")
        values = tuple(dict.fromkeys(_typed(path, name, kind, "choices", v) for v in choices))
        param = Param(name, kind, choices=values)
    else:
        if kind not in (int, float):
            raise ConfigError(f"{path}: [{name}] takes choices only, e.g. choices = {_example(kind)}")
        if "min" not in spec or "max" not in spec:
            raise ConfigError(f"{path}: [{name}] needs choices = [...], or both min and max")
        lo, hi = (_typed(path, name, kind, k, spec[k]) for k in ("min", "max"))
        if lo > hi:
            raise ConfigError(f"{path}: [{name}] is an empty range: min {lo} > max {hi}")
        step = _typed(path, name, kind, "step", spec["step"]) if "step" in spec else None
        sampling = spec.get("sampling", "linear")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"{path}: [{name}] sampling = {sampling!r} is not one of: {', '.join(SAMPLINGS)}")
        if sampling != "linear" and lo <= 0:
            raise ConfigError(f"{path}: [{name}] {sampling} sampling needs min > 0, got {lo}")
        if step is not None and step <= (1 if sampling != "linear" else 0):
            need = "> 1 (a factor) with log sampling" if sampling != "linear" else "> 0"
            raise ConfigError(f"{path}: [{name}] step = {step} must be {need}")
        param = Param(name, kind, min=lo, max=hi, step=step, sampling=sampling)
    try:  # Keras Tuner's own checks, as a backstop for combinations the ones above miss
        param.declare(keras_tuner.HyperParameters())
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: [{name}] is rejected by Keras Tuner: {e}") from None
    for v in param.extremes():
        try:
            base.replace(**{section: {key: v}})
        except ConfigError as e:
            raise ConfigError(f"{path}: [{name}] allows {v!r}, which is not a valid setting ({e})") from None
    return param


def _typed(path: Path, name: str, kind: type, what: str, v):
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if type(v) is not kind:
        raise ConfigError(f"{path}: [{name}] {what} must be {kind.__name__} values, got {v!r}")
    return v


def _example(kind: type) -> str:
    return {int: "[128, 256]", float: "[0.0, 0.25]", str: '["lstm", "gru"]', bool: "[true, false]"}[kind]
