"""The texts studies train on: tiny-shakespeare (TFDS) and Python source, the standard library's own `.py`
files (tests excluded), sorted by path and concatenated up to a few MB, so every machine can rebuild them.

Example:
    default_corpora(Path("/tmp/work"))  # {"tiny_shakespeare": "tfds:tiny_shakespeare", "python3.11-stdlib": path}
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from tfchar.core.errors import ConfigError

STDLIB_BYTES = 2_000_000


def stdlib_text(path: Path, max_bytes: int = STDLIB_BYTES) -> Path:
    """Write the Python standard library's `.py` files, sorted by path, into one UTF-8 file of <= max_bytes.

    Test suites (`test/`, `tests/`, `idle_test/`) and third-party `site-packages` are left out: they are
    not the library's own code and carry large data literals. Whole files only; deterministic for a
    given Python version. Returns `path` (rewritten only if its content would change).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    parts, size = [], 0
    for p in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        if skip & set(p.relative_to(root).parts):
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        n = len(text.encode("utf-8")) + 1
        if size + n > max_bytes:
            break
        parts.append(text + "\n")
        size += n
    if not parts:
        raise ConfigError(f"no readable .py files under {root} (or max_bytes={max_bytes} is too small)")
    content = "".join(parts)
    path = Path(path)
    if not path.is_file() or path.read_text(encoding="utf-8") != content:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return path


def default_corpora(work: Path, stdlib_bytes: int = STDLIB_BYTES, names=("tiny_shakespeare", "python")) -> dict[str, str]:
    """{corpus name: data.source} of the chosen `names`: tiny-shakespeare and/or the stdlib's Python source."""
    unknown = set(names) - {"tiny_shakespeare", "python"}
    if unknown or not names:
        raise ConfigError(f"unknown corpus {', '.join(sorted(unknown)) or '(none)'}: use tiny_shakespeare and/or python")
    py = sys.version_info
    out = {}
    if "tiny_shakespeare" in names:
        out["tiny_shakespeare"] = "tfds:tiny_shakespeare"
    if "python" in names:
        out[f"python{py.major}.{py.minor}-stdlib"] = str(stdlib_text(work / "stdlib.py.txt", stdlib_bytes))
    return out


def corpus_name(source: str) -> str:
    """A short name for a data.source: the TFDS dataset's, or the file's stem."""
    return source[5:].split("/")[0] if source.startswith("tfds:") else Path(source).stem
