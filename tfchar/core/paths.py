"""Where tfchar keeps files outside a run: the cache (encoded corpora, the native library)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$TFCHAR_CACHE, else ~/.cache/tfchar (read now, so tests and CI can point it elsewhere)."""
    return Path(os.environ.get("TFCHAR_CACHE") or Path.home() / ".cache" / "tfchar")
