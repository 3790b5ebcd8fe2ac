"""Step parity: validation loss against optimizer steps, tfchar vs PyTorch `nn.LSTM`, same recipe and split.

Both train a 2-layer LSTM (width --hidden), embedding 64, with char-rnn's recipe (B64 x T100 contiguous
streams, state carried, Adam 2e-3, global-norm clip 5) on nanoGPT's split of tiny-shakespeare, and are scored
every --eval-every steps on the whole validation text with 8 contiguous streams, state carried (what
tfchar's fit reports in history.jsonl). tfchar runs through `python -m tfchar.fit`; the PyTorch side runs
in-process in variants that switch its defaults, one at a time or all together, to tfchar's Keras choices:

    torch        PyTorch's defaults (uniform +-1/sqrt(H) LSTM and output weights, two random bias vectors,
                 N(0, 1) embedding, Adam epsilon 1e-8)
    lstm         + Keras LSTM weights: glorot-uniform kernel, orthogonal recurrent kernel
    forget_bias  + Keras biases: 1 on the forget gate, 0 elsewhere (unit_forget_bias), b_hh = 0
    embedding    + Keras embedding: uniform +-0.05
    output       + Keras output layer: glorot-uniform weight, zero bias
    eps          + Keras Adam epsilon: 1e-7, added to sqrt(v) before the bias correction (as Keras does)
    keras        all five
    one_bias     + one trained bias per gate, as Keras has (b_hh fixed at 0): PyTorch's b_ih and b_hh get the
                 same gradient, so with Adam their sum moves up to twice as fast
    a+b+...      several switches together, e.g. lstm+forget_bias+output+eps (all but the embedding) or
                 keras+one_bias

The --headline variants (torch, keras) and tfchar run with every --seeds seed, the others with the first.

    python benchmarks/lstm_step_parity.py                              # 2x256, 400 steps (~45 min, 1 thread)
    python benchmarks/lstm_step_parity.py --hidden 512 --steps 200 --variants torch,keras --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from race.errors import RaceError, guard, require_torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path(os.environ.get("TFCHAR_SHAKESPEARE") or REPO.parent / "shared/data/tinyshakespeare/input.txt")
VARIANTS = ("torch", "lstm", "forget_bias", "embedding", "output", "eps", "keras", "one_bias")
HEADLINE = ("torch", "keras")
STREAMS = 8


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RaceError(f"{message} (see python benchmarks/lstm_step_parity.py --help)")


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_CORPUS, help="the corpus (tiny-shakespeare's input.txt)")
    p.add_argument("--hidden", type=int, default=256, help="LSTM width H (2 layers)")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per run")
    p.add_argument("--eval-every", type=int, default=50, help="steps between validation scores")
    p.add_argument("--variants", default=",".join(VARIANTS), help="PyTorch variants, comma-separated")
    p.add_argument("--seeds", default="0,1", help="seeds of the headline runs and tfchar (others: the first)")
    p.add_argument("--headline", default=",".join(HEADLINE), help="variants run with every seed")
    p.add_argument("--tfchar", default="on", choices=("on", "off"), help="also train tfchar")
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "step_parity", help="output folder")
    return p.parse_args(argv)


def check_args(a) -> tuple:
    """The variants and seeds; a bad value is a RaceError."""
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if not variants or any(part not in VARIANTS for v in variants for part in v.split("+")):
        raise RaceError(f"--variants {a.variants!r}: choose from {','.join(VARIANTS)}, or join several with +")
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        raise RaceError(f"--seeds {a.seeds!r} is not a comma-separated list of integers") from None
    if not seeds or min(a.hidden, a.steps, a.eval_every, a.threads) < 1:
        raise RaceError("--seeds needs a seed; --hidden, --steps, --eval-every and --threads must be positive")
    return variants, seeds


def torch_run(split, variant: str, seed: int, a) -> dict:
    """Train the PyTorch LSTM in one variant; {step: val nats} every eval_every steps."""
    import torch

    from race.lstm_model import INIT_CHOICES, CharLSTM, keras_init
    from race.lstm_train import LSTMRecipe, train_lstm
    from race.progressive import score_progressive

    parts = set()
    for part in variant.split("+"):
        parts |= set(INIT_CHOICES) | {"eps"} if part == "keras" else ({part} - {"torch"})
    torch.manual_seed(seed)
    model = keras_init(CharLSTM(split.vocab_size, hidden=a.hidden), parts & set(INIT_CHOICES))
    if "one_bias" in parts:
        for layer in range(model.lstm.num_layers):
            getattr(model.lstm, f"bias_hh_l{layer}").data.zero_()
            getattr(model.lstm, f"bias_hh_l{layer}").requires_grad_(False)
    recipe = LSTMRecipe(eps=1e-7, keras_eps=True) if "eps" in parts else LSTMRecipe()
    snaps = train_lstm(model, split.train, recipe, steps=a.steps, snapshot_due=lambda c, s: s % a.eval_every == 0,
                       log=lambda line: None)
    curve = {}
    for snap in snaps:
        model.load_state_dict(snap.weights)
        curve[snap.step] = score_progressive(model, split.val, streams=STREAMS)["nats"]
    return curve


def tfchar_run(split, seed: int, a) -> dict:
    """Train tfchar through its CLI with the same recipe; {step: val nats} from its history.jsonl."""
    from race.tfchar_run import read_history, run_fit

    fit_args = (f"--model.cell=lstm --model.rnn_size={a.hidden} --model.num_layers=2 --model.embedding_dim=64 "
                f"--model.dropout=0.0 --data.batch_size=64 --data.seq_length=100 --train.scheme=stateful "
                f"--train.learning_rate=0.002 --train.lr_decay=0.97 --train.lr_decay_after=10 --train.grad_clip=5.0 "
                f"--train.epochs=50 --train.max_steps={a.steps} --train.eval_every={a.eval_every} "
                f"--train.sample_length=0 --train.keep_checkpoints=1 --train.seed={seed}")
    run_dir = a.out / f"tfchar_seed{seed}"
    run_fit(REPO, split, fit_args, run_dir, a.threads, log=lambda line: None)
    return {h["step"]: h["val_loss"] for h in read_history(run_dir) if h["step"] % a.eval_every == 0}


def table(runs: dict, steps: list) -> str:
    """Markdown: one row per run, one column per evaluated step."""
    lines = ["| run | " + " | ".join(str(s) for s in steps) + " |", "| --- |" + " ---: |" * len(steps)]
    for name, curve in runs.items():
        lines.append(f"| {name} | " + " | ".join(f"{curve[s]:.4f}" if s in curve else "" for s in steps) + " |")
    return "\n".join(lines)


@guard
def main(argv=None) -> None:
    a = parse_args(argv)
    variants, seeds = check_args(a)
    from race.split import load_split

    split = load_split(a.data)
    torch = require_torch()
    torch.set_num_threads(a.threads)
    from race.report import header

    head = header(a.threads)
    print(f"step parity, 2x{a.hidden} LSTM, {a.steps} steps: {head}", flush=True)
    jobs = [("tfchar", s) for s in seeds if a.tfchar == "on"]
    headline = a.headline.split(",")
    jobs += [(v, s) for v in variants for s in (seeds if v in headline else seeds[:1])]
    runs = {}
    for variant, seed in jobs:
        t0 = time.perf_counter()
        curve = tfchar_run(split, seed, a) if variant == "tfchar" else torch_run(split, variant, seed, a)
        name = f"{variant} seed {seed}"
        runs[name] = curve
        print(f"{name} ({time.perf_counter() - t0:.0f}s): " + ", ".join(f"{s}: {v:.4f}" for s, v in curve.items()),
              flush=True)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "parity.json").write_text(json.dumps({"header": head, "hidden": a.hidden, "runs": runs}, indent=1))
    steps = sorted({s for c in runs.values() for s in c})
    text = f"{head}\n\nvalidation nats/char (8 streams) after N steps, 2x{a.hidden} LSTM:\n\n{table(runs, steps)}\n"
    print("\n" + text)
    (a.out / "parity.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
