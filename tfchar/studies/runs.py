"""Reproducible comparison studies: training schemes (De Boom et al. 2018) and cells at equal size (Collins et al. 2016).

Every run trains the same architecture for the same budget of processed characters
(`train.max_steps = chars // (batch_size * seq_length)`: single_loss reads as many characters as the others
but scores one position per window), then is measured the same way:

    val_bpc        best validation bpc during training (fit's figure: 8 contiguous streams, state carried)
    test_bpc       the best checkpoint on the test split, measured the same way
    wall_s         training wall time up to the last evaluation, evaluations included (the plot's x axis)
    train_cps      median training characters/s over the run's TensorBoard windows (evaluations excluded)
    progressive_cps, windowed_cps   sampling characters/s of the best checkpoint, run-dir route
    diverged       the loss became NaN/inf (fit stopped); max_rise_bpc: largest rise of val bpc above its best so far

Corpora: tiny-shakespeare (TFDS) and Python source: the standard library's own `.py` files (tests excluded),
sorted by path and concatenated up to a few MB, so every machine can rebuild the same kind of text.

Example:
    rows = run_schemes(Path("docs/study"), Setup(chars=1_500_000))
    rows = run_cells(Path("docs/study"), Setup(chars=1_500_000))
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tfchar import config as config_lib
from tfchar.data import SCHEMES
from tfchar.errors import ConfigError, TrainingDiverged

CELLS = ("lstm", "gru", "rnn")
STDLIB_BYTES = 2_000_000


@dataclass(frozen=True)
class Setup:
    """What every run of a study shares.

    Args:
        chars: processed training characters per run (the budget).
        batch_size, seq_length: B and T (T is also the sampling window).
        rnn_size, num_layers, embedding_dim, cell: the architecture (cells study: rnn_size per cell).
        evals: validation points per run (the plot's resolution).
        learning_rate, seed: as `train.*`.
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
    seed: int = 123
    sample_chars: int = 1000

    @property
    def steps(self) -> int:
        return max(1, self.chars // (self.batch_size * self.seq_length))


# ============================================================================================ corpora

def stdlib_text(path: Path, max_bytes: int = STDLIB_BYTES) -> Path:
    """Write the Python standard library's `.py` files, sorted by path, into one UTF-8 file of <= max_bytes.

    Test suites (`test/`, `tests/`, `idle_test/`) and third-party `site-packages` are left out: they are
    not the library's own code and carry large data literals. Whole files only; deterministic for a
    given Python version. Returns `path` (rewritten only if its content would change).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    parts, size = [], 0
    for p in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        if skip & set(p.relative_to(root).parts):
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        n = len(text.encode("utf-8")) + 1
        if size + n > max_bytes:
            break
        parts.append(text + "\n")
        size += n
    if not parts:
        raise ConfigError(f"no readable .py files under {root} (or max_bytes={max_bytes} is too small)")
    content = "".join(parts)
    path = Path(path)
    if not path.is_file() or path.read_text(encoding="utf-8") != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return path


def default_corpora(work: Path, stdlib_bytes: int = STDLIB_BYTES, names=("tiny_shakespeare", "python")) -> dict[str, str]:
    """{corpus name: data.source} of the chosen `names`: tiny-shakespeare and/or the stdlib's Python source."""
    unknown = set(names) - {"tiny_shakespeare", "python"}
    if unknown or not names:
        raise ConfigError(f"unknown corpus {', '.join(sorted(unknown)) or '(none)'}: use tiny_shakespeare and/or python")
    py = sys.version_info
    out = {}
    if "tiny_shakespeare" in names:
        out["tiny_shakespeare"] = "tfds:tiny_shakespeare"
    if "python" in names:
        out[f"python{py.major}.{py.minor}-stdlib"] = str(stdlib_text(work / "stdlib.py.txt", stdlib_bytes))
    return out


# ============================================================================================ one run

def params_of(cell: str, rnn_size: int, num_layers: int, embedding_dim: int, vocab_size: int) -> int:
    """Trainable parameters of `tfchar.models.build_model` (GRU reset_after has two bias vectors)."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
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
    from tfchar.trainer import fit

    overrides = {"data.source": source, "data.batch_size": setup.batch_size, "data.seq_length": setup.seq_length,
                 "model.cell": setup.cell, "model.rnn_size": setup.rnn_size, "model.num_layers": setup.num_layers,
                 "model.embedding_dim": setup.embedding_dim, "train.scheme": scheme,
                 "train.max_steps": setup.steps, "train.epochs": 10_000,
                 "train.eval_every": max(1, setup.steps // setup.evals), "train.sample_length": 0,
                 "train.learning_rate": setup.learning_rate, "train.seed": setup.seed, "train.keep_checkpoints": 1,
                 "train.run_dir": str(run_dir), "export.on_finish": False}
    cfg = config_lib.load_config(None, [f"--{k}={v}" for k, v in overrides.items()])
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a study run always starts over: its budget must be exact
    start, diverged = time.time(), False
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the per-epoch progress bar: the study logs one line per run
            wall = fit(cfg, run_dir, log=lambda s: None)["wall_time_s"]  # the trainer's clock, as history's "time"
    except TrainingDiverged as e:
        diverged, wall = True, time.time() - start
        log(f"  {name}: diverged ({e})")
    history = _history(run_dir)
    if history:  # the trainer's clock at the last evaluation: excludes teardown after the final step
        wall = history[-1]["time"]
    row = {"run": name, "scheme": scheme, "cell": setup.cell, "rnn_size": setup.rnn_size,
           "val_bpc": min((h["val_bpc"] for h in history), default=math.nan), "test_bpc": math.nan,
           "wall_s": wall, "train_cps": _train_speed(run_dir), "progressive_cps": math.nan,
           "windowed_cps": math.nan, "diverged": diverged, "max_rise_bpc": _max_rise(history),
           "history": [(h["time"], h["val_bpc"]) for h in history]}
    if history:
        row.update(_measure_checkpoint(run_dir, setup))
    log(f"  {name}: val {row['val_bpc']:.3f} bpc, test {row['test_bpc']:.3f} bpc, {wall:.0f}s, "
        f"{row['train_cps']:,.0f} train chars/s{' DIVERGED' if diverged else ''}")
    return row


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


def _train_speed(run_dir: Path) -> float:
    """Median of the trainer's chars_per_sec summaries: robust to the few windows that include an evaluation."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = run_dir / "logs" / "train"
    if not logdir.is_dir():
        return math.nan
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0}).Reload()
    if "chars_per_sec" not in acc.Tags().get("tensors", []):
        return math.nan
    return statistics.median(float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("chars_per_sec"))


def _measure_checkpoint(run_dir: Path, setup: Setup) -> dict:
    """Test bpc of the best checkpoint (fit's 8-stream measure) and sampling speed of both sampling schemes."""
    from tfchar.checkpoint import load_run
    from tfchar.corpus import load_corpus
    from tfchar.evaluator import score_keras

    cfg, vocab, ckpt = load_run(run_dir)
    test = load_corpus(cfg.data).test
    out = {"test_bpc": score_keras(cfg.model, len(vocab), ckpt, test, streams=8)["bpc"]}
    out.update(sampling_speeds(run_dir, setup.sample_chars, setup.seq_length, setup.seed))
    return out


def sampling_speeds(run_dir: Path, length: int, window: int, seed: int = 0) -> dict:
    """Characters/s of progressive and windowed (window K) sampling from a run dir, after one warm-up call each."""
    from tfchar.evaluator import step_model
    from tfchar.sampler import open_model, stream_ids
    from tfchar.windowed import windowed_sample

    route = open_model(run_dir)
    prime = route.vocab.encode("\n")

    def timed(fn, n):
        fn(min(n, 8))  # trace the graphs first: speed, not compilation, is measured
        best = math.inf
        for _ in range(3):  # best of 3: the least disturbed by other work on a shared machine
            start = time.perf_counter()
            fn(n)
            best = min(best, time.perf_counter() - start)
        return n / best

    model = step_model(route, run_dir)
    progressive = timed(lambda n: list(stream_ids(route.gen, prime, n, seed=seed)), length)
    windowed = timed(lambda n: windowed_sample(model, prime, n, window, seed=seed), max(10, length // 5))
    return {"progressive_cps": progressive, "windowed_cps": windowed}


# ============================================================================================ studies

def run_schemes(out_dir: Path, setup: Setup, corpora: dict[str, str] | None = None, schemes=SCHEMES,
                runs_dir: Path | None = None, stdlib_bytes: int = STDLIB_BYTES, names=("tiny_shakespeare", "python"),
                log: Callable[[str], None] = print) -> list[dict]:
    """Every training scheme on every corpus at the same budget; writes schemes.{md,csv,png} into out_dir.

    Args:
        out_dir: where schemes.md, schemes.csv and schemes.png go.
        setup: the shared architecture and budget.
        corpora: {name: data.source}; default: `default_corpora(names=names)`: tiny-shakespeare and
            `stdlib_bytes` of stdlib Python source.
        schemes: training schemes to compare.
        runs_dir: keep the runs there (None: a temporary dir, deleted afterwards).
    """
    return _study("schemes", out_dir, runs_dir, log, lambda work: [
        (f"{corpus}/{scheme}", corpus, source, setup, scheme, {})
        for corpus, source in (corpora or default_corpora(work, stdlib_bytes, names)).items() for scheme in schemes])


def run_cells(out_dir: Path, setup: Setup, source: str = "tfds:tiny_shakespeare", cells=CELLS,
              runs_dir: Path | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """LSTM, GRU and vanilla RNN at the parameter count of `setup` (its cell); writes cells.{md,csv,png}."""
    from tfchar.corpus import load_corpus

    vocab_size = len(load_corpus(config_lib.load_config(None, [f"--data.source={source}"]).data).vocab)
    target = params_of(setup.cell, setup.rnn_size, setup.num_layers, setup.embedding_dim, vocab_size)
    plans = []
    for cell in cells:
        size = size_for_params(cell, target, setup.num_layers, setup.embedding_dim, vocab_size)
        cell_setup = Setup(**{**asdict(setup), "cell": cell, "rnn_size": size})
        params = params_of(cell, size, setup.num_layers, setup.embedding_dim, vocab_size)
        plans.append((f"{cell}-{setup.num_layers}x{size}", _corpus_name(source), source, cell_setup, "stateful",
                      {"params": params}))
    return _study("cells", out_dir, runs_dir, log, lambda work: plans)


def _corpus_name(source: str) -> str:
    return source[5:].split("/")[0] if source.startswith("tfds:") else Path(source).stem


def _study(kind: str, out_dir: Path, runs_dir: Path | None, log, plan) -> list[dict]:
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


# ============================================================================================ outputs

SCHEME_COLUMNS = ("scheme", "corpus", "val_bpc", "test_bpc", "wall_s", "train_cps", "progressive_cps",
                  "windowed_cps", "diverged", "max_rise_bpc")
CELL_COLUMNS = ("cell", "rnn_size", "params", "corpus", "val_bpc", "test_bpc", "wall_s", "train_cps",
                "progressive_cps", "windowed_cps", "diverged", "max_rise_bpc")


def _fmt(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if key.endswith("cps") or key == "wall_s" else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_table(rows: list[dict], out_dir: Path, name: str, columns) -> None:
    """`name.md` (a markdown table) and `name.csv` (raw numbers) with `columns` of each row."""
    out_dir = Path(out_dir)
    with open(out_dir / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([(round(r[c], 4) if isinstance(r.get(c), float) else r.get(c, "")) for c in columns])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(c, r.get(c, "")) for c in columns) + " |" for r in rows]
    (out_dir / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(rows: list[dict], path: Path, title: str, log=print) -> bool:
    """Validation bpc against training time, one line per run, one panel per corpus; False if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"matplotlib is not installed: {path} not written (pip install matplotlib)")
        return False
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4.2), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for r in (r for r in rows if r["corpus"] == corpus):
            if r["history"]:
                t, v = zip(*r["history"])
                label = r["run"].split("/")[-1] + (" (diverged)" if r["diverged"] else "")
                ax.plot(t, v, marker="o", markersize=3, label=label)
        ax.set_title(corpus)
        ax.set_xlabel("training time (s, evaluations included)")
        ax.set_ylabel("validation bpc")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
