"""The fit loop: data, model, compiled steps, evaluation, checkpoints, resume, TensorBoard, Ctrl-C.

A custom loop rather than `model.fit`, because char-rnn training needs what `fit` cannot express
cleanly: recurrent state carried across batches and reset per epoch, validation every N steps on a
separate stateful copy (so training state is never disturbed), checkpoints named by fractional epoch and
validation loss, resume at the exact batch of an epoch (with optimizer, schedule and carried state),
and a checkpoint on Ctrl-C.

Example:
    result = fit(load_config("pipelines/tiny_shakespeare.toml"), run_name="tiny_shakespeare")
    result["best_val_bpc"]
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import signal
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfchar import checkpoint as ckpt_lib
from tfchar import config as config_lib
from tfchar import data as data_lib
from tfchar.corpus import describe, load_corpus
from tfchar.errors import CheckpointError, ConfigError, TrainingDiverged, TrainingInterrupted
from tfchar.distribute import distribute_dataset, is_chief, make_distributed_train_step, make_strategy, per_replica_batch
from tfchar.evaluation import Scorer, bpc
from tfchar.models import build_from_config, get_states, param_count, reset_states, set_states
from tfchar.progress import ProgressBar
from tfchar.summaries import Summaries
from tfchar.train_step import make_train_step
from tfchar.vocab import Vocab


@keras.saving.register_keras_serializable("tfchar")
class EpochDecay(keras.optimizers.schedules.LearningRateSchedule):
    """char-rnn's schedule: full rate for `decay_after` epochs, then times `decay` after every epoch.

    Args:
        base: initial learning rate.
        decay: factor per epoch once decay starts (1 = constant).
        decay_after: epochs at the full rate.
        steps_per_epoch: optimizer steps per epoch (turns the optimizer's step count into epochs).
    """

    def __init__(self, base: float, decay: float, decay_after: int, steps_per_epoch: int):
        self.base, self.decay, self.decay_after, self.steps_per_epoch = base, decay, decay_after, steps_per_epoch

    def __call__(self, step):
        epoch = tf.math.floordiv(tf.cast(step, tf.float32), float(self.steps_per_epoch))
        return self.base * tf.pow(self.decay, tf.maximum(0.0, epoch - self.decay_after + 1.0))

    def get_config(self):
        return {"base": self.base, "decay": self.decay, "decay_after": self.decay_after,
                "steps_per_epoch": self.steps_per_epoch}


def default_run_name(cfg: config_lib.Config, pipeline: str | None) -> str:
    if cfg.train.name:
        return cfg.train.name
    if pipeline:
        return Path(pipeline).stem
    src = cfg.data.source
    if src.startswith("tfds:"):
        return src[5:].split("/")[0].split(":")[0]
    p = Path(src.rstrip("/"))
    return (p.parent.name if p.name == "input.txt" and p.parent.name else p.stem) or "run"


def resolve_config(pipeline: str | None, overrides: list[str]) -> tuple[config_lib.Config, Path]:
    """The config and run dir for `fit`: a new run's, or on resume the saved run's plus train/export overrides."""
    cfg = config_lib.load_config(pipeline, overrides)
    name = default_run_name(cfg, pipeline)
    if not cfg.train.resume:
        if cfg.train.run_dir:
            run_dir = Path(cfg.train.run_dir)
            if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
                raise ConfigError(f"{run_dir} already holds a run: continue it with --train.resume=true, or pick "
                                  f"another --train.run_dir")
        else:
            run_dir, n = Path("runs") / name, 2
            while (run_dir / "checkpoints").exists():
                run_dir, n = Path("runs") / f"{name}-{n}", n + 1
        return cfg, run_dir
    run_dir = Path(cfg.train.run_dir) if cfg.train.run_dir else Path("runs") / name
    if not (run_dir / "config.toml").is_file():
        raise CheckpointError(f"cannot resume: {run_dir} is not a run directory (no config.toml); give "
                              f"--train.run_dir=runs/<name> of an earlier run")
    ckpt_lib.resolve_checkpoint(run_dir, "last")  # raises when there is nothing to resume from
    saved = config_lib.load_resolved(run_dir / "config.toml")
    cli = config_lib.parse_overrides(overrides)
    changed = [f"{s}.{k}" for s in ("data", "model") for k, v in cli.get(s, {}).items()
               if getattr(getattr(saved, s), k) != v]
    if changed:
        raise ConfigError(f"cannot change {', '.join(changed)} when resuming; start a new run from these weights "
                          f"with --train.init_from={run_dir} instead")
    train = {**cli.get("train", {}), "resume": True, "run_dir": str(run_dir)}
    return saved.replace(train=train, export=cli.get("export", {})), run_dir


class _StopFlag:
    """Turns the first Ctrl-C into a flag the loop checks after each step (a second one aborts)."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True
            print("\ninterrupt: writing a checkpoint (Ctrl-C again to abort)", flush=True)

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not in the main thread (e.g. a tuner worker): no handler
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def fit(cfg: config_lib.Config, run_dir: Path, log=print) -> dict:
    """Train the model `cfg` describes, writing everything into `run_dir`. Returns the run's summary."""
    t, d, m = cfg.train, cfg.data, cfg.model
    keras.utils.set_random_seed(t.seed)
    corpus = load_corpus(d, log)
    log(describe(corpus))
    data_lib.check_fits(len(corpus.train), d.batch_size, d.seq_length, "train", t.scheme, t.stride)
    data_lib.check_fits(len(corpus.val), 1, d.seq_length, "validation")
    steps_per_epoch = data_lib.num_batches(len(corpus.train), d.batch_size, d.seq_length, t.scheme, t.stride)
    weights = data_lib.loss_weights(t.scheme, d.seq_length, t.burn_in)

    stateful = t.scheme == "stateful"
    strategy = make_strategy(t.strategy)
    distributed = t.strategy != "default"
    chief = is_chief(strategy)
    if not chief:  # other workers of a multi-worker run train in lockstep but write nothing of the run's
        run_dir = Path(tempfile.mkdtemp(prefix="tfchar-worker-"))
    with strategy.scope():
        # The fused CPU layers' gradients are not yet verified under replica contexts: Keras layers are.
        model = build_from_config(m, len(corpus.vocab), batch_size=per_replica_batch(strategy, d.batch_size),
                                  seq_length=d.seq_length, stateful=stateful, seed=t.seed,
                                  fast="keras" if distributed else m.implementation)
        schedule = EpochDecay(t.learning_rate, t.lr_decay, t.lr_decay_after, steps_per_epoch)
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
    if distributed:
        log(f"strategy {t.strategy}: {strategy.num_replicas_in_sync} replicas x "
            f"{per_replica_batch(strategy, d.batch_size)} streams")
    n_params = param_count(model)
    log(f"model: {m.num_layers}x{m.rnn_size} {m.cell}, embedding {m.embedding_dim}, dropout {m.dropout}: "
        f"{n_params:,} parameters; {len(corpus.train):,} training characters")
    ratio = n_params / len(corpus.train)
    if ratio > 10:
        log(f"warning: the model has {ratio:.0f}x more parameters than the text has characters: it will overfit "
            f"(char-rnn's rule of thumb: same order of magnitude); use dropout or a smaller model")
    elif ratio < 0.01:
        log(f"warning: the model has {1 / ratio:.0f}x fewer parameters than the text has characters: it will "
            f"underfit (char-rnn's rule of thumb: same order of magnitude); a larger rnn_size should help")

    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_root = run_dir / "checkpoints"
    ckpt_lib.clean_temporaries(ckpt_root)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val_loss": None, "elapsed": 0.0}
    rnn_state = None
    if t.resume:
        last = ckpt_lib.resolve_checkpoint(run_dir, "last")
        saved_vocab = Vocab.load(run_dir / "vocab.json", d.unit)
        if saved_vocab != corpus.vocab:
            raise CheckpointError(f"the text of {d.source} changed since {run_dir} was trained (different "
                                  f"vocabulary); start a new run with --train.init_from={run_dir}")
        with strategy.scope():
            ckpt_lib.load_weights(model, last)
            ckpt_lib.load_optimizer(optimizer, model, last)
        state.update(ckpt_lib.read_trainer_state(last))
        rnn_state = ckpt_lib.load_rnn_state(last) if stateful and not distributed else None
        log(f"resuming {run_dir} from {last.name}: step {state['step']}, epoch {state['epoch']} "
            f"batch {state['batch_in_epoch']}")
    elif t.init_from:
        init_cfg, init_vocab, init_ckpt = ckpt_lib.load_run(t.init_from)
        if init_vocab != corpus.vocab:
            raise CheckpointError(f"train.init_from={t.init_from} has a different vocabulary ({len(init_vocab)} "
                                  f"symbols) than {d.source} ({len(corpus.vocab)}): initialise from a model of "
                                  f"the same text")
        with strategy.scope():
            ckpt_lib.load_weights(model, init_ckpt)
        log(f"initialised weights from {init_ckpt}")
    config_lib.save(cfg.replace(train={"resume": False, "run_dir": str(run_dir)}), run_dir / "config.toml")
    corpus.vocab.save(run_dir / "vocab.json")

    if distributed:
        train_step = make_distributed_train_step(strategy, model, optimizer, t.grad_clip, weights)
    else:
        train_step = make_train_step(model, optimizer, t.grad_clip, weights)
    # Under a strategy each replica's state lives on its device; only single-device runs checkpoint it.
    carried_state = (lambda: get_states(model)) if stateful and not distributed else (lambda: None)
    scorer = Scorer(m, len(corpus.vocab))
    sample_model = build_from_config(m, len(corpus.vocab), batch_size=1, stateful=True) if t.sample_length else None
    summaries = Summaries(run_dir / "logs", cfg, n_params)
    history = open(run_dir / "history.jsonl", "a", encoding="utf-8")
    chars_per_step = d.batch_size * d.seq_length

    def epoch_float():
        return state["epoch"] + state["batch_in_epoch"] / steps_per_epoch

    def diverged(what: str):
        last = ckpt_root / "last"
        keep = f"; the last good checkpoint stays in {last.resolve()}" if last.exists() else ""
        raise TrainingDiverged(f"{what} at step {state['step']}{keep}; lower train.learning_rate or "
                               f"train.grad_clip and train again")

    def evaluate_and_save(reason: str):
        if not chief:
            return None
        val = scorer.score(model, corpus.val)
        if not math.isfinite(val["nats"]):  # weights already broken: never checkpoint them
            diverged(f"the validation loss became {val['nats']}")
        is_best = state["best_val_loss"] is None or val["nats"] < state["best_val_loss"]
        if is_best:
            state["best_val_loss"] = val["nats"]
        state["val_loss"] = val["nats"]
        state["elapsed"] = elapsed()
        name = ckpt_lib.checkpoint_name(epoch_float(), val["nats"])
        path = ckpt_lib.save_checkpoint(ckpt_root, name, model, optimizer, dict(state), carried_state())
        if is_best:
            ckpt_lib.point(ckpt_root, "best", path.name)
        ckpt_lib.prune(ckpt_root, t.keep_checkpoints)
        text = None
        if sample_model is not None:
            from tfchar.sampler import sample_text

            sample_model.set_weights(model.get_weights())
            text = sample_text(sample_model, corpus.vocab, prime="\n", length=t.sample_length, seed=t.seed)
        summaries.validation(state["step"], val, text)
        record = {"step": state["step"], "epoch": round(epoch_float(), 4), "val_loss": val["nats"],
                  "val_bpc": val["bpc"], "time": round(state["elapsed"], 1), "checkpoint": path.name}
        history.write(json.dumps(record) + "\n")
        history.flush()
        log(f"{reason} step {state['step']} (epoch {epoch_float():.2f}): val loss {val['nats']:.4f} nats/char, "
            f"{val['bpc']:.4f} bpc{' (best)' if is_best else ''} -> {path.name}")
        return val

    start_time, start_elapsed = time.time(), state["elapsed"]

    def elapsed():
        return start_elapsed + time.time() - start_time

    done = bool(t.max_steps and state["step"] >= t.max_steps)
    last_eval_step = state["step"] if t.resume else -1
    with _StopFlag() as stop, history:
        while state["epoch"] < t.epochs and not done:
            if rnn_state is not None and state["batch_in_epoch"] > 0:
                set_states(model, rnn_state)  # resumed mid-epoch: continue the carried state
            elif stateful:
                reset_states(model)
            rnn_state = None
            last_batch = state["batch_in_epoch"] + t.max_steps - state["step"] if t.max_steps else None
            epoch_data = functools.partial(data_lib.make_dataset, corpus.train, d.batch_size, d.seq_length, t.scheme,
                                           t.seed, state["epoch"], t.stride, start=state["batch_in_epoch"], stop=last_batch)
            ds = distribute_dataset(strategy, epoch_data, d.batch_size) if distributed else epoch_data()
            bar = ProgressBar(steps_per_epoch, state["batch_in_epoch"], f"epoch {state['epoch'] + 1}/{t.epochs}")
            window_t, window_steps, window_loss, window_norm = time.time(), 0, 0.0, 0.0
            for x, y in ds:
                loss, norm = train_step(x, y)
                loss = float(loss)
                state["step"] += 1
                state["batch_in_epoch"] += 1
                if not math.isfinite(loss):
                    diverged(f"the training loss became {loss}")
                window_steps += 1
                window_loss += loss
                window_norm += float(norm)
                now = time.time()
                speed = window_steps * chars_per_step / max(now - window_t, 1e-9)
                bar.update(state["batch_in_epoch"], loss, speed)
                if window_steps >= 20 or state["batch_in_epoch"] == steps_per_epoch:
                    lr = float(keras.ops.convert_to_numpy(schedule(optimizer.iterations)))
                    summaries.train(state["step"], window_loss / window_steps, window_norm / window_steps, lr, speed)
                    window_t, window_steps, window_loss, window_norm = now, 0, 0.0, 0.0
                if stop.stop:
                    state["elapsed"] = elapsed()
                    name = ckpt_lib.checkpoint_name(epoch_float(), state.get("val_loss") or float("nan"))
                    path = ckpt_lib.save_checkpoint(ckpt_root, name + "_interrupted", model, optimizer, dict(state),
                                                    carried_state())
                    summaries.close()
                    raise TrainingInterrupted(
                        f"stopped at step {state['step']}; checkpoint {path}; resume with:\n"
                        f"  python -m tfchar.fit --train.resume=true --train.run_dir={run_dir}")
                if t.eval_every and state["step"] % t.eval_every == 0 and state["batch_in_epoch"] < steps_per_epoch:
                    bar.close()
                    evaluate_and_save("eval")
                    last_eval_step = state["step"]
                if t.max_steps and state["step"] >= t.max_steps:
                    done = True  # the dataset ends here too (stop=last_batch): no break, no abandoned iterator
                    bar.close()
            if not done:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            if last_eval_step != state["step"]:
                evaluate_and_save("end of epoch" if not done else "max_steps reached:")
                last_eval_step = state["step"]
    if last_eval_step != state["step"]:
        evaluate_and_save("final")

    if not chief:
        summaries.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        return {"run_dir": None, "steps": state["step"], "chief": False}
    best = ckpt_lib.resolve_checkpoint(run_dir, "best")
    result = {"run_dir": str(run_dir), "best_checkpoint": str(best), "best_val_loss": state["best_val_loss"],
              "best_val_bpc": bpc(state["best_val_loss"]), "steps": state["step"], "epochs": epoch_float(),
              "params": n_params, "wall_time_s": round(elapsed(), 1)}
    summaries.close()
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    log(f"done: best val loss {result['best_val_loss']:.4f} nats/char ({result['best_val_bpc']:.4f} bpc) in "
        f"{result['wall_time_s']:.0f}s; best checkpoint {best}")
    return result


def run(pipeline: str | None, overrides: list[str], log=print) -> dict:
    """`python -m tfchar.fit`: resolve the config, train, and export the best checkpoint if asked."""
    cfg, run_dir = resolve_config(pipeline, overrides)
    log(f"run directory: {run_dir}")
    result = fit(cfg, run_dir, log)
    if cfg.export.on_finish and result.get("run_dir"):
        from tfchar.exporter import export_run

        out = Path(cfg.export.out) if cfg.export.out else Path("saved_models") / run_dir.name
        result["export"] = export_run(run_dir, out, int8=cfg.export.int8, log=log)
    return result


