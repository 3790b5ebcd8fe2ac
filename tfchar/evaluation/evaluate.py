"""Honest evaluation of any tfchar model on a text: nats/char, bpc and perplexity, optionally dynamic.

Every route scores the text *progressively*: the text is laid out as `streams` contiguous rows (the
stateful layout of `tfchar.data.stream_view`; with streams > 1 the last (N - 1) % streams characters
are dropped, as fit's validation does) and each row is read from zero state with the state carried
through it, in chunks, so memory stays bounded for any length. `streams=1` scores every character
but the first with its whole left context; `streams=8` reproduces fit's validation figure exactly.

Routes (resolved by `tfchar.sampler.open_model`, the same as `python -m tfchar.sample`):
    run dir / checkpoint -> the Keras model (`tfchar.evaluation.Scorer`); supports --dynamic
    export dir / SavedModel dir / .tflite -> the exported `step(token int32[B], state float32[B, S])`

Dynamic evaluation (Graves 2013, Krause et al. 2017): score a segment of `segment` characters, then
take one gradient step on exactly that segment before scoring the next. Each prediction is made before
its character is trained on, so the figure stays a fair sequential score. Weights are adapted in memory
only; nothing is written to disk.

Shapes: B streams, t chunk length, V vocabulary, S packed state width.

Example:
    result = evaluate("runs/shakespeare", split="test")
    result["bpc"], result["chars"]
    evaluate("runs/shakespeare", text="my.txt", dynamic=True, dynamic_lr=1e-3)["dynamic"]["bpc"]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tfchar import config as config_lib
from tfchar.data import stream_view
from tfchar.errors import ConfigError, DataError
from tfchar.evaluation import bpc as to_bpc

SPLITS = ("train", "val", "test")
OPTIMIZERS = ("sgd", "adam")


def summary(nats_sum: float, count: int) -> dict:
    """{"nats", "bpc", "perplexity", "chars"} from a sum of nats over `count` scored characters."""
    nats = nats_sum / max(1, count)
    return {"nats": nats, "bpc": to_bpc(nats), "perplexity": math.exp(min(nats, 700.0)), "chars": count}


# ============================================================================================ exported step

class StepModel:
    """An exported `step` signature run over time for B streams (numpy in, numpy out).

    Args:
        step: callable(token=int32[B], state=float32[B, S]) -> {"logits": [B, V], "state": [B, S]}: a
            `CharGenerator.step`, a SavedModel's `signatures["step"]` or a LiteRT signature runner.
        state_size: S.
        vocab_size: V.
        graph: True if `step` is a TensorFlow callable: then each chunk runs as one `tf.while_loop`
            (one Python call per chunk, not per character). False (LiteRT) loops in Python.

    Example:
        sm = StepModel(gen.step, gen.state_size, gen.vocab_size)
        logits, nats, state = sm.run(x, y, sm.zeros(1))  # x, y int32[1, t]
    """

    def __init__(self, step, state_size: int, vocab_size: int, graph: bool = True):
        self.step, self.state_size, self.vocab_size, self.graph = step, int(state_size), int(vocab_size), graph
        if graph:
            self._run = tf.function(self._loop, input_signature=[
                tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, self.state_size], tf.float32)], reduce_retracing=True)

    def zeros(self, batch: int) -> np.ndarray:
        return np.zeros([batch, self.state_size], np.float32)

    def run(self, x, y, state) -> tuple[np.ndarray, float, np.ndarray]:
        """Read x int32[B, t] from `state`: (logits after the last column [B, V], sum of nats of y, new state)."""
        x, y = np.asarray(x, np.int32), np.asarray(y, np.int32)
        if self.graph:
            logits, nats, state = self._run(x, y, np.asarray(state, np.float32))
            return logits.numpy(), float(nats), state.numpy()
        nats, logits = 0.0, None
        for i in range(x.shape[1]):
            r = self.step(token=x[:, i], state=np.asarray(state, np.float32))
            logits, state = np.asarray(r["logits"], np.float64), np.asarray(r["state"], np.float32)
            top = logits.max(axis=1)
            log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))  # [B]
            nats += float((log_z - logits[np.arange(len(x)), y[:, i]]).sum())
        return logits, nats, state

    def _loop(self, x, y, state):
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]

        def body(i, state, nats, _):
            r = self.step(token=x[:, i], state=state)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y[:, i], logits=r["logits"])  # [B]
            return i + 1, r["state"], nats + tf.reduce_sum(tf.cast(nll, tf.float64)), r["logits"]

        init = (tf.constant(0), state, tf.constant(0.0, tf.float64), tf.zeros([batch, self.vocab_size]))
        _, state, nats, logits = tf.while_loop(lambda i, *_: i < steps, body, init)
        return logits, nats, state


def score_steps(model: StepModel, ids: np.ndarray, streams: int = 1, chunk: int = 256) -> dict:
    """Progressive score of ids int[N] through an exported step, in the Scorer's stream layout."""
    streams = streams if (len(ids) - 1) // streams >= 1 else 1
    view = stream_view(np.asarray(ids), streams)  # [B, L + 1]
    length = view.shape[1] - 1
    state, total = model.zeros(streams), 0.0
    for start in range(0, length, chunk):
        w = view[:, start:min(length, start + chunk) + 1].astype(np.int32)  # [B, t + 1]
        _, nats, state = model.run(w[:, :-1], w[:, 1:], state)
        total += nats
    return summary(total, streams * length)


# ============================================================================================ Keras route

def score_keras(model_cfg, vocab_size: int, ckpt: Path, ids: np.ndarray, streams: int = 1, chunk: int = 256) -> dict:
    """Progressive score of a checkpoint with fit's own `Scorer` (streams=8: fit's validation figure)."""
    from tfchar.checkpoint import load_weights
    from tfchar.evaluation import Scorer

    scorer = Scorer(model_cfg, vocab_size, streams=streams, chunk=chunk)
    load_weights(scorer.model, ckpt)
    return scorer.score(None, ids)


def dynamic_score(model_cfg, vocab_size: int, ckpt: Path, ids: np.ndarray, streams: int = 1, segment: int = 50,
                  lr: float = 3e-4, optimizer: str = "adam", grad_clip: float = 5.0) -> dict:
    """Dynamic evaluation: score each segment, then one gradient step on it (in memory only).

    Args:
        model_cfg, vocab_size, ckpt: the model and the checkpoint its weights start from (never written).
        ids: int[N] token ids.
        streams: B contiguous rows adapted together (1 = one sequential pass, as Krause et al.).
        segment: characters per row between updates (truncated BPTT length of the adaptation).
        lr: learning rate of the adaptation; optimizer: "sgd" or "adam".
        grad_clip: global gradient norm clip (as training's default).

    Returns:
        `summary` dict of the dynamic score plus "updates" (gradient steps taken).
    """
    import keras

    from tfchar.checkpoint import load_weights
    from tfchar.models import build_from_config, reset_states
    from tfchar.train_step import token_nll

    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"--dynamic_optimizer {optimizer!r} is not one of: {', '.join(OPTIMIZERS)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"--dynamic_lr {lr} must be a positive number, e.g. 0.001")
    if segment < 1:
        raise ConfigError(f"--segment {segment} must be >= 1, e.g. 50")
    streams = streams if (len(ids) - 1) // streams >= 1 else 1
    model = build_from_config(model_cfg, vocab_size, batch_size=streams, seq_length=None, stateful=True)
    load_weights(model, ckpt)
    opt = keras.optimizers.SGD(lr) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    variables = model.trainable_variables

    @tf.function(input_signature=[tf.TensorSpec((streams, None), tf.int32)] * 2, reduce_retracing=True)
    def adapt(x, y):
        # The carried state enters as a constant (a variable read), so gradients stop at the segment start.
        with tf.GradientTape() as tape:
            nll = token_nll(y, model(x, training=False))  # [B, t]; scored before this update
            loss = tf.reduce_mean(nll)
        grads = tape.gradient(loss, variables)
        if grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, grad_clip)
        opt.apply_gradients(zip(grads, variables))
        return tf.reduce_sum(tf.cast(nll, tf.float64))

    view = stream_view(np.asarray(ids), streams)  # [B, L + 1]
    length = view.shape[1] - 1
    reset_states(model)
    total, updates = 0.0, 0
    for start in range(0, length, segment):
        w = view[:, start:min(length, start + segment) + 1].astype(np.int32)  # [B, t + 1]
        total += float(adapt(w[:, :-1], w[:, 1:]))
        updates += 1
    return {**summary(total, streams * length), "updates": updates}


# ============================================================================================ models and texts

class Target:
    """What MODEL names: a run checkpoint (Keras) or an exported step, with its vocabulary and config.

    Attributes:
        kind: "keras" or "step"; vocab: `Vocab`; cfg: `Config` (None when no config.toml is near);
        ckpt: checkpoint dir (keras); step: `StepModel` (step); label: a short description.
    """

    def __init__(self, kind, vocab, cfg=None, ckpt=None, step=None, label=""):
        self.kind, self.vocab, self.cfg, self.ckpt, self.step, self.label = kind, vocab, cfg, ckpt, step, label


def open_target(path) -> Target:
    """Resolve MODEL exactly as `python -m tfchar.sample` does (`sampler.open_model`), for scoring."""
    from tfchar.sampler import open_model

    p = Path(path)
    route = open_model(p)  # validates the path, the signatures and reads the vocabulary
    if hasattr(route, "gen"):  # a run dir or checkpoint: score the Keras model itself
        from tfchar.checkpoint import load_run

        cfg, vocab, ckpt = load_run(p)
        return Target("keras", vocab, cfg=cfg, ckpt=ckpt, label=f"{ckpt} (Keras checkpoint)")
    kind = "SavedModel" if hasattr(route, "model") else "TFLite"
    return Target("step", route.vocab, cfg=_export_config(p), step=step_model(route, p), label=f"{p} ({kind} step)")


def step_model(route, path) -> StepModel:
    """The `step` of a `sampler.open_model(path)` route as a `StepModel` (run dirs: the in-process generator)."""
    if hasattr(route, "gen"):  # run dir: the CharGenerator the sampler built from the checkpoint
        return StepModel(route.gen.step, route.gen.state_size, route.gen.vocab_size, graph=True)
    if hasattr(route, "model"):  # SavedModel: its `step` concrete function, run in a graph loop
        return saved_model_steps(route.model, len(route.vocab))
    return tflite_steps(path, len(route.vocab))


def saved_model_steps(loaded, vocab_size: int) -> StepModel:
    """A loaded SavedModel's `step` signature as a `StepModel` (one graph loop per chunk)."""
    sig = loaded.signatures["step"]
    model = StepModel(sig, sig.structured_input_signature[1]["state"].shape[1], vocab_size, graph=True)
    model.owner = loaded  # the signature's variables live only as long as the loaded object
    return model


def tflite_steps(path, vocab_size: int) -> StepModel:
    """A .tflite file's `step` signature (LiteRT interpreter, no delegate) as a `StepModel`."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("step")
    return StepModel(runner, int(runner.get_input_details()["state"]["shape_signature"][1]), vocab_size, graph=False)


def _export_config(p: Path):
    """The export's config.toml ([data], [model]) for an export dir, its saved_model/ or its .tflite."""
    for d in (p, p.parent, p.parent.parent) if p.is_dir() else (p.parent,):
        if (d / "config.toml").is_file() and (d / "vocab.json").is_file():
            return config_lib.load_resolved(d / "config.toml")
    return None


def split_ids(target: Target, split: str, log=lambda s: None) -> np.ndarray:
    """A split of the model's own corpus (`load_corpus(cfg.data)`), checked against the model's vocabulary."""
    from tfchar.corpus import load_corpus

    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} is not one of: {', '.join(SPLITS)}")
    if target.cfg is None:
        raise ConfigError(f"--split needs the model's config.toml, and none is next to it: give an export dir or a "
                          f"run dir, or evaluate a file with --text FILE")
    corpus = load_corpus(target.cfg.data, log)
    if corpus.vocab.tokens != target.vocab.tokens:
        raise DataError(f"the corpus {target.cfg.data.source!r} now has a different vocabulary than the model: "
                        f"it changed since training; evaluate a file with --text FILE")
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


# ============================================================================================ the whole job

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
        dynamic, dynamic_lr, segment, dynamic_optimizer: dynamic evaluation (Keras route only).
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
    target = open_target(model_path)
    if dynamic and target.kind != "keras":
        raise ConfigError(f"--dynamic needs trainable weights: give the run dir instead of the exported model "
                          f"{model_path} (SavedModel and TFLite exports hold frozen weights)")
    if split is not None:
        ids, skipped, distinct, what = split_ids(target, split, log), 0, [], f"{split} split of {target.cfg.data.source}"
    else:
        ids, skipped, distinct = text_ids(target.vocab, text)
        what = str(text)
    if len(ids) < 2:
        raise DataError(f"{what} has {len(ids)} scorable character(s): at least 2 are needed")
    log(f"scoring {what} ({len(ids):,} characters) with {target.label}, {streams} stream(s)")
    if target.kind == "keras":
        static = score_keras(target.cfg.model, len(target.vocab), target.ckpt, ids, streams, chunk)
    else:
        static = score_steps(target.step, ids, streams, chunk)
    result = {**static, "skipped": skipped, "skipped_chars": distinct, "text": what, "model": target.label,
              "streams": streams}
    if dynamic:
        log(f"dynamic evaluation: {dynamic_optimizer}, lr {dynamic_lr:g}, segment {segment}")
        result["dynamic"] = {**dynamic_score(target.cfg.model, len(target.vocab), target.ckpt, ids, streams, segment,
                                             dynamic_lr, dynamic_optimizer),
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
