"""Fine-tuning (train.init_from) on any text: from a run dir, a checkpoint or an export dir; the source's model
section; vocabulary growth that keeps the trained rows; fine-tuning defaults; byte models; one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import tiny_overrides
from tfchar.core.config import DataConfig
from tfchar.core.errors import CheckpointError, ConfigError, DataError
from tfchar.core.vocab import Vocab
from tfchar.data.corpus import load_corpus
from tfchar.evaluation.evaluate import evaluate
from tfchar.exporting.exporter import export_run
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.nn.models import build_model
from tfchar.training import finetune
from tfchar.training.run_dir import resolve_config
from tfchar.training.trainer import fit

# A text with characters tiny-shakespeare never uses (digits, brackets, accents, a euro sign).
OTHER = ("Section 4 [b]: the licensee may copy (and modify) the work; 100% free, no warranty.\n"
         "Café déjà vu: 3 × 7 = 21 € <ok>\n") * 600


def fine_tune(source, run_dir, init_from, log=None, **extra):
    """A fine-tuning run with no model flag (so the model comes from the source)."""
    args = [a for a in tiny_overrides(source, run_dir, **extra) if not a.startswith("--model.")]
    cfg, rd = resolve_config(None, args + [f"--train.init_from={init_from}"])
    return cfg, fit(cfg, rd, log=log or (lambda s: None))


@pytest.fixture(scope="module")
def base(small_text_file, tmp_path_factory):
    """A small model trained on Shakespeare, and its export (with model.keras)."""
    root = tmp_path_factory.mktemp("base")
    cfg, rd = resolve_config(None, tiny_overrides(small_text_file, root / "run", **{"model.dropout": 0.1}))
    fit(cfg, rd, log=lambda s: None)
    export_run(rd, root / "export", int8=False, log=lambda s: None)
    return root


@pytest.fixture(scope="module")
def other_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("other") / "licence.txt"
    path.write_text(OTHER, encoding="utf-8")
    return path


def embedding_and_logits(weights_dir, vocab_size, rnn_size=32):
    model = build_model(vocab_size, "lstm", rnn_size, 2, embedding_dim=16)
    ckpt_lib.load_weights(model, weights_dir)
    kernel, bias = model.get_layer("logits").get_weights()
    return model.get_layer("embedding").get_weights()[0], kernel, bias


def test_fine_tuning_from_an_export_dir_grows_the_vocabulary_and_keeps_the_trained_rows(base, other_text, tmp_path):
    lines = []
    cfg, result = fine_tune(other_text, tmp_path / "ft", base / "export", log=lines.append,
                            **{"train.learning_rate": 1e-9, "train.max_steps": 10})
    old = Vocab.load(base / "export" / "vocab.json")
    new = Vocab.load(tmp_path / "ft" / "vocab.json")
    extra = sorted(set(OTHER) - set(old.tokens))
    assert new.tokens == old.tokens + extra and {"4", "[", "é", "€", "×"} <= set(extra)
    shared = len(set(OTHER) & set(old.tokens))
    assert any(f"{len(old)} characters carried over from the source ({shared} of them in the new text), "
               f"{len(extra)} added" in line for line in lines), lines
    assert cfg.model.rnn_size == 32 and cfg.model.embedding_dim == 16 and cfg.model.dropout == 0.1  # the source's
    e_old, k_old, b_old = embedding_and_logits(base / "export", len(old))
    e_new, k_new, b_new = embedding_and_logits((tmp_path / "ft" / "checkpoints" / "best").resolve(), len(new))
    n = len(old)
    np.testing.assert_allclose(e_new[:n], e_old, atol=1e-6)  # shared characters keep their trained rows
    np.testing.assert_allclose(k_new[:, :n], k_old, atol=1e-6)
    np.testing.assert_allclose(b_new[:n], b_old, atol=1e-6)
    assert np.abs(e_new[n:]).max() > 1e-3 and np.abs(k_new[:, n:]).max() > 1e-3  # fresh rows, not zeros
    # the new run's split evaluates under its grown vocabulary, and its text decodes back
    corpus = load_corpus(cfg.data, vocab=new)
    assert new.decode(corpus.train[:len(OTHER) // 600]) == OTHER[:len(OTHER) // 600]
    assert evaluate(tmp_path / "ft", split="val")["chars"] == len(corpus.val) - 1


def test_a_run_dir_and_a_checkpoint_are_sources_too_and_same_vocabulary_means_no_growth(base, small_text_file, tmp_path):
    for name, source in (("run", base / "run"), ("ckpt", (base / "run" / "checkpoints" / "best").resolve())):
        _, result = fine_tune(small_text_file, tmp_path / name, source, **{"train.max_steps": 10,
                                                                           "train.learning_rate": 1e-9})
        assert Vocab.load(tmp_path / name / "vocab.json") == Vocab.load(base / "run" / "vocab.json")
        assert result["best_val_loss"] == pytest.approx(json.loads((base / "run" / "result.json").read_text())
                                                        ["best_val_loss"], abs=2e-3)


def test_source_config_fine_tuning_defaults_and_contradicting_flags(base, other_text, tmp_path):
    args = [f"--data.source={other_text}", f"--train.init_from={base / 'export'}", f"--train.run_dir={tmp_path / 'a'}"]
    cfg, _ = resolve_config(None, args)
    assert (cfg.model.rnn_size, cfg.model.num_layers, cfg.model.embedding_dim) == (32, 2, 16)
    assert cfg.train.learning_rate == finetune.FINETUNE_DEFAULTS["learning_rate"]
    assert cfg.train.lr_decay_after == finetune.FINETUNE_DEFAULTS["lr_decay_after"]
    cfg, _ = resolve_config(None, args + ["--train.learning_rate=0.005", "--model.dropout=0.3", "--model.rnn_size=32"])
    assert cfg.train.learning_rate == 0.005 and cfg.model.dropout == 0.3  # set keys win; dropout may change
    for flag, key in (("--model.rnn_size=64", "model.rnn_size=64"), ("--model.cell=gru", "model.cell=gru"),
                      ("--data.unit=byte", "data.unit=byte")):
        with pytest.raises(ConfigError, match=f"{key} contradicts train.init_from") as e:
            resolve_config(None, args + [flag])
        assert "\n" not in str(e.value)


def test_sources_that_cannot_be_fine_tuned_from_are_one_line_errors(base, other_text, tmp_path):
    frozen = tmp_path / "frozen"  # an export written before exports carried model.keras
    shutil.copytree(base / "export", frozen)
    (frozen / "model.keras").unlink()
    for source, error, words in ((frozen, CheckpointError, r"export without Keras weights \(model.keras\): re-export"),
                                 (tmp_path / "missing", CheckpointError, "does not exist"),
                                 ("no_such_model", CheckpointError, "shipped model's name")):
        with pytest.raises(error, match=words) as e:
            resolve_config(None, [f"--data.source={other_text}", f"--train.init_from={source}"])
        assert "\n" not in str(e.value)
    # a config that bypasses the source's model section: the shapes differ, one line before any weight is read
    src = finetune.open_source(str(base / "export"))
    with pytest.raises(CheckpointError, match="its model.rnn_size is 32, this run's is 64") as e:
        finetune.check_shape(src.config.model.__class__(rnn_size=64, embedding_dim=16), src)
    assert "\n" not in str(e.value)


def test_a_byte_model_fine_tunes_without_growth_on_text_of_the_same_bytes(small_text_file, tmp_path):
    cfg, rd = resolve_config(None, tiny_overrides(small_text_file, tmp_path / "bytes", **{"data.unit": "byte"}))
    fit(cfg, rd, log=lambda s: None)
    old = Vocab.load(rd / "vocab.json", "byte")
    same = tmp_path / "same.txt"
    same.write_text(small_text_file.read_text()[::-1][:30_000])  # other text, the same bytes
    cfg2, _ = fine_tune(same, tmp_path / "ft", rd, **{"train.max_steps": 5, "train.eval_every": 5})
    assert cfg2.data.unit == "byte"  # taken from the source
    assert Vocab.load(tmp_path / "ft" / "vocab.json", "byte") == old
    accents = tmp_path / "accents.txt"
    accents.write_text("Café déjà vu, naïve. " * 2000, encoding="utf-8")
    fine_tune(accents, tmp_path / "ft2", rd, **{"train.max_steps": 5, "train.eval_every": 5})
    grown = Vocab.load(tmp_path / "ft2" / "vocab.json", "byte")
    new_bytes = sorted(set("Café déjà vu, naïve. ".encode("utf-8")) - {ord(t) for t in old.tokens})
    assert grown.tokens == old.tokens + [chr(b) for b in new_bytes] and new_bytes  # only the UTF-8 bytes unseen


def test_a_fine_tuning_run_resumes(base, other_text, tmp_path):
    fine_tune(other_text, tmp_path / "ft", base / "export", **{"train.max_steps": 10})
    cfg, rd = resolve_config(None, [f"--train.run_dir={tmp_path / 'ft'}", "--train.resume=true", "--train.max_steps=20"])
    result = fit(cfg, rd, log=lambda s: None)
    assert result["steps"] == 20


def test_corpus_recoded_for_a_larger_vocabulary_reads_the_same_text(other_text):
    cfg = DataConfig(source=str(other_text))
    own = load_corpus(cfg)
    bigger = Vocab(["\x00", *own.vocab.tokens[::-1], "ж"])
    recoded = load_corpus(cfg, vocab=bigger)
    assert recoded.vocab == bigger and recoded.train.dtype == np.uint8
    for split in ("train", "val", "test"):
        assert bigger.decode(recoded.split(split)) == own.vocab.decode(own.split(split))
    with pytest.raises(DataError, match="outside the model's vocabulary") as e:
        load_corpus(cfg, vocab=Vocab(own.vocab.tokens[:-3]))
    assert "\n" not in str(e.value)


def test_a_run_on_another_text_is_named_after_it_not_the_default_pipeline(tmp_path, monkeypatch):
    from tfchar.cli import pipeline_command_line
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.txt").write_text("hello world\n" * 3000)
    pipeline, overrides = pipeline_command_line(["--data.source=my.txt"], "")
    assert pipeline and pipeline.endswith("tiny_shakespeare.toml")  # the shipped default pipeline applies
    cfg, run_dir = resolve_config(pipeline, overrides)
    assert run_dir.name == "my" and cfg.model.rnn_size == 256
    assert pipeline_command_line(["--data.source=my.txt", "--train.init_from=x"], "")[0] is None
