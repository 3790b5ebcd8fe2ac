"""The files tfchar ships besides its code: pipelines, search spaces, the web page and the pretrained model.

In a checkout they live at the repository's root (`pipelines/`, `tuning/`, `web/`, `saved_models/`); an
installed wheel carries the same files under `tfchar/_shipped/` (pyproject.toml maps them there). Every
caller asks this module, so the commands work the same from a checkout and from any folder after
`pip install`.

Example:
    shipped("pipelines/tiny_shakespeare.toml")   # .../pipelines/tiny_shakespeare.toml, wherever tfchar is
    model_path("tiny_shakespeare")               # the shipped export dir (a bare name that is not a path)
"""

from __future__ import annotations

from pathlib import Path

from tfchar.core.errors import CheckpointError

PACKAGE = Path(__file__).resolve().parents[1]  # .../tfchar
INSTALLED = PACKAGE / "_shipped"  # the wheel's copy (pyproject.toml: [tool.setuptools.package-dir])
CHECKOUT = PACKAGE.parent  # the repository root, when tfchar runs from a checkout
MODELS = "saved_models"  # the shipped export dirs, by name
DEFAULT_PIPELINE = "pipelines/tiny_shakespeare.toml"


def root() -> Path:
    """Where the shipped files are: the wheel's `tfchar/_shipped/`, else the checkout's root."""
    if INSTALLED.is_dir():
        return INSTALLED
    return CHECKOUT


def shipped(relative: str | Path) -> Path:
    """The shipped file or folder `relative` (e.g. "tuning/default_space.toml"); it may not exist."""
    return root() / relative


def model_names() -> list[str]:
    """Names of the shipped models (`saved_models/<name>/`)."""
    folder = shipped(MODELS)
    return sorted(p.name for p in folder.iterdir() if (p / "vocab.json").is_file()) if folder.is_dir() else []


def model_path(name_or_path: str | Path) -> Path:
    """An existing path as it is; a bare name that is not a path -> the shipped model of that name.

    Raises CheckpointError for a path that does not exist and is no shipped model's name.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    text = str(name_or_path)
    if text and "/" not in text and "\\" not in text and text in model_names():
        return shipped(MODELS) / text
    names = ", ".join(model_names()) or "none installed"
    raise CheckpointError(f"{text or repr(text)} does not exist: give a run dir, an export dir, a SavedModel dir, "
                          f"a .tflite file or a shipped model's name ({names})")
