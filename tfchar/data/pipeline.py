"""tf.data input pipelines for each training scheme.

`stateful` (char-rnn, torch-rnn): the id stream is laid out as B contiguous rows and cut into
consecutive windows of T, so row i of batch k+1 continues row i of batch k and the recurrent state can
be carried across batches. The other schemes draw shuffled windows, each meant to start from zero state:
`windows` (non-overlapping, the TF tutorial's), `overlap` and `single_loss` (overlapping, every
`stride` characters).

Batches are sliced from a strided view of the (memory-mapped) id array, so no scheme copies the corpus.

Example:
    for x, y in epoch_batches(corpus.train, batch_size=50, seq_length=50): ...  # (x, y) int32[B, T] pairs
    ds = make_dataset(corpus.train, batch_size=50, seq_length=50)             # the same, as tf.data
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

from tfchar.core.choices import SCHEMES
from tfchar.core.errors import DataError
from tfchar.ops.streams import stream_view


def default_stride(scheme: str, seq_length: int, stride: int = 0) -> int:
    """Offset between window starts: T for stateful/windows, `stride` or T // 2 for overlapping schemes."""
    if scheme in ("stateful", "windows"):
        return seq_length
    return stride or max(1, seq_length // 2)


def num_batches(n_ids: int, batch_size: int, seq_length: int, scheme: str = "stateful", stride: int = 0) -> int:
    """Batches per epoch for a split of `n_ids` ids (remainders are dropped)."""
    if scheme == "stateful":
        return ((n_ids - 1) // batch_size) // seq_length
    return _num_windows(n_ids, seq_length, default_stride(scheme, seq_length, stride)) // batch_size


def _num_windows(n_ids: int, seq_length: int, stride: int) -> int:
    return max(0, (n_ids - 1 - seq_length) // stride + 1)


def window_order(n_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled window order of one epoch; a pure function of (seed, epoch) so resume replays it."""
    return np.random.default_rng([seed, epoch]).permutation(n_windows)


def check_fits(n_ids: int, batch_size: int, seq_length: int, split: str, scheme: str = "stateful",
               stride: int = 0) -> None:
    """Raise a DataError naming the largest batch_size and seq_length that would fit."""
    if num_batches(n_ids, batch_size, seq_length, scheme, stride) >= 1:
        return
    max_batch = max(0, (n_ids - 1) // seq_length) if scheme == "stateful" else \
        _num_windows(n_ids, seq_length, default_stride(scheme, seq_length, stride))
    max_seq = max(0, (n_ids - 1) // batch_size) if scheme == "stateful" else max(0, n_ids - 1 - batch_size + 1)
    fix = "a longer text" + (", or a larger data.val_frac / data.test_frac" if split != "train" else "")
    raise DataError(f"the {split} split has {n_ids:,} characters, too few for one batch of data.batch_size="
                    f"{batch_size} x data.seq_length={seq_length}; at this seq_length the largest batch_size that "
                    f"fits is {max_batch}, at this batch_size the largest seq_length is {max_seq} (or use {fix})")


def batch_windows(ids: np.ndarray, batch_size: int, seq_length: int, scheme: str = "stateful", seed: int = 0,
                  epoch: int = 0, stride: int = 0, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """One epoch's batches as int32[B, T + 1] windows (x = w[:, :-1], y = w[:, 1:]), in order.

    Args:
        ids: token ids of one split, int[N] (a memmap is fine).
        batch_size: B; seq_length: T.
        scheme: "stateful" (contiguous streams) or a shuffled-window scheme (see module docstring).
        seed, epoch: fix the shuffle order of the window schemes.
        stride: window offset for the overlapping schemes (0 = default).
        start: skip this many batches (resume in the middle of an epoch).
        stop: end the epoch before this batch (a run's max_steps).
    """
    if scheme not in SCHEMES:  # checked when called, not at the first batch
        raise ValueError(f"unknown scheme {scheme!r}")
    return _windows(ids, batch_size, seq_length, scheme, seed, epoch, stride, start, stop)


def _windows(ids, batch_size, seq_length, scheme, seed, epoch, stride, start, stop) -> Iterator[np.ndarray]:
    """`batch_windows`'s batches, for a known scheme."""
    T = seq_length
    if scheme == "stateful":
        view = stream_view(ids, batch_size)  # [B, L + 1]
        count = num_batches(len(ids), batch_size, T)
        count = count if stop is None else min(count, stop)
        for k in range(start, count):
            yield view[:, k * T:k * T + T + 1].astype(np.int32)  # [B, T + 1]
        return
    step = default_stride(scheme, T, stride)
    order = window_order(_num_windows(len(ids), T, step), seed, epoch)
    count = len(order) // batch_size
    count = count if stop is None else min(count, stop)
    # [W, T + 1]: window j = ids[j*step : j*step + T + 1]
    windows = np.lib.stride_tricks.as_strided(ids, shape=(len(order), T + 1),
                                              strides=(step * ids.strides[0], ids.strides[0]), writeable=False)
    for k in range(start, count):
        yield windows[np.sort(order[k * batch_size:(k + 1) * batch_size])].astype(np.int32)


def epoch_batches(ids: np.ndarray, batch_size: int, seq_length: int, scheme: str = "stateful", seed: int = 0,
                  epoch: int = 0, stride: int = 0, start: int = 0,
                  stop: int | None = None) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
    """The batches of `make_dataset` (same arguments) as (x, y) int32[B, T] tensors made in the calling thread:
    the single-device training feed. Slicing a batch takes microseconds, so nothing is gained by tf.data's
    threads, and a loop may stop anywhere: tearing down a generator-backed tf.data iterator can block its
    thread for seconds (it waits for a tf.data thread that needs the GIL), which a time budget cannot afford."""
    windows = batch_windows(ids, batch_size, seq_length, scheme, seed, epoch, stride, start, stop)
    return ((tf.convert_to_tensor(w[:, :-1]), tf.convert_to_tensor(w[:, 1:])) for w in windows)


def make_dataset(ids: np.ndarray, batch_size: int, seq_length: int, scheme: str = "stateful", seed: int = 0,
                 epoch: int = 0, stride: int = 0, start: int = 0, stop: int | None = None) -> tf.data.Dataset:
    """One epoch of (x, y) int32[B, T] batches, y = x shifted by one character, as a tf.data pipeline (what a
    distribution strategy splits over its replicas). Arguments as `batch_windows`; `stop` lets the generator
    finish by itself, since abandoning a generator-backed iterator mid-stream can stall its teardown."""
    T = seq_length

    def batches():
        return batch_windows(ids, batch_size, T, scheme, seed, epoch, stride, start, stop)

    batches()  # checks the arguments now, not when tf.data first asks for a batch
    ds = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec((batch_size, T + 1), tf.int32))
    ds = ds.map(lambda w: (w[:, :-1], w[:, 1:]), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def loss_weights(scheme: str, seq_length: int, burn_in: int = 0) -> np.ndarray | None:
    """Which positions of a window are scored: all, all but the first `burn_in`, or only the last."""
    if scheme == "single_loss":
        w = np.zeros(seq_length, np.float32)
        w[-1] = 1.0
        return w
    if scheme == "overlap" and burn_in > 0:
        if burn_in >= seq_length:
            raise DataError(f"train.burn_in={burn_in} leaves no scored position in a window of "
                            f"data.seq_length={seq_length}: use a burn_in below seq_length")
        w = np.ones(seq_length, np.float32)
        w[:burn_in] = 0.0
        return w
    return None
