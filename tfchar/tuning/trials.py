"""Hyperparameter search with Keras Tuner: a TOML search space, and one trial = one `trainer.fit` run.

The space file (`tune.space`) names config keys and their ranges; the hypermodel maps a trial's values onto
the same `Config` that `python -m tfchar.fit` uses and trains it with the same `trainer.fit`, so a trial
is an ordinary run directory (checkpoints, TensorBoard logs with the HParams dashboard) and the objective
is fit's own validation bits per character. Everything goes under `tuning/<project>/`:

    oracle.json, tuner0.json, trial_*/trial.json   Keras Tuner's state (what `--tune.resume=true` reloads)
    trial_*/                                       each trial's run directory (config.toml, logs/, ...)
    summary.md                                     trials ranked by validation bpc
    best.toml                                      the best trial as a pipeline for `python -m tfchar.fit`

The same command runs as Keras Tuner's chief/worker cluster when KERASTUNER_TUNER_ID,
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT are set (docs/tune.md).

Example:
    result = run("pipelines/tiny_shakespeare.toml", ["--tune.algorithm=random", "--tune.max_trials=6"])
    result["best"]["val_bpc"], result["best_toml"]
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner

from tfchar import config as config_lib
from tfchar import trainer
from tfchar.errors import ConfigError, TfcharError, TrainingDiverged, TrainingInterrupted

# Keras Tuner prints the traceback of every failed trial (DEBUG is on by default); a diverged trial is an
# expected outcome reported in one line, and run_trial prints real errors itself.
keras_tuner.src.config.DEBUG = False

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TUNING_ROOT = Path("tuning")
OBJECTIVE = "val_bpc"
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
        return _clean(hp.Float(self.name, self.min, self.max, step=self.step, sampling=self.sampling))

    def extremes(self) -> list:
        return list(self.choices) if self.choices is not None else [self.min, self.max]

    def describe(self) -> str:
        if self.choices is not None:
            return f"choices {list(self.choices)}"
        extra = (f", step {self.step}" if self.step is not None else "") + \
            (f", {self.sampling}" if self.sampling != "linear" else "")
        return f"{self.min}..{self.max}{extra}"


def _clean(v):
    """0.30000000000000004 (min + 3 * step) -> 0.3, so configs and best.toml show the value meant."""
    return float(f"{v:.12g}") if isinstance(v, float) else v


def find_space(path: str) -> Path:
    """The space file: relative to the working directory, else to the repository (where tuning/ ships)."""
    p = Path(path)
    if not p.is_file() and not p.is_absolute():
        shipped = Path(__file__).resolve().parent.parent / p
        if shipped.is_file():
            return shipped
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
        known = key in config_lib._field_types(section)
        why = "cannot be tuned" if known else "is an unknown key"
        raise ConfigError(f"{path}: {name} {why}; tunable keys: {_TUNABLE_LIST}")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: {name} must be a table: [{name}] with choices = [...] or min/max")
    kind = config_lib._field_types(section)[key]
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


class ConfigHyperModel(keras_tuner.HyperModel):
    """Maps a trial's hyperparameters onto the base config: `build(hp)` returns a `Config`, not a model.

    Args:
        base: the config every trial starts from (pipeline file plus command-line overrides).
        params: the search space from `load_space`.
    """

    def __init__(self, base: config_lib.Config, params: list[Param]):
        super().__init__(name="tfchar")
        self.base, self.params = base, params

    def build(self, hp) -> config_lib.Config:
        sections: dict = {}
        for p in self.params:
            sections.setdefault(p.section, {})[p.key] = p.declare(hp)
        return self.base.replace(**sections)


class _Fatal(keras_tuner.errors.FatalError):
    """Carries a user error (bad data, Ctrl-C) out of Keras Tuner, which would otherwise retry the trial."""

    def __init__(self, error: TfcharError):
        super().__init__(str(error))
        self.error = error


class CharRNNTuner(BaseTuner):
    """Runs each trial as `trainer.fit` in `tuning/<project>/trial_<id>/` and reports its validation bpc.

    Hyperband's later rounds continue the earlier trial's run (its checkpoints are copied and resumed), so
    a promoted configuration trains `tuner/epochs` epochs in total, not from scratch. A diverged trial is
    recorded as failed and the search goes on; Keras memory is released after every trial.

    Args:
        oracle: a Keras Tuner oracle with objective `val_bpc` (min).
        hypermodel: a `ConfigHyperModel`.
        project_dir: `tuning/<project>`.
        max_epochs: epochs per trial when the oracle does not say (random, bayesian).
        executions: training runs averaged per trial (seeds base seed + 0, 1, ...).
        log: where progress lines go.
    """

    def __init__(self, oracle, hypermodel: ConfigHyperModel, project_dir: Path, max_epochs: int,
                 executions: int = 1, log=print):
        self.max_epochs, self.executions, self.log = max_epochs, executions, log
        super().__init__(oracle, hypermodel, directory=str(project_dir.parent), project_name=project_dir.name,
                         overwrite=False)

    def run_dir(self, trial_id: str, execution: int) -> Path:
        base = Path(self.project_dir) / f"trial_{trial_id}"
        # With several executions each gets a run dir named after the trial, so HParams sessions stay unique.
        return base if self.executions == 1 else base / f"trial_{trial_id}-{execution + 1}"

    def run_trial(self, trial, *args, **kwargs) -> dict:
        hp = trial.hyperparameters
        cfg = self.hypermodel.build(hp)
        epochs = int(hp.values.get("tuner/epochs", self.max_epochs))
        past = hp.values.get("tuner/trial_id")
        results = []
        for k in range(self.executions):
            run_dir = self.run_dir(trial.trial_id, k)
            resume = _has_checkpoint(run_dir)  # a trial the search was interrupted in: continue it
            if resume:
                self.log(f"trial {trial.trial_id}: continuing its interrupted run in {run_dir}")
            elif past:
                resume = _continue_from(self.run_dir(past, k), run_dir)
                if resume:
                    self.log(f"trial {trial.trial_id}: continuing trial {past}'s run to {epochs} epochs")
            trial_cfg = cfg.replace(
                train={"epochs": epochs, "run_dir": str(run_dir), "resume": resume, "init_from": "",
                       "seed": cfg.train.seed + k, "keep_checkpoints": 1},
                export={"on_finish": False})
            _write_json(Path(self.project_dir) / f"trial_{trial.trial_id}" / "tfchar_trial.json",
                        {"tuner_id": self.tuner_id, "epochs": epochs, "continued_from": past,
                         "values": {p.name: hp.values.get(p.name) for p in self.hypermodel.params}})
            try:
                results.append(trainer.fit(trial_cfg, run_dir, self.log))
            except TrainingDiverged as e:
                self.log(f"trial {trial.trial_id} failed: {e}")
                raise keras_tuner.errors.FailedTrialError(f"diverged: {e}") from e
            except TfcharError as e:
                raise _Fatal(e) from e
            except Exception:
                # A bug, not a bad setting: show it (Keras Tuner then records the trial as failed).
                traceback.print_exc()
                raise
            finally:
                # Each trial builds new models and graphs: drop them so a long search does not grow.
                keras.backend.clear_session()
                gc.collect()
        return {OBJECTIVE: statistics.fmean(r["best_val_bpc"] for r in results),
                "val_loss": statistics.fmean(r["best_val_loss"] for r in results),
                "params": float(results[0]["params"]),
                "wall_time_s": float(sum(r["wall_time_s"] for r in results))}


def _has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / "checkpoints" / "last").exists() and (run_dir / "config.toml").is_file()


def _continue_from(past_dir: Path, run_dir: Path) -> bool:
    """Copy an earlier trial's last and best checkpoints into `run_dir` so fit can resume them.

    Logs are not copied: the new trial's TensorBoard curves start where the earlier one stopped.
    Returns False (train from scratch) when the earlier run is not on this machine's disk.
    """
    if not _has_checkpoint(past_dir):
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.toml", "vocab.json"):
        shutil.copy2(past_dir / name, run_dir / name)
    src, tmp = past_dir / "checkpoints", run_dir / ".checkpoints-copy"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for link in ("last", "best"):
        if (src / link).is_symlink():
            target = os.readlink(src / link)
            if not (tmp / target).exists():
                shutil.copytree(src / target, tmp / target)
            os.symlink(target, tmp / link)
    os.rename(tmp, run_dir / "checkpoints")  # atomic: a half-copied run is never mistaken for one to resume
    return True


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def make_oracle(tune: config_lib.TuneConfig):
    """The Keras Tuner oracle for `tune.algorithm`, minimising validation bpc."""
    objective = keras_tuner.Objective(OBJECTIVE, "min")
    if tune.algorithm == "hyperband":
        return keras_tuner.oracles.HyperbandOracle(objective, max_epochs=tune.max_epochs, factor=3,
                                                   seed=tune.seed)
    if tune.algorithm == "random":
        return keras_tuner.oracles.RandomSearchOracle(objective, max_trials=tune.max_trials, seed=tune.seed)
    try:
        return keras_tuner.oracles.BayesianOptimizationOracle(objective, max_trials=tune.max_trials,
                                                              seed=tune.seed)
    except ImportError:
        raise ConfigError("tune.algorithm=bayesian needs scipy and scikit-learn: pip install "
                          "'keras-tuner[bayesian]', or use --tune.algorithm=hyperband or random") from None


def hyperband_budget(max_epochs: int, factor: int = 3) -> tuple[int, int]:
    """(trials, epochs trained in total) of one Hyperband iteration, counting continued trials' extra epochs."""
    oracle = keras_tuner.oracles.HyperbandOracle(keras_tuner.Objective(OBJECTIVE, "min"), max_epochs=max_epochs,
                                                 factor=factor)
    trials = epochs = 0
    for b in range(oracle._get_num_brackets()):
        for r in range(b + 1):
            size = oracle._get_size(b, r)
            trials += size
            epochs += size * (oracle._get_epochs(b, r) - (oracle._get_epochs(b, r - 1) if r else 0))
    return trials, epochs


def _role() -> str:
    """single, chief or worker (Keras Tuner's distributed mode is set by its environment variables)."""
    from keras_tuner.src.distribute import utils as dist_utils

    try:
        if not dist_utils.has_chief_oracle():
            return "single"
    except RuntimeError as e:  # one of the three variables is missing: say which, in one line
        raise ConfigError(f"distributed tuning: {e}") from None
    return "chief" if dist_utils.is_chief_oracle() else "worker"


def _check_project(project_dir: Path, cfg: config_lib.Config) -> None:
    """Refuse to mix a new search into an old one; on resume, refuse a different algorithm."""
    started = (project_dir / "oracle.json").is_file() or any(project_dir.glob("trial_*"))
    saved = project_dir / "config.toml"
    if started and not cfg.tune.resume:
        raise ConfigError(f"{project_dir} already holds a search: continue it with --tune.resume=true, or "
                          f"choose another --tune.project")
    if started and saved.is_file():
        before = config_lib.load_resolved(saved).tune.algorithm
        if before != cfg.tune.algorithm:
            raise ConfigError(f"{project_dir} is a {before} search: resume it with --tune.algorithm={before}, "
                              f"or start another --tune.project")


def run(pipeline: str | None, overrides: list[str], log=print) -> dict:
    """`python -m tfchar.tune`: search, then write summary.md and best.toml (on the chief, if distributed).

    Args:
        pipeline: base pipeline file (or None for the defaults).
        overrides: `--section.key=value` arguments, e.g. `--tune.max_trials=6`.
        log: where progress lines go.

    Returns:
        {"project_dir", "rows" (ranked summary rows), "best" (best row or None), "best_toml" (path or None)};
        a worker returns only {"project_dir"}.
    """
    cfg = config_lib.load_config(pipeline, overrides)
    for key in ("run_dir", "init_from"):
        if getattr(cfg.train, key):
            raise ConfigError(f"train.{key} is set per trial by tune: drop --train.{key}")
    if cfg.train.resume:
        raise ConfigError("train.resume does not apply to a search: use --tune.resume=true")
    project = cfg.tune.project or trainer.default_run_name(cfg, pipeline)
    if os.sep in project or project.startswith(".") or not project:
        raise ConfigError(f"tune.project = {project!r} must be a plain folder name (it goes under tuning/)")
    project_dir = TUNING_ROOT / project
    space_path = find_space(cfg.tune.space)
    params = load_space(space_path, cfg)
    role = _role()
    if role != "worker":
        _check_project(project_dir, cfg)
        project_dir.mkdir(parents=True, exist_ok=True)
        config_lib.save(cfg, project_dir / "config.toml")
        shutil.copyfile(space_path, project_dir / "space.toml")
    _log_plan(cfg, params, project_dir, role, log)
    if role != "chief":
        from tfchar.corpus import load_corpus

        load_corpus(cfg.data, lambda *_: None)  # a bad source fails here, once, not in every trial
    tuner = CharRNNTuner(make_oracle(cfg.tune), ConfigHyperModel(cfg, params), project_dir,
                         cfg.tune.max_epochs, cfg.tune.executions_per_trial, log)
    stopped = None
    try:
        tuner.search()
    except _Fatal as e:
        if isinstance(e.error, TrainingInterrupted):
            again = [pipeline or "", *(a for a in overrides if not a.startswith("--tune.resume"))]
            raise TrainingInterrupted(f"search interrupted; continue it with: python -m tfchar.tune "
                                      f"{' '.join(again).strip()} --tune.resume=true") from None
        raise e.error from None
    except RuntimeError as e:  # Keras Tuner stops after max_consecutive_failed_trials (3) failures in a row
        if "consecutive failures" not in str(e) or role == "worker":
            raise
        stopped = (f"search stopped: {tuner.oracle.max_consecutive_failed_trials} trials in a row diverged; "
                   f"narrow the space in {space_path} (e.g. lower train.learning_rate)")
        log(stopped)
    if role == "worker":
        log(f"worker {tuner.tuner_id}: no trials left; the chief writes {project_dir}/summary.md")
        return {"project_dir": str(project_dir)}
    command = " ".join(["python -m tfchar.tune", *([pipeline] if pipeline else []), *overrides])
    result = finish(tuner.oracle, cfg, params, project_dir, command, log)
    if stopped:
        raise TrainingDiverged(stopped)
    return result


def _log_plan(cfg, params, project_dir, role, log) -> None:
    t = cfg.tune
    if t.algorithm == "hyperband":
        n, e = hyperband_budget(t.max_epochs)
        budget = f"hyperband: {n} trials, {e} epochs in all (max_epochs {t.max_epochs})"
    else:
        budget = f"{t.algorithm}: {t.max_trials} trials of {t.max_epochs} epoch(s)"
    log(f"search {project_dir} ({role}) - {budget}; space: " +
        "; ".join(f"{p.name} {p.describe()}" for p in params))
    if role == "chief":
        log(f"chief: serving the oracle on {os.environ['KERASTUNER_ORACLE_IP']}:"
            f"{os.environ['KERASTUNER_ORACLE_PORT']}; start workers with KERASTUNER_TUNER_ID=worker0, worker1, ...")


def summary_rows(oracle, params: list[Param], max_epochs: int) -> list[dict]:
    """One row per trial: completed ones ranked by val bpc, then failed or unfinished ones."""
    rows = []
    for trial in oracle.trials.values():
        values = trial.hyperparameters.values
        row = {"trial": trial.trial_id, "status": trial.status,
               "values": {p.name: _clean(values.get(p.name)) for p in params},
               "epochs": int(values.get("tuner/epochs", max_epochs)), "from": values.get("tuner/trial_id")}
        for m in (OBJECTIVE, "params", "wall_time_s"):
            row[m] = trial.metrics.get_best_value(m) if trial.metrics.exists(m) else None
        rows.append(row)
    done = sorted((r for r in rows if r["status"] == "COMPLETED" and r[OBJECTIVE] is not None),
                  key=lambda r: (r[OBJECTIVE], r["trial"]))
    for rank, r in enumerate(done, 1):
        r["rank"] = rank
    rest = sorted((r for r in rows if r not in done), key=lambda r: r["trial"])
    return done + rest


def format_table(rows: list[dict], params: list[Param]) -> str:
    """The summary as a Markdown table (readable as plain text too)."""
    head = ["rank", "trial", *(p.name for p in params), "epochs", "val bpc", "params", "wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        bpc = f"{r[OBJECTIVE]:.4f}" if r.get("rank") else r["status"].lower()
        trial = r["trial"] + (f" (from {r['from']})" if r.get("from") else "")
        cells = [str(r.get("rank", "-")), trial, *(_fmt(r["values"][p.name]) for p in params),
                 str(r["epochs"]), bpc, f"{int(r['params']):,}" if r["params"] else "-",
                 f"{r['wall_time_s']:.0f} s" if r["wall_time_s"] else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def best_pipeline(cfg: config_lib.Config, best: dict, params: list[Param], project_dir: Path,
                  n_trials: int) -> str:
    """best.toml: overrides only (what differs from the defaults), trained for the best trial's epochs."""
    sections: dict = {}
    for p in params:
        sections.setdefault(p.section, {})[p.key] = best["values"][p.name]
    train = {**sections.pop("train", {}), "epochs": best["epochs"], "name": f"{project_dir.name}-best"}
    chosen = cfg.replace(**sections, train=train)
    defaults = config_lib.Config()
    tuned = {p.name: p for p in params}
    lines = [f"# Best of {n_trials} trials of the {cfg.tune.algorithm} search in {project_dir}: trial "
             f"{best['trial']}, {best[OBJECTIVE]:.4f} val bpc after {best['epochs']} epoch(s).",
             "# Written by python -m tfchar.tune: overrides only. Train it with:",
             f"#   python -m tfchar.fit {project_dir / 'best.toml'}",
             "# (more epochs, e.g. --train.epochs=50, usually lower the bpc further)"]
    for section in ("data", "model", "train", "export"):
        ours, default = getattr(chosen, section), getattr(defaults, section)
        body = []
        for key in config_lib._field_types(section):
            if section == "train" and key in ("run_dir", "resume", "init_from"):
                continue
            v = getattr(ours, key)
            name = f"{section}.{key}"
            if v != getattr(default, key) or name in tuned:
                note = f"  # tuned: {tuned[name].describe()}" if name in tuned else ""
                body.append(f"{key} = {config_lib._toml_value(v)}{note}")
        if body:
            lines += ["", f"[{section}]", *body]
    return "\n".join(lines) + "\n"


def finish(oracle, cfg: config_lib.Config, params: list[Param], project_dir: Path, command: str,
           log=print) -> dict:
    """Print and write summary.md; write best.toml from the best completed trial."""
    rows = summary_rows(oracle, params, cfg.tune.max_epochs)
    table = format_table(rows, params)
    best = rows[0] if rows and rows[0].get("rank") else None
    failed = sum(r["status"] == "FAILED" for r in rows)
    text = [f"# Search {project_dir.name}", "",
            f"`{command}`", "", f"{cfg.tune.algorithm}, {len(rows)} trials ({failed} failed), objective: validation "
            f"bits per character (lower is better). Compare the trials' curves and hyperparameters with "
            f"`tensorboard --logdir {project_dir}` (HParams tab).", "", table, ""]
    result = {"project_dir": str(project_dir), "rows": rows, "best": best, "best_toml": None}
    if best:
        best_toml = project_dir / "best.toml"
        best_toml.write_text(best_pipeline(cfg, best, params, project_dir, len(rows)), encoding="utf-8")
        config_lib.load_config(best_toml)  # what we wrote must load: fail here, not at the user's fit
        result["best_toml"] = str(best_toml)
        text += [f"Best: trial {best['trial']} ({best[OBJECTIVE]:.4f} bpc). Train it: "
                 f"`python -m tfchar.fit {best_toml}`", ""]
    (project_dir / "summary.md").write_text("\n".join(text), encoding="utf-8")
    log("\n" + table + "\n")
    log(f"summary: {project_dir / 'summary.md'}" + (f"; best pipeline: {result['best_toml']}" if best else ""))
    if not best:
        raise TrainingDiverged(f"no trial of {project_dir} completed ({failed} failed): see "
                               f"{project_dir / 'summary.md'}; narrow the space (e.g. lower train.learning_rate)")
    return result
