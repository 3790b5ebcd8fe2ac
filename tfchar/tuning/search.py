"""`python -m tfchar.tune`'s job: the oracle, this process's role (single, chief or worker), the search, the report.

Everything goes under `tuning/<project>/`:

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

import os
import shutil
from pathlib import Path

import keras_tuner

from tfchar.core import config as config_lib
from tfchar.core.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from tfchar.data.corpus import load_corpus
from tfchar.training.run_dir import default_run_name
from tfchar.tuning import compat
from tfchar.tuning.report import finish
from tfchar.tuning.space import Param, find_space, load_space
from tfchar.tuning.trials import OBJECTIVE, CharRNNTuner, ConfigHyperModel, Fatal

TUNING_ROOT = Path("tuning")
compat.quiet_failed_trials()


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
    trials = epochs = 0
    for bracket in compat.hyperband_plan(max_epochs, factor, keras_tuner.Objective(OBJECTIVE, "min")):
        before = 0  # a promoted trial continues its earlier round's run: only the extra epochs are trained
        for size, round_epochs in bracket:
            trials += size
            epochs += size * (round_epochs - before)
            before = round_epochs
    return trials, epochs


def _role() -> str:
    """single, chief or worker (Keras Tuner's distributed mode is set by its environment variables)."""
    try:
        if not compat.has_chief_oracle():
            return "single"
    except RuntimeError as e:  # one of the three variables is missing: say which, in one line
        raise ConfigError(f"distributed tuning: {e}") from None
    return "chief" if compat.is_chief_oracle() else "worker"


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
    project = cfg.tune.project or default_run_name(cfg, pipeline)
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
        load_corpus(cfg.data, lambda *_: None)  # a bad source fails here, once, not in every trial
    tuner = CharRNNTuner(make_oracle(cfg.tune), ConfigHyperModel(cfg, params), project_dir,
                         cfg.tune.max_epochs, cfg.tune.executions_per_trial, log)
    stopped = None
    try:
        tuner.search()
    except Fatal as e:
        if isinstance(e.error, TrainingInterrupted):
            again = [pipeline or "", *(a for a in overrides if not a.startswith("--tune.resume"))]
            raise TrainingInterrupted(f"search interrupted; continue it with: python -m tfchar.tune "
                                      f"{' '.join(again).strip()} --tune.resume=true", e.error.exit_code) from None
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
