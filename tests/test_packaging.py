"""The installed package: pyproject.toml lists every package and ships the files tfchar needs (pipelines, spaces,
web page, pretrained model); the README's setup lines are what CI runs; and a wheel installed into a fresh
virtual environment works from an empty folder (fit, tune, sample, tfchar.load, the demo's npm hint)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_pyproject_lists_every_package():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tfchar").rglob("__init__.py")}
    assert code <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(code - listed)}"
    assert "tfchar.nn.kernels" in listed and (ROOT / "tfchar" / "nn" / "kernels" / "rnn_loops.cc").is_file()
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert {v for k, v in mapped.items() if k.startswith("tfchar._shipped.")} == {"pipelines", "tuning", "web",
                                                                                  "saved_models"}


def readme_block(title: str) -> list[str]:
    """The command lines of the first ```bash block after `title` in the README (comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(title, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].rstrip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_setup_and_test_lines():
    lines = readme_block("# tfchar")
    setup = [l for l in lines if "venv" in l or "pip install" in l]
    assert any("python3 -m venv" in l for l in setup) and any("pip install" in l for l in setup), lines
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for line in setup + ["python -m pytest"]:
        assert line in ci, f".ci/run does not run the README's line: {line}"


def wheel_members(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed into a fresh venv that reuses the installed dependencies
    (offline: --system-site-packages, --no-deps, --no-build-isolation, --no-index)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a clean copy: building in the checkout would leave build/ (and stale files) there
    skip = shutil.ignore_patterns("node_modules", "__pycache__")
    for name in ("tfchar", "pipelines", "web", "saved_models/tiny_shakespeare"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for f in ("pyproject.toml", "README.md", *(p.relative_to(ROOT) for p in (ROOT / "tuning").glob("*.toml"))):
        (source / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, source / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(root / "dist"), str(source)], check=True, capture_output=True, timeout=600)
    wheel = next((root / "dist").glob("tfchar-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
                    "--force-reinstall", str(wheel)], check=True, capture_output=True, timeout=600)
    work = root / "empty"
    work.mkdir()
    return wheel, venv, work


def run_in(venv: Path, work: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    """A command of the venv's Python in `work`, with nothing pointing at the checkout (no PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TFCHAR_CACHE"] = str(work.parent / "cache")
    return subprocess.run([str(venv / "bin" / "python"), *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_the_wheel_carries_the_shipped_files(installed):
    wheel, _, _ = installed
    members = wheel_members(wheel)
    for name in ("tfchar/_shipped/pipelines/tiny_shakespeare.toml", "tfchar/_shipped/tuning/default_space.toml",
                 "tfchar/_shipped/web/index.html", "tfchar/_shipped/web/package-lock.json",
                 "tfchar/_shipped/saved_models/tiny_shakespeare/model.tflite",
                 "tfchar/_shipped/saved_models/tiny_shakespeare/vocab.json",
                 "tfchar/_shipped/saved_models/tiny_shakespeare/saved_model/saved_model.pb",
                 "tfchar/nn/kernels/rnn_loops.cc", "tfchar/api/model.py"):
        assert name in members, name
    assert not any("node_modules" in m or m.startswith("tests/") for m in members)


@pytest.mark.slow
def test_the_installed_wheel_works_from_an_empty_folder(installed, shakespeare_text):
    _, venv, work = installed
    (work / "some.txt").write_text(shakespeare_text[:150_000], encoding="utf-8")
    where = run_in(venv, work, "-c", "import tfchar, sys; print(tfchar.__file__, 'tensorflow' in sys.modules)")
    assert where.returncode == 0, where.stderr[-2000:]
    path, tf_loaded = where.stdout.split()
    assert Path(path).is_relative_to(venv) and tf_loaded == "False"

    fit = run_in(venv, work, "-m", "tfchar.fit", "--data.source=some.txt", "--train.max_steps=20")
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert (work / "runs" / "some" / "checkpoints" / "best").exists()  # named after its text
    assert (work / "saved_models" / "some" / "model.keras").is_file()
    assert "2x256 lstm" in fit.stdout  # the shipped default pipeline applied

    tune = run_in(venv, work, "-m", "tfchar.tune", "--data.source=some.txt", "--tune.max_epochs=1",
                  "--train.max_steps=10")
    assert tune.returncode == 0, tune.stderr[-3000:]
    assert (work / "tuning" / "some" / "best.toml").is_file()
    assert (work / "tuning" / "some" / "space.toml").read_text() == (ROOT / "tuning" / "default_space.toml").read_text()

    sample = run_in(venv, work, "-m", "tfchar.sample", "tiny_shakespeare", "--prime", "ROMEO:", "--length", "60",
                    "--seed", "7")
    assert sample.returncode == 0, sample.stderr[-3000:]
    load = run_in(venv, work, "-c", "import tfchar; print(tfchar.load('tiny_shakespeare').generate("
                                    "'ROMEO:', length=60, seed=7), end='')")
    assert load.returncode == 0, load.stderr[-3000:]
    assert sample.stdout == load.stdout + "\n" and load.stdout.startswith("ROMEO:") and len(load.stdout) == 66

    demo = run_in(venv, work, "-m", "tfchar.demo", "--port", "0", timeout=120)
    web = Path(path).parent / "_shipped" / "web"
    assert demo.returncode == 2 and demo.stderr.strip() == \
        f"tfchar: error: {web / 'node_modules'} has no LiteRT.js: run npm ci --prefix {web}"
    console = subprocess.run([str(venv / "bin" / "tfchar")], capture_output=True, text=True, timeout=60)
    assert "fit" in console.stdout and "demo" in console.stdout
