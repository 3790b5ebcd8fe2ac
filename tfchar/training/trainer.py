"""The fit loop: data, model, compiled steps, evaluation, checkpoints, resume, TensorBoard, Ctrl-C.

A custom loop rather than `model.fit`, because char-rnn training needs what `fit` cannot express
cleanly: recurrent state carried across batches and reset per epoch, validation every N steps on a
separate stateful copy (so training state is never disturbed), checkpoints named by fractional epoch and
validation loss, resume at the exact batch of an epoch (with optimizer, schedule and carried state),
backup checkpoints on a wall-clock interval, a checkpoint on Ctrl-C or SIGTERM, and one writer per run dir.

`fit` runs named steps around one `Session` (everything a run holds while it trains) and its `TrainState`
(what a checkpoint records):

    build -> restore -> prepare -> run_epoch ... (evaluate_and_save every eval_every steps and at epoch ends)
          -> finish

Before each step the learning rate is set from where the run stands (`schedule.learning_rate`), and after
it the run stops if its time budget is spent (`budget.Budget`): a timed run ends with an evaluation of its
final checkpoint, so what the user waits is the budget.

Example:
    result = fit(load_config("pipelines/tiny_shakespeare.toml"), Path("runs/tiny_shakespeare"))
    result["best_val_bpc"]
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from tfchar.core import config as config_lib
from tfchar.core.errors import (CheckpointError, ConfigError, DataError, StorageError, TrainingDiverged,
                                 TrainingInterrupted)
from tfchar.core.vocab import Vocab
from tfchar.data import pipeline as data_lib
from tfchar.data.corpus import Corpus, describe, load_corpus
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.nn.models import build_from_config, get_states, param_count, reset_states, set_states
from tfchar.ops.metrics import bpc
from tfchar.runtimes.keras import KerasRuntime, KerasScorer
from tfchar.training import finetune
from tfchar.training.distribute import (distribute_dataset, is_chief, make_distributed_train_step, make_strategy,
                                        per_replica_batch)
from tfchar.training.budget import Budget
from tfchar.training.lock import RunLock
from tfchar.training.progress import CountBar, ProgressBar
from tfchar.training.schedule import HostRate, Position, learning_rate
from tfchar.training.signals import StopFlag
from tfchar.training.step import make_optimizer, make_train_step
from tfchar.training.summaries import Summaries

TRAIN_SUMMARY_EVERY = 20  # steps per TensorBoard training point (averaged over them)


@dataclass
class TrainState:
    """The progress a checkpoint records (`trainer_state.json`) and resume restores."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val_loss: float | None = None
    val_loss: float | None = None
    elapsed: float = 0.0  # training seconds so far, evaluations included, across resumes
    eval_step: int | None = None  # step of the last evaluation, -1: none yet (None in older checkpoints: this one's)
    eval_seconds: float = 0.0  # the longest evaluation so far: the time budget's reserve for the final one

    @classmethod
    def from_json(cls, data: dict) -> "TrainState":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Window:
    """Training steps since the last TensorBoard point: their count, summed loss and gradient norm."""

    start: float = field(default_factory=time.time)
    steps: int = 0
    loss: float = 0.0
    norm: float = 0.0


@dataclass
class Session:
    """Everything one run holds while it trains (built by `build`, completed by `restore` and `prepare`)."""

    cfg: config_lib.Config
    run_dir: Path
    log: Callable[[str], None]
    corpus: Corpus
    steps_per_epoch: int
    loss_weights: object  # float32[T] position weights, or None
    strategy: object
    chief: bool
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: HostRate
    budget: Budget
    n_params: int
    state: TrainState = field(default_factory=lambda: TrainState(eval_step=-1))
    rnn_state: list | None = None  # carried state to put back when a resumed epoch continues
    train_step: Callable | None = None
    scorer: KerasScorer | None = None
    preview: KerasRuntime | None = None  # samples the TensorBoard text at each evaluation
    summaries: Summaries | None = None
    history: object = None  # history.jsonl, open for appending
    last_eval_step: int = -1
    out_of_time: bool = False  # the time budget is spent: the run ends with a final evaluation
    stepped: bool = False  # a step has run in this process (its first traced the compiled step)
    started: float = field(default_factory=time.time)
    elapsed_before: float = 0.0
    stop: StopFlag | None = None  # SIGINT/SIGTERM while training (fit's)
    lock: RunLock | None = None  # the run dir's writer lock (the chief's)
    last_save: float = field(default_factory=time.monotonic)  # when the newest checkpoint was written
    source: finetune.Source | None = None  # what train.init_from names (a fine-tuning run)
    progress: Callable[[int, float, str], None] | None = None  # called at each evaluation (the Python API)

    @property
    def distributed(self) -> bool:
        return self.cfg.train.strategy != "default"

    @property
    def stateful(self) -> bool:
        return self.cfg.train.scheme == "stateful"

    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def elapsed(self) -> float:
        """Training seconds, evaluations included, counting the time of the runs this one resumes."""
        return self.elapsed_before + time.time() - self.started

    def epoch_float(self) -> float:
        return self.state.epoch + self.state.batch_in_epoch / self.steps_per_epoch

    def done(self) -> bool:
        """max_steps reached or the time budget spent (the epochs loop ends by itself)."""
        return self.out_of_time or bool(self.cfg.train.max_steps and self.state.step >= self.cfg.train.max_steps)

    def close(self) -> None:
        """Close the history file and the TensorBoard writers, release the lock (once; also after an error)."""
        try:
            if self.history is not None and not self.history.closed:
                self.history.close()
            if self.summaries is not None:
                self.summaries.close()
                self.summaries = None
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def carried_state(self):
        """The carried RNN state to checkpoint; under a strategy it lives on each replica's device: None."""
        return get_states(self.model) if self.stateful and not self.distributed else None


# ============================================================================================ the steps

def build(cfg: config_lib.Config, run_dir: Path, log) -> Session:
    """Seed, load the corpus, check it fits, and build the model and optimizer (under the strategy)."""
    t, d, m = cfg.train, cfg.data, cfg.model
    keras.utils.set_random_seed(t.seed)
    source = finetune.open_source(t.init_from) if t.init_from and not t.resume else None
    corpus = run_corpus(cfg, run_dir, source, log)
    log(describe(corpus))
    data_lib.check_fits(len(corpus.train), d.batch_size, d.seq_length, "train", t.scheme, t.stride)
    data_lib.check_fits(len(corpus.val), 1, d.seq_length, "validation")
    steps_per_epoch = data_lib.num_batches(len(corpus.train), d.batch_size, d.seq_length, t.scheme, t.stride)
    strategy = make_strategy(t.strategy)
    distributed = t.strategy != "default"
    chief = is_chief(strategy)
    if not chief:  # other workers of a multi-worker run train in lockstep but write nothing of the run's
        run_dir = Path(tempfile.mkdtemp(prefix="tfchar-worker-"))
    with strategy.scope():
        # The fused CPU layers' gradients are not yet verified under replica contexts: Keras layers are.
        model = build_from_config(m, len(corpus.vocab), batch_size=per_replica_batch(strategy, d.batch_size),
                                  seq_length=d.seq_length, stateful=t.scheme == "stateful", seed=t.seed,
                                  fast="keras" if distributed else m.implementation)
        schedule = HostRate(t.learning_rate)
        optimizer = make_optimizer(t, schedule, model.trainable_variables)
    if distributed:
        log(f"strategy {t.strategy}: {strategy.num_replicas_in_sync} replicas x "
            f"{per_replica_batch(strategy, d.batch_size)} streams")
    s = Session(cfg, run_dir, log, corpus, steps_per_epoch, data_lib.loss_weights(t.scheme, d.seq_length, t.burn_in),
                strategy, chief, model, optimizer, schedule, _budget(t, steps_per_epoch), param_count(model),
                source=source)
    _log_model(s)
    return s


def _budget(t: config_lib.TrainConfig, steps_per_epoch: int) -> Budget:
    """The run's horizons: the time budget, and max_steps or the epochs' steps, whichever is fewer."""
    steps = t.epochs * steps_per_epoch
    return Budget(seconds=t.time_budget, total_steps=min(t.max_steps, steps) if t.max_steps else steps)


def run_corpus(cfg: config_lib.Config, run_dir: Path, source, log) -> Corpus:
    """The text as ids of the run's vocabulary: a resumed run's vocab.json, a fine-tuning run's (the source's
    grown by the text's new characters, `finetune.grown_vocab`), else the text's own."""
    corpus = load_corpus(cfg.data, log)
    if cfg.train.resume and (run_dir / "vocab.json").is_file():
        saved = Vocab.load(run_dir / "vocab.json", cfg.data.unit)
        try:
            return load_corpus(cfg.data, vocab=saved) if saved != corpus.vocab else corpus
        except DataError:
            raise CheckpointError(f"the text of {cfg.data.source} changed since {run_dir} was trained (different "
                                  f"vocabulary); start a new run with --train.init_from={run_dir}") from None
    if source is not None:
        vocab, note = finetune.grown_vocab(source.vocab, corpus.vocab)
        log(note)
        return load_corpus(cfg.data, vocab=vocab)
    return corpus


def _log_model(s: Session) -> None:
    m = s.cfg.model
    s.log(f"model: {m.num_layers}x{m.rnn_size} {m.cell}, embedding {m.embedding_dim}, dropout {m.dropout}: "
          f"{s.n_params:,} parameters; {len(s.corpus.train):,} training characters")
    ratio = s.n_params / len(s.corpus.train)
    if ratio > 10:
        s.log(f"warning: the model has {ratio:.0f}x more parameters than the text has characters: it will overfit "
              f"(char-rnn's rule of thumb: same order of magnitude); use dropout or a smaller model")
    elif ratio < 0.01:
        s.log(f"warning: the model has {1 / ratio:.0f}x fewer parameters than the text has characters: it will "
              f"underfit (char-rnn's rule of thumb: same order of magnitude); a larger rnn_size should help")


def restore(s: Session) -> None:
    """Lock the run dir; resume from its newest checkpoint that loads, or start from `init_from`'s weights;
    write config and vocab."""
    t, d = s.cfg.train, s.cfg.data
    if s.chief:
        _lock(s)
    if t.resume:
        if Vocab.load(s.run_dir / "vocab.json", d.unit) != s.corpus.vocab:
            raise CheckpointError(f"the text of {d.source} changed since {s.run_dir} was trained (different "
                                  f"vocabulary); start a new run with --train.init_from={s.run_dir}")
        _resume(s)
    elif s.source is not None:
        finetune.check_shape(s.cfg.model, s.source)
        with s.strategy.scope():
            finetune.load_source_weights(s.model, s.source)
        s.log(f"initialised weights from {s.source.weights}")
    config_lib.save(s.cfg.replace(train={"resume": False, "run_dir": str(s.run_dir)}), s.run_dir / "config.toml")
    s.corpus.vocab.save(s.run_dir / "vocab.json")


def _lock(s: Session) -> None:
    """Take the run dir's writer lock, then remove what killed writers left half-written (none is alive now)."""
    s.lock = RunLock(s.run_dir, s.log).acquire()
    if not s.cfg.train.resume and ckpt_lib.checkpoints(s.run_dir):
        raise ConfigError(f"{s.run_dir} already holds a run: continue it with --train.resume=true, or pick "
                          f"another --train.run_dir")
    ckpt_lib.clean_temporaries(s.ckpt_root)


def _resume(s: Session) -> None:
    """Load the newest checkpoint that loads (`last` first); say so in one line when `last` does not."""
    candidates = ckpt_lib.checkpoints(s.run_dir)
    if not candidates:
        raise CheckpointError(f"{s.run_dir} has no checkpoint yet: train it with python -m tfchar.fit first")
    failed = []
    for ckpt in candidates:
        try:
            _load_checkpoint(s, ckpt)
        except CheckpointError as e:
            failed.append(f"{ckpt.name} ({e})")
            continue
        if failed:
            s.log(f"note: {failed[0]} does not load; resuming from {ckpt.name}, the newest checkpoint that does"
                  + (f" ({len(failed)} skipped)" if len(failed) > 1 else ""))
        s.log(f"resuming {s.run_dir} from {ckpt.name}: step {s.state.step}, epoch {s.state.epoch} "
              f"batch {s.state.batch_in_epoch}")
        return
    raise CheckpointError(f"no checkpoint of {s.run_dir} loads ({len(failed)} tried; the newest, {failed[0]}); "
                          f"start a new run, or --train.init_from= one of its checkpoints that loads")


def _load_checkpoint(s: Session, ckpt: Path) -> None:
    """Weights, optimizer, progress and carried state of one checkpoint (CheckpointError if any is corrupt)."""
    state = TrainState.from_json(ckpt_lib.read_trainer_state(ckpt))
    with s.strategy.scope():
        ckpt_lib.load_weights(s.model, ckpt)
        ckpt_lib.load_optimizer(s.optimizer, s.model, ckpt)
    s.rnn_state = ckpt_lib.load_rnn_state(ckpt) if s.stateful and not s.distributed else None
    s.state = state
    s.budget.record_eval(state.eval_seconds)
    s.last_eval_step = state.step if state.eval_step is None else state.eval_step


def prepare(s: Session) -> None:
    """The compiled step, the validation scorer, the sampler of the TensorBoard preview, the logs."""
    t, m = s.cfg.train, s.cfg.model
    vocab_size = len(s.corpus.vocab)
    if s.distributed:
        s.train_step = make_distributed_train_step(s.strategy, s.model, s.optimizer, t.grad_clip, s.loss_weights)
    else:
        s.train_step = make_train_step(s.model, s.optimizer, t.grad_clip, s.loss_weights)
        batch = tf.TensorSpec([s.cfg.data.batch_size, s.cfg.data.seq_length], tf.int32)
        s.train_step.get_concrete_function(batch, batch)  # traced before the clock starts: the budget trains
    s.scorer = KerasScorer(m, vocab_size)
    s.scorer.score(s.model, s.corpus.val, limit=1)  # traces its step now, before the run's clock starts
    if t.sample_length and s.chief:
        s.preview = _make_preview(s)
    if t.time_budget and s.chief:
        _rehearse_evaluation(s)
    s.summaries = Summaries(s.run_dir / "logs", s.cfg, s.n_params)
    s.history = open(s.run_dir / "history.jsonl", "a", encoding="utf-8")
    s.started, s.elapsed_before = time.time(), s.state.elapsed
    s.last_save = time.monotonic()


def run_epoch(s: Session, stop: StopFlag) -> None:
    """Train through the rest of the current epoch (or up to max_steps), evaluating every eval_every steps."""
    t, d = s.cfg.train, s.cfg.data
    if s.rnn_state is not None and s.state.batch_in_epoch > 0:
        set_states(s.model, s.rnn_state)  # resumed mid-epoch: continue the carried state
    elif s.stateful:
        reset_states(s.model)
    s.rnn_state = None
    last_batch = s.state.batch_in_epoch + t.max_steps - s.state.step if t.max_steps else None

    args = (s.corpus.train, d.batch_size, d.seq_length, t.scheme, t.seed, s.state.epoch, t.stride,
            s.state.batch_in_epoch, last_batch)
    if s.distributed:  # tf.data, which the strategy splits over its replicas
        ds = distribute_dataset(s.strategy, lambda: data_lib.make_dataset(*args), d.batch_size)
    else:  # made in this thread: a spent time budget may stop the loop at any batch without a stall
        ds = data_lib.epoch_batches(*args)
    bar = ProgressBar(s.steps_per_epoch, s.state.batch_in_epoch, f"epoch {s.state.epoch + 1}/{t.epochs}")
    window = Window()
    mark = time.perf_counter()
    for x, y in ds:  # the dataset ends at max_steps (stop=last_batch); only a spent time budget breaks out
        _set_rate(s)
        loss, norm = s.train_step(x, y)
        _count_step(s, float(loss), float(norm), bar, window)
        if s.stepped:  # the session's first step traces the compiled step: not what the next one will cost
            s.budget.record_step(time.perf_counter() - mark)
        s.stepped = True
        if stop.stop:
            _save_interrupted(s)
        if _eval_due(s):
            bar.close()
            _evaluate(s, "eval")
        elif _backup_due(s):
            save_backup(s)
            if stop.stop:  # the signal came during the backup: stop before another step
                _save_interrupted(s)
        if s.done() or _time_is_up(s):
            bar.close()
            break
        mark = time.perf_counter()
    if s.state.batch_in_epoch >= s.steps_per_epoch:
        s.state.epoch += 1
        s.state.batch_in_epoch = 0
    if s.last_eval_step != s.state.step and (s.done() or s.budget.eval_fits(s.elapsed())):
        reason = "time budget spent:" if s.out_of_time else "max_steps reached:" if s.done() else "end of epoch"
        _evaluate(s, reason)
    _time_is_up(s)  # an epoch end's evaluation may have spent the rest of the budget: then it was the final one


def _set_rate(s: Session) -> None:
    """Set the learning rate of the coming step from the step, the epoch and the run's progress."""
    progress = s.budget.progress(s.state.step, s.elapsed())
    s.schedule.set(learning_rate(s.cfg.train, Position(s.state.step, s.state.epoch, progress)))


def _eval_due(s: Session) -> bool:
    """Every eval_every steps and every eval_period seconds, except at an epoch's end (evaluated anyway) and
    where the time budget leaves room only for the final evaluation."""
    t = s.cfg.train
    if s.state.batch_in_epoch >= s.steps_per_epoch:
        return False
    by_steps = bool(t.eval_every) and s.state.step % t.eval_every == 0
    by_time = bool(t.eval_period) and s.elapsed() // t.eval_period > s.state.elapsed // t.eval_period
    return (by_steps or by_time) and s.budget.eval_fits(s.elapsed())


def _time_is_up(s: Session) -> bool:
    """True (and remembered) when the time budget leaves no room for another step and the final evaluation."""
    s.out_of_time = s.out_of_time or s.budget.spent(s.elapsed())
    return s.out_of_time


def _rehearse_evaluation(s: Session) -> None:
    """A timed run: do an evaluation's work once before the clock starts (score, write a checkpoint into a
    scratch dir, sample), so the reserve for the final evaluation is known from the first step."""
    started = time.time()
    s.scorer.score(s.model, s.corpus.val, limit=s.cfg.train.eval_chars)
    with tempfile.TemporaryDirectory(dir=s.run_dir, prefix=".rehearsal-") as scratch:
        ckpt_lib.save_checkpoint(Path(scratch), "rehearsal", s.model, s.optimizer, s.state.to_json())
    _preview_text(s)
    s.budget.eval_estimate = time.time() - started


def _count_step(s: Session, loss: float, norm: float, bar: ProgressBar, window: Window) -> None:
    """Advance the state by one step; show progress; log a TensorBoard point every TRAIN_SUMMARY_EVERY steps."""
    s.state.step += 1
    s.state.batch_in_epoch += 1
    if not math.isfinite(loss):
        _diverged(s, f"the training loss became {loss}")
    window.steps += 1
    window.loss += loss
    window.norm += norm
    now = time.time()
    d = s.cfg.data
    speed = window.steps * d.batch_size * d.seq_length / max(now - window.start, 1e-9)
    bar.update(s.state.batch_in_epoch, loss, speed)
    if window.steps >= TRAIN_SUMMARY_EVERY or s.state.batch_in_epoch == s.steps_per_epoch:
        s.summaries.train(s.state.step, window.loss / window.steps, window.norm / window.steps, s.schedule.get(), speed)
        window.start, window.steps, window.loss, window.norm = now, 0, 0.0, 0.0


def _diverged(s: Session, what: str) -> None:
    last = s.ckpt_root / "last"
    keep = f"; the last good checkpoint stays in {last.resolve()}" if last.exists() else ""
    raise TrainingDiverged(f"{what} at step {s.state.step}{keep}; lower train.learning_rate or "
                           f"train.grad_clip and train again")


def _save_interrupted(s: Session) -> None:
    """Ctrl-C or SIGTERM: checkpoint where the run stands (no evaluation) and stop with the resume command."""
    s.state.elapsed = s.elapsed()
    name = ckpt_lib.checkpoint_name(s.epoch_float(), s.state.val_loss or float("nan"))
    path = ckpt_lib.save_checkpoint(s.ckpt_root, name + "_interrupted", s.model, s.optimizer, s.state.to_json(),
                                    s.carried_state())
    stopped = TrainingInterrupted(f"stopped by {s.stop.name} at step {s.state.step}; checkpoint {path}; resume "
                                  f"with:\n  python -m tfchar.fit --train.resume=true --train.run_dir={s.run_dir}",
                                  s.stop.exit_code)
    stopped.run_dir = s.run_dir  # for the Python API, which hands back the run
    raise stopped


def _missed_evaluation(s: Session) -> bool:
    """Resumed where an evaluation was due but did not happen (a signal stopped it): do it first."""
    every, step = s.cfg.train.eval_every, s.state.step
    due = (every and step % every == 0) or s.state.batch_in_epoch == 0
    return bool(step > 0 and due and s.last_eval_step != step and not s.done())


def _backup_due(s: Session) -> bool:
    every = s.cfg.train.backup_every_s
    return bool(every) and s.chief and time.monotonic() - s.last_save >= every


def save_backup(s: Session) -> None:
    """A backup checkpoint of where the run stands: no validation, never `best`, the previous backup replaced."""
    s.state.elapsed = s.elapsed()
    ckpt_lib.save_backup(s.ckpt_root, s.model, s.optimizer, s.state.to_json(), s.carried_state())
    s.last_save = time.monotonic()


class _EvaluationStopped(Exception):
    """A signal arrived during an evaluation: its figure is not needed any more."""


def _evaluate(s: Session, reason: str) -> None:
    """`evaluate_and_save`, then stop if a signal arrived meanwhile (during the scoring: without waiting for it)."""
    try:
        evaluate_and_save(s, reason)
    except _EvaluationStopped:
        s.log(f"{reason} step {s.state.step}: evaluation stopped by {s.stop.name}")
    s.last_save = time.monotonic()
    if s.stop is not None and s.stop.stop:
        _save_interrupted(s)


def _score_validation(s: Session) -> dict:
    """The validation figure of the current weights (train.eval_chars of it), with a progress bar when long."""
    bar = CountBar("validation")

    def progress(done: int, total: int) -> None:
        bar(done, total)
        if s.stop is not None and s.stop.stop:
            raise _EvaluationStopped

    try:
        return s.scorer.score(s.model, s.corpus.val, limit=s.cfg.train.eval_chars, progress=progress)
    finally:
        bar.close()


def evaluate_and_save(s: Session, reason: str) -> None:
    """Score the validation split, write a checkpoint named by it (and `best` if it is), log a sample."""
    s.last_eval_step = s.state.step
    if not s.chief:
        return
    started = time.time()
    val = _score_validation(s)
    if not math.isfinite(val["nats"]):  # weights already broken: never checkpoint them
        _diverged(s, f"the validation loss became {val['nats']}")
    is_best = s.state.best_val_loss is None or val["nats"] < s.state.best_val_loss
    if is_best:
        s.state.best_val_loss = val["nats"]
    s.state.val_loss = val["nats"]
    s.state.eval_step = s.state.step
    s.state.elapsed = s.elapsed()
    name = ckpt_lib.checkpoint_name(s.epoch_float(), val["nats"])
    path = ckpt_lib.save_checkpoint(s.ckpt_root, name, s.model, s.optimizer, s.state.to_json(), s.carried_state())
    if is_best:
        ckpt_lib.point(s.ckpt_root, "best", path.name)
    ckpt_lib.prune(s.ckpt_root, s.cfg.train.keep_checkpoints)
    sample = _preview_text(s)
    s.summaries.validation(s.state.step, val, sample)
    record = {"step": s.state.step, "epoch": round(s.epoch_float(), 4), "val_loss": val["nats"],
              "val_bpc": val["bpc"], "val_chars": val["chars"], "time": round(s.state.elapsed, 1),
              "checkpoint": path.name}
    _append_history(s, record)
    s.log(f"{reason} step {s.state.step} (epoch {s.epoch_float():.2f}): val loss {val['nats']:.4f} nats/char, "
          f"{val['bpc']:.4f} bpc{' (best)' if is_best else ''} -> {path.name}")
    if s.progress is not None:  # the Python API's hook: a notebook plots the curve as it comes
        s.progress(s.state.step, val["bpc"], sample or "")
    s.budget.record_eval(time.time() - started)
    s.state.eval_seconds = s.budget.reserve


def _make_preview(s: Session) -> KerasRuntime:
    """The sampler of the TensorBoard text: the exported generator reading the training model's weights.

    One sample of one character traces its graph now, before the run's clock starts, so that the first
    evaluation costs what every later one does (a few hundred generator steps)."""
    preview = KerasRuntime(s.model, s.corpus.vocab, s.cfg)
    preview.generate(s.corpus.vocab.encode("\n", unknown="skip"), 1, seed=s.cfg.train.seed)
    return preview


def _append_history(s: Session, record: dict) -> None:
    try:
        s.history.write(json.dumps(record) + "\n")
        s.history.flush()
    except OSError as e:
        raise StorageError(f"cannot write {s.run_dir / 'history.jsonl'} ({e.strerror}); the checkpoints are intact: "
                           f"free space, then resume with --train.resume=true") from None


def _preview_text(s: Session) -> str | None:
    """A sample of the current weights (after a newline), with the exported sampler, for TensorBoard."""
    if s.preview is None:
        return None
    s.preview.refresh()  # copies the training model's weights into the generator: its state is not touched
    t = s.cfg.train
    codepoints = s.preview.generate(s.corpus.vocab.encode("\n", unknown="skip"), t.sample_length, seed=t.seed)[0]
    return s.corpus.vocab.decode_codepoints(codepoints)


def finish(s: Session) -> dict:
    """Close the logs and write result.json (the chief); other workers delete their scratch dir."""
    s.close()
    if not s.chief:
        shutil.rmtree(s.run_dir, ignore_errors=True)
        return {"run_dir": None, "steps": s.state.step, "chief": False}
    best = ckpt_lib.resolve_checkpoint(s.run_dir, "best")
    result = {"run_dir": str(s.run_dir), "best_checkpoint": str(best), "best_val_loss": s.state.best_val_loss,
              "best_val_bpc": bpc(s.state.best_val_loss), "steps": s.state.step, "epochs": s.epoch_float(),
              "params": s.n_params, "wall_time_s": round(s.elapsed(), 1)}
    (s.run_dir / "result.json").write_text(json.dumps(result, indent=1))
    s.log(f"done: best val loss {result['best_val_loss']:.4f} nats/char ({result['best_val_bpc']:.4f} bpc) in "
          f"{result['wall_time_s']:.0f}s; best checkpoint {best}")
    return result


# ============================================================================================ the whole run

def fit(cfg: config_lib.Config, run_dir: Path, log=print, progress=None) -> dict:
    """Train the model `cfg` describes, writing everything into `run_dir`. Returns the run's summary.

    `progress(step, val_bpc, sample)` is called after each evaluation and its checkpoint. SIGINT/SIGTERM while
    training: a checkpoint, then `TrainingInterrupted`; before training starts or a second time:
    `signals.Abort` at once. A write that fails: `StorageError` naming the file.
    """
    with StopFlag() as stop:
        s = build(cfg, Path(run_dir), log)
        s.stop, s.progress = stop, progress
        try:
            restore(s)
            prepare(s)
            with stop.deferring():
                if _missed_evaluation(s):
                    _evaluate(s, "eval")
                while s.state.epoch < cfg.train.epochs and not s.done():
                    run_epoch(s, stop)
                if s.last_eval_step != s.state.step:
                    _evaluate(s, "final")
            return finish(s)
        except OSError as e:  # a write outside the checkpoints (logs, result.json, config.toml) failed
            raise _storage_error(e) from None
        finally:
            s.close()


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def _storage_error(e: OSError) -> Exception:
    """An OSError of a file write as a one-line `StorageError` naming the file (other errors unchanged)."""
    if not e.filename or e.errno not in WRITE_ERRORS:
        return e
    return StorageError(f"cannot write {e.filename} ({e.strerror}); the checkpoints written before are intact: "
                        f"free space or fix the folder's permissions, then resume with --train.resume=true")
