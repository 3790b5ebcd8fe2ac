"""Text sources -> token ids: TFDS datasets, a file or a folder; UTF-8 code points or raw bytes; cached.

The encoded corpus is cached (char-rnn's `data.t7`) as one memory-mapped `ids.npy` with its vocabulary
and split boundaries, keyed by the source and its files' size and modification time: a second run on
the same text skips preprocessing, a changed text is re-encoded. Encoding streams the text in chunks
(two passes: vocabulary, then ids), so a 100 MB corpus never needs more than a few chunks in memory.

Example:
    corpus = load_corpus(DataConfig(source="data/tinyshakespeare"))
    corpus.train[:10], corpus.vocab.decode(corpus.val[:80])
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from tfchar.core.choices import SPLITS
from tfchar.core.errors import DataError
from tfchar.core.paths import cache_dir
from tfchar.core.vocab import Vocab

CHUNK_BYTES = 1 << 22  # 4 MiB of text per encoding step: bounds memory for any corpus size
CACHE_VERSION = 1
BOM = codecs.BOM_UTF8


@dataclass
class Corpus:
    """Token ids of each split (memory-mapped, read-only) and the vocabulary they index."""

    vocab: Vocab
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str
    cache_dir: Path

    def split(self, name: str) -> np.ndarray:
        return {"train": self.train, "val": self.val, "validation": self.val, "test": self.test}[name]


@dataclass
class _Part:
    """One piece of the source: a callable yielding its byte chunks, and the split it belongs to."""

    name: str
    chunks: Callable[[], Iterator[bytes]]
    split: str | None  # None: file sources, split contiguously by fraction after encoding


def load_corpus(data_cfg, log: Callable[[str], None] = lambda s: None, vocab: Vocab | None = None) -> Corpus:
    """Encode (or load from cache) the text named by a `config.DataConfig`.

    `vocab`: ids under this vocabulary instead of the text's own (sorted) one, e.g. a fine-tuned model's,
    which extends another model's; it must hold every character of the text (else DataError).
    """
    parts, fingerprint = _resolve_source(data_cfg)
    cache_root = Path(data_cfg.cache_dir) if data_cfg.cache_dir else cache_dir()
    key = hashlib.sha1(json.dumps([CACHE_VERSION, data_cfg.source, data_cfg.unit, data_cfg.tfds_feature,
                                   fingerprint]).encode()).hexdigest()[:20]
    cache = cache_root / key
    meta = _read_meta(cache)
    if meta is None:
        log(f"encoding {data_cfg.source} ({data_cfg.unit}s) into {cache}")
        _encode(parts, data_cfg.unit, cache, data_cfg.source)
        meta = _read_meta(cache)
        if meta is None:
            raise DataError(f"could not write the encode cache in {cache}: check that the folder is writable "
                            f"or set data.cache_dir")
    else:
        log(f"using cached encoding of {data_cfg.source} ({cache})")
    ids = np.load(cache / "ids.npy", mmap_mode="r")
    own = Vocab(meta["vocab"], data_cfg.unit)
    if vocab is not None and vocab != own:
        ids = _remapped(cache, ids, own, vocab, data_cfg.source, log)
    vocab = vocab or own
    bounds = meta["splits"] or _fraction_bounds(len(ids), data_cfg.val_frac, data_cfg.test_frac)
    train, val, test = (ids[bounds[s][0]:bounds[s][1]] for s in SPLITS)
    return Corpus(vocab, train, val, test, data_cfg.source, cache)


def _remapped(cache: Path, ids: np.ndarray, own: Vocab, vocab: Vocab, source: str, log) -> np.ndarray:
    """The cached ids (under the text's own vocabulary `own`) re-coded for `vocab`, as one more memory-mapped
    file in the cache, written chunk by chunk (the corpus is never loaded whole)."""
    if vocab.unit != own.unit:
        raise DataError(f"{source} is read as {own.unit}s but the model reads {vocab.unit}s: set data.unit={vocab.unit}")
    index = {t: i for i, t in enumerate(vocab.tokens)}
    missing = [t for t in own.tokens if t not in index]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:20])
        raise DataError(f"{source} has {len(missing)} character(s) outside the model's vocabulary ({shown}): "
                        f"the text is not the one the model was trained on")
    digest = hashlib.sha1(json.dumps(vocab.tokens).encode()).hexdigest()[:12]
    path = cache / f"ids-{digest}.npy"
    if not path.is_file():
        log(f"re-coding {source} for a vocabulary of {len(vocab)} symbols ({path.name})")
        dtype = np.uint8 if len(vocab) <= 256 else np.uint16 if len(vocab) <= 65536 else np.int32
        lut = np.array([index[t] for t in own.tokens], dtype=dtype)  # own id -> id in `vocab`
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        with open(tmp, "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                       "fortran_order": False, "shape": (len(ids),)})
            for start in range(0, len(ids), CHUNK_BYTES):
                out.write(lut[ids[start:start + CHUNK_BYTES]].tobytes())
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def _fraction_bounds(n: int, val_frac: float, test_frac: float) -> dict:
    """Contiguous train, then validation, then test (char-rnn's split order)."""
    n_val, n_test = int(round(n * val_frac)), int(round(n * test_frac))
    n_train = n - n_val - n_test
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}


# ---------------------------------------------------------------------------------------------- sources

def _resolve_source(data_cfg) -> tuple[list[_Part], list]:
    source = data_cfg.source
    if source.startswith("tfds:"):
        return _tfds_parts(source[len("tfds:"):], data_cfg)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data.source {source!r} does not exist: give a text file, a folder, or tfds:NAME")
    if path.is_dir():
        files = [path / "input.txt"] if (path / "input.txt").is_file() else sorted(path.glob("*.txt"))
        files = [f for f in files if f.is_file()]
        if not files:
            raise DataError(f"folder {path} has no input.txt and no *.txt files: put the text in {path}/input.txt")
    else:
        files = [path]
    fingerprint = []
    for f in files:
        st = f.stat()
        if st.st_size == 0:
            raise DataError(f"{f} is empty: give a file with text in it")
        fingerprint.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    parts = [_Part(str(f), (lambda f=f: _read_file(f)), None) for f in files]
    return parts, fingerprint


def _read_file(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None


def tfds_data_dir(data_cfg) -> Path:
    """data.tfds_data_dir, else $TFDS_DATA_DIR (read now, not when TFDS was imported), else TFDS's default."""
    return Path(data_cfg.tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


def tfds_manual_dir(data_cfg) -> Path:
    return Path(data_cfg.manual_dir) if data_cfg.manual_dir else tfds_data_dir(data_cfg) / "downloads" / "manual"


def _tfds_builder(name: str, data_cfg):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=str(tfds_data_dir(data_cfg)))
    except Exception as e:
        if type(e).__name__ in ("DatasetNotFoundError", "DatasetVariantBlockedError") or "not found" in str(e).lower():
            raise DataError(f"unknown TFDS dataset {name!r}: check the name (e.g. tfds:tiny_shakespeare) "
                            f"against tfds.list_builders()") from None
        raise DataError(f"cannot open TFDS dataset {name!r}: {str(e).splitlines()[0]}") from None
    if not builder.is_prepared():
        manual = tfds_manual_dir(data_cfg)
        from tensorflow_datasets.core.download import downloader

        # TFDS retries a failed download 10 times with exponential back-off (about 3.5 minutes offline);
        # a few quick retries still ride out a flaky network and let an offline user see the fix at once.
        downloader.MAX_RETRIES = min(downloader.MAX_RETRIES, 3)
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
        except Exception as e:
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            hint = " (tiny_shakespeare's file is input.txt)" if name.startswith("tiny_shakespeare") else ""
            raise DataError(f"could not download or prepare TFDS dataset {name!r} ({reason}); offline, put the "
                            f"dataset's downloaded file{hint} in {manual}/ (or set data.manual_dir) and run "
                            f"again") from None
    return builder


def _tfds_parts(name: str, data_cfg) -> tuple[list[_Part], list]:
    builder = _tfds_builder(name, data_cfg)
    info = builder.info
    feature = data_cfg.tfds_feature
    features = info.features
    text_features = [k for k, v in features.items() if type(v).__name__ == "Text"] if hasattr(features, "items") else []
    if feature not in (features.keys() if hasattr(features, "keys") else ()):
        raise DataError(f"TFDS dataset {name!r} has no feature {feature!r}; its text features are: "
                        f"{', '.join(text_features) or 'none'} (set data.tfds_feature)")
    if text_features and feature not in text_features:
        raise DataError(f"feature {feature!r} of TFDS dataset {name!r} is not text; its text features are: "
                        f"{', '.join(text_features)} (set data.tfds_feature)")
    available = set(info.splits.keys())
    if "train" not in available:
        raise DataError(f"TFDS dataset {name!r} has no train split (it has: {', '.join(sorted(available))})")
    names = {"train": "train", "val": next((s for s in ("validation", "valid", "dev") if s in available), None),
             "test": "test" if "test" in available else None}
    parts = []
    for split, tfds_split in names.items():
        if tfds_split is None:
            continue
        parts.append(_Part(f"{name}/{tfds_split}", (lambda s=tfds_split: _tfds_texts(builder, s, feature)), split))
    fingerprint = [name, str(info.version), str(builder.data_dir), feature, sorted(names.items(), key=str)]
    return parts, fingerprint


def _tfds_texts(builder, split: str, feature: str) -> Iterator[bytes]:
    """The split's texts, one example after another, newline-separated."""
    ds = builder.as_dataset(split=split, shuffle_files=False)
    first = True
    for example in ds.as_numpy_iterator():
        if not first:
            yield b"\n"
        first = False
        yield example[feature]


# ---------------------------------------------------------------------------------------------- decoding

def _text_chunks(part: _Part) -> Iterator[str]:
    """Decode a part's bytes as UTF-8 chunk by chunk: drop a leading BOM, turn \\r\\n and \\r into \\n."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    pending_cr = False
    first = True
    for chunk in part.chunks():
        if first and chunk.startswith(BOM):
            chunk, offset = chunk[len(BOM):], len(BOM)
        first = False
        nul = chunk.find(b"\x00")
        if nul >= 0:
            raise DataError(f"{part.name} looks binary (NUL byte at offset {offset + nul}): give a text file, "
                            f"or set data.unit=byte to model raw bytes")
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as e:
            raise DataError(f"{part.name} is not valid UTF-8 (byte offset {offset + e.start}): convert it to "
                            f"UTF-8, or set data.unit=byte to model raw bytes") from None
        offset += len(chunk)
        text = _newlines(text, pending_cr)
        pending_cr = text.endswith("\r")
        yield text[:-1] if pending_cr else text
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DataError(f"{part.name} is not valid UTF-8 (truncated character at byte offset {offset}): convert "
                        f"it to UTF-8, or set data.unit=byte") from None
    if pending_cr:
        yield "\n"


def _newlines(text: str, pending_cr: bool) -> str:
    if pending_cr:
        text = "\r" + text
    if text.endswith("\r"):
        return text[:-1].replace("\r\n", "\n").replace("\r", "\n") + "\r"
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _units(part: _Part, unit: str) -> Iterator[np.ndarray]:
    """The part as arrays of code points (char) or byte values (byte), uint32[n] each."""
    if unit == "byte":
        for chunk in part.chunks():
            yield np.frombuffer(chunk, dtype=np.uint8).astype(np.uint32)
        return
    for text in _text_chunks(part):
        if text:
            yield np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _joined(parts: Iterable[_Part], unit: str) -> Iterator[tuple[str | None, np.ndarray]]:
    """All parts in order; files of a folder are joined with a newline where one does not end in one."""
    for i, part in enumerate(parts):
        last = None
        for units in _units(part, unit):
            last = units[-1]
            yield part.split, units
        if part.split is None and i + 1 < len(parts) and last is not None and last != 10:
            yield part.split, np.array([10], np.uint32)


def _encode(parts: list[_Part], unit: str, cache: Path, source: str) -> None:
    """Two streaming passes: collect the vocabulary and sizes, then write the ids (an .npy file, memory-mapped
    when read)."""
    present: set[int] = set()
    sizes: dict = {}
    for split, units in _joined(parts, unit):
        present.update(np.unique(units).tolist())
        sizes[split] = sizes.get(split, 0) + len(units)
    total = sum(sizes.values())
    if total == 0:
        raise DataError(f"{source} holds no text: give a non-empty text source")
    vocab = sorted(present)
    dtype = np.uint8 if len(vocab) <= 256 else np.uint16 if len(vocab) <= 65536 else np.int32
    lut = np.zeros(max(vocab) + 1, dtype=dtype)
    lut[np.array(vocab)] = np.arange(len(vocab), dtype=dtype)

    tmp = cache.parent / f".tmp-{cache.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pos, bounds = 0, {}
    # Plain writes, not a writable memmap: its dirty pages would count as this process's memory (the
    # whole corpus, at the end of the pass); training maps the file read-only.
    with open(tmp / "ids.npy", "wb") as ids:
        np.lib.format.write_array_header_1_0(ids, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                   "fortran_order": False, "shape": (total,)})
        for split, units in _joined(parts, unit):
            start = pos
            ids.write(lut[units].tobytes())
            pos += len(units)
            lo, hi = bounds.get(split, (start, pos))
            bounds[split] = (min(lo, start), pos)
    splits = None
    if None not in bounds:  # TFDS: the dataset's own splits; carve missing ones from the end of train
        splits = _complete_splits(bounds)
    meta = {"version": CACHE_VERSION, "source": source, "unit": unit, "vocab": [chr(c) for c in vocab],
            "size": total, "splits": splits}
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))
    try:
        os.rename(tmp, cache)
    except OSError:  # another process cached the same text first
        shutil.rmtree(tmp, ignore_errors=True)


def _complete_splits(bounds: dict) -> dict:
    out = {k: list(v) for k, v in bounds.items()}
    t0, t1 = out["train"]
    for split in ("test", "val"):
        if split not in out:
            n = max(1, (t1 - t0) // 20)
            out[split] = [t1 - n, t1]
            t1 -= n
    out["train"] = [t0, t1]
    return out


def _read_meta(cache: Path) -> dict | None:
    try:
        meta = json.loads((cache / "meta.json").read_text(encoding="utf-8"))
        if meta.get("version") != CACHE_VERSION or not (cache / "ids.npy").is_file():
            return None
        return meta
    except (OSError, ValueError):
        return None


def describe(corpus: Corpus) -> str:
    return (f"{corpus.source}: {len(corpus.vocab)} symbols, {len(corpus.train):,} train / {len(corpus.val):,} val / "
            f"{len(corpus.test):,} test")


__all__ = ["Corpus", "load_corpus", "describe", "tfds_manual_dir"]
