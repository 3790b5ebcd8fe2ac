"""The shipped model, saved_models/tiny_shakespeare: what its metrics and card promise, its files and size, and
the same text from every route for a seed."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from conftest import ROOT
from tfchar.exporting.exporter import SIGNATURES
from tfchar.runtimes.load import load_runtime

SHIPPED = ROOT / "saved_models" / "tiny_shakespeare"
TEST_BPC = 2.21  # what it was shipped with, 2.2059 (README); a re-export or retraining must not do worse
MAX_BYTES = 20_000_000  # the export directory


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((SHIPPED / "metrics.json").read_text())


def test_the_shipped_model_meets_its_test_bpc_through_every_file(metrics):
    # the whole test split (export.eval_chars covers it), through `step` of the SavedModel and of both TFLite files
    assert metrics["chars"]["test_bpc"] >= 55_770 - 8  # the whole split (8 streams, each loses its first character)
    assert metrics["test_bpc"] <= TEST_BPC
    assert metrics["tflite_test_bpc"] == pytest.approx(metrics["test_bpc"], abs=1e-4)
    assert abs(metrics["int8_bpc_change"]) < 0.01


def test_the_export_directory_is_complete_and_under_20_mb():
    for name in ("saved_model/saved_model.pb", "model.tflite", "model_int8.tflite", "model.keras", "vocab.json",
                 "config.toml", "metrics.json", "MODEL_CARD.md"):
        assert (SHIPPED / name).is_file(), name
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < MAX_BYTES, size


def test_the_card_states_the_training_command_time_and_figures(metrics):
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert "- Command: `python -m tfchar.fit --" in card and "--model.rnn_size=" in card  # reproduces the run
    assert " steps (" in card and " epochs) in " in card  # steps and wall time, from the run's result.json
    assert f"{metrics['test_bpc']:.4f}" in card
    for signature in SIGNATURES:
        assert f"`{signature}`" in card


def test_model_keras_opens_in_stock_keras_with_the_shipped_width():
    # opening it in a process without tfchar is tests/test_keras_files.py's job; here: it is the shipped network
    model = keras.saving.load_model(SHIPPED / "model.keras", compile=False)
    config = (SHIPPED / "config.toml").read_text()
    assert f"rnn_size = {model.get_layer('rnn_0').units}" in config


@pytest.mark.parametrize("knobs", [dict(temperature=0.8, seed=7), dict(temperature=1.0, top_k=10, top_p=0.9, seed=3)])
def test_every_route_writes_the_same_text_for_a_seed(knobs):
    routes = [SHIPPED, SHIPPED / "saved_model", SHIPPED / "model.tflite"]
    runtimes = [load_runtime(path) for path in routes]
    prime = runtimes[0].vocab.encode("ROMEO:")
    texts = [np.asarray(r.generate(prime, 300, **knobs)[0]).tolist() for r in runtimes]
    assert texts[1] == texts[0] and texts[2] == texts[0]
