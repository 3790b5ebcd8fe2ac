"""How many characters a periodic evaluation needs: the capped figure (`train.eval_chars`) against the whole split.

Trains a model (default: the default pipeline's 2x256 LSTM) on a text with a long validation split (default:
~8 MB of the Python standard library's sources, as benchmarks/large_corpus.py builds them, 400,000 validation
characters), keeping a checkpoint every `--every` steps. Then scores every checkpoint on the whole validation
split and on the first `cap` characters (the progressive layout: the first cap/8 of each of 8 contiguous
streams), for several caps, and prints per cap:

    seconds      the time of one capped evaluation of this model
    mean diff    mean over checkpoints of (capped - whole) nats/char: the fixed offset of that subset
    sd diff      its standard deviation across checkpoints
    sd of change diff   the spread of (capped change - whole change) between consecutive evaluations: the noise
                 the cap adds to the curve (what matters when comparing evaluations and choosing `best`)
    max |diff|   the worst checkpoint
    best         whether the capped figures pick the same best checkpoint as the whole split

    python benchmarks/eval_noise.py [--mb 8] [--steps 1200] [--every 100] [--caps 25000,50000,100000,200000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from large_corpus import build_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=8, help="corpus size in MB (stdlib sources)")
    ap.add_argument("--val_frac", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--every", type=int, default=100, help="steps between checkpoints")
    ap.add_argument("--caps", default="25000,50000,100000,200000")
    ap.add_argument("--unit", default="byte", choices=["byte", "char"])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("overrides", nargs="*", help="more --section.key=value overrides (default model: 2x256)")
    args = ap.parse_args()
    caps = [int(c) for c in args.caps.split(",")]

    work = Path(args.workdir or tempfile.mkdtemp(prefix="tfchar-evalnoise-"))
    work.mkdir(parents=True, exist_ok=True)
    text = work / "input.txt"
    if not text.exists():
        build_corpus(text, args.mb)

    from tfchar.core.startup import import_tensorflow_quietly
    import_tensorflow_quietly()
    from tfchar.core.config import load_config
    from tfchar.data.corpus import load_corpus
    from tfchar.nn import checkpoint as ckpt_lib
    from tfchar.runtimes.keras import KerasScorer
    from tfchar.training.trainer import fit

    run = work / "run"
    cfg = load_config(None, [f"--data.source={text}", f"--data.unit={args.unit}", f"--data.cache_dir={work / 'cache'}",
                             f"--data.val_frac={args.val_frac}", "--data.test_frac=0.01", "--model.rnn_size=256",
                             "--model.dropout=0.1", f"--train.max_steps={args.steps}", f"--train.eval_every={args.every}",
                             "--train.eval_chars=10000", "--train.keep_checkpoints=0", "--train.sample_length=0",
                             "--train.backup_every_s=0", f"--train.run_dir={run}", "--export.on_finish=false",
                             *args.overrides])
    if not (run / "result.json").exists():
        fit(cfg, run, log=lambda s: None)
    corpus = load_corpus(cfg.data)
    ckpts = sorted((p for p in (run / "checkpoints").iterdir() if p.is_dir() and not p.is_symlink()),
                   key=lambda p: ckpt_lib.read_trainer_state(p)["step"])
    scorer = KerasScorer(cfg.model, len(corpus.vocab))
    whole, capped, seconds = [], {c: [] for c in caps}, {c: [] for c in caps}
    for ckpt in ckpts:
        ckpt_lib.load_weights(scorer.model, ckpt)
        whole.append(scorer.score(None, corpus.val)["nats"])
        for c in caps:
            t = time.perf_counter()
            capped[c].append(scorer.score(None, corpus.val, limit=c)["nats"])
            seconds[c].append(time.perf_counter() - t)
        print(f"step {ckpt_lib.read_trainer_state(ckpt)['step']:5d}: whole {whole[-1]:.4f}  " +
              "  ".join(f"{c // 1000}k {capped[c][-1]:.4f}" for c in caps), flush=True)
    print(f"\n{cfg.model.num_layers}x{cfg.model.rnn_size} {cfg.model.cell}, {len(corpus.vocab)} symbols; validation "
          f"split {len(corpus.val):,} characters; {len(ckpts)} checkpoints")
    half = len(ckpts) // 2
    for label, lo in (("all checkpoints", 0), (f"the last {len(ckpts) - half} (a trained model)", half)):
        table(label, whole[lo:], {c: v[lo:] for c, v in capped.items()}, seconds)


def table(label: str, whole: list, capped: dict, seconds: dict) -> None:
    """The capped figures against the whole split's over some checkpoints, one row per cap."""
    change = statistics.median(abs(a - b) for a, b in zip(whole[1:], whole[:-1]))
    print(f"\n{label}: median change between consecutive evaluations (whole split) {change:.4f} nats/char")
    print("| cap | seconds | mean diff | sd diff | sd of change diff | max abs diff | same best |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    best = min(range(len(whole)), key=whole.__getitem__)
    for c, figures in capped.items():
        diff = [a - b for a, b in zip(figures, whole)]
        steps = [(d1 - d0) for d0, d1 in zip(diff[:-1], diff[1:])]  # capped change minus whole change
        same = min(range(len(whole)), key=figures.__getitem__) == best
        print(f"| {c:,} | {statistics.median(seconds[c]):.2f} | {statistics.fmean(diff):+.4f} | "
              f"{statistics.pstdev(diff):.4f} | {statistics.pstdev(steps):.4f} | {max(map(abs, diff)):.4f} | "
              f"{'yes' if same else 'no'} |")

if __name__ == "__main__":
    sys.exit(main())
