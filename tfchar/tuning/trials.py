"""One trial = one `trainer.fit` run: the hypermodel maps a trial's values onto the config, the tuner runs it.

The hypermodel maps a trial's hyperparameters onto the same `Config` that `python -m tfchar.fit` uses and
trains it with the same `trainer.fit`, so a trial is an ordinary run directory (checkpoints, TensorBoard
logs with the HParams dashboard) and the objective is fit's own validation bits per character.

Example:
    tuner = CharRNNTuner(oracle, ConfigHyperModel(cfg, params), Path("tuning/x"), max_epochs=4)
    tuner.search()
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import traceback
from pathlib import Path

import keras
import keras_tuner

from tfchar.core import config as config_lib
from tfchar.core.errors import TfcharError, TrainingDiverged
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.training import trainer
from tfchar.training.lock import RunLock
from tfchar.tuning.compat import BaseTuner
from tfchar.tuning.space import Param

OBJECTIVE = "val_bpc"


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


class Fatal(keras_tuner.errors.FatalError):
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
            try:  # one writer per trial: a restarted worker and a stale one never write the same run
                lock = RunLock(run_dir, self.log).acquire()
            except TfcharError as e:
                raise Fatal(e) from e
            try:
                results.append(self._execute(trial, cfg, run_dir, k, epochs, past))
            finally:
                lock.release()
        return {OBJECTIVE: statistics.fmean(r["best_val_bpc"] for r in results),
                "val_loss": statistics.fmean(r["best_val_loss"] for r in results),
                "params": float(results[0]["params"]),
                "wall_time_s": float(sum(r["wall_time_s"] for r in results))}

    def _execute(self, trial, cfg: config_lib.Config, run_dir: Path, k: int, epochs: int, past) -> dict:
        """One training run of a trial in `run_dir` (continuing an interrupted or an earlier trial's run)."""
        hp = trial.hyperparameters
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
            return trainer.fit(trial_cfg, run_dir, self.log)
        except TrainingDiverged as e:
            self.log(f"trial {trial.trial_id} failed: {e}")
            raise keras_tuner.errors.FailedTrialError(f"diverged: {e}") from e
        except TfcharError as e:
            raise Fatal(e) from e
        except Exception:
            # A bug, not a bad setting: show it (Keras Tuner then records the trial as failed).
            traceback.print_exc()
            raise
        finally:
            # Each trial builds new models and graphs: drop them so a long search does not grow.
            keras.backend.clear_session()
            gc.collect()


def _has_checkpoint(run_dir: Path) -> bool:
    return bool(ckpt_lib.checkpoints(run_dir)) and (run_dir / "config.toml").is_file()


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
