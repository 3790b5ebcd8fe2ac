"""Export a run's checkpoint for serving and on-device generation, and measure what was exported.

    saved_models/<name>/
      saved_model/        TF SavedModel: signatures generate (= serving_default), step, vocabulary
      model.tflite        the same signatures, TFLite builtin ops only (float32)
      model_int8.tflite   dynamic-range quantized weights (optional)
      model.keras         the trainable weights as a stock Keras model (keras.saving.load_model, no tfchar)
      vocab.json          token id -> character, as in the run dir
      config.toml         the model's [data] and [model] sections
      metrics.json        bpc of the exported files on the validation and test splits, sizes, parity

Everything is written into a temporary sibling directory and renamed into place, so an interrupted
export never leaves a half-written model where a previous export was.

Example:
    metrics = export_run("runs/shakespeare", "saved_models/shakespeare")
    metrics["test_bpc"], metrics["int8_size_ratio"]
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from tfchar.core import config as config_lib
from tfchar.core.errors import CheckpointError, TfcharError
from tfchar.data.corpus import load_corpus
from tfchar.nn.checkpoint import KERAS_FILE, load_run, load_weights, run_dir_of, save_keras_file
from tfchar.nn.generator import CharGenerator
from tfchar.nn.models import build_from_config
from tfchar.runtimes.saved_model import SavedModelRuntime
from tfchar.runtimes.tflite import TFLiteRuntime

SIGNATURES = ("generate", "step", "vocabulary")
EVAL_STREAMS = 8  # contiguous rows per bpc evaluation: fit's validation layout (runtimes.keras.KerasScorer)
PARITY_SHAPE = (8, 32)  # parity check: 8 streams of 32 characters


def export_run(run_dir, out_dir=None, int8: bool = True, which: str = "best", splits: dict | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Export a run's checkpoint to SavedModel + TFLite and return its metrics (also in metrics.json).

    Args:
        run_dir: a run directory (or one of its checkpoints).
        out_dir: export directory; default: the run's `export.out`, else saved_models/<run name>.
        int8: also write model_int8.tflite (dynamic-range quantized) and measure it.
        which: "best" or "last" checkpoint of a run dir.
        splits: {"val": ids, "test": ids} token id arrays to measure bpc on; default: the run's corpus
            (`tfchar.data.corpus.load_corpus(cfg.data)`); bpc is skipped if that cannot be loaded.
        log: receives short progress lines.

    Returns:
        dict with val_bpc, test_bpc, tflite_test_bpc, int8_test_bpc, int8_bpc_change, sizes (bytes),
        int8_size_ratio, parity (max |logit difference| of each exported step against Keras), ...

    Example:
        export_run("runs/shakespeare", int8=False)
    """
    cfg, vocab, ckpt = load_run(run_dir, which)
    run = run_dir_of(ckpt)
    out = Path(out_dir or cfg.export.out or Path("saved_models") / run.name)
    _check_replaceable(out)
    log(f"export: {ckpt} -> {out}")
    model = build_from_config(cfg.model, len(vocab))
    load_weights(model, ckpt)
    gen = CharGenerator.from_keras(model, vocab)

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = _write_files(tmp, gen, cfg, vocab, int8)
        files["keras"] = _write_keras(tmp, model)
        metrics = {"run": str(run), "checkpoint": ckpt.name, "cell": gen.cell, "num_layers": gen.num_layers,
                   "rnn_size": gen.hidden, "vocab_size": gen.vocab_size, "state_size": gen.state_size,
                   "unit": vocab.unit, "sizes": {k: _size(p) for k, p in files.items()}}
        if int8:
            metrics["int8_size_ratio"] = metrics["sizes"]["tflite_int8"] / metrics["sizes"]["tflite"]
        log("  " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in metrics["sizes"].items())
            + (f" (int8/float {metrics['int8_size_ratio']:.2f})" if int8 else ""))
        splits = _splits(cfg, vocab, log) if splits is None else splits
        probe = _probe_ids(splits, len(vocab))
        metrics.update(_measure(model, files, splits, probe, gen.state_size, log))
        metrics["parity"]["keras"] = keras_file_difference(model, files["keras"], probe)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  wrote {out}")
    return metrics


def _write_files(tmp: Path, gen: CharGenerator, cfg, vocab, int8: bool) -> dict:
    """Write the SavedModel, the TFLite files, vocab.json and config.toml; {name: path} of the models."""
    files = {"saved_model": tmp / "saved_model", "tflite": tmp / "model.tflite"}
    tf.saved_model.save(gen, str(files["saved_model"]), signatures=gen.signatures())
    files["tflite"].write_bytes(to_tflite(files["saved_model"]))
    if int8:
        files["tflite_int8"] = tmp / "model_int8.tflite"
        files["tflite_int8"].write_bytes(to_tflite(files["saved_model"], int8=True))
    vocab.save(tmp / "vocab.json")
    config_lib.save(cfg, tmp / "config.toml", sections=["data", "model"])
    return files


def _write_keras(tmp: Path, model) -> Path:
    """model.keras: the trainable weights in stock Keras layers (what init_from and --dynamic read)."""
    path = tmp / KERAS_FILE
    save_keras_file(model, path)
    return path


def to_tflite(saved_model_dir, int8: bool = False) -> bytes:
    """Convert an exported SavedModel's signatures to a TFLite flatbuffer with builtin ops only."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=list(SIGNATURES))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic range: int8 weights, float activations
    return converter.convert()


# ============================================================================================ checks

def logit_difference(model, step, ids, state_size: int) -> float:
    """Max |logit difference| between the Keras model and a runtime's `step`, both reading ids int32[B, T]."""
    ids = np.asarray(ids, np.int32)
    reference = np.asarray(model(ids, training=False))  # [B, T, V]
    state, worst = np.zeros([len(ids), state_size], np.float32), 0.0
    for t in range(ids.shape[1]):
        logits, state = step(ids[:, t], state)
        worst = max(worst, float(np.abs(np.asarray(logits) - reference[:, t]).max()))
    return worst


def keras_file_difference(model, path: Path, ids) -> float:
    """Max |logit difference| between the Keras model and the model.keras file reloaded, on ids int32[B, T]."""
    ids = np.asarray(ids, np.int32)
    reloaded = keras.saving.load_model(path, compile=False)
    return float(np.abs(np.asarray(reloaded(ids, training=False)) - np.asarray(model(ids, training=False))).max())


def _measure(model, files: dict, splits: dict | None, probe, state_size: int, log) -> dict:
    """Parity of every exported `step` with Keras on `probe` ids [B, T], and bpc on the splits (if given).

    bpc is each runtime's progressive score (`Runtime.score`) in fit's validation layout (EVAL_STREAMS
    contiguous rows, each from zero state), so metrics.json, fit and `python -m tfchar.evaluate` agree.
    """
    steps = {"saved_model": SavedModelRuntime(files["saved_model"])}
    steps.update({k: TFLiteRuntime(files[k]) for k in ("tflite", "tflite_int8") if k in files})
    m = {"parity": {k: logit_difference(model, rt.step, probe, state_size) for k, rt in steps.items()}}
    worst = max(m["parity"]["saved_model"], m["parity"]["tflite"])
    if worst > 1e-4:
        log(f"  WARNING: exported logits differ from Keras by up to {worst:.2g}; please report this")
    if not splits:
        return m

    def bpc(route, split):
        return steps[route].score(splits[split], streams=EVAL_STREAMS)["bpc"]

    for name in ("val", "test"):
        if name in splits and len(splits[name]) > 1:
            m[f"{name}_bpc"] = bpc("saved_model", name)
    if "test_bpc" in m:
        for key, label in (("tflite", "tflite_test_bpc"), ("tflite_int8", "int8_test_bpc")):
            if key in steps:
                m[label] = bpc(key, "test")
        if "int8_test_bpc" in m:
            m["int8_bpc_change"] = m["int8_test_bpc"] - m["test_bpc"]
    m["bpc_method"] = (f"{EVAL_STREAMS} contiguous rows per split, each from zero state, state carried, through "
                       f"`step` (fit's validation layout)")
    log("  bpc " + ", ".join(f"{k.replace('_bpc', '')} {v:.4f}" for k, v in m.items() if k.endswith("_bpc")))
    return m


def _splits(cfg, vocab, log) -> dict | None:
    """The run corpus' validation and test ids, or None (with a note) if the corpus cannot be loaded."""
    try:
        corpus = load_corpus(cfg.data)
    except TfcharError as e:
        log(f"  bpc skipped: cannot load the corpus {cfg.data.source!r} ({e})")
        return None
    if set(corpus.vocab.tokens) - set(vocab.tokens):
        log(f"  bpc skipped: the corpus {cfg.data.source!r} now has a different vocabulary than the run")
        return None
    if corpus.vocab != vocab:  # a fine-tuned run's vocabulary extends its text's own
        corpus = load_corpus(cfg.data, vocab=vocab)
    return {"val": corpus.val, "test": corpus.test}


def _probe_ids(splits: dict | None, vocab_size: int) -> np.ndarray:
    """int32[B, T] for the parity check: real text if there is enough, else fixed pseudo-random ids."""
    b, t = PARITY_SHAPE
    for name in ("val", "test"):
        if splits and name in splits and len(splits[name]) >= b * t:
            return np.asarray(splits[name][:b * t], np.int32).reshape(b, t)
    return np.random.default_rng(0).integers(0, vocab_size, (b, t)).astype(np.int32)


# ============================================================================================ files

def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _check_replaceable(out: Path) -> None:
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "saved_model").is_dir()):
        raise CheckpointError(f"{out} exists and is not a tfchar export: choose another --out")


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished export into place; an older export there is removed only after that."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
