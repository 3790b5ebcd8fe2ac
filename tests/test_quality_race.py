"""benchmarks/quality_race.py's pieces: nanoGPT's split, the two scoring protocols against naive loops, the
Keras initialisations, the training loops and the command line (torch only: skipped without it)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from race.gpt_train import GPTRecipe, learning_rate as gpt_lr  # noqa: E402
from race.lstm_model import CharLSTM, keras_init  # noqa: E402
from race.lstm_train import LSTMRecipe, TimeMarks, learning_rate, train_lstm  # noqa: E402
from race.nanogpt import build_gpt, default_nanogpt_dir, gpt_logits, load_nanogpt_module  # noqa: E402
from race.progressive import score_progressive, stream_layout  # noqa: E402
from race.report import cpu_model  # noqa: E402
from race.split import load_split  # noqa: E402
from race.windows import score_windows, window_plan  # noqa: E402

NANOGPT = default_nanogpt_dir(ROOT)
RACE = [sys.executable, str(ROOT / "benchmarks" / "quality_race.py")]


class TinyCausal(torch.nn.Module):
    """A small random causal transformer layer with learned positions: its output depends on the window start."""

    def __init__(self, vocab: int = 11, width: int = 16, block: int = 16):
        super().__init__()
        self.tok, self.pos = torch.nn.Embedding(vocab, width), torch.nn.Embedding(block, width)
        self.qkv, self.head = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, vocab)

    def forward(self, x):  # x [B, T] -> logits [B, T, V]
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))  # [B, T, W]
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        return self.head(h + F.scaled_dot_product_attention(q, k, v, is_causal=True))


def regular_then_tail_starts(n, block, stride):
    starts = [s for s in range(0, n) if s + block <= n - 1 and s % stride == 0]
    return starts + ([n - 1 - block] if starts[-1] + block < n - 1 else [])


def naive_window_score(logits_fn, ids, block, stride, min_context):
    """Each target i >= min_context scored alone, from the first window start whose window reaches it."""
    starts = regular_then_tail_starts(len(ids), block, stride)
    nll = []
    for i in range(min_context, len(ids)):
        s = min(s for s in starts if s + block >= i)
        assert min_context <= i - s <= block
        logits = logits_fn(torch.from_numpy(ids[None, s:i].astype(np.int64)))[0, -1]  # [V]
        nll.append(float(F.cross_entropy(logits[None], torch.tensor([int(ids[i])]))))
    return float(np.mean(nll)), len(nll)


def test_split_is_nanogpts_and_tfchars_fraction_gives_the_same_characters(shakespeare_path, shakespeare_text):
    split = load_split(shakespeare_path)
    n = len(shakespeare_text)
    assert (len(split.train), len(split.val)) == (int(n * 0.9), n - int(n * 0.9)) == (1_003_854, 111_540)
    assert "".join(split.chars[i] for i in split.val[:50]) == shakespeare_text[int(n * 0.9):][:50]
    assert split.vocab_size == 65
    assert round(n * split.tfchar_val_frac) == len(split.val)  # tfchar's rounding of the validation length
    assert round(n * 0.1) == len(split.val) - 1  # why val_frac=0.1 is not nanoGPT's split


@pytest.mark.parametrize("n", [33, 34, 57, 200, 201])
def test_window_plan_counts_every_target_once_with_enough_context(n):
    block, stride, min_context = 16, 8, 8
    starts, first = window_plan(n, block, stride, min_context)
    counted = [(s + 1 + j, s) for s, f in zip(starts, first) for j in range(f, block)]
    assert sorted(i for i, _ in counted) == list(range(min_context, n))
    assert all(min_context <= i - s <= block for i, s in counted)


def test_window_scorer_equals_a_per_position_loop():
    torch.manual_seed(0)
    model = TinyCausal().eval()
    ids = np.random.default_rng(0).integers(0, 11, 141)
    with torch.no_grad():
        fast = score_windows(model, ids, block=16, stride=8, min_context=8, batch=5)
        slow, count = naive_window_score(model, ids, 16, 8, 8)
    assert fast["chars"] == count == len(ids) - 8
    assert fast["nats"] == pytest.approx(slow, abs=1e-5)


@pytest.mark.skipif(not (NANOGPT / "model.py").is_file(), reason=f"no nanoGPT checkout at {NANOGPT}")
def test_window_scorer_on_nanogpts_gpt_equals_a_per_position_loop():
    torch.manual_seed(0)
    model = build_gpt(load_nanogpt_module(NANOGPT), 11, n_layer=1, n_head=2, n_embd=16, block_size=16).eval()
    ids = np.random.default_rng(1).integers(0, 11, 90)
    with torch.no_grad():
        fast = score_windows(lambda x: gpt_logits(model, x), ids, block=16, stride=8, min_context=8)
        slow, _ = naive_window_score(lambda x: gpt_logits(model, x), ids, 16, 8, 8)
    assert fast["nats"] == pytest.approx(slow, abs=1e-5)


def test_progressive_scorer_in_chunks_equals_one_call_on_the_whole_text():
    torch.manual_seed(0)
    model = CharLSTM(11, hidden=16, embedding=8)
    ids = np.random.default_rng(0).integers(0, 11, 300)
    x = torch.from_numpy(ids.astype(np.int64))
    with torch.no_grad():
        logits, _ = model(x[None, :-1])  # [1, N-1, V]
        whole = float(F.cross_entropy(logits[0], x[1:]))
    chunked = score_progressive(model, ids, streams=1, chunk=7)
    assert chunked["chars"] == len(ids) - 1
    assert chunked["nats"] == pytest.approx(whole, abs=1e-5)


def test_streams_score_each_contiguous_piece_from_zero_state():
    torch.manual_seed(0)
    model = CharLSTM(11, hidden=16, embedding=8)
    ids = np.random.default_rng(0).integers(0, 11, 101)
    _, _, mask = stream_layout(ids, 3)
    lengths = mask.sum(1).int().tolist()  # the 100 targets in 3 nearly equal pieces
    bounds = np.cumsum([0] + lengths)
    pieces = [score_progressive(model, ids[a:b + 1], streams=1) for a, b in zip(bounds[:-1], bounds[1:])]
    expected = sum(p["nats"] * p["chars"] for p in pieces) / 100
    assert score_progressive(model, ids, streams=3, chunk=10)["nats"] == pytest.approx(expected, abs=1e-5)


def test_keras_init_sets_tfchars_choices():
    torch.manual_seed(0)
    model = keras_init(CharLSTM(11, hidden=8, layers=2, embedding=4), {"lstm", "forget_bias", "embedding", "output"})
    lstm = model.lstm
    for layer in range(2):
        w_hh = getattr(lstm, f"weight_hh_l{layer}").detach()  # [4H, H]: orthonormal columns
        assert torch.allclose(w_hh.T @ w_hh, torch.eye(8), atol=1e-5)
        bias = getattr(lstm, f"bias_ih_l{layer}").detach()
        assert bias[8:16].eq(1).all() and bias[:8].eq(0).all() and bias[16:].eq(0).all()
        assert getattr(lstm, f"bias_hh_l{layer}").eq(0).all()
    assert model.embed.weight.abs().max() <= 0.05 and model.head.bias.eq(0).all()


def test_lstm_schedule_and_snapshots():
    recipe = LSTMRecipe(batch=4, seq=10)
    assert learning_rate(recipe, 9 * 5 + 4, 5) == recipe.lr  # epoch 9: still full
    assert learning_rate(recipe, 10 * 5, 5) == pytest.approx(recipe.lr * 0.97)  # epoch 10: first decay
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 11, 401)  # 100 per stream: 10 steps per epoch
    snaps = train_lstm(CharLSTM(11, hidden=8, embedding=4), ids, recipe, steps=5,
                       snapshot_due=lambda seconds, step: step % 2 == 0, log=lambda line: None)
    assert [s.step for s in snaps] == [2, 4, 5] and snaps[-1].chars == 5 * 40
    marks = TimeMarks([1.0, 2.0, 2.5])
    assert [marks(t, 0) for t in (0.5, 1.0, 1.5, 3.0, 4.0)] == [False, True, False, True, False]


def test_gpt_schedule_warms_up_then_decays_to_a_tenth_at_the_budget():
    r = GPTRecipe(lr=1e-3)
    assert gpt_lr(r, 0.0, 100) < 1e-5 and gpt_lr(r, 2.0, 100) == pytest.approx(1e-3)
    assert gpt_lr(r, 50.0, 100) < 1e-3 and gpt_lr(r, 100.0, 100) == pytest.approx(1e-4)


def _run_race(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(RACE + args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


@pytest.mark.parametrize("args, expect", [
    (["--budget", "0"], "--budget '0'"),
    (["--systems", "lstm,rnn"], "choose from tfchar,lstm,gpt"),
    (["--data", "missing.txt"], "missing.txt does not exist"),
    (["--systems", "gpt", "--nanogpt", "nowhere"], "give --nanogpt DIR"),
])
def test_bad_input_is_one_line(tmp_path, small_text_file, args, expect):
    args = args if "--data" in args else args + ["--data", str(small_text_file)]
    p = _run_race(args, tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("error: ")
    assert expect in p.stderr and "Traceback" not in p.stderr


def test_race_runs_each_reference_for_a_short_budget(tmp_path, small_text_file):
    systems = "lstm,gpt" if (NANOGPT / "model.py").is_file() else "lstm"
    p = _run_race(["--data", str(small_text_file), "--budget", "2", "--curve-every", "1", "--systems", systems,
                   "--threads", "1", "--nanogpt", str(NANOGPT), "--out", str(tmp_path / "out")], tmp_path)
    assert p.returncode == 0, p.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["system"] for r in results["rows"]} == set(systems.split(","))
    assert all(math.isfinite(r["nats"]) and r["steps"] >= 1 for r in results["rows"])
    assert (tmp_path / "out" / "quality_race.png").stat().st_size > 10_000
    assert "| PyTorch nn.LSTM 2x512 |" in p.stdout and cpu_model() in p.stdout


@pytest.mark.slow
def test_tfchar_runs_through_its_command_line_on_nanogpts_split(tmp_path, small_text_file):
    p = _run_race(["--data", str(small_text_file), "--budget", "5", "--systems", "tfchar", "--threads", "1",
                   "--tfchar-args", "--model.rnn_size=16 --model.embedding_dim=8 --data.batch_size=8 "
                   "--data.seq_length=20 --train.max_steps=2 --train.sample_length=0 --model.implementation=keras", "--out", str(tmp_path / "o")],
                  tmp_path)
    assert p.returncode == 0, p.stderr
    row = json.loads((tmp_path / "o" / "results.json").read_text())["rows"][0]
    assert row["steps"] == 2 and row["chars"] == 2 * 8 * 20 and math.isfinite(row["nats"])
    assert row["protocol"].endswith(f"{6_000 - 1:,}")  # the last 10% of 60,000 characters, all but the first
