"""`python -m tfchar.fit` on bad input: one line naming the problem and the fix, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from conftest import ROOT
from tfchar import fit as fit_cli


def run_main(capsys, args):
    with pytest.raises(SystemExit) as e:
        fit_cli.main(args)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return e.value.code, err.splitlines()[-1]  # TFDS may print download progress before the error


@pytest.fixture
def binary_file(tmp_path):
    p = tmp_path / "blob.bin"
    p.write_bytes(bytes(range(256)) * 10)
    return p


@pytest.mark.parametrize("case, args, expect", [
    ("missing path", ["--data.source=/no/such/file.txt"], "does not exist"),
    ("unknown key", ["--model.rnn_sise=3"], "unknown key model.rnn_sise"),
    ("bad value", ["--model.dropout=1.5"], "model.dropout"),
    ("unknown tfds", ["--data.source=tfds:no_such_dataset_abc"], "unknown TFDS dataset"),
    ("unknown feature", ["--data.source=tfds:tiny_shakespeare", "--data.tfds_feature=body"], "no feature 'body'"),
    ("resume nothing", ["--train.resume=true", "--train.run_dir=/tmp/definitely-not-a-run"], "cannot resume"),
])
def test_bad_input_is_one_line(capsys, tmp_path, monkeypatch, case, args, expect):
    monkeypatch.chdir(tmp_path)
    code, err = run_main(capsys, args + ["--export.on_finish=false"])
    assert code == 2
    assert err.startswith("tfchar: error: ") and expect in err and len(err.splitlines()) == 1, err


def test_empty_binary_and_too_small_files(capsys, tmp_path, monkeypatch, binary_file):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    small = tmp_path / "small.txt"
    small.write_text("To be, or not to be, that is the question.\n" * 20)
    for source, expect in [(empty, "is empty"), (binary_file, "looks binary"),
                           (small, "largest batch_size that fits")]:
        code, err = run_main(capsys, [f"--data.source={source}", "--export.on_finish=false"])
        assert code == 2 and expect in err and len(err.splitlines()) == 1, err


def test_subprocess_error_has_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "tfchar.fit", "--data.source=missing.txt"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("tfchar: error: data.source 'missing.txt' does not exist")


def test_help_lists_every_key(capsys):
    assert fit_cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--model.rnn_size=128" in out and "--train.init_from" in out


def test_smoke_pipeline_runs_end_to_end(tmp_path, small_text_file):
    """The README's command shape: a pipeline file plus overrides, in a fresh working directory."""
    p = subprocess.run([sys.executable, "-m", "tfchar.fit", str(ROOT / "pipelines" / "smoke.toml"),
                        f"--data.source={small_text_file}", "--data.batch_size=8"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "val loss" in p.stdout and (tmp_path / "runs" / "smoke" / "checkpoints" / "best").exists()
