import numpy as np
import pytest

from tfchar.core.config import DataConfig
from tfchar.data.corpus import load_corpus
from tfchar.data.pipeline import check_fits, epoch_batches, loss_weights, make_dataset, num_batches
from tfchar.ops.streams import stream_view
from tfchar.core.errors import DataError


@pytest.fixture(scope="module")
def ids():
    return load_corpus(DataConfig(source="tfds:tiny_shakespeare")).val  # 55,770 real ids


def test_stateful_rows_continue_across_batches(ids):
    B, T = 5, 40
    batches = [(x.numpy(), y.numpy()) for x, y in make_dataset(ids, B, T)]
    L = (len(ids) - 1) // B
    assert len(batches) == num_batches(len(ids), B, T) == L // T
    for i in range(B):  # naive reference: row i is the i-th contiguous slice of the stream
        row_x = np.concatenate([x[i] for x, _ in batches])
        row_y = np.concatenate([y[i] for _, y in batches])
        np.testing.assert_array_equal(row_x, ids[i * L:i * L + len(row_x)])
        np.testing.assert_array_equal(row_y, ids[i * L + 1:i * L + 1 + len(row_y)])
    for k in range(len(batches) - 1):  # row i of batch k+1 starts where row i of batch k ended
        np.testing.assert_array_equal(batches[k + 1][0][:, 0], batches[k][1][:, -1])


@pytest.mark.parametrize("scheme", ["stateful", "windows", "overlap"])
def test_the_in_thread_feed_gives_the_datasets_batches(ids, scheme):
    # the single-device trainer reads epoch_batches; a distribution strategy reads make_dataset
    args = (ids, 4, 30, scheme, 3, 2, 0, 5, 40)  # seed 3, epoch 2, resumed at batch 5, stop before batch 40
    fed = [(x.numpy(), y.numpy()) for x, y in epoch_batches(*args)]
    piped = [(x.numpy(), y.numpy()) for x, y in make_dataset(*args)]
    assert len(fed) == len(piped) == 35
    for (fx, fy), (px, py) in zip(fed, piped):
        assert fx.dtype == np.int32 and fx.shape == (4, 30)
        np.testing.assert_array_equal(fx, px)
        np.testing.assert_array_equal(fy, py)


def test_an_unknown_scheme_fails_when_the_feed_is_made_not_at_its_first_batch(ids):
    for feed in (epoch_batches, make_dataset):
        with pytest.raises(ValueError, match="unknown scheme 'streams'"):
            feed(ids, 4, 8, scheme="streams")


def test_stream_view_does_not_copy(ids):
    view = stream_view(ids, 4)
    assert np.shares_memory(view, ids)


def test_resume_start_skips_batches(ids):
    full = [x.numpy() for x, _ in make_dataset(ids, 4, 30)]
    tail = [x.numpy() for x, _ in make_dataset(ids, 4, 30, start=7)]
    assert len(tail) == len(full) - 7
    np.testing.assert_array_equal(tail[0], full[7])


def test_windows_are_shuffled_disjoint_slices(ids):
    B, T = 8, 25
    xs = [(x.numpy(), y.numpy()) for x, y in make_dataset(ids, B, T, "windows", seed=1, epoch=0)]
    starts = []
    for x, y in xs:
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        for row in x:
            s = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(ids, T)[::T] == row, axis=1))[0]) * T
            starts.append(s)
    assert len(set(starts)) == len(starts)                   # non-overlapping
    assert starts != sorted(starts)                           # shuffled
    again = [x.numpy() for x, _ in make_dataset(ids, B, T, "windows", seed=1, epoch=0)]
    other = [x.numpy() for x, _ in make_dataset(ids, B, T, "windows", seed=1, epoch=1)]
    np.testing.assert_array_equal(again[0], xs[0][0])         # same seed and epoch: same order
    assert not np.array_equal(other[0], xs[0][0])             # next epoch: a new order


def test_overlap_and_single_loss_positions():
    assert loss_weights("stateful", 10) is None
    np.testing.assert_array_equal(loss_weights("overlap", 5, burn_in=2), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(loss_weights("single_loss", 4), [0, 0, 0, 1])
    with pytest.raises(DataError, match="burn_in"):
        loss_weights("overlap", 5, burn_in=5)


def test_too_small_corpus_names_largest_values_that_fit():
    check_fits(2501, 50, 50, "train")
    with pytest.raises(DataError) as e:
        check_fits(1000, 50, 50, "train")
    msg = str(e.value)
    assert "1,000 characters" in msg and "largest batch_size that fits is 19" in msg and "largest seq_length is 19" in msg
