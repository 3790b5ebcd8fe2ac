"""Shared fixtures: the real tiny-shakespeare corpus, offline TFDS from its manual dir, small texts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = Path(os.environ.get("TFCHAR_SHAKESPEARE", ROOT.parent / "shared/data/tinyshakespeare/input.txt"))


def pytest_configure(config):
    """Point TFDS and the encode cache at throw-away dirs before anything imports TFDS (CI may preset them)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tfchar-tests-"))
    os.environ.setdefault("TFDS_DATA_DIR", str(base / "tfds"))
    os.environ.setdefault("TFCHAR_CACHE", str(base / "cache"))


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    if not SHARED_CORPUS.is_file():
        pytest.fail(f"tiny-shakespeare corpus not found at {SHARED_CORPUS}; set TFCHAR_SHAKESPEARE")
    return SHARED_CORPUS


@pytest.fixture(scope="session")
def shakespeare_text(shakespeare_path) -> str:
    return shakespeare_path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory, shakespeare_path) -> Path:
    """A TFDS data dir whose manual dir holds the corpus: TFDS builds tiny_shakespeare offline from it."""
    data_dir = Path(os.environ["TFDS_DATA_DIR"])
    manual = data_dir / "downloads" / "manual"
    manual.mkdir(parents=True, exist_ok=True)
    if not (manual / "input.txt").exists():
        (manual / "input.txt").symlink_to(shakespeare_path)
    return data_dir


@pytest.fixture(scope="session", autouse=True)
def _offline_tfds(tfds_dir):
    """Every test can build tiny_shakespeare from the manual dir, offline."""
    return tfds_dir


@pytest.fixture(scope="session")
def small_text_file(tmp_path_factory, shakespeare_text) -> Path:
    """The first 60,000 characters of tiny-shakespeare: enough for a few batches, fast to train on."""
    path = tmp_path_factory.mktemp("small") / "input.txt"
    path.write_text(shakespeare_text[:60_000], encoding="utf-8")
    return path


def tiny_overrides(source, run_dir, **extra) -> list[str]:
    """Overrides for a seconds-long training run on `source`."""
    base = {"data.source": str(source), "data.batch_size": 8, "data.seq_length": 32, "model.rnn_size": 32,
            "model.num_layers": 2, "model.embedding_dim": 16, "train.eval_every": 10, "train.max_steps": 20,
            "train.sample_length": 20, "train.run_dir": str(run_dir), "export.on_finish": "false"}
    base.update(extra)
    return [f"--{k}={v}" for k, v in base.items()]
