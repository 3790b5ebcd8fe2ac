"""The search's report: summary.md (trials ranked by validation bpc) and best.toml (the winner as a pipeline).

Example:
    finish(tuner.oracle, cfg, params, Path("tuning/x"), "python -m tfchar.tune ...")
"""

from __future__ import annotations

from pathlib import Path

from tfchar.core import config as config_lib
from tfchar.core.errors import TrainingDiverged
from tfchar.tuning.space import Param, clean
from tfchar.tuning.trials import OBJECTIVE


def summary_rows(oracle, params: list[Param], max_epochs: int) -> list[dict]:
    """One row per trial: completed ones ranked by val bpc, then failed or unfinished ones."""
    rows = []
    for trial in oracle.trials.values():
        values = trial.hyperparameters.values
        row = {"trial": trial.trial_id, "status": trial.status,
               "values": {p.name: clean(values.get(p.name)) for p in params},
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
        for key in config_lib.field_types(section):
            if section == "train" and key in ("run_dir", "resume", "init_from"):
                continue
            v = getattr(ours, key)
            name = f"{section}.{key}"
            if v != getattr(default, key) or name in tuned:
                note = f"  # tuned: {tuned[name].describe()}" if name in tuned else ""
                body.append(f"{key} = {config_lib.toml_value(v)}{note}")
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
