"""nanoGPT's split of a text: the first 90% of the characters train, the last 10% validate.

The vocabulary is the sorted set of the whole text's characters (token id i is `chars[i]`), as nanoGPT's
`data/shakespeare_char/prepare.py` builds it. tfchar splits a file by `data.val_frac`, rounding the
validation length (`round(n * val_frac)`): `val_frac=0.1` would give tiny-shakespeare's validation one
character fewer than nanoGPT's (`n - int(0.9 n)` = 111,540), so `tfchar_val_frac` is the exact fraction.

Example:
    split = load_split("input.txt")
    split.train, split.val   # int64[N_train], int64[N_val]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from race.errors import RaceError

TRAIN_FRACTION = 0.9
MIN_CHARS = 1000


@dataclass(frozen=True)
class Split:
    path: Path
    chars: list  # the vocabulary: token id i is chars[i]
    train: np.ndarray  # int64[N_train]
    val: np.ndarray  # int64[N_val]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def tfchar_val_frac(self) -> float:
        """The `data.val_frac` (with `data.test_frac=0`) for which tfchar's split is these characters."""
        n, n_val = len(self.train) + len(self.val), len(self.val)
        frac = n_val / n
        assert round(n * frac) == n_val  # tfchar's rounding of the validation length
        return frac


def load_split(path) -> Split:
    """Read a UTF-8 text and split it as nanoGPT does; a missing or too short file is a RaceError."""
    path = Path(path)
    if not path.is_file():
        raise RaceError(f"corpus {path} does not exist: give --data PATH (tiny-shakespeare's input.txt)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RaceError(f"corpus {path} is not UTF-8 text") from None
    if len(text) < MIN_CHARS:
        raise RaceError(f"corpus {path} has {len(text)} characters: the race needs at least {MIN_CHARS}")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    n_train = int(len(ids) * TRAIN_FRACTION)
    return Split(path, chars, ids[:n_train], ids[n_train:])
