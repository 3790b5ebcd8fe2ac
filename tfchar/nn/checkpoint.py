"""Run directories and checkpoints: atomic writes, `best`/`last` links, loading for resume and inference.

A run directory describes itself:

    runs/<name>/
      config.toml            resolved config (every key)
      vocab.json             token id -> character
      checkpoints/
        epoch1.95_val1.6231/ model.weights.h5, model.keras, optimizer.npz, rnn_state.npz, trainer_state.json
        backup_step4200/     a backup (every train.backup_every_s seconds; no validation): only the newest
        best -> epoch...     symlink to the checkpoint with the lowest validation loss
        last -> epoch...     symlink to the newest checkpoint (named or backup)
      logs/                  TensorBoard
      history.jsonl          one line per evaluation

A checkpoint is written into a hidden temporary directory and renamed into place, and the links are
replaced atomically, so a killed process never leaves a checkpoint (or a link) that does not load. A
write that fails (disk full, read-only, file-size limit) removes its temporary and raises `StorageError`.

`model.keras` is the same weights in a stateless model made of Keras's own layer classes: it opens with
`keras.saving.load_model` in a program that never imports tfchar. An export dir holds one too, so
anything that needs trainable weights (init_from, dynamic evaluation) takes an export dir as a checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import weakref
from pathlib import Path

import keras
import numpy as np

from tfchar.core import config as config_lib
from tfchar.core.errors import CheckpointError, StorageError
from tfchar.core.vocab import Vocab
from tfchar.nn.models import build_from_config

WEIGHTS = "model.weights.h5"
KERAS_FILE = "model.keras"  # the weights in a stateless stock-Keras model (keras.saving.load_model)
OPTIMIZER = "optimizer.npz"
RNN_STATE = "rnn_state.npz"
TRAINER_STATE = "trainer_state.json"
BACKUP_PREFIX = "backup_step"  # backup checkpoints: backup_step<N>


def checkpoint_name(epoch_float: float, val_loss: float) -> str:
    """char-rnn's naming: epoch (fractional) and validation loss, e.g. `epoch1.95_val1.6231`."""
    return f"epoch{epoch_float:.2f}_val{val_loss:.4f}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(ckpt_root: Path, name: str, model, optimizer, trainer_state: dict,
                    rnn_state: list[np.ndarray] | None = None) -> Path:
    """Write a complete checkpoint directory atomically and point `last` at it. Returns its path.

    A write that fails (disk full, read-only folder, file-size limit) removes its temporary directory and
    raises `StorageError` naming the checkpoint and the file; the checkpoints written before are untouched.
    """
    final = ckpt_root / name
    if final.exists():
        final = ckpt_root / f"{name}_step{trainer_state['step']}"
    tmp = ckpt_root / f".tmp-{final.name}-{os.getpid()}"
    current = tmp
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for current, write in _checkpoint_files(tmp, model, optimizer, trainer_state, rnn_state):
            write()
        for f in tmp.iterdir():
            current = f
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        current = final
        os.rename(tmp, final)
        _fsync_dir(ckpt_root)
        current = ckpt_root / "last"
        point(ckpt_root, "last", final.name)
    except BaseException as e:  # a second Ctrl-C too: never leave a temporary behind
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception):
            raise _write_error(final, current, e) from None
        raise
    return final


def _checkpoint_files(tmp: Path, model, optimizer, trainer_state: dict, rnn_state):
    """(path, write) for each file of a checkpoint, in writing order."""
    yield tmp / WEIGHTS, lambda: _reserve(tmp / WEIGHTS, _weights_bytes(model))
    yield tmp / WEIGHTS, lambda: model.save_weights(tmp / WEIGHTS)
    yield tmp / KERAS_FILE, lambda: _reserve(tmp / KERAS_FILE, _weights_bytes(model))
    yield tmp / KERAS_FILE, lambda: save_keras_file(model, tmp / KERAS_FILE)
    if optimizer is not None and optimizer.built:
        def write_optimizer():
            store = {}
            optimizer.save_own_variables(store)
            np.savez(tmp / OPTIMIZER, **store)
        yield tmp / OPTIMIZER, write_optimizer
    if rnn_state:
        yield tmp / RNN_STATE, lambda: np.savez(tmp / RNN_STATE, *rnn_state)
    yield tmp / TRAINER_STATE, lambda: (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1))


def _weights_bytes(model) -> int:
    """What `model.weights.h5` holds at least: the variables' bytes (HDF5 adds a few KB of bookkeeping)."""
    return sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)


def _reserve(path: Path, size: int) -> None:
    """Allocate `size` bytes at `path` (then truncated by the real write), so a full disk, a quota or a file-size
    limit is an OSError here: HDF5 crashes the process when its own write fails that way."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def _write_error(final: Path, current: Path, e: Exception) -> Exception:
    """A failed checkpoint write as one line naming the file and the reason; other errors pass unchanged."""
    reason = getattr(e, "strerror", None) or _errno_text(str(e))
    if reason is None:
        return e
    where = current.name if current != final else "renaming into place"
    return StorageError(f"cannot write checkpoint {final} ({where}: {reason}); the checkpoints written before are "
                        f"intact: free space or fix the folder's permissions, then resume with --train.resume=true")


def _errno_text(message: str) -> str | None:
    """The OS error inside a library's message (h5py reports `errno = 28, error message = '...'`), or None."""
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EIO, errno.EPERM):
        if f"errno = {code}," in message or os.strerror(code) in message:
            return os.strerror(code)
    return None


def save_backup(ckpt_root: Path, model, optimizer, trainer_state: dict,
                rnn_state: list[np.ndarray] | None = None) -> Path:
    """A backup checkpoint `backup_step<N>` (no validation loss; never `best`): written like any other and
    pointed to by `last`; the previous backup is then removed."""
    path = save_checkpoint(ckpt_root, f"{BACKUP_PREFIX}{trainer_state['step']}", model, optimizer, trainer_state,
                           rnn_state)
    drop_backups(ckpt_root)
    return path


def drop_backups(ckpt_root: Path) -> None:
    """Remove the backup checkpoints `last` no longer points to."""
    keep = os.readlink(ckpt_root / "last") if (ckpt_root / "last").is_symlink() else None
    for p in ckpt_root.glob(f"{BACKUP_PREFIX}*"):
        if p.name != keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def point(ckpt_root: Path, link: str, target_name: str) -> None:
    """Atomically make `ckpt_root/link` a relative symlink to `target_name`."""
    tmp = ckpt_root / f".{link}.tmp-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target_name, tmp)
        os.replace(tmp, ckpt_root / link)
    finally:
        if tmp.is_symlink():
            tmp.unlink()


def prune(ckpt_root: Path, keep: int) -> None:
    """Delete backups `last` no longer points to, and all but the `keep` newest named checkpoints, never the
    targets of `best` or `last`."""
    drop_backups(ckpt_root)
    if keep <= 0:
        return
    protected = {os.readlink(ckpt_root / l) for l in ("best", "last") if (ckpt_root / l).is_symlink()}
    named = [p for p in ckpt_root.iterdir() if p.is_dir() and not p.is_symlink()
             and not p.name.startswith((".", BACKUP_PREFIX))]
    named.sort(key=lambda p: read_trainer_state(p).get("step", 0))
    for p in named[:-keep]:
        if p.name not in protected:
            shutil.rmtree(p, ignore_errors=True)


def clean_temporaries(ckpt_root: Path) -> None:
    """Remove leftovers of writes that a killed process did not finish (checkpoint directories, link files).

    Call it only while holding the run's writer lock (`training.lock`): a live writer's temporaries look the same.
    """
    if ckpt_root.is_dir():
        for p in [*ckpt_root.glob(".tmp-*"), *ckpt_root.glob(".*.tmp-*")]:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's checkpoint directories, newest first: `last`'s target, then the others by step, highest first
    (unreadable ones at the end). What resume tries, in order."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]

    def newest(p: Path) -> tuple:
        try:
            step = int(read_trainer_state(p).get("step", -1))
        except CheckpointError:
            step = -1
        return step, p.stat().st_mtime

    found.sort(key=newest, reverse=True)
    last = root / "last"
    if last.is_symlink() and (root / os.readlink(last)) in found:
        found.insert(0, found.pop(found.index(root / os.readlink(last))))
    return found


def read_trainer_state(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / TRAINER_STATE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt} is not a tfchar checkpoint (no {TRAINER_STATE})") from None
    except ValueError:
        raise CheckpointError(f"{ckpt}/{TRAINER_STATE} is corrupt: resume from another checkpoint") from None


def load_weights(model, ckpt: Path) -> None:
    """Load a checkpoint's weights into a model of the same architecture (any batch size).

    `ckpt`: a checkpoint dir (its model.weights.h5), an export dir (its model.keras), or either file.
    """
    path = weights_file(ckpt)
    try:
        model.load_weights(path)
    except Exception as e:  # h5py/Keras raise many types for truncated or mismatched files
        raise CheckpointError(f"cannot load {path} ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}): "
                              f"the file is corrupt or from a different model shape; use another checkpoint") from None


def weights_file(ckpt) -> Path:
    """The weights a checkpoint dir, an export dir or a weights file names (model.weights.h5, else model.keras)."""
    p = Path(ckpt)
    if p.is_file() and p.name.endswith((".weights.h5", ".keras")):
        return p
    for name in (WEIGHTS, KERAS_FILE):
        if (p / name).is_file():
            return p / name
    if is_export_dir(p):
        raise CheckpointError(f"{p} is an export without Keras weights ({KERAS_FILE}): re-export it with "
                              f"python -m tfchar.export RUN_DIR, or give the run dir it came from")
    raise CheckpointError(f"{p} has no {WEIGHTS}: not a tfchar checkpoint, or an unfinished write")


def keras_twin(model) -> keras.Model:
    """A stateless copy of `model` (any batch, any length) made of Keras's own layer classes, with its weights.

    The fused layers are weight-compatible with their Keras base classes, so the twin computes the same
    logits; it is what `model.keras` stores, loadable without tfchar.
    """
    inputs = keras.Input(batch_shape=(None, None), dtype="int32", name=model.layers[0].name)
    twin = keras.models.clone_model(model, input_tensors=inputs, clone_function=_stock_layer)
    twin.set_weights(model.get_weights())
    return twin


def _stock_layer(layer) -> keras.layers.Layer:
    """`layer` rebuilt from its config as its nearest Keras class, stateless; a weightless layer of tfchar's own
    with no Keras counterpart (inference-time identity, like a dropout variant) becomes `Identity`."""
    cls = next(c for c in type(layer).__mro__ if c.__module__.startswith("keras"))
    if cls in (keras.layers.Layer, keras.Layer) and type(layer) is not cls:
        if layer.weights:
            raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no Keras counterpart for model.keras")
        return keras.layers.Identity(name=layer.name)
    config = layer.get_config()
    if "stateful" in config:
        config["stateful"] = False
    return cls.from_config(config)


_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its keras_twin, built once


def save_keras_file(model, path: Path) -> None:
    """Write `model`'s weights as a stock-Keras `model.keras` (see `keras_twin`). A model's twin is built once
    and given the current weights at each save: a training run writes one with every checkpoint."""
    twin = _TWINS.get(model)
    if twin is None:
        twin = _TWINS[model] = keras_twin(model)
    else:
        twin.set_weights(model.get_weights())
    twin.save(path)


def load_optimizer(optimizer, model, ckpt: Path) -> bool:
    """Restore optimizer slots and iteration count; False if the checkpoint has none."""
    path = Path(ckpt) / OPTIMIZER
    if not path.is_file():
        return False
    optimizer.build(model.trainable_variables)
    try:
        with np.load(path) as data:
            optimizer.load_own_variables({k: data[k] for k in data.files})
    except Exception as e:
        raise CheckpointError(f"cannot load {path} ({type(e).__name__}): the optimizer state is corrupt") from None
    return True


def load_rnn_state(ckpt: Path) -> list[np.ndarray] | None:
    path = Path(ckpt) / RNN_STATE
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]
    except Exception as e:
        raise CheckpointError(f"cannot load {path} ({type(e).__name__}): the carried state is corrupt") from None


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A run dir -> its `best` (or `last`) checkpoint; a checkpoint dir or an export dir (model.keras) -> itself."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p} does not exist: give a run directory (runs/<name>), one of its checkpoints "
                              f"or an export dir")
    if (p / WEIGHTS).is_file():
        return p
    if is_export_dir(p):
        weights_file(p)  # raises for an export without model.keras
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    link = root / which
    if link.exists():
        return link.resolve()
    other = root / ("last" if which == "best" else "best")
    if other.exists():
        return other.resolve()
    raise CheckpointError(f"{p} has no checkpoint yet: train it with python -m tfchar.fit first")


def is_export_dir(path: Path) -> bool:
    """An export dir (`python -m tfchar.export`): config.toml and vocab.json beside the exported files."""
    p = Path(path)
    return (p / "config.toml").is_file() and (p / "vocab.json").is_file() and not (p / "checkpoints").is_dir()


def run_dir_of(ckpt: Path) -> Path:
    """The run directory that holds a checkpoint (two levels up); an export dir is its own."""
    ckpt = Path(ckpt).resolve()
    return ckpt if is_export_dir(ckpt) else ckpt.parent.parent


def load_run(path: str | Path, which: str = "best") -> tuple[config_lib.Config, Vocab, Path]:
    """(resolved config, vocabulary, checkpoint) of a run dir, one of its checkpoints or an export dir."""
    ckpt = resolve_checkpoint(path, which)
    run = run_dir_of(ckpt)
    if not (run / "config.toml").is_file():
        raise CheckpointError(f"{run} has no config.toml: not a tfchar run directory")
    cfg = config_lib.load_resolved(run / "config.toml")
    vocab = Vocab.load(run / "vocab.json", unit=cfg.data.unit)
    return cfg, vocab, ckpt


def load_inference_model(path: str | Path, batch_size: int = 1, stateful: bool = True, which: str = "best"):
    """(model, config, vocab): a run's model rebuilt for generation (no dropout; batch `batch_size`)."""
    cfg, vocab, ckpt = load_run(path, which)
    model = build_from_config(cfg.model, len(vocab), batch_size=batch_size, seq_length=None,
                              stateful=stateful)
    load_weights(model, ckpt)
    return model, cfg, vocab
