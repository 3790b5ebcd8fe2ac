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


@pytest.mark.slow
def test_minuscule_recipe_study_reuses_its_runs_and_writes_a_loadable_recipe(small_text_file, tmp_path):
    import tomllib

    from tfchar.core import config as config_lib
    from tfchar.studies.recipe import ADDITIONS, RecipeSetup, run_recipe

    base = {"data.source": str(small_text_file), "data.batch_size": 8, "data.seq_length": 32, "model.rnn_size": 16,
            "model.embedding_dim": 8, "train.sample_length": 0}
    additions = tuple(a for a in ADDITIONS if a.name in ("dropout", "seq_50"))
    setup = RecipeSetup(budget=5.0, seeds=(1,), overrides=base, evals=2, eval_chars=1000, min_gain=-1.0,
                        additions=additions)  # min_gain -1: everything "helps", so the remove phase runs too
    out, runs = tmp_path / "out", tmp_path / "runs"
    got = run_recipe(out, setup, design="both", runs_dir=runs, log=lambda s: None)
    table = read_csv(out / "recipe.csv")
    assert [(r["phase"], r["variant"]) for r in table] == [("add", "base"), ("add", "+dropout"), ("add", "+seq_50"),
                                                           ("remove", "base"), ("remove", "-dropout"),
                                                           ("remove", "-seq_50")]
    for r in table:
        assert math.isfinite(float(r["val_bpc"])) and int(r["steps"]) > 0 and float(r["wall_s"]) <= 5.0 + 1.0
    per_step = {(r["phase"], r["variant"]): int(r["chars"]) // int(r["steps"]) for r in table}
    # the remove phase's base is the combination (T = 50); -seq_50 goes back to the add phase's base (T = 32),
    # not to the race recipe's 100
    assert (per_step["add", "base"], per_step["remove", "base"], per_step["remove", "-seq_50"]) == (256, 400, 256)
    md = (out / "recipe.md").read_text()
    assert "## add: each addition alone" in md and "## remove: each addition off" in md
    chosen = md.split("```toml\n")[1].split("```")[0]
    pipeline = tmp_path / "chosen.toml"
    pipeline.write_text(chosen)
    cfg = config_lib.load_config(pipeline)
    assert tomllib.loads(chosen)["train"]["time_budget"] == 5.0 and cfg.train.time_budget == 5.0
    assert cfg.model.rnn_size == 16 and cfg.data.source == str(small_text_file)
    assert (out / "recipe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert got["recipe"] == {**{"model.dropout": 0.1, "data.seq_length": 50},
                             **{k: v for r in got["summaries"]["remove"] if r["verdict"] == "drop"
                                for k, v in {"-dropout": {"model.dropout": 0.0}, "-seq_50": {"data.seq_length": 32}}
                                .get(r["variant"], {}).items()}}

    stamps = {p: p.stat().st_mtime for p in runs.glob("*/result.json")}
    again = run_recipe(out, setup, design="both", runs_dir=runs, log=lambda s: None)
    assert {p: p.stat().st_mtime for p in runs.glob("*/result.json")} == stamps  # nothing trained again
    assert [r["val_bpc"] for r in again["rows"]] == [r["val_bpc"] for r in got["rows"]]


def test_recipe_cli_rejects_bad_arguments_in_one_line(capsys):
    for argv, message in ((["recipe", "--budget", "soon"], "--budget = 'soon' is not a duration"),
                          (["recipe", "--seeds", "1,x"], "--seeds '1,x'"),
                          (["recipe", "--set", "rnn_size=3"], "--set 'rnn_size=3'"),
                          (["recipe", "--variants", "magic"], "unknown magic"),
                          (["recipe", "--set", "model.size=3", "--variants", "cosine"], "unknown key model.size"),
                          (["recipe", "--base", "nope.toml", "--variants", "cosine"], "nope.toml does not exist")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tfchar: error:") and message in err[0], err
