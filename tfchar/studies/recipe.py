"""The recipe study: what each addition to a char-RNN recipe is worth at equal wall time.

Every run starts from the same base recipe (a pipeline file, else `RACE_RECIPE`: char-rnn's recipe at 2x512,
B64 x T100), changes one thing, and trains for the same time budget, evaluations included
(`train.time_budget`), once per seed. Its final checkpoint is then scored on the whole validation split
(8 contiguous streams, state carried; outside the budget), and compared with the base run of the same seed:

    add      the base, and the base with each addition on: what each is worth alone
    remove   the base (additions on), and the base with each one off: what each still earns in the mix
    both     add; then every addition that gained at least `min_gain` bpc on every seed, combined (of
             additions that set the same key, the better), as the base of remove; an addition whose
             removal does not cost bpc on average is dropped. What is left is the chosen recipe.

Writes `recipe.md` (the setup, one table per phase, the chosen recipe as pipeline lines, every run),
`recipe.csv` (every run) and `recipe.png` (validation bpc against seconds, per variant and seed). With
`runs_dir`, finished runs are kept and reused when the study is started again with the same settings.

Example:
    run_recipe(Path("docs/study"), RecipeSetup(budget=600.0, seeds=(1, 2)), design="both")
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tfchar.core import config as config_lib
from tfchar.core.errors import ConfigError
from tfchar.data.corpus import load_corpus
from tfchar.runtimes.keras import open_run
from tfchar.studies.runs import fit_run, train_speed
from tfchar.studies.tables import markdown_table, plot_variants, write_csv

DESIGNS = ("add", "remove", "both")

# char-rnn's recipe as tfchar ran it before this study (Keras's initialisation), at the size of PyTorch's
# reference in benchmarks/quality_race.py.
RACE_RECIPE = {"model.cell": "lstm", "model.rnn_size": 512, "model.num_layers": 2, "model.embedding_dim": 64,
               "model.dropout": 0.0, "model.init": "keras", "model.embedding_init": "uniform", "data.batch_size": 64,
               "data.seq_length": 100, "train.learning_rate": 0.002, "train.grad_clip": 5.0,
               "train.lr_schedule": "char-rnn", "train.adam_epsilon": 1e-7, "train.scheme": "stateful"}


@dataclass(frozen=True)
class Addition:
    """One change to a recipe: the keys that switch it on, the keys that switch it off, what it is."""

    name: str
    on: dict
    off: dict
    what: str


ADDITIONS = (
    Addition("cosine", {"train.lr_schedule": "cosine", "train.warmup_steps": 0},
             {"train.lr_schedule": "char-rnn", "train.warmup_steps": 0},
             "cosine decay to 0.1x at the end of the budget (char-rnn: x0.97 per epoch after 10 epochs)"),
    Addition("cosine_warmup", {"train.lr_schedule": "cosine", "train.warmup_steps": 100},
             {"train.lr_schedule": "char-rnn", "train.warmup_steps": 0},
             "100 warm-up steps, then cosine decay to 0.1x at the end of the budget"),
    Addition("lr_4e-3", {"train.learning_rate": 0.004}, {"train.learning_rate": 0.002}, "peak learning rate 4e-3"),
    Addition("adamw", {"train.weight_decay": 0.1}, {"train.weight_decay": 0.0},
             "decoupled weight decay 0.1 of the weight matrices (AdamW)"),
    Addition("beta2_0.99", {"train.adam_beta2": 0.99}, {"train.adam_beta2": 0.999}, "Adam beta2 0.99"),
    Addition("dropout", {"model.dropout": 0.1}, {"model.dropout": 0.0}, "dropout 0.1 between layers, a mask per step"),
    Addition("locked_dropout", {"model.dropout": 0.1, "model.locked_dropout": True}, {"model.locked_dropout": False},
             "dropout 0.1 between layers, one mask per sequence (variational)"),
    Addition("input_dropout", {"model.input_dropout": 0.1}, {"model.input_dropout": 0.0},
             "dropout 0.1 on the embedding"),
    Addition("layer_norm", {"model.layer_norm": True}, {"model.layer_norm": False},
             "layer norm of each layer's output"),
    Addition("residual", {"model.residual": True}, {"model.residual": False},
             "each layer's input added to its output (where both are H wide)"),
    Addition("embedding_256", {"model.embedding_dim": 256}, {"model.embedding_dim": 64}, "embedding 256 wide"),
    Addition("embedding_normal", {"model.embedding_init": "normal"}, {"model.embedding_init": "uniform"},
             "N(0, 1) initial embedding (PyTorch's; Keras's: uniform +-0.05)"),
    Addition("torch_init", {"model.init": "torch", "train.adam_epsilon": 1e-8},
             {"model.init": "keras", "train.adam_epsilon": 1e-7},
             "PyTorch's initial LSTM and output weights and Adam epsilon 1e-8"),
    Addition("batch_128", {"data.batch_size": 128}, {"data.batch_size": 64}, "batch 128"),
    Addition("batch_32", {"data.batch_size": 32}, {"data.batch_size": 64}, "batch 32"),
    Addition("seq_200", {"data.seq_length": 200}, {"data.seq_length": 100}, "windows of 200 steps"),
    Addition("seq_50", {"data.seq_length": 50}, {"data.seq_length": 100}, "windows of 50 steps"),
    Addition("rnn_384", {"model.rnn_size": 384}, {"model.rnn_size": 512}, "384 units per layer: faster steps"),
    Addition("rnn_768", {"model.rnn_size": 768}, {"model.rnn_size": 512}, "768 units per layer: more capacity"),
)
ADDITION_NAMES = tuple(a.name for a in ADDITIONS)

RUN_COLUMNS = ("phase", "variant", "seed", "val_bpc", "eval_bpc", "steps", "chars", "wall_s", "train_cps", "params",
               "diverged")
SUMMARY_COLUMNS = ("variant", "what", "val_bpc", "delta_bpc", "deltas", "verdict", "steps", "chars", "train_cps",
                   "params")
# Keys every run of the study sets itself: not part of a recipe.
STUDY_KEYS = ("train.run_dir", "train.name", "train.seed", "train.resume", "train.init_from", "train.max_steps",
              "train.epochs", "train.eval_every", "train.eval_period", "train.eval_chars", "train.keep_checkpoints",
              "train.time_budget")


@dataclass(frozen=True)
class RecipeSetup:
    """What every run of the study shares.

    Args:
        budget: seconds of training per run, evaluations included.
        seeds: `train.seed` of each run of a variant.
        base: a pipeline file as the base recipe (None: `RACE_RECIPE`).
        overrides: {"section.key": value} applied to the base (the text, its split, ...).
        evals: validation points during a run (every budget / evals seconds, and at epoch ends).
        eval_chars: characters each of those scores (the final score reads the whole split).
        min_gain: bpc an addition must gain on every seed to count as helping.
        additions: the candidates.
    """

    budget: float = 600.0
    seeds: tuple = (1, 2)
    base: str | None = None
    overrides: dict = field(default_factory=dict)
    evals: int = 5
    eval_chars: int = 30_000
    min_gain: float = 0.005
    additions: tuple = ADDITIONS


@dataclass
class Study:
    """A study in progress: its setup, where runs go, its log, and every row so far."""

    setup: RecipeSetup
    work: Path
    log: Callable[[str], None]
    rows: list = field(default_factory=list)


# ============================================================================================ runs

def _recipe(setup: RecipeSetup, changes: dict) -> dict:
    """The base recipe's overrides with `changes` applied."""
    return {**(RACE_RECIPE if setup.base is None else {}), **setup.overrides, **changes}


def _config(setup: RecipeSetup, changes: dict, extra: dict | None = None) -> config_lib.Config:
    overrides = {**_recipe(setup, changes), **(extra or {})}
    return config_lib.load_config(setup.base, [f"--{k}={v}" for k, v in overrides.items()])


def _run_keys(setup: RecipeSetup, seed: int, run_dir: Path) -> dict:
    """The keys of a study run: the budget, evaluations every budget / evals seconds, no export."""
    return {"train.time_budget": setup.budget, "train.max_steps": 0, "train.epochs": 100_000, "train.eval_every": 0,
            "train.eval_period": setup.budget / setup.evals, "train.eval_chars": setup.eval_chars,
            "train.keep_checkpoints": 1, "train.seed": seed, "train.run_dir": str(run_dir), "export.on_finish": False}


def _train(st: Study, phase: str, variant: str, changes: dict, seed: int) -> dict:
    """One run (or its earlier result, if its run dir holds the same finished run): a row of the table."""
    slug = {"+": "with_", "-": "without_"}.get(variant[0], "") + variant.lstrip("+-")
    run_dir = st.work / f"{phase}_{slug}_seed{seed}"
    keys = _run_keys(st.setup, seed, run_dir)
    cfg = _config(st.setup, changes, keys)
    row = _finished(run_dir, cfg)
    if row is None:
        done = fit_run(f"{variant} seed {seed}", st.setup.base, {**_recipe(st.setup, changes), **keys}, run_dir, st.log)
        row = {"val_bpc": _final_bpc(run_dir) if done.history else math.nan,
               "eval_bpc": done.history[-1]["val_bpc"] if done.history else math.nan,
               "steps": done.result.get("steps", 0), "wall_s": done.wall, "train_cps": train_speed(run_dir),
               "params": done.result.get("params", 0), "diverged": done.diverged,
               "history": [(h["time"], h["val_bpc"]) for h in done.history]}
        (run_dir / "study.json").write_text(json.dumps(row))
    d = cfg.data
    row.update(phase=phase, variant=variant, seed=seed, run=f"{variant} seed {seed}",
               chars=row["steps"] * d.batch_size * d.seq_length)
    st.log(f"  {phase} {variant} seed {seed}: val {row['val_bpc']:.4f} bpc after {row['steps']:,} steps in "
           f"{row['wall_s']:.0f}s ({row['train_cps']:,.0f} chars/s){' DIVERGED' if row['diverged'] else ''}")
    return row


def _finished(run_dir: Path, cfg: config_lib.Config) -> dict | None:
    """The row of a finished run with this exact config in run_dir, or None."""
    try:
        same = config_lib.load_resolved(run_dir / "config.toml") == cfg
        return json.loads((run_dir / "study.json").read_text()) if same else None
    except (OSError, ValueError, ConfigError):
        return None


def _final_bpc(run_dir: Path) -> float:
    """The final checkpoint (`last`) on the whole validation split: 8 contiguous streams, state carried."""
    runtime = open_run(run_dir, which="last")
    return runtime.score(load_corpus(runtime.config.data).val, streams=8)["bpc"]


# ============================================================================================ phases

def _phase(st: Study, phase: str, base: dict, variants: list[tuple[str, dict, str]]) -> list[dict]:
    """Train the base and every (name, changes, what) variant with every seed; one summary row per variant."""
    st.log(f"recipe study, {phase}: base + {len(variants)} variants x {len(st.setup.seeds)} seeds x "
           f"{st.setup.budget:.0f}s = {(1 + len(variants)) * len(st.setup.seeds) * st.setup.budget / 3600:.1f} h")
    runs = {}
    for name, changes, _ in [("base", {}, "")] + variants:
        runs[name] = [_train(st, phase, name, {**base, **changes}, seed) for seed in st.setup.seeds]
        st.rows.extend(runs[name])
    return [_summary(name, what, runs[name], runs["base"], phase, st.setup.min_gain)
            for name, _, what in [("base", {}, "the base recipe")] + variants]


def _summary(name: str, what: str, runs: list, base: list, phase: str, min_gain: float) -> dict:
    """Mean of a variant's runs and its bpc change against the base run of the same seed."""
    deltas = [r["val_bpc"] - b["val_bpc"] for r, b in zip(runs, base)]
    deltas = [d if math.isfinite(d) else math.inf for d in deltas]  # a diverged run is worse than any other
    mean = statistics.mean(deltas)
    if name == "base":
        verdict = ""
    elif phase == "add":
        verdict = ("helps" if all(d <= -min_gain for d in deltas) else
                   "hurts" if all(d >= min_gain for d in deltas) else "no clear effect")
    else:
        verdict = "keep" if mean > 0 else "drop"  # removing it costs bpc on average: it earns its place
    return {"variant": name, "what": what, "val_bpc": statistics.mean(r["val_bpc"] for r in runs),
            "delta_bpc": mean if name != "base" else math.nan,
            "deltas": ", ".join(f"{d:+.4f}" for d in deltas) if name != "base" else "",
            "verdict": verdict, "steps": round(statistics.mean(r["steps"] for r in runs)),
            "chars": round(statistics.mean(r["chars"] for r in runs)),
            "train_cps": statistics.mean(r["train_cps"] for r in runs), "params": runs[0]["params"]}


def _variants(setup: RecipeSetup, base: dict, switch: Callable[[Addition], dict], sign: str) -> list[tuple]:
    """(sign + name, changes, what) of each addition whose `switch(addition)` changes the base recipe."""
    reference = _config(setup, base)
    out = []
    for a in setup.additions:
        changes = switch(a)
        if _config(setup, {**base, **changes}) != reference:
            out.append((sign + a.name, changes, a.what))
    return out


def _back_to_base(setup: RecipeSetup) -> Callable[[Addition], dict]:
    """Switch an addition off by restoring the add phase's base values of the keys it sets."""
    base = config_lib.to_dict(_config(setup, {}))
    return lambda a: {key: base[key.split(".")[0]][key.split(".")[1]] for key in a.on}


def _combine(setup: RecipeSetup, summary: list[dict]) -> tuple[dict, list[str]]:
    """The additions that helped, best first, skipping any that sets a key a better one already set."""
    helped = sorted((s for s in summary if s["verdict"] == "helps"), key=lambda s: s["delta_bpc"])
    by_name = {a.name: a for a in setup.additions}
    changes, chosen = {}, []
    for s in helped:
        a = by_name[s["variant"][1:]]
        if not set(a.on) & set(changes):
            changes.update(a.on)
            chosen.append(a.name)
    return changes, chosen


def _chosen(setup: RecipeSetup, combined: dict, summary: list[dict], off: Callable[[Addition], dict]) -> dict:
    """The combination without the additions the remove phase dropped."""
    by_name = {a.name: a for a in setup.additions}
    changes = dict(combined)
    for s in summary:
        if s["verdict"] == "drop":
            changes.update(off(by_name[s["variant"][1:]]))
    return changes


# ============================================================================================ the study

def run_recipe(out_dir: Path, setup: RecipeSetup, design: str = "both", runs_dir: Path | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Run the study (see the module docstring) and write recipe.{md,csv,png} into out_dir.

    Returns {"rows": every run, "summaries": {phase: rows}, "recipe": the chosen changes to the base}."""
    if design not in DESIGNS:
        raise ConfigError(f"design {design!r} is not one of: {', '.join(DESIGNS)}")
    _config(setup, {})  # a bad base or override fails now, not after hours of training
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tfchar-study-recipe-")) if runs_dir is None else Path(runs_dir)
    work.mkdir(parents=True, exist_ok=True)
    st = Study(setup, work, log)
    try:
        summaries, recipe = {}, {}
        # remove alone switches additions off to their off values (the base has them on); after add, to the
        # values of add's base
        off = _back_to_base(setup) if design == "both" else (lambda a: a.off)
        if design in ("add", "both"):
            summaries["add"] = _phase(st, "add", {}, _variants(setup, {}, lambda a: a.on, "+"))
            recipe, chosen = _combine(setup, summaries["add"])
            log(f"recipe study: helped on every seed: {', '.join(chosen) or 'nothing'}")
        if design in ("remove", "both") and (design == "remove" or recipe):
            summaries["remove"] = _phase(st, "remove", recipe, _variants(setup, recipe, off, "-"))
            recipe = _chosen(setup, recipe, summaries["remove"], off)
        _write(out_dir, st, summaries, recipe)
        return {"rows": st.rows, "summaries": summaries, "recipe": recipe}
    finally:
        if runs_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def recipe_lines(setup: RecipeSetup, changes: dict) -> str:
    """The chosen recipe as pipeline-file lines: every key whose value differs from tfchar's default, and the
    time budget it was chosen for."""
    cfg, defaults = config_lib.to_dict(_config(setup, changes)), config_lib.to_dict(config_lib.Config())
    out = []
    for section in ("data", "model", "train"):
        lines = [f"{k} = {config_lib.toml_value(v)}" for k, v in cfg[section].items()
                 if v != defaults[section][k] and f"{section}.{k}" not in STUDY_KEYS]
        if section == "train":
            lines.append(f"time_budget = {config_lib.toml_value(setup.budget)}  # the budget it was chosen for")
        if lines:
            out += [f"[{section}]", *lines, ""]
    return "\n".join(out)


def _write(out_dir: Path, st: Study, summaries: dict, recipe: dict) -> None:
    """recipe.csv (every run), recipe.md (setup, phase tables, chosen recipe, runs) and recipe.png."""
    setup = st.setup
    write_csv(st.rows, out_dir / "recipe.csv", RUN_COLUMNS)
    titles = {"add": "each addition alone, on the base recipe", "remove": "each addition off, from the combination"}
    parts = [f"# Recipe study: {setup.budget:.0f} s per run, seeds {', '.join(map(str, setup.seeds))}\n",
             f"Base: {setup.base or 'char-rnn recipe at 2x512, B64 x T100 (tfchar.studies.recipe.RACE_RECIPE)'}"
             + (f", with {', '.join(f'{k}={v}' for k, v in setup.overrides.items())}" if setup.overrides else "")
             + f". `val_bpc`: the final checkpoint on the whole validation split; `delta_bpc`: against the base run "
               f"of the same seed (negative = better); an addition helps if it gains >= {setup.min_gain} bpc on "
               f"every seed.\n"]
    for phase, summary in summaries.items():
        parts.append(f"## {phase}: {titles[phase]}\n\n{markdown_table(summary, SUMMARY_COLUMNS)}")
    parts.append(f"## The chosen recipe\n\n```toml\n{recipe_lines(setup, recipe)}```\n")
    parts.append(f"## Every run\n\n{markdown_table(st.rows, RUN_COLUMNS)}")
    (out_dir / "recipe.md").write_text("\n".join(parts), encoding="utf-8")
    for r in st.rows:
        r["panel"] = f"{r['phase']}: {titles[r['phase']]}"
    plot_variants(st.rows, out_dir / "recipe.png", f"recipe study: validation bpc vs training time "
                                                   f"({setup.budget:.0f} s per run)", st.log)
