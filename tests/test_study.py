"""`python -m tfchar.study`: the Python-source corpus, equal-size cells, and a minuscule end-to-end study."""

import csv
import math

import pytest

from tfchar.core.choices import SCHEMES
from tfchar.nn.models import build_model, param_count
from tfchar.studies.cells import run_cells
from tfchar.studies.corpora import stdlib_text
from tfchar.studies.runs import Setup, params_of, size_for_params
from tfchar.studies.schemes import run_schemes
from tfchar.study import main

TINY = Setup(chars=8 * 32 * 4, batch_size=8, seq_length=32, rnn_size=16, num_layers=1, embedding_dim=8, evals=2,
             sample_chars=20)


def test_stdlib_corpus_is_deterministic_python_source(tmp_path):
    a = stdlib_text(tmp_path / "a.txt", max_bytes=200_000)
    b = stdlib_text(tmp_path / "b.txt", max_bytes=200_000)
    text = a.read_text(encoding="utf-8")
    assert a.read_bytes() == b.read_bytes() and 50_000 < len(text.encode()) <= 200_000
    assert "def " in text and "import " in text


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_parameter_counts_match_the_model_and_cells_are_sized_equal(cell):
    assert params_of(cell, 24, 2, 8, 50) == param_count(build_model(50, cell, 24, 2, embedding_dim=8))
    target = params_of("lstm", 128, 2, 64, 65)
    size = size_for_params(cell, target, 2, 64, 65)
    assert abs(params_of(cell, size, 2, 64, 65) - target) / target < 0.01


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_minuscule_schemes_and_cells_studies(small_text_file, tmp_path):
    rows = run_schemes(tmp_path, TINY, corpora={"small": str(small_text_file)}, log=lambda s: None)
    table = read_csv(tmp_path / "schemes.csv")
    assert [r["scheme"] for r in table] == list(SCHEMES) and {r["corpus"] for r in table} == {"small"}
    for r in table:
        assert math.isfinite(float(r["val_bpc"])) and math.isfinite(float(r["test_bpc"]))
        assert float(r["windowed_cps"]) < float(r["progressive_cps"])  # K steps per character instead of one
        assert r["diverged"] == "False"
    assert (tmp_path / "schemes.md").read_text().startswith("| scheme | corpus | val_bpc")
    assert (tmp_path / "schemes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(len(r["history"]) == 2 for r in rows)  # evals=2 validation points per run for the plot

    run_cells(tmp_path, TINY, source=str(small_text_file), cells=("lstm", "rnn"), log=lambda s: None)
    cells = read_csv(tmp_path / "cells.csv")
    assert [r["cell"] for r in cells] == ["lstm", "rnn"]
    params = [int(r["params"]) for r in cells]
    assert abs(params[1] - params[0]) / params[0] < 0.05 and int(cells[1]["rnn_size"]) > int(cells[0]["rnn_size"])
    assert (tmp_path / "cells.png").is_file()


def test_cli_rejects_bad_arguments_in_one_line(capsys):
    for argv, message in ((["bogus"], "invalid choice: 'bogus'"), (["schemes", "--chars", "0"], "--chars 0")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tfchar: error:") and message in err[0]
