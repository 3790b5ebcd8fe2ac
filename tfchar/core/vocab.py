"""The vocabulary: token id <-> character (code point) or byte, saved as `vocab.json`.

`vocab.json` is a JSON list whose i-th item is the string of token id i. With `unit = "byte"` each item
is the one-character string `chr(byte)` (so the list stays valid JSON for any byte), and the run's
config says the unit.

Example:
    vocab = Vocab.from_codepoints([10, 65, 66], unit="char")
    vocab.encode("AB\\n")  # array([1, 2, 0], dtype=int32)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tfchar.core.choices import UNITS
from tfchar.core.errors import CheckpointError, DataError


class Vocab:
    """Token ids in a fixed order: ascending code point (or byte value), as char-rnn sorts its characters."""

    def __init__(self, tokens: list[str], unit: str = "char"):
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
        if len(set(tokens)) != len(tokens) or any(len(t) != 1 for t in tokens):
            raise ValueError("vocabulary items must be distinct single characters")
        self.tokens = list(tokens)
        self.unit = unit
        self.codepoints = np.array([ord(t) for t in tokens], dtype=np.int32)  # [V]
        self._index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def from_codepoints(cls, codepoints, unit: str = "char") -> "Vocab":
        return cls([chr(int(c)) for c in sorted(set(int(c) for c in codepoints))], unit)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens and self.unit == other.unit

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(c for c in self._symbols(text) if c not in self._index))

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """Token ids int32[N]; unknown characters raise DataError (unknown="error") or are dropped ("skip")."""
        units = self._symbols(text)
        missing = [c for c in dict.fromkeys(units) if c not in self._index]
        if missing and unknown == "error":
            shown = ", ".join(repr(c) for c in missing[:20])
            raise DataError(f"{len(missing)} character(s) not in the model's vocabulary: {shown}; "
                            f"remove them or pass --unknown skip")
        return np.array([self._index[c] for c in units if c in self._index], dtype=np.int32)

    def decode(self, ids) -> str:
        s = "".join(self.tokens[int(i)] for i in np.asarray(ids).reshape(-1))
        if self.unit == "byte":
            return s.encode("latin-1").decode("utf-8", errors="replace")
        return s

    def decode_codepoints(self, codepoints) -> str:
        """Text from code points (byte values for byte models, decoded as UTF-8), as `generate` returns them."""
        cps = np.asarray(codepoints).reshape(-1)
        if self.unit == "byte":
            return bytes(cps.astype(np.uint8)).decode("utf-8", errors="replace")
        return "".join(map(chr, cps))

    def units(self, text: str) -> list[int]:
        """The code points (byte values for byte models) `text` is made of, as the model reads and writes them."""
        return list(text.encode("utf-8")) if self.unit == "byte" else [ord(c) for c in text]

    def _symbols(self, text: str) -> list[str]:
        if self.unit == "byte":
            return [chr(b) for b in text.encode("utf-8")]
        return list(text)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.tokens, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, unit: str = "char") -> "Vocab":
        path = Path(path)
        try:
            tokens = json.loads(path.read_text(encoding="utf-8"))
            return cls(tokens, unit)
        except FileNotFoundError:
            raise CheckpointError(f"{path} is missing: the run or export directory is incomplete") from None
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path} is not a valid vocabulary ({e}): re-run fit or export") from None
