"""The progressive layout and scoring loop every route shares, against a naive per-row reference."""

from __future__ import annotations

import numpy as np

from tfchar.ops.metrics import summary
from tfchar.ops.streams import fitting_streams, progressive, stream_view


def naive_rows(ids, streams, limit=0):
    """Row i of the stateful layout, as plain slices: ids[i*L : i*L + L + 1], cut to ceil(limit / B) targets."""
    length = (len(ids) - 1) // streams
    keep = min(length, -(-limit // streams)) if limit else length
    return [ids[i * length:i * length + keep + 1] for i in range(streams)]


def test_stream_view_is_contiguous_rows_without_a_copy():
    ids = np.arange(103)
    view = stream_view(ids, 4)
    assert view.shape == (4, 26) and np.shares_memory(view, ids)
    for row, want in zip(view, naive_rows(ids, 4)):
        np.testing.assert_array_equal(row, want)


def test_progressive_reads_each_row_in_order_chunk_by_chunk_with_a_limit():
    ids = np.arange(1, 202)
    for limit in (0, 1, 37, 80, 10_000):
        calls = []
        total, count = progressive(lambda x, y: calls.append((x.copy(), y.copy())) or float(y.sum()), ids, 4, 7,
                                   limit)
        rows = naive_rows(ids, 4, limit)
        x = np.concatenate([c[0] for c in calls], axis=1)
        y = np.concatenate([c[1] for c in calls], axis=1)
        np.testing.assert_array_equal(x, np.stack([r[:-1] for r in rows]))  # [B, t] chunks, in order
        np.testing.assert_array_equal(y, np.stack([r[1:] for r in rows]))
        assert all(c[0].shape[1] <= 7 for c in calls)
        assert count == sum(len(r) - 1 for r in rows) and total == float(sum(r[1:].sum() for r in rows))


def test_a_text_too_short_for_every_row_is_scored_as_one_row():
    assert fitting_streams(9, 8) == 8 and fitting_streams(8, 8) == 1


def test_summary_is_nats_bits_and_perplexity_per_character():
    s = summary(2.0 * np.log(2.0) * 10, 10)
    assert s["chars"] == 10 and abs(s["bpc"] - 2.0) < 1e-12 and abs(s["perplexity"] - 4.0) < 1e-9
