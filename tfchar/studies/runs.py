"""One study run: train at a fixed budget and measure it; and a whole study, run after run, into a table and plot.

Every run trains the same architecture for the same budget of processed characters
(`train.max_steps = chars // (batch_size * seq_length)`: single_loss reads as many characters as the others
but scores one position per window), then is measured the same way:

    val_bpc        best validation bpc during training (fit's figure: 8 contiguous streams, state carried)
    test_bpc       the best checkpoint on the test split, measured the same way
    wall_s         training wall time up to the last evaluation, evaluations included (the plot's x axis)
    train_cps      median training characters/s over the run's TensorBoard windows (evaluations excluded)
    progressive_cps, windowed_cps   sampling characters/s of the best checkpoint, run-dir route
    diverged       the loss became NaN/inf (fit stopped); max_rise_bpc: largest rise of val bpc above its best so far

Example:
    row = train_run("lstm", "tfds:tiny_shakespeare", Setup(chars=100_000), Path("/tmp/run"))
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tfchar.core import config as config_lib
from tfchar.core.errors import TrainingDiverged
from tfchar.data.corpus import load_corpus
from tfchar.ops.cells import GATES
from tfchar.runtimes.keras import open_run
from tfchar.sampling.windowed import windowed_sample
from tfchar.studies.tables import CELL_COLUMNS, SCHEME_COLUMNS, plot, write_table
from tfchar.training.trainer import fit


@dataclass(frozen=True)
class Setup:
    """What every run of a study shares.

    Args:
        chars: processed training characters per run (the budget).
        batch_size, seq_length: B and T (T is also the sampling window).
        rnn_size, num_layers, embedding_dim, cell: the architecture (cells study: rnn_size per cell).
        evals: validation points per run (the plot's resolution).
        learning_rate, seed: as `train.*`.
        lr_schedule: as `train.*`; char-rnn's, whose decay starts after epoch 10, keeps the rate constant over
            these short budgets, as the studies in docs/study.md were run (the default is cosine since 2026-12-01).
        sample_chars: characters sampled per speed measurement (windowed: a fifth of it).
    """

    chars: int = 1_500_000
    batch_size: int = 50
    seq_length: int = 50
    rnn_size: int = 128
    num_layers: int = 2
    embedding_dim: int = 64
    cell: str = "lstm"
    evals: int = 6
    learning_rate: float = 2e-3
    lr_schedule: str = "char-rnn"
    seed: int = 123
    sample_chars: int = 1000

    @property
    def steps(self) -> int:
        return max(1, self.chars // (self.batch_size * self.seq_length))


def params_of(cell: str, rnn_size: int, num_layers: int, embedding_dim: int, vocab_size: int) -> int:
    """Trainable parameters of `tfchar.nn.models.build_model` (GRU reset_after has two bias vectors)."""
    gates = GATES[cell]
    biases = 2 if cell == "gru" else 1
    total, width = vocab_size * embedding_dim, embedding_dim
    for _ in range(num_layers):
        total += gates * rnn_size * (width + rnn_size + biases)
        width = rnn_size
    return total + rnn_size * vocab_size + vocab_size


def size_for_params(cell: str, target: int, num_layers: int, embedding_dim: int, vocab_size: int) -> int:
    """The rnn_size whose parameter count is closest to `target` (Collins et al.: compare cells at equal size)."""
    return min(range(1, 4097), key=lambda h: abs(params_of(cell, h, num_layers, embedding_dim, vocab_size) - target))


def train_run(name: str, source: str, setup: Setup, run_dir: Path, scheme: str = "stateful",
              log: Callable[[str], None] = print) -> dict:
    """Train one run of a study and measure it (see the module docstring for the fields)."""
    overrides = {"data.source": source, "data.batch_size": setup.batch_size, "data.seq_length": setup.seq_length,
                 "model.cell": setup.cell, "model.rnn_size": setup.rnn_size, "model.num_layers": setup.num_layers,
                 "model.embedding_dim": setup.embedding_dim, "train.scheme": scheme,
                 "train.max_steps": setup.steps, "train.epochs": 10_000,
                 "train.eval_every": max(1, setup.steps // setup.evals), "train.sample_length": 0,
                 "train.learning_rate": setup.learning_rate, "train.lr_schedule": setup.lr_schedule,
                 "train.seed": setup.seed, "train.keep_checkpoints": 1,
                 "train.run_dir": str(run_dir), "export.on_finish": False}
    done = fit_run(name, None, overrides, run_dir, log)
    history = done.history
    row = {"run": name, "scheme": scheme, "cell": setup.cell, "rnn_size": setup.rnn_size,
           "val_bpc": min((h["val_bpc"] for h in history), default=math.nan), "test_bpc": math.nan,
           "wall_s": done.wall, "train_cps": train_speed(run_dir), "progressive_cps": math.nan,
           "windowed_cps": math.nan, "diverged": done.diverged, "max_rise_bpc": _max_rise(history),
           "history": [(h["time"], h["val_bpc"]) for h in history]}
    if history:
        row.update(_measure_checkpoint(run_dir, setup))
    log(f"  {name}: val {row['val_bpc']:.3f} bpc, test {row['test_bpc']:.3f} bpc, {done.wall:.0f}s, "
        f"{row['train_cps']:,.0f} train chars/s{' DIVERGED' if done.diverged else ''}")
    return row


@dataclass
class FitRun:
    """What a study learns from one fit: its config, history.jsonl, trainer clock, fit's result, divergence."""

    cfg: config_lib.Config
    history: list
    wall: float
    result: dict
    diverged: bool


def fit_run(name: str, pipeline, overrides: dict, run_dir: Path, log: Callable[[str], None] = print) -> FitRun:
    """Train a study run from scratch: `pipeline` (a TOML file or None) with `{"section.key": value}` overrides,
    quietly (one line on divergence). `wall` is the trainer's clock at the last evaluation."""
    cfg = config_lib.load_config(pipeline, [f"--{k}={v}" for k, v in overrides.items()])
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a study run always starts over: its budget must be exact
    start, diverged, result = time.time(), False, {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the per-epoch progress bar: the study logs one line per run
            result = fit(cfg, run_dir, log=lambda s: None)
        wall = result["wall_time_s"]  # the trainer's clock, as history's "time"
    except TrainingDiverged as e:
        diverged, wall = True, time.time() - start
        log(f"  {name}: diverged ({e})")
    history = _history(run_dir)
    if history:  # the trainer's clock at the last evaluation: excludes teardown after the final step
        wall = history[-1]["time"]
    return FitRun(cfg, history, wall, result, diverged)


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _max_rise(history: list[dict]) -> float:
    """Largest amount by which validation bpc climbed above its best so far (0 for monotone progress)."""
    best, rise = math.inf, 0.0
    for h in history:
        rise = max(rise, h["val_bpc"] - best)
        best = min(best, h["val_bpc"])
    return rise


def train_speed(run_dir: Path) -> float:
    """Median of the trainer's chars_per_sec summaries: robust to the few windows that include an evaluation."""
    logdir = run_dir / "logs" / "train"
    if not logdir.is_dir():
        return math.nan
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0}).Reload()
    if "chars_per_sec" not in acc.Tags().get("tensors", []):
        return math.nan
    return statistics.median(float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("chars_per_sec"))


def _measure_checkpoint(run_dir: Path, setup: Setup) -> dict:
    """Test bpc of the best checkpoint (fit's 8-stream measure) and sampling speed of both sampling schemes."""
    runtime = open_run(run_dir)
    out = {"test_bpc": runtime.score(load_corpus(runtime.config.data).test, streams=8)["bpc"]}
    out.update(sampling_speeds(runtime, setup.sample_chars, setup.seq_length, setup.seed))
    return out


def sampling_speeds(runtime, length: int, window: int, seed: int = 0) -> dict:
    """Characters/s of progressive and windowed (window K) sampling with a runtime, after one warm-up call each."""
    prime = runtime.vocab.encode("\n")

    def timed(fn, n):
        fn(min(n, 8))  # trace the graphs first: speed, not compilation, is measured
        best = math.inf
        for _ in range(3):  # best of 3: the least disturbed by other work on a shared machine
            start = time.perf_counter()
            fn(n)
            best = min(best, time.perf_counter() - start)
        return n / best

    progressive = timed(lambda n: runtime.generate(prime, n, seed=seed), length)
    windowed = timed(lambda n: windowed_sample(runtime, prime, n, window, seed=seed), max(10, length // 5))
    return {"progressive_cps": progressive, "windowed_cps": windowed}


def run_study(kind: str, out_dir: Path, runs_dir: Path | None, log, plan) -> list[dict]:
    """Train every (name, corpus, source, setup, scheme, extra columns) run of `plan(work dir)` and write the
    study's table and plot into `out_dir` (runs go to `runs_dir`, else a temporary dir deleted afterwards)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = runs_dir is None
    work = Path(tempfile.mkdtemp(prefix=f"tfchar-study-{kind}-")) if temporary else Path(runs_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = []
        for name, corpus, source, setup, scheme, extra in plan(work):
            log(f"{kind}: {name} ({setup.steps} steps of {setup.batch_size}x{setup.seq_length} = "
                f"{setup.steps * setup.batch_size * setup.seq_length:,} characters)")
            row = train_run(name, source, setup, work / name.replace("/", "_"), scheme, log)
            rows.append({**row, **extra, "corpus": corpus})
        write_table(rows, out_dir, kind, SCHEME_COLUMNS if kind == "schemes" else CELL_COLUMNS)
        plot(rows, out_dir / f"{kind}.png", f"{kind}: validation bpc vs training time", log)
        return rows
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
