import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfchar.data import corpus as corpus_lib
from tfchar.core.config import DataConfig
from tfchar.data.corpus import load_corpus
from tfchar.core.errors import DataError


def load(source, tmp_path, **kw):
    return load_corpus(DataConfig(source=str(source), cache_dir=str(tmp_path / "cache"), **kw))


def text_of(c):
    return c.vocab.decode(np.concatenate([c.train, c.val, c.test]))


def test_tfds_tiny_shakespeare_uses_its_own_splits(shakespeare_text):
    c = load_corpus(DataConfig(source="tfds:tiny_shakespeare"))
    assert len(c.vocab) == 65
    assert (len(c.train), len(c.val), len(c.test)) == (1_003_854, 55_770, 55_770)
    assert c.vocab.decode(c.train[:14]) == "First Citizen:"
    assert text_of(c) == shakespeare_text
    assert c.vocab.tokens == sorted(set(shakespeare_text))


def test_tfds_offline_without_manual_copy_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "empty_tfds"))
    with pytest.raises(DataError) as e:
        load_corpus(DataConfig(source="tfds:tiny_shakespeare", cache_dir=str(tmp_path / "c")))
    assert str(tmp_path / "empty_tfds" / "downloads" / "manual") in str(e.value)
    assert "input.txt" in str(e.value)


def test_unknown_tfds_dataset_and_feature(tmp_path):
    with pytest.raises(DataError, match="unknown TFDS dataset 'no_such_dataset_xyz'"):
        load(("tfds:no_such_dataset_xyz"), tmp_path)
    with pytest.raises(DataError, match="no feature 'body'.*text"):
        load("tfds:tiny_shakespeare", tmp_path, tfds_feature="body")


def test_file_splits_contiguously_and_round_trips(small_text_file, tmp_path):
    text = small_text_file.read_text()
    c = load(small_text_file, tmp_path, val_frac=0.1, test_frac=0.05)
    n = len(text)
    assert len(c.val) == round(n * 0.1) and len(c.test) == round(n * 0.05)
    assert c.vocab.decode(c.train) + c.vocab.decode(c.val) + c.vocab.decode(c.test) == text
    assert c.vocab.decode(c.val[:20]) == text[len(c.train):len(c.train) + 20]


def test_folder_prefers_input_txt_else_sorted_txt_files(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "b.txt").write_text("bbbb")
    (d / "a.txt").write_text("aaaa\n")
    (d / "notes.md").write_text("ignored")
    assert text_of(load(d, tmp_path, val_frac=0, test_frac=0)) == "aaaa\nbbbb"
    (d / "input.txt").write_text("only this\n")
    assert text_of(load(d, tmp_path, val_frac=0, test_frac=0)) == "only this\n"


def test_bom_and_newlines_are_normalised_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_lib, "CHUNK_BYTES", 4)  # force a \r\n pair to straddle chunks
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xef\xbb\xbfab\r\ncd\rxy\r\n\r\nz\xc3\xa9\r")
    c = load(f, tmp_path, val_frac=0, test_frac=0)
    assert text_of(c) == "ab\ncd\nxy\n\nz\u00e9\n"


def test_invalid_utf8_names_byte_offset_and_byte_unit_accepts_it(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\u00e9 ok".encode("latin-1") + b" more text")
    with pytest.raises(DataError, match=r"not valid UTF-8 \(byte offset 3\).*data.unit=byte"):
        load(f, tmp_path)
    c = load(f, tmp_path, unit="byte", val_frac=0, test_frac=0)
    assert len(c.vocab) <= 256
    assert bytes(ord(c.vocab.tokens[i]) for i in c.train) == f.read_bytes()


def test_binary_empty_and_missing_sources(tmp_path):
    b = tmp_path / "x.bin"
    b.write_bytes(b"ELF\x00\x01\x02")
    with pytest.raises(DataError, match=r"looks binary \(NUL byte at offset 3\)"):
        load(b, tmp_path)
    e = tmp_path / "empty.txt"
    e.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load(e, tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "missing.txt", tmp_path)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no input.txt"):
        load(tmp_path / "nothing", tmp_path)


def test_encoding_is_cached_and_redone_when_text_changes(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("hello world\n" * 100)
    logs = []
    cfg = DataConfig(source=str(f), cache_dir=str(tmp_path / "cache"))
    load_corpus(cfg, logs.append)
    load_corpus(cfg, logs.append)
    assert logs[0].startswith("encoding") and logs[1].startswith("using cached")
    f.write_text("goodbye moon\n" * 100)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    c = load_corpus(cfg, logs.append)
    assert logs[2].startswith("encoding")
    assert "g" in c.vocab.tokens and "h" not in c.vocab.tokens
    assert isinstance(c.train, np.memmap)  # memory-mapped, not loaded into Python objects


def test_vocab_json_lists_token_strings(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("ba\u00e9\n" * 50)
    c = load(f, tmp_path)
    c.vocab.save(tmp_path / "vocab.json")
    assert json.loads((tmp_path / "vocab.json").read_text()) == ["\n", "a", "b", "\u00e9"]


@pytest.mark.parametrize("damage", ["truncate", "alter", "header"])
def test_corrupt_encode_cache_is_detected_and_rebuilt(tmp_path, damage):
    f = tmp_path / "t.txt"
    f.write_text("the quick brown fox jumps over the lazy dog\n" * 500)
    cfg = DataConfig(source=str(f), cache_dir=str(tmp_path / "cache"))
    good = np.array(load_corpus(cfg).train)
    (cache,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    ids = cache / "ids.npy"
    data = bytearray(ids.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "alter":
        data[len(data) // 2] ^= 0x01  # one bit of one id: the file keeps its size
    else:
        data[10:20] = b"x" * 10  # the .npy header
    ids.write_bytes(bytes(data))
    logs = []
    c = load_corpus(cfg, logs.append)
    assert "is corrupt" in logs[0] and logs[1].startswith("encoding"), logs
    np.testing.assert_array_equal(np.array(c.train), good)  # rebuilt from the text, not the damaged file
    assert load_corpus(cfg, logs.append) is not None and logs[-1].startswith("using cached")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.name]  # nothing left aside


def test_killed_encoding_leaves_nothing_behind(tmp_path):
    import socket
    cache = tmp_path / "cache"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = cache / f".tmp-0123abc-{socket.gethostname()}-{dead.pid}"  # a killed process's unfinished encoding
    stale.mkdir(parents=True)
    (stale / "ids.npy").write_bytes(b"half")
    f = tmp_path / "t.txt"
    f.write_text("abc\n" * 100)
    load_corpus(DataConfig(source=str(f), cache_dir=str(cache)))
    assert not stale.exists()
