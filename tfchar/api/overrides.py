"""Python keyword arguments -> the command line's `--section.key=value` overrides, so the API resolves a
config exactly as `python -m tfchar.fit` and `python -m tfchar.tune` do (pipeline, provenance, checks).

Example:
    overrides({"model": {"rnn_size": 256}, "train": {"epochs": 5}})
    # ["--model.rnn_size=256", "--train.epochs=5"]
"""

from __future__ import annotations

import os

from tfchar.core import config as config_lib
from tfchar.core.errors import ConfigError


def overrides(sections: dict) -> list[str]:
    """`--section.key=value` arguments for {section: {key: value}} (a section may be None: nothing set).

    A value of the wrong type is a ConfigError naming the key, as in a pipeline file.
    """
    out = []
    for section, values in sections.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{section}= takes a dict of [{section}] keys, e.g. {section}={{...}}; "
                              f"got {type(values).__name__}")
        out += [f"--{section}.{key}={_text(section, key, value)}" for key, value in values.items()]
    return out


def _text(section: str, key: str, value) -> str:
    """One value as the command line writes it, checked against the key's type when the key exists."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    want = config_lib.field_types(section).get(key) if section in config_lib.SECTIONS else None
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if want is not None and type(value) is not want and not (want is float and is_int):
        raise ConfigError(f"{section}.{key} expects {want.__name__}, got {type(value).__name__} {value!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value) if isinstance(value, float) else str(value)
    raise ConfigError(f"{section}.{key} = {value!r}: give a number, a string or a bool")
