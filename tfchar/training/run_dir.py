"""Naming a run and resolving its config and directory, for a new run or a resumed one.

Example:
    cfg, run_dir = resolve_config("pipelines/tiny_shakespeare.toml", ["--train.max_steps=100"])
"""

from __future__ import annotations

from pathlib import Path

from tfchar.core import config as config_lib
from tfchar.core.errors import CheckpointError, ConfigError
from tfchar.core.shipped import DEFAULT_PIPELINE, shipped
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.training.finetune import apply_source, explicit_keys


def default_run_name(cfg: config_lib.Config, pipeline: str | None) -> str:
    """train.name, else the pipeline file's name, else the source's (a TFDS name, a file's stem, a folder).

    The default pipeline names no run: `--data.source=my.txt` alone makes runs/my (and saved_models/my),
    never a run named after tiny_shakespeare.
    """
    if cfg.train.name:
        return cfg.train.name
    if pipeline and Path(pipeline).resolve() != shipped(DEFAULT_PIPELINE).resolve():
        return Path(pipeline).stem
    src = cfg.data.source
    if src.startswith("tfds:"):
        return src[5:].split("/")[0].split(":")[0]
    p = Path(src.rstrip("/"))
    return (p.parent.name if p.name == "input.txt" and p.parent.name else p.stem) or "run"


def resolve_config(pipeline: str | None, overrides: list[str]) -> tuple[config_lib.Config, Path]:
    """The config and run dir for `fit`: a new run's, or on resume the saved run's plus train/export overrides."""
    cfg = config_lib.load_config(pipeline, overrides)
    if not cfg.train.resume:
        if cfg.train.init_from:  # fine-tuning: the model from the source, fine-tuning defaults (training.finetune)
            cfg = apply_source(cfg, explicit_keys(pipeline, overrides))
        return cfg, _new_run_dir(cfg, default_run_name(cfg, pipeline))
    name = default_run_name(cfg, pipeline)
    run_dir = Path(cfg.train.run_dir) if cfg.train.run_dir else Path("runs") / name
    if not (run_dir / "config.toml").is_file():
        raise CheckpointError(f"cannot resume: {run_dir} is not a run directory (no config.toml); give "
                              f"--train.run_dir=runs/<name> of an earlier run")
    ckpt_lib.resolve_checkpoint(run_dir, "last")  # raises when there is nothing to resume from
    saved = config_lib.load_resolved(run_dir / "config.toml")
    cli = config_lib.parse_overrides(overrides)
    changed = [f"{s}.{k}" for s in ("data", "model") for k, v in cli.get(s, {}).items()
               if getattr(getattr(saved, s), k) != v]
    if changed:
        raise ConfigError(f"cannot change {', '.join(changed)} when resuming; start a new run from these weights "
                          f"with --train.init_from={run_dir} instead")
    train = {**cli.get("train", {}), "resume": True, "run_dir": str(run_dir)}
    return saved.replace(train=train, export=cli.get("export", {})), run_dir


def _new_run_dir(cfg: config_lib.Config, name: str) -> Path:
    """train.run_dir (which must not hold a run yet), else runs/<name>, numbered if taken."""
    if cfg.train.run_dir:
        run_dir = Path(cfg.train.run_dir)
        if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
            raise ConfigError(f"{run_dir} already holds a run: continue it with --train.resume=true, or pick "
                              f"another --train.run_dir")
        return run_dir
    run_dir, n = Path("runs") / name, 2
    while (run_dir / "checkpoints").exists():
        run_dir, n = Path("runs") / f"{name}-{n}", n + 1
    return run_dir
