"""Quality race: validation loss after the same wall-clock budget, tfchar vs PyTorch `nn.LSTM` vs nanoGPT's GPT.

Each system trains on tiny-shakespeare with nanoGPT's split (the first 90% of the characters train, the last
10% validate, the vocabulary is the whole text's) for the same training time, then is scored on the whole
validation text with its best honest protocol:

- tfchar: `python -m tfchar.fit pipelines/ten_minutes.toml --train.time_budget=S ...` in a subprocess (the
  fit arguments are `--tfchar-args`), then `python -m tfchar.evaluate RUN/checkpoints/last --split val
  --streams 1`: progressive, the state carried through the whole text (every character but the first).
- lstm: PyTorch `nn.LSTM` 2x512, embedding 64, char-rnn's recipe (B64 x T100 contiguous streams, state carried
  and reset each epoch, Adam 2e-3, x0.97 per epoch after epoch 10, global-norm clip 5), scored the same way.
  Its schedule does not depend on the budget, so one run to the largest budget gives the whole curve: its
  weights are kept every --curve-every seconds (scored with --curve-streams contiguous streams) and at each
  budget (scored progressively with one stream).
- gpt: nanoGPT's `GPT` (4 layers, 4 heads, 128 wide, block 64, dropout 0, no biases) from `--nanogpt DIR`,
  AdamW as `configure_optimizers` makes it (weight decay 0.1, betas 0.9/0.99), random windows, warm-up over
  2% of the budget then cosine decay to lr/10 at the end of the budget (a function of the training clock), so
  each budget is a separate run. Batch 32 x 64: on this CPU (one thread) a batch of 12 windows trains 20%
  fewer characters per second than 32, and 64 no more than 32, so 32 gives twice the steps of 64 for the
  same characters; lr 2e-3 (nanoGPT's 1e-3 is for a 3x wider model and 8x larger batches).
  Scored with windows of 64 advanced by 32: every target with at least 32 characters before it in the
  validation text, each once, with 32 to 64 characters of context (race/windows.py says exactly which).

The references' clock counts training steps only; tfchar's is its own `wall_time_s` (result.json). Prints a
table (and one per budget with --curve-budgets), writes results.json, curve.csv, table.md and
quality_race.png under --out.

    python benchmarks/quality_race.py                                   # 10 minutes each, 2 threads
    python benchmarks/quality_race.py --curve-budgets 120,300,600,1200,1800 --out runs/race1
    python benchmarks/quality_race.py --budget 20 --systems lstm,gpt --threads 1
    python benchmarks/quality_race.py --budget 30 --systems tfchar --tfchar-args "--train.max_steps=20"
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from race.errors import RaceError, guard, require_torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path(os.environ.get("TFCHAR_SHAKESPEARE") or REPO.parent / "shared/data/tinyshakespeare/input.txt")
SYSTEMS = ("tfchar", "lstm", "gpt")
LABELS = {"tfchar": "tfchar LSTM", "lstm": "PyTorch nn.LSTM 2x512", "gpt": "nanoGPT GPT 4x128"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RaceError(f"{message} (see python benchmarks/quality_race.py --help)")


def parse_args(argv=None) -> argparse.Namespace:
    from race.nanogpt import default_nanogpt_dir
    from race.tfchar_run import DEFAULT_ARGS

    p = _Parser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_CORPUS, help="the corpus (tiny-shakespeare's input.txt)")
    p.add_argument("--budget", default="600", help="training seconds per system (the main table)")
    p.add_argument("--curve-budgets", default="", help="more budgets in seconds, comma-separated (e.g. "
                   "120,300,600,1200,1800): a separate run each for tfchar and gpt; the lstm run reaches the largest")
    p.add_argument("--curve-every", type=float, default=60.0, help="seconds between the lstm's curve points")
    p.add_argument("--curve-streams", type=int, default=8, help="contiguous streams scoring the lstm's curve points")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads per system")
    p.add_argument("--seed", type=int, default=0, help="seed of the references (and {seed} in --tfchar-args)")
    p.add_argument("--nanogpt", type=Path, default=default_nanogpt_dir(REPO), help="a nanoGPT checkout "
                   "(default $NANOGPT_DIR, else ../nanoGPT next to the repository)")
    p.add_argument("--tfchar-args", default=DEFAULT_ARGS, help="python -m tfchar.fit arguments; {budget} and "
                   "{seed} are substituted; the split, run dir and --export.on_finish=false are appended")
    p.add_argument("--gpt-batch", type=int, default=32, help="gpt windows per step")
    p.add_argument("--gpt-lr", type=float, default=2e-3, help="gpt peak learning rate")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "quality_race", help="output folder")
    return p.parse_args(argv)


def _seconds_list(text: str, flag: str) -> list:
    try:
        values = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RaceError(f"{flag} {text!r} is not a comma-separated list of seconds, e.g. 120,300,600") from None
    if any(v < 1 for v in values):
        raise RaceError(f"{flag} {text!r}: every budget must be at least 1 second")
    return values


def check_args(a: argparse.Namespace) -> tuple:
    """The budgets (main first, sorted rest) and systems; a bad value is a RaceError."""
    budget = _seconds_list(a.budget, "--budget")
    if len(budget) != 1:
        raise RaceError(f"--budget {a.budget!r} must be one number of seconds, e.g. 600")
    budgets = sorted(set(budget + _seconds_list(a.curve_budgets, "--curve-budgets")))
    systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown or not systems:
        raise RaceError(f"--systems {a.systems!r}: choose from {','.join(SYSTEMS)}")
    if a.threads < 1 or a.curve_every <= 0 or a.curve_streams < 1 or a.gpt_batch < 1 or a.gpt_lr <= 0:
        raise RaceError("--threads, --curve-every, --curve-streams, --gpt-batch and --gpt-lr must be positive")
    return budget[0], budgets, systems


def race_lstm(split, budgets, a, log) -> tuple:
    """One lstm run to the largest budget: a row per budget and the curve."""
    import torch

    from race.lstm_model import CharLSTM, param_count
    from race.lstm_train import LSTMRecipe, TimeMarks, train_lstm
    from race.progressive import score_progressive

    torch.manual_seed(a.seed)
    model = CharLSTM(split.vocab_size)
    marks = [t * a.curve_every for t in range(1, int(max(budgets) / a.curve_every) + 1)] + budgets
    snaps = train_lstm(model, split.train, LSTMRecipe(), seconds=max(budgets), snapshot_due=TimeMarks(marks), log=log)
    at_budget = {b: next(s for s in snaps if s.seconds >= b) for b in budgets}
    rows, curve = [], []
    for snap in snaps:
        model.load_state_dict(snap.weights)
        streams = 1 if snap in at_budget.values() else a.curve_streams
        score = score_progressive(model, split.val, streams=streams)
        protocol = f"progressive, {streams} stream(s), {score['chars']:,}"
        log(f"  lstm at {snap.seconds:.0f}s (step {snap.step}): {score['nats']:.4f} nats/char ({protocol})")
        point = {"system": "lstm", "seconds": snap.seconds, "steps": snap.step, "chars": snap.chars,
                 "nats": score["nats"], "protocol": protocol}
        curve.append(point)
        rows += [{**point, "budget": b, "params": param_count(model)} for b, s in at_budget.items() if s is snap]
    return rows, curve


def race_gpt(split, budgets, a, log) -> tuple:
    """A gpt run per budget, each annealed to its budget."""
    import torch

    from race.gpt_train import GPTRecipe, train_gpt
    from race.nanogpt import build_gpt, gpt_logits, load_nanogpt_module
    from race.windows import score_windows

    module = load_nanogpt_module(a.nanogpt)
    recipe = GPTRecipe(batch=a.gpt_batch, lr=a.gpt_lr)
    rows, curve = [], []
    for b in budgets:
        torch.manual_seed(a.seed)
        model = build_gpt(module, split.vocab_size, block_size=recipe.block)
        stats = train_gpt(model, split.train, recipe, budget=b, seed=a.seed, log=log)
        score = score_windows(lambda x: gpt_logits(model, x), split.val, block=recipe.block)
        protocol = f"windows 64 by 32, >= 32 context, {score['chars']:,}"
        log(f"  gpt {b}s: {stats['steps']} steps, {score['nats']:.4f} nats/char")
        point = {"system": "gpt", **stats, "nats": score["nats"], "protocol": protocol}
        curve.append(point)
        rows.append({**point, "budget": b, "params": sum(p.numel() for p in model.parameters())})
    return rows, curve


def race_tfchar(split, budgets, a, log) -> tuple:
    """A tfchar fit + evaluate per budget, through its command line."""
    from race.tfchar_run import run_tfchar

    rows, curve = [], []
    for b in budgets:
        r = run_tfchar(REPO, split, b, a.tfchar_args.replace("{seed}", str(a.seed)), a.out, a.threads, log)
        protocol = f"progressive, 1 stream(s), {r['scored']:,}"
        log(f"  tfchar {b}s: {r['steps']} steps in {r['seconds']:.0f}s, {r['nats']:.4f} nats/char")
        point = {"system": "tfchar", "seconds": r["seconds"], "steps": r["steps"], "chars": r["chars"],
                 "nats": r["nats"], "protocol": protocol}
        curve.append(point)
        rows.append({**point, "budget": b, "params": r["params"], "label": r["label"]})
    return rows, curve


@guard
def main(argv=None) -> None:
    a = parse_args(argv)
    budget, budgets, systems = check_args(a)
    from race.split import load_split

    split = load_split(a.data)
    if "lstm" in systems or "gpt" in systems:
        torch = require_torch()
        torch.set_num_threads(a.threads)
    if "gpt" in systems:
        from race.nanogpt import load_nanogpt_module

        load_nanogpt_module(a.nanogpt)  # fail now, not after the other systems trained
    from race import report

    head = report.header(a.threads)
    print(f"quality race: {head}\nsplit: {len(split.train):,} train / {len(split.val):,} validation characters, "
          f"vocab {split.vocab_size}; budgets {budgets} s; systems {','.join(systems)}", flush=True)

    def log(line):
        print(line, flush=True)

    rows, curve = [], []
    for system in systems:
        log(f"{system}:")
        r, c = {"tfchar": race_tfchar, "lstm": race_lstm, "gpt": race_gpt}[system](split, budgets, a, log)
        rows += [{"label": LABELS[system], **x} for x in r]  # tfchar's rows name the model they trained
        curve += c
    main_rows = [r for r in rows if r["budget"] == budget]
    text = f"{head}\n\nbudget {budget} s:\n\n{report.markdown_table(main_rows)}\n"
    if len(budgets) > 1:
        text += f"\nvalidation nats/char by budget:\n\n{report.budget_table(rows)}\n"
    print("\n" + text)
    report.write_outputs(a.out, head, rows, curve)
    (a.out / "table.md").write_text(text, encoding="utf-8")
    report.plot(curve, head, a.out / "quality_race.png")
    print(f"wrote {a.out}/results.json, curve.csv, table.md, quality_race.png")


if __name__ == "__main__":
    main()
