"""Large-corpus benchmark: encode a ~100 MB text and train a 2x512 LSTM on it with bounded memory.

Builds a synthetic corpus by concatenating the Python standard library's own sources (every machine has
them) until it reaches the target size, encodes it through tfchar's cache (memory-mapped), then trains a few
steps of a 2x512 LSTM from it. Prints encode time, cache size and peak RSS (target: under 1.5 GB).

    python benchmarks/large_corpus.py [--mb 100] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_corpus(path: Path, megabytes: int) -> int:
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="corpus size in MB")
    ap.add_argument("--steps", type=int, default=20, help="training steps of the 2x512 LSTM")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--unit", default="byte", choices=["byte", "char"],
                    help="byte (as Graves modelled enwik8; vocab <= 256) or char (code points)")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tfchar-large-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus_path = work / "input.txt"
    if not corpus_path.exists() or corpus_path.stat().st_size < args.mb * 1_000_000:
        t = time.time()
        size = build_corpus(corpus_path, args.mb)
        print(f"built corpus: {size / 1e6:.1f} MB of stdlib sources in {time.time() - t:.1f}s")
    from tfchar.core.config import load_config
    from tfchar.data.corpus import load_corpus
    from tfchar.training.trainer import fit

    rss_before = peak_rss_mb()  # TensorFlow itself, before any corpus work

    cache = work / "cache"
    cfg = load_config(None, [f"--data.source={corpus_path}", f"--data.cache_dir={cache}", f"--data.unit={args.unit}", "--data.batch_size=64",
                             "--data.seq_length=100", "--model.rnn_size=512", f"--train.max_steps={args.steps}",
                             "--train.eval_every=0", "--train.sample_length=0", "--export.on_finish=false",
                             f"--train.run_dir={work / 'run'}", "--data.val_frac=0.002", "--data.test_frac=0.002"])
    import shutil
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(work / "run", ignore_errors=True)
    t = time.time()
    corpus = load_corpus(cfg.data)
    encode_s = time.time() - t
    cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    rss_encode = peak_rss_mb()
    print(f"encode: {encode_s:.1f}s for {len(corpus.train) + len(corpus.val) + len(corpus.test):,} characters, "
          f"vocab {len(corpus.vocab)}, cache {cache_bytes / 1e6:.1f} MB ({corpus.train.dtype}); "
          f"peak RSS after encode {rss_encode:.0f} MB (TensorFlow alone: {rss_before:.0f} MB)")
    t = time.time()
    result = fit(cfg, work / "run", log=lambda s: None)
    print(f"train: {args.steps} steps of a 2x512 LSTM in {time.time() - t:.1f}s "
          f"(val bpc {result['best_val_bpc']:.3f} on {len(corpus.val):,} chars)")
    peak = peak_rss_mb()
    print(f"peak RSS: {peak:.0f} MB ({'under' if peak < 1500 else 'OVER'} the 1.5 GB target) "
          f"for a {os.path.getsize(corpus_path) / 1e6:.0f} MB corpus")


if __name__ == "__main__":
    sys.exit(main())
