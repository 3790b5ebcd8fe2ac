"""Large-corpus benchmark: `python -m tfchar.fit` on a ~100 MB text, as a new user runs it, and its memory.

Builds the corpus by concatenating the Python standard library's own sources (every machine has them) until
it reaches the target size. Then, by default, runs what a new user types, in a fresh folder (so the encode
cache is built too):

    python -m tfchar.fit --data.source=<100 MB> --model.rnn_size=512 --train.max_steps=10

(defaults otherwise: one evaluation of train.eval_chars, the export and its metrics.json included) and prints
the wall time of each phase, the total and the process's peak RSS against the targets (3 minutes, 1.5 GB).
`--memory` instead measures, in this process, encoding and a few training steps of a 2x512 LSTM at batch 64,
sequence 100 (the README's table).

    python benchmarks/large_corpus.py [--mb 100] [--unit char]              # the fit a new user runs
    python benchmarks/large_corpus.py --memory [--mb 100] [--steps 20]       # encode + train steps, peak RSS
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_S, TARGET_MB = 180, 1500
# (a log line's start, what happened between the previous such line and it)
PHASES = [("encoding", "start-up: Python, TensorFlow"), ("model:", "encode the corpus, build the model"),
          ("max_steps reached", "compile, 10 steps, one evaluation, checkpoint"),
          ("export:", "result.json"), ("  saved_model ", "export: SavedModel and TFLite files"),
          ("  bpc ", "export: parity and bpc of each exported file"), ("  wrote ", "export: move into place")]


def build_corpus(path: Path, megabytes: float) -> int:
    """Concatenate the stdlib's UTF-8 .py files (NULs dropped) into `path` until it holds `megabytes` MB."""
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    target = megabytes * 1_000_000
    written = 0
    with open(path, "wb") as out:
        while written < target:
            for src in sources:
                try:
                    data = src.read_bytes()
                    data.decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                data = data.replace(b"\x00", b"")
                out.write(data)
                written += len(data)
                if written >= target:
                    break
    return written


def corpus(work: Path, megabytes: float) -> Path:
    path = work / "input.txt"
    if not path.exists() or path.stat().st_size < megabytes * 1_000_000:
        t = time.time()
        size = build_corpus(path, megabytes)
        print(f"built corpus: {size / 1e6:.1f} MB of stdlib sources in {time.time() - t:.1f}s")
    return path


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def fit_command(text: Path, unit: str, extra: list[str]) -> list[str]:
    """What a new user types: a 2x512 LSTM, ten steps, defaults otherwise."""
    return [sys.executable, "-m", "tfchar.fit", f"--data.source={text}", f"--data.unit={unit}",
            "--model.rnn_size=512", "--train.max_steps=10", *extra]


def run_fit(work: Path, text: Path, unit: str, extra: list[str]) -> None:
    """Run the fit in a fresh folder (its own encode cache), timing each phase from its log lines."""
    folder = work / "fit"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = fit_command(text, unit, [f"--data.cache_dir={folder / 'cache'}", *extra])  # a fresh encode cache
    print("$ " + " ".join(cmd[1:]).replace(str(text), "input.txt"))
    t0 = time.time()
    marks, log = [], open(folder / "fit.log", "w")
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rss = RssSampler(proc.pid, lambda: len(marks))
    for line in proc.stdout:
        log.write(f"{time.time() - t0:8.2f} {line}")
        for key, _ in PHASES:
            if line.startswith(key) and key not in (m[0] for m in marks):
                marks.append((key, time.time() - t0))
    proc.wait()
    rss.stop()
    total = time.time() - t0
    log.close()
    if proc.returncode:
        sys.exit(f"fit failed ({proc.returncode}); see {folder / 'fit.log'}")
    before, labels = 0.0, dict(PHASES)
    for i, (key, at) in enumerate(marks):
        print(f"  {at - before:6.1f}s  {labels[key]:48s} peak RSS {rss.peaks.get(i, 0):6.0f} MB")
        before = at
    peak = peak_rss_mb(resource.RUSAGE_CHILDREN)
    print(f"total: {total:.1f}s ({'under' if total < TARGET_S else 'OVER'} {TARGET_S}s); peak RSS {peak:.0f} MB "
          f"({'under' if peak < TARGET_MB else 'OVER'} {TARGET_MB} MB); log: {folder / 'fit.log'}")


class RssSampler:
    """The child's resident memory every 0.1 s (/proc/PID/status), the peak of each phase (index from `phase()`)."""

    def __init__(self, pid: int, phase):
        self.pid, self.phase, self.peaks, self.done = pid, phase, {}, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done:
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kb = next((int(l.split()[1]) for l in text.splitlines() if l.startswith("VmRSS:")), 0)
            i = self.phase()
            self.peaks[i] = max(self.peaks.get(i, 0), kb / 1024)
            time.sleep(0.1)

    def stop(self) -> None:
        self.done = True
        self.thread.join()


def run_memory(work: Path, text: Path, unit: str, steps: int) -> None:
    """Encode and train `steps` steps of a 2x512 LSTM (batch 64, seq 100) in this process; peak RSS."""
    from tfchar.core.config import load_config
    from tfchar.data.corpus import load_corpus
    from tfchar.training.trainer import fit

    rss_before = peak_rss_mb()  # TensorFlow itself, before any corpus work
    cache = work / "cache"
    cfg = load_config(None, [f"--data.source={text}", f"--data.cache_dir={cache}", f"--data.unit={unit}",
                             "--data.batch_size=64", "--data.seq_length=100", "--model.rnn_size=512",
                             f"--train.max_steps={steps}", "--train.eval_every=0", "--train.sample_length=0",
                             "--export.on_finish=false", f"--train.run_dir={work / 'run'}", "--data.val_frac=0.002",
                             "--data.test_frac=0.002"])
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(work / "run", ignore_errors=True)
    t = time.time()
    c = load_corpus(cfg.data)
    encode_s = time.time() - t
    cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    print(f"encode: {encode_s:.1f}s for {len(c.train) + len(c.val) + len(c.test):,} characters, vocab "
          f"{len(c.vocab)}, cache {cache_bytes / 1e6:.1f} MB ({c.train.dtype}); peak RSS after encode "
          f"{peak_rss_mb():.0f} MB (TensorFlow alone: {rss_before:.0f} MB)")
    t = time.time()
    result = fit(cfg, work / "run", log=lambda s: None)
    print(f"train: {steps} steps of a 2x512 LSTM in {time.time() - t:.1f}s "
          f"(val bpc {result['best_val_bpc']:.3f} on {min(len(c.val), cfg.train.eval_chars):,} chars)")
    peak = peak_rss_mb()
    print(f"peak RSS: {peak:.0f} MB ({'under' if peak < TARGET_MB else 'OVER'} the 1.5 GB target) "
          f"for a {os.path.getsize(text) / 1e6:.0f} MB corpus")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100, help="corpus size in MB")
    ap.add_argument("--unit", default="char", choices=["byte", "char"],
                    help="char (code points; the default unit) or byte (as Graves modelled enwik8; vocab <= 256)")
    ap.add_argument("--memory", action="store_true", help="encode + training steps in this process (README table)")
    ap.add_argument("--steps", type=int, default=20, help="--memory: training steps of the 2x512 LSTM")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("extra", nargs="*", help="more --section.key=value flags for the fit")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tfchar-large-"))
    work.mkdir(parents=True, exist_ok=True)
    text = corpus(work, args.mb)
    if args.memory:
        run_memory(work, text, args.unit, args.steps)
    else:
        run_fit(work, text, args.unit, args.extra)


if __name__ == "__main__":
    sys.exit(main())
