"""Typed configuration: one frozen dataclass per section, TOML pipelines and `--section.key=value` overrides.

A pipeline file holds overrides only; everything else takes the defaults below (char-rnn's, unless a
comment says why not). Unknown sections or keys, wrong types and impossible values raise `ConfigError`
naming the key, so a typo never silently trains the wrong model.

Example:
    cfg = load_config("pipelines/tiny_shakespeare.toml", ["--model.rnn_size=256"])
    cfg.model.rnn_size  # 256
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tfchar.core import choices
from tfchar.core.errors import ConfigError


def _f(default, help: str, parse=None):
    """A config field with its documentation (shown by `--help` and written into config.toml).

    `parse(value, name)`, if given, turns any accepted spelling (TOML or command line) into the field's value."""
    return field(default=default, metadata={"help": help, "parse": parse})


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh])")


def parse_duration(value, name: str) -> float:
    """Seconds from a number of seconds (600, 2.5, "600") or a string such as "10m", "90s", "1h30m".

    Example:
        parse_duration("1h30m", "train.time_budget")  # 5400.0
    """
    how = f"{name} = {value!r} is not a duration: give seconds (600) or e.g. \"10m\", \"90s\", \"1h30m\""
    if isinstance(value, bool):
        raise ConfigError(how)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                raise ConfigError(how) from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ConfigError(how)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"{name} = {value!r} must be a duration >= 0 (0 = none)")
    return seconds


@dataclass(frozen=True)
class DataConfig:
    source: str = _f("tfds:tiny_shakespeare",
                     "text to model: tfds:NAME, a text file, or a folder (its input.txt, else all *.txt sorted)")
    tfds_feature: str = _f("text", "for tfds: sources, the text feature to read")
    tfds_data_dir: str = _f("", "TFDS data dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    manual_dir: str = _f("", "folder holding a manually downloaded TFDS file ('' = <tfds data dir>/downloads/manual)")
    unit: str = _f("char", "char: Unicode code points; byte: raw bytes (vocab <= 256, any binary-safe text)")
    batch_size: int = _f(50, "sequences per batch; in the stateful scheme, the number of parallel text streams")
    seq_length: int = _f(50, "time steps per training window (truncated BPTT length)")
    val_frac: float = _f(0.05, "fraction of a file/folder source held out for validation (TFDS uses its own splits)")
    test_frac: float = _f(0.05, "fraction of a file/folder source held out for testing (TFDS uses its own splits)")
    cache_dir: str = _f("", "where encoded corpora are cached ('' = $TFCHAR_CACHE or ~/.cache/tfchar)")

    def validate(self) -> None:
        _positive(self, "batch_size", "seq_length")
        _choice(self, "unit", choices.UNITS)
        if not self.source.strip():
            raise ConfigError("data.source is empty: give tfds:NAME, a text file or a folder")
        for key in ("val_frac", "test_frac"):
            v = getattr(self, key)
            if not 0.0 <= v < 0.5:
                raise ConfigError(f"data.{key} = {v} is outside [0, 0.5): use e.g. 0.05")
        if self.val_frac + self.test_frac >= 0.5:
            raise ConfigError("data.val_frac + data.test_frac must stay below 0.5 so most text is trained on")
        if self.source.startswith("tfds:") and not self.tfds_feature:
            raise ConfigError("data.tfds_feature is empty: name the dataset's text feature, e.g. text")


@dataclass(frozen=True)
class ModelConfig:
    cell: str = _f("lstm", "recurrent cell: lstm, gru (Keras reset_after variant) or rnn (vanilla tanh)")
    rnn_size: int = _f(128, "hidden units per layer (H)")
    num_layers: int = _f(2, "stacked recurrent layers")
    dropout: float = _f(0.0, "dropout between layers and before the output layer (0 = off)")
    input_dropout: float = _f(0.0, "dropout on the embedding, the first layer's input (0 = off)")
    locked_dropout: bool = _f(False, "variational (locked) dropout: one mask per sequence, the same at every time "
                                     "step (Gal and Ghahramani 2016), instead of a new mask per step")
    # char-rnn feeds one-hot vectors; torch-rnn learned a 64-wide embedding (wordvec_size) at the same quality.
    embedding_dim: int = _f(64, "width of the learned character embedding (E)")
    residual: bool = _f(False, "add each recurrent layer's input to its output when both are H wide (every layer "
                               "but the first, unless embedding_dim = rnn_size)")
    layer_norm: bool = _f(False, "layer-normalise each recurrent layer's output (after the residual add) "
                                 "before the next layer and the output layer")
    init: str = _f("keras", "initial weights of the recurrent and output layers: keras (glorot-uniform kernels, "
                            "orthogonal recurrent kernels, forget-gate bias 1, zero biases) or torch (PyTorch's "
                            "uniform +-1/sqrt(H) weights and random biases)")
    # N(0, 1), not Keras's +-0.05: with a tiny embedding the first layer barely sees its input and an LSTM sits on
    # a plateau for its first hundreds of steps (2x256, B64 T100 on tiny-shakespeare: 2.39 bpc after 400 steps
    # against 2.86; docs/study.md).
    embedding_init: str = _f("normal", "initial embedding: normal (N(0, 1), PyTorch's) or uniform (+-0.05, Keras's)")
    implementation: str = _f("auto", "recurrent kernels: auto (tfchar's fused CPU layers without a GPU, Keras/cuDNN "
                                     "with one), keras or fused; the weights are the same either way")

    def validate(self) -> None:
        _choice(self, "cell", choices.CELLS)
        _choice(self, "implementation", choices.IMPLEMENTATIONS)
        _choice(self, "init", choices.INITS)
        _choice(self, "embedding_init", choices.EMBEDDING_INITS)
        _positive(self, "rnn_size", "num_layers", "embedding_dim")
        for key in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key} = {getattr(self, key)} is outside [0, 1): use e.g. 0.25")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(50, "passes over the training split")
    max_steps: int = _f(0, "stop after this many optimizer steps (0 = no limit; for smoke runs)")
    time_budget: float = _f(0.0, "stop when this much time is spent, evaluations included: seconds or e.g. "
                                 "\"10m\", \"90s\", \"1h\" (0 = none; epochs and max_steps still apply)",
                            parse=parse_duration)
    learning_rate: float = _f(2e-3, "Adam learning rate (the peak rate of the cosine schedule)")
    # cosine, not char-rnn's, since 2026-12-01: worth 0.06-0.10 bpc at 10 minutes (the recipe study), and over the
    # default pipeline's 12 epochs 0.018 nats/char on validation, 0.031 bpc on test (docs/study.md, "The default
    # pipeline").
    lr_schedule: str = _f("cosine", "char-rnn: full rate, then x lr_decay per epoch after lr_decay_after epochs; "
                                      "cosine: linear warm-up over warmup_steps, then cosine decay to "
                                      "lr_final_ratio x learning_rate at the end of the run (time_budget, max_steps "
                                      "or epochs, whichever ends it first)")
    lr_decay: float = _f(0.97, "char-rnn schedule: multiply the learning rate by this each epoch after "
                               "lr_decay_after")
    lr_decay_after: int = _f(10, "char-rnn schedule: epochs at the full learning rate before decay starts")
    warmup_steps: int = _f(0, "cosine schedule: steps of linear warm-up from learning_rate / warmup_steps")
    lr_final_ratio: float = _f(0.1, "cosine schedule: the learning rate at the end of the run, as a fraction of "
                                    "learning_rate")
    weight_decay: float = _f(0.0, "decoupled weight decay of the weight matrices (AdamW, Loshchilov and Hutter "
                                  "2019; biases and layer-norm scales are not decayed; 0 = plain Adam)")
    adam_epsilon: float = _f(1e-7, "Adam's epsilon (Keras's default 1e-7; PyTorch's is 1e-8)")
    adam_beta2: float = _f(0.999, "Adam's second-moment decay (0.99 adapts faster in short runs)")
    grad_clip: float = _f(5.0, "clip gradients to this global norm (0 = off)")
    scheme: str = _f("stateful", "stateful: contiguous streams, state carried; windows: shuffled windows from zero state; "
                     "overlap: shuffled overlapping windows; single_loss: loss on the last position only")
    stride: int = _f(0, "overlap scheme: offset between window starts (0 = seq_length // 2)")
    burn_in: int = _f(0, "overlap scheme: leading positions of each window left out of the loss")
    eval_every: int = _f(1000, "evaluate on the validation split every N steps (and at each epoch end; 0 = epoch ends only)")
    eval_period: float = _f(0.0, "also evaluate every this much training time: seconds or e.g. \"2m\" (0 = off)",
                            parse=parse_duration)
    eval_chars: int = _f(200_000, "characters each evaluation scores: the first eval_chars/8 of each of the 8 contiguous "
                                  "validation streams, the same ones every time (0 = the whole split)")
    backup_every_s: int = _f(180, "seconds of training between backup checkpoints (weights, optimizer, data position; "
                                  "no validation, never best, replaced in place): a killed run resumes losing at most "
                                  "this much plus one step (0 = none)")
    keep_checkpoints: int = _f(5, "named checkpoints to keep besides best and last (0 = keep all)")
    sample_length: int = _f(300, "characters of sample text logged to TensorBoard at each evaluation (0 = none)")
    name: str = _f("", "run name ('' = the pipeline file's name, else the source's)")
    run_dir: str = _f("", "run directory ('' = runs/<name>, numbered if taken)")
    resume: bool = _f(False, "continue the run in run_dir from its last checkpoint (optimizer, step, data position)")
    init_from: str = _f("", "fine-tune: start from the weights of this run dir, checkpoint, export dir or shipped "
                            "model (its [model] section; the vocabulary grows by the text's new characters)")
    seed: int = _f(123, "random seed for weights, dropout and shuffling")
    strategy: str = _f("default", "tf.distribute strategy: default, mirrored or multi_worker (TF_CONFIG)")

    def validate(self) -> None:
        _positive(self, "epochs")
        _non_negative(self, "max_steps", "eval_every", "eval_chars", "backup_every_s", "keep_checkpoints",
                      "sample_length", "stride", "burn_in")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"train.learning_rate = {self.learning_rate} must be a positive number, e.g. 0.002")
        if not 0.0 < self.lr_decay <= 1.0:
            raise ConfigError(f"train.lr_decay = {self.lr_decay} must be in (0, 1]; 1 disables decay")
        if self.lr_decay_after < 0:
            raise ConfigError("train.lr_decay_after must be >= 0")
        if self.grad_clip < 0:
            raise ConfigError(f"train.grad_clip = {self.grad_clip} must be >= 0 (0 = no clipping)")
        _choice(self, "lr_schedule", choices.LR_SCHEDULES)
        _non_negative(self, "warmup_steps", "weight_decay")
        if not 0.0 <= self.lr_final_ratio <= 1.0:
            raise ConfigError(f"train.lr_final_ratio = {self.lr_final_ratio} must be in [0, 1], e.g. 0.1")
        if not (0.0 < self.adam_epsilon < 1.0):
            raise ConfigError(f"train.adam_epsilon = {self.adam_epsilon} must be in (0, 1), e.g. 1e-7")
        if not 0.0 < self.adam_beta2 < 1.0:
            raise ConfigError(f"train.adam_beta2 = {self.adam_beta2} must be in (0, 1), e.g. 0.999")
        _choice(self, "scheme", choices.SCHEMES)
        _choice(self, "strategy", choices.STRATEGIES)
        if self.name and (os.sep in self.name or self.name.startswith(".")):
            raise ConfigError(f"train.name = {self.name!r} must be a plain name, not a path (use train.run_dir)")


@dataclass(frozen=True)
class ExportConfig:
    on_finish: bool = _f(True, "export the best checkpoint when fit finishes")
    out: str = _f("", "export directory ('' = saved_models/<run name>)")
    int8: bool = _f(True, "also write model_int8.tflite (dynamic-range quantized)")
    eval_chars: int = _f(60_000, "characters of the validation and test splits scored through each exported file "
                                 "for metrics.json (the layout of train.eval_chars; 0 = the whole splits)")
    chunk_size: int = _f(64, "code points per generate_chunk call (K: its static input and output size)")

    def validate(self) -> None:
        _non_negative(self, "eval_chars")
        _positive(self, "chunk_size")


@dataclass(frozen=True)
class TuneConfig:
    algorithm: str = _f("hyperband", "Keras Tuner algorithm: hyperband, bayesian or random")
    space: str = _f("tuning/default_space.toml", "search space file")
    max_trials: int = _f(10, "trials to run (bayesian/random); hyperband derives its own count")
    max_epochs: int = _f(4, "epochs for the longest trial")
    executions_per_trial: int = _f(1, "training runs averaged per trial")
    seed: int = _f(7, "seed of the tuner's search (trial order)")
    project: str = _f("", "output folder under tuning/ ('' = the pipeline's name)")
    resume: bool = _f(False, "continue an interrupted search instead of starting over")

    def validate(self) -> None:
        _choice(self, "algorithm", choices.TUNE_ALGORITHMS)
        _positive(self, "max_trials", "max_epochs", "executions_per_trial")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def validate(self) -> "Config":
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self

    def replace(self, **sections: dict) -> "Config":
        """A copy with `section={key: value}` overrides applied and validated."""
        raw = to_dict(self)
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        return from_dict(raw)


_SECTION_CLASSES = {f.name: f.default_factory for f in dataclasses.fields(Config)}
SECTIONS = tuple(_SECTION_CLASSES)


def _positive(obj, *keys):
    for key in keys:
        if getattr(obj, key) <= 0:
            raise ConfigError(f"{_section_of(obj)}.{key} = {getattr(obj, key)} must be positive")


def _non_negative(obj, *keys):
    for key in keys:
        if getattr(obj, key) < 0:
            raise ConfigError(f"{_section_of(obj)}.{key} = {getattr(obj, key)} must be >= 0")


def _choice(obj, key, allowed):
    if getattr(obj, key) not in allowed:
        raise ConfigError(f"{_section_of(obj)}.{key} = {getattr(obj, key)!r} is not one of: {', '.join(allowed)}")


def _section_of(obj) -> str:
    for name, cls in _SECTION_CLASSES.items():
        if isinstance(obj, cls):
            return name
    return type(obj).__name__


def field_types(section: str) -> dict[str, type]:
    """{key: type} of a section's fields (the type of each default)."""
    cls = _SECTION_CLASSES[section]
    defaults = cls()
    return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(cls)}


def _parser(section: str, key: str):
    """The field's own `parse` function, if it has one (durations)."""
    return next(f.metadata.get("parse") for f in dataclasses.fields(_SECTION_CLASSES[section]) if f.name == key)


def _coerce(section: str, key: str, value: Any, from_text: bool):
    """Check (TOML) or parse (command line) one value against the field's type."""
    types = field_types(section)
    if key not in types:
        raise ConfigError(f"unknown key {section}.{key}; known {section} keys: {', '.join(types)}")
    want = types[key]
    name = f"{section}.{key}"
    parse = _parser(section, key)
    if parse is not None:
        return parse(value, name)
    if from_text:
        text = str(value).strip()
        try:
            if want is bool:
                low = text.lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError
            if want is int:
                return int(text)
            if want is float:
                return float(text)
            return str(value)
        except ValueError:
            raise ConfigError(f"{name} expects {want.__name__}, got {text!r}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not want:
        raise ConfigError(f"{name} expects {want.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(raw: dict) -> Config:
    """Build and validate a Config from a {section: {key: value}} mapping (TOML types are checked)."""
    sections = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}]; known sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of key = value lines")
        sections[section] = _SECTION_CLASSES[section](
            **{k: _coerce(section, k, v, from_text=False) for k, v in values.items()})
    return Config(**sections).validate()


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def read_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"pipeline file {p} does not exist: check the path (pipelines/ holds the shipped ones)")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not valid TOML ({e}): fix the file") from None


def parse_overrides(args: Sequence[str]) -> dict:
    """Turn `--section.key=value` (or `--section.key value`) arguments into {section: {key: text}}."""
    out: dict = {}
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ConfigError(f"unexpected argument {arg!r}: overrides look like --section.key=value, "
                              f"e.g. --model.rnn_size=256")
        if "=" in arg:
            dotted, value = arg[2:].split("=", 1)
        elif i + 1 < len(args):
            dotted, value = arg[2:], args[i + 1]
            i += 1
        else:
            raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
        section, _, key = dotted.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"unknown section in {arg}; known sections: {', '.join(SECTIONS)}")
        out.setdefault(section, {})[key] = _coerce(section, key, value, from_text=True)
        i += 1
    return out


def load_config(pipeline: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the pipeline file's overrides, then command-line overrides; validated."""
    raw: dict = {}
    if pipeline:
        for section, values in read_toml(pipeline).items():
            if section not in SECTIONS:
                raise ConfigError(f"{pipeline}: unknown section [{section}]; known sections: {', '.join(SECTIONS)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{pipeline}: {section} must be a [{section}] table")
            raw[section] = dict(values)
        from_dict(raw)  # check the file on its own, so errors name the file's keys before the flags'
    for section, values in parse_overrides(overrides).items():
        raw.setdefault(section, {}).update(values)
    return from_dict(raw)


def toml_value(v) -> str:
    """One value as TOML source (strings quoted and escaped)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


def dumps(cfg: Config, sections: Sequence[str] | None = None) -> str:
    """The resolved config as TOML, each key with its help text as a comment."""
    lines = []
    for f in dataclasses.fields(cfg):
        if sections is not None and f.name not in sections:
            continue
        sec = getattr(cfg, f.name)
        lines.append(f"[{f.name}]")
        for sf in dataclasses.fields(sec):
            lines.append(f"# {sf.metadata.get('help', '')}")
            lines.append(f"{sf.name} = {toml_value(getattr(sec, sf.name))}")
        lines.append("")
    return "\n".join(lines)


def save(cfg: Config, path: str | Path, sections: Sequence[str] | None = None) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(cfg, sections), encoding="utf-8")
    os.replace(tmp, path)


def load_resolved(path: str | Path) -> Config:
    """Read a run's or an export's config.toml (any subset of sections; the rest default)."""
    return from_dict(read_toml(path))


def help_text() -> str:
    lines = ["configuration keys (--section.key=value):"]
    for f in dataclasses.fields(Config):
        for sf in dataclasses.fields(_SECTION_CLASSES[f.name]):
            default = getattr(_SECTION_CLASSES[f.name](), sf.name)
            lines.append(f"  --{f.name}.{sf.name}={toml_value(default)}\n      {sf.metadata.get('help', '')}")
    return "\n".join(lines)
