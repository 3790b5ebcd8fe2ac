"""Honest evaluation of any tfchar model on a text: nats/char, bpc and perplexity, optionally dynamic.

Every runtime scores the text *progressively* (`Runtime.score`, the layout of `tfchar.ops.streams`): the
text is laid out as `streams` contiguous rows (with streams > 1 the last (N - 1) % streams characters are
dropped, as fit's validation does) and each row is read from zero state with the state carried through it,
in chunks, so memory stays bounded for any length. `streams=1` scores every character but the first with
its whole left context; `streams=8` reproduces fit's validation figure exactly.

Dynamic evaluation (`dynamic.dynamic_score`) needs trainable weights: a runtime with a `checkpoint` (a run
dir, or an export dir holding model.keras).

Example:
    result = evaluate("runs/shakespeare", split="test")
    result["bpc"], result["chars"]
    evaluate("runs/shakespeare", text="my.txt", dynamic=True, dynamic_lr=1e-3)["dynamic"]["bpc"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tfchar.core.choices import SPLITS
from tfchar.core.errors import ConfigError, DataError
from tfchar.data.corpus import load_corpus
from tfchar.evaluation.dynamic import dynamic_score
from tfchar.runtimes.base import Runtime
from tfchar.runtimes.load import load_runtime


def split_ids(runtime: Runtime, split: str, log=lambda s: None) -> np.ndarray:
    """A split of the model's own corpus (`load_corpus(config.data)`), checked against the model's vocabulary."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} is not one of: {', '.join(SPLITS)}")
    if runtime.config is None:
        raise ConfigError("--split needs the model's config.toml, and none is next to it: give an export dir or a "
                          "run dir, or evaluate a file with --text FILE")
    corpus = load_corpus(runtime.config.data, log)
    if set(corpus.vocab.tokens) - set(runtime.vocab.tokens):
        raise DataError(f"the corpus {runtime.config.data.source!r} now has a different vocabulary than the model: "
                        f"it changed since training; evaluate a file with --text FILE")
    if corpus.vocab != runtime.vocab:  # a fine-tuned model's vocabulary extends its text's own
        corpus = load_corpus(runtime.config.data, log, vocab=runtime.vocab)
    return np.asarray(corpus.split(split))


def text_ids(vocab, path) -> tuple[np.ndarray, int, list[str]]:
    """(ids, number of skipped characters, distinct skipped characters) of a UTF-8 text file.

    Characters outside the vocabulary have no probability under the model, so they cannot be scored:
    they are removed (their neighbours become adjacent) and counted, never dropped silently.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--text {p} is not a file: give the path of a UTF-8 text file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"--text {p} is not UTF-8 ({e.reason} at byte {e.start}): convert it to UTF-8") from None
    ids = vocab.encode(text, unknown="skip")
    units = len(text.encode("utf-8")) if vocab.unit == "byte" else len(text)
    return ids, units - len(ids), vocab.unknown(text)


def evaluate(model_path, text=None, split: str | None = None, streams: int = 1, chunk: int = 256,
             dynamic: bool = False, dynamic_lr: float = 3e-4, segment: int = 50, dynamic_optimizer: str = "adam",
             log: Callable[[str], None] = lambda s: None) -> dict:
    """Score a text under a model; returns the static figures and, with `dynamic`, the dynamic ones.

    Args:
        model_path: run dir, checkpoint, export dir, SavedModel dir or .tflite (as `sample`).
        text: path of a UTF-8 file to score (exclusive with `split`).
        split: "train", "val" or "test" of the model's corpus (default "test" when no `text`).
        streams: contiguous rows scored in parallel (1 = exact full context; 8 = fit's validation).
        chunk: time steps per call (bounds memory).
        dynamic, dynamic_lr, segment, dynamic_optimizer: dynamic evaluation (models with Keras weights).
        log: receives progress lines.

    Returns:
        {"nats", "bpc", "perplexity", "chars", "skipped", "skipped_chars", "text", "model", "streams"}
        plus "dynamic": {...} when `dynamic`.

    Example:
        evaluate("saved_models/shakespeare/model.tflite", split="val", streams=8)["bpc"]
    """
    if text is not None and split is not None:
        raise ConfigError("give either --text FILE or --split NAME, not both")
    if streams < 1 or chunk < 1:
        raise ConfigError(f"--streams {streams} and --chunk {chunk} must be >= 1")
    split = split or (None if text is not None else "test")
    if split is not None and split not in SPLITS:
        raise ConfigError(f"--split {split!r} is not one of: {', '.join(SPLITS)}")
    if text is not None and not Path(text).is_file():
        raise DataError(f"--text {text} is not a file: give the path of a UTF-8 text file")
    runtime = load_runtime(model_path)
    if dynamic and runtime.checkpoint is None:
        raise ConfigError(f"--dynamic needs trainable weights, and {model_path} has none (no model.keras): give the "
                          f"run dir, or an export dir written by this version of python -m tfchar.export")
    if split is not None:
        ids, skipped, distinct = split_ids(runtime, split, log), 0, []
        what = f"{split} split of {runtime.config.data.source}"
    else:
        ids, skipped, distinct = text_ids(runtime.vocab, text)
        what = str(text)
    if len(ids) < 2:
        raise DataError(f"{what} has {len(ids)} scorable character(s): at least 2 are needed")
    label = runtime.describe()
    log(f"scoring {what} ({len(ids):,} characters) with {label}, {streams} stream(s)")
    result = {**runtime.score(ids, streams, chunk), "skipped": skipped, "skipped_chars": distinct, "text": what,
              "model": label, "streams": streams}
    if dynamic:
        log(f"dynamic evaluation: {dynamic_optimizer}, lr {dynamic_lr:g}, segment {segment}")
        result["dynamic"] = {**dynamic_score(runtime.config.model, runtime.vocab_size, runtime.checkpoint, ids,
                                             streams, segment, dynamic_lr, dynamic_optimizer),
                             "lr": dynamic_lr, "segment": segment, "optimizer": dynamic_optimizer}
    return result


def report(result: dict) -> str:
    """The lines `python -m tfchar.evaluate` prints."""
    r = result
    lines = [f"model: {r['model']}", f"text: {r['text']} ({r['streams']} stream(s), state carried)",
             f"scored {r['chars']:,} characters: {r['nats']:.4f} nats/char, {r['bpc']:.4f} bpc, "
             f"perplexity {r['perplexity']:.3f}"]
    if r["skipped"]:
        shown = ", ".join(repr(c) for c in r["skipped_chars"][:10])
        lines.append(f"skipped {r['skipped']:,} character(s) outside the model's vocabulary "
                     f"({len(r['skipped_chars'])} distinct: {shown}): they cannot be scored")
    if "dynamic" in r:
        d = r["dynamic"]
        lines.append(f"dynamic ({d['optimizer']}, lr {d['lr']:g}, segment {d['segment']}, {d['updates']} updates): "
                     f"{d['nats']:.4f} nats/char, {d['bpc']:.4f} bpc, perplexity {d['perplexity']:.3f}")
        lines.append(f"static {r['bpc']:.4f} bpc vs dynamic {d['bpc']:.4f} bpc ({d['bpc'] - r['bpc']:+.4f})")
    return "\n".join(lines)
