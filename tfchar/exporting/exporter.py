"""Export a run's checkpoint for serving and on-device generation, and measure what was exported.

    saved_models/<name>/
      saved_model/        TF SavedModel: signatures generate (= serving_default), generate_until,
                          generate_chunk (static shapes, K = export.chunk_size), step, vocabulary
      model.tflite        the same signatures, TFLite builtin ops only (float32)
      model_int8.tflite   dynamic-range quantized weights (optional)
      model.keras         the trainable weights as a stock Keras model (keras.saving.load_model, no tfchar)
      vocab.json          token id -> character, as in the run dir
      config.toml         the model's [data] and [model] sections
      metrics.json        bpc of the exported files on the validation and test splits (`chars`: how many
                          characters each figure scored, `export.eval_chars` of each split), sizes, parity
      MODEL_CARD.md       what the model is, its data, training, figures, signatures and limits

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
from tfchar.core.errors import CheckpointError, ConfigError, TfcharError, TrainingInterrupted
from tfchar.core.procs import alive
from tfchar.data.corpus import load_corpus
from tfchar.exporting.model_card import CardFacts, model_card
from tfchar.nn.checkpoint import KERAS_FILE, load_run, load_weights, run_dir_of, save_keras_file
from tfchar.nn.generator import CharGenerator
from tfchar.nn.models import build_from_config
from tfchar.runtimes.convert import to_tflite as _to_tflite
from tfchar.runtimes.saved_model import SavedModelRuntime
from tfchar.runtimes.tflite import TFLiteRuntime
from tfchar.training.progress import CountBar
from tfchar.training.signals import Abort, StopFlag

SIGNATURES = ("generate", "generate_until", "generate_chunk", "step", "vocabulary")
EVAL_STREAMS = 8  # contiguous rows per bpc evaluation: fit's validation layout (runtimes.keras.KerasScorer)
PARITY_SHAPE = (8, 32)  # parity check: 8 streams of 32 characters


def export_run(run_dir, out_dir=None, int8: bool = True, which: str = "best", splits: dict | None = None,
               log: Callable[[str], None] = print, eval_chars: int | None = None,
               chunk_size: int | None = None) -> dict:
    """Export a run's checkpoint to SavedModel + TFLite and return its metrics (also in metrics.json).

    Args:
        run_dir: a run directory (or one of its checkpoints).
        out_dir: export directory; default: the run's `export.out`, else saved_models/<run name>.
        int8: also write model_int8.tflite (dynamic-range quantized) and measure it.
        which: "best" or "last" checkpoint of a run dir.
        splits: {"val": ids, "test": ids} token id arrays to measure bpc on; default: the run's corpus
            (`tfchar.data.corpus.load_corpus(cfg.data)`); bpc is skipped if that cannot be loaded.
        log: receives short progress lines.
        eval_chars: characters of each split to score (the first eval_chars/8 of 8 contiguous streams, as fit's
            validation; 0 = the whole splits); default: the run's `export.eval_chars`.
        chunk_size: K, code points per `generate_chunk` call; default: the run's export.chunk_size.

    Returns:
        dict with val_bpc, test_bpc, tflite_test_bpc, int8_test_bpc, int8_bpc_change, chars (characters each
        bpc figure scored), sizes (bytes), int8_size_ratio, parity (max |logit difference| of each exported step
        against Keras), ...

    Example:
        export_run("runs/shakespeare", int8=False)
    """
    cfg, vocab, ckpt = load_run(run_dir, which)
    chunk_size = cfg.export.chunk_size if chunk_size is None else chunk_size
    if chunk_size <= 0:
        raise ConfigError(f"--chunk_size {chunk_size} must be positive: code points per generate_chunk call, e.g. 64")
    run = run_dir_of(ckpt)
    out = Path(out_dir or cfg.export.out or Path("saved_models") / run.name)
    _check_replaceable(out)
    _remove_stale_temporaries(out)
    eval_chars = cfg.export.eval_chars if eval_chars is None else eval_chars
    log(f"export: {ckpt} -> {out}")
    model = build_from_config(cfg.model, len(vocab))
    load_weights(model, ckpt)
    gen = CharGenerator.from_keras(model, vocab, chunk_size=chunk_size)

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = _write_files(tmp, gen, cfg, vocab, int8)
        files["keras"] = _write_keras(tmp, model)
        metrics = {"run": str(run), "checkpoint": ckpt.name, "cell": gen.cell, "num_layers": gen.num_layers,
                   "rnn_size": gen.hidden, "vocab_size": gen.vocab_size, "state_size": gen.state_size,
                   "chunk_size": gen.chunk_size, "unit": vocab.unit, "sizes": {k: _size(p) for k, p in files.items()}}
        if int8:
            metrics["int8_size_ratio"] = metrics["sizes"]["tflite_int8"] / metrics["sizes"]["tflite"]
        log("  " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in metrics["sizes"].items())
            + (f" (int8/float {metrics['int8_size_ratio']:.2f})" if int8 else ""))
        splits = _splits(cfg, vocab, log) if splits is None else splits
        probe = _probe_ids(splits, len(vocab))
        metrics.update(_measure(model, files, splits, probe, gen.state_size, log, eval_chars))
        metrics["parity"]["keras"] = keras_file_difference(model, files["keras"], probe)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        facts = CardFacts(name=out.name, metrics=metrics, config=cfg, vocab=vocab, run=run, params=model.count_params(),
                          signatures=gen.signatures(), split_sizes={k: len(v) for k, v in (splits or {}).items()})
        (tmp / "MODEL_CARD.md").write_text(model_card(facts), encoding="utf-8")
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  wrote {out}")
    return metrics


def interruptible_export(run_dir, out_dir=None, log: Callable[[str], None] = print, **kwargs) -> dict:
    """`export_run` where Ctrl-C or SIGTERM stops at once: its temporary files are removed and
    `TrainingInterrupted` (exit status 130/143) says how to export again."""
    again = f"python -m tfchar.export {run_dir}" + (f" --out {out_dir}" if out_dir else "")
    with StopFlag() as stop:
        try:
            metrics = export_run(run_dir, out_dir, log=log, **kwargs)
        except Abort as e:
            raise TrainingInterrupted(f"{e} during the export of {run_dir}; nothing was written: export it with "
                                      f"{again}", e.exit_code) from None
    if stop.stop:  # the Abort was swallowed (raised inside a finalizer): the export finished first
        raise TrainingInterrupted(f"stopped by {stop.name} after the export was written", stop.exit_code)
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
    """Convert an exported SavedModel's signatures to a TFLite flatbuffer with builtin ops only (int8: dynamic
    range, int8 weights and float activations)."""
    return _to_tflite(saved_model_dir, SIGNATURES, int8)


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


def _measure(model, files: dict, splits: dict | None, probe, state_size: int, log, eval_chars: int = 0) -> dict:
    """Parity of every exported `step` with Keras on `probe` ids [B, T], and bpc on the splits (if given).

    bpc is each runtime's progressive score (`Runtime.score`) in fit's validation layout (EVAL_STREAMS
    contiguous rows, each from zero state), so metrics.json, fit and `python -m tfchar.evaluate` agree; at most
    `eval_chars` characters of each split (0 = all), the same ones on every route.
    """
    steps = {"saved_model": SavedModelRuntime(files["saved_model"])}
    steps.update({k: TFLiteRuntime(files[k]) for k in ("tflite", "tflite_int8") if k in files})
    m = {"parity": {k: logit_difference(model, rt.step, probe, state_size) for k, rt in steps.items()}}
    worst = max(m["parity"]["saved_model"], m["parity"]["tflite"])
    if worst > 1e-4:
        log(f"  WARNING: exported logits differ from Keras by up to {worst:.2g}; please report this")
    if not splits:
        return m

    m["chars"] = {}

    def bpc(route, split, label):
        bar = CountBar(f"  {split} bpc ({route})")
        try:
            r = steps[route].score(splits[split], streams=EVAL_STREAMS, limit=eval_chars, progress=bar)
        finally:
            bar.close()
        m[label], m["chars"][label] = r["bpc"], r["chars"]

    for name in ("val", "test"):
        if name in splits and len(splits[name]) > 1:
            bpc("saved_model", name, f"{name}_bpc")
    if "test_bpc" in m:
        for key, label in (("tflite", "tflite_test_bpc"), ("tflite_int8", "int8_test_bpc")):
            if key in steps:
                bpc(key, "test", label)
        if "int8_test_bpc" in m:
            m["int8_bpc_change"] = m["int8_test_bpc"] - m["test_bpc"]
    m["split_chars"] = {name: len(splits[name]) for name in ("val", "test") if name in splits}
    m["bpc_method"] = (f"{EVAL_STREAMS} contiguous rows per split, each from zero state, state carried, through "
                       f"`step` (fit's validation layout); " +
                       (f"the first {eval_chars:,} characters of each split (export.eval_chars)" if eval_chars
                        else "the whole splits"))
    log("  bpc " + ", ".join(f"{k.replace('_bpc', '')} {v:.4f}" for k, v in m.items() if k.endswith("_bpc"))
        + f" (on {', '.join(sorted({f'{n:,}' for n in m['chars'].values()}))} characters of each split)")
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
    return {"train": corpus.train, "val": corpus.val, "test": corpus.test}


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


def _remove_stale_temporaries(out: Path) -> None:
    """Remove what killed exports of `out` on this machine left (`.<name>.tmp-<pid>`, `.<name>.old-<pid>`)."""
    for p in out.parent.glob(f".{out.name}.*-*") if out.parent.is_dir() else ():
        pid = p.name.rsplit("-", 1)[-1]
        if p.name.startswith((f".{out.name}.tmp-", f".{out.name}.old-")) and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


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
