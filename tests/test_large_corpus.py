"""The large-corpus fit a new user types (benchmarks/large_corpus.py times it on 100 MB): a 2x512 LSTM, ten
steps, defaults otherwise, export included. Here on 6 MB of the same text (the Python standard library's
sources), enough for both caps to bind (300,000-character validation and test splits), so CI stays short: the
evaluation and the export score their capped characters, never a whole split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from large_corpus import build_corpus, fit_command  # noqa: E402


@pytest.mark.slow
def test_ten_steps_of_a_2x512_on_a_large_text_score_bounded_splits(tmp_path):
    text = tmp_path / "input.txt"
    build_corpus(text, 6)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    flags = [f"--data.cache_dir={tmp_path / 'cache'}", "--train.name=large"]
    r = subprocess.run(fit_command(text, "char", flags), cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "large"
    (record,) = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert record["step"] == 10 and record["val_chars"] == 200_000  # train.eval_chars, not the whole split
    metrics = json.loads((tmp_path / "saved_models" / "large" / "metrics.json").read_text())
    assert metrics["chars"] == {k: 60_000 for k in ("val_bpc", "test_bpc", "tflite_test_bpc", "int8_test_bpc")}
    assert min(metrics["split_chars"].values()) > 250_000
    assert abs(metrics["tflite_test_bpc"] - metrics["test_bpc"]) < 1e-3
