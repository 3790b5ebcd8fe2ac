"""The sampling ops (PRNG and draw) against naive numpy references, and in-process sampling with the generator."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfchar.ops import draw
from tfchar.ops import rng as prng
from tfchar.nn.generator import CharGenerator
from tfchar.nn.models import build_model
from tfchar.core.vocab import Vocab
from tfchar.runtimes.keras import KerasRuntime

M = 2**31 - 1


# ------------------------------------------------------------------------------------------ the PRNG

def test_next_rng_is_park_miller():
    rng = np.random.default_rng(0)
    x = np.concatenate([[1, 2, M - 2, M - 1, 127773, 127774], rng.integers(1, M, 1000)]).astype(np.int32)
    got = prng.next_rng(tf.constant(x)).numpy()
    np.testing.assert_array_equal(got, (x.astype(np.int64) * 16807) % M)


def test_park_miller_check_value():
    # Park & Miller (1988): from x = 1, the 10,000th state is 1043618065.
    steps = tf.function(lambda x: tf.while_loop(lambda i, x: i < 10_000, lambda i, x: (i + 1, prng.next_rng(x)),
                                                (0, x))[1])
    assert int(steps(tf.constant([1]))[0]) == 1043618065


def test_seed_rng_and_uniform_match_integer_reference():
    seeds = np.array([0, 1, 2, -1, 123, 10**9, -(2**31)], np.int32)
    x = (seeds.astype(np.int64) % (M - 1)) + 1
    for _ in range(prng.WARMUP):
        x = (x * 16807) % M
    got = prng.seed_rng(tf.constant(seeds)).numpy()
    np.testing.assert_array_equal(got, x)
    u = prng.uniform(tf.constant(got)).numpy()
    np.testing.assert_array_equal(u, (x >> 7) / 2.0**24)
    assert u.dtype == np.float32 and (u >= 0).all() and (u < 1).all()
    assert len(set(u.tolist())) == len(seeds)  # consecutive seeds do not start alike


# ------------------------------------------------------------------------------------------ the draw

def reference_probs(logits, temperature, top_k, top_p):
    """Textbook sampling distribution (float64): softmax(l / T), top-k, then nucleus top-p, renormalized."""
    p = np.exp((logits - logits.max()) / temperature)
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    if top_k > 0:
        ps = ps[:top_k]
    ps = ps / ps.sum()
    if top_p < 1.0:
        ps = ps[:np.searchsorted(np.cumsum(ps), top_p) + 1]  # fewest tokens whose mass reaches top_p
    out = np.zeros_like(p)
    out[order[:len(ps)]] = ps / ps.sum()
    return out


def reference_pick(logits, u, temperature, top_k, top_p):
    """(token, margin): inverse CDF over the reference distribution in sorted order; margin = distance to
    the nearest decision boundary (CDF steps, and the top-p cut), where float32 rounding may disagree."""
    probs = reference_probs(logits, temperature, top_k, top_p)
    order = np.argsort(-probs, kind="stable")
    kept = order[probs[order] > 0]
    cdf = np.cumsum(probs[kept])
    i = min(int(np.searchsorted(cdf, u, side="right")), len(kept) - 1)
    margin = np.abs(cdf - u).min()
    if top_p < 1.0:
        full = reference_probs(logits, temperature, top_k, 1.0)
        margin = min(margin, np.abs(np.cumsum(np.sort(full)[::-1]) - top_p).min())
    return kept[i], margin


KNOBS = [(1.0, 0, 1.0), (0.5, 0, 1.0), (2.0, 0, 1.0), (1.0, 5, 1.0), (1.0, 0, 0.9), (0.8, 10, 0.7), (1.0, 1, 1.0),
         (1.0, 100, 1.0)]


@pytest.mark.parametrize("temperature,top_k,top_p", KNOBS)
def test_sample_ids_matches_reference(temperature, top_k, top_p):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, [400, 65]).astype(np.float32)
    u = rng.random(400).astype(np.float32)
    got = draw.sample_ids(logits, u, temperature, top_k, top_p).numpy()
    checked = 0
    for row, ui, g in zip(logits, u, got):
        want, margin = reference_pick(row.astype(np.float64), float(ui), temperature, top_k, top_p)
        if margin > 1e-4:  # float32 vs float64 rounding may flip only a draw right at a boundary
            assert g == want
            checked += 1
    assert checked > 350


@pytest.mark.parametrize("temperature,top_k,top_p", KNOBS[:6])
def test_draw_frequencies_follow_the_distribution(temperature, top_k, top_p):
    # An evenly spaced grid of uniforms: each token's share of the grid is its probability.
    n = 8192
    logits = np.random.default_rng(2).normal(0, 2, [1, 30]).astype(np.float32)
    u = (np.arange(n, dtype=np.float32) + 0.5) / n
    got = draw.sample_ids(np.repeat(logits, n, axis=0), u, temperature, top_k, top_p).numpy()
    freq = np.bincount(got, minlength=30) / n
    np.testing.assert_allclose(freq, reference_probs(logits[0].astype(np.float64), temperature, top_k, top_p),
                               atol=2.0 / n)


def test_greedy_is_argmax_whatever_u():
    logits = np.random.default_rng(3).normal(0, 1, [50, 20]).astype(np.float32)
    for temperature in (0.0, -1.0):
        got = draw.sample_ids(logits, np.linspace(0, 0.999, 50, dtype=np.float32), temperature, 0, 1.0)
        np.testing.assert_array_equal(got.numpy(), logits.argmax(axis=1))
    ties = draw.sample_ids(np.array([[1.0, 3.0, 3.0, 0.0]], np.float32), [0.9], 0.0, 0, 1.0)
    assert int(ties[0]) == 1  # ties go to the lower id


def test_top_k_one_and_tiny_top_p_are_argmax():
    logits = np.random.default_rng(4).normal(0, 1, [50, 20]).astype(np.float32)
    u = np.linspace(0, 0.999, 50, dtype=np.float32)
    np.testing.assert_array_equal(draw.sample_ids(logits, u, 1.0, 1, 1.0).numpy(), logits.argmax(axis=1))
    np.testing.assert_array_equal(draw.sample_ids(logits, u, 1.0, 0, 1e-6).numpy(), logits.argmax(axis=1))


def test_top_p_one_keeps_every_token():
    # Token 2 has probability ~2e-5; u just below 1 must still reach it when top_p is off.
    logits = np.array([[0.0, 0.0, -10.0]], np.float32)
    assert int(draw.sample_ids(logits, [1.0 - 2**-24], 1.0, 0, 1.0)[0]) == 2
    assert int(draw.sample_ids(logits, [1.0 - 2**-24], 1.0, 0, 0.99)[0]) == 1


# ------------------------------------------------------------------------------------------ the loop

def fixed_logits_generator(logits: np.ndarray) -> CharGenerator:
    """A fake model: zero recurrent weights, so every step's logits are exactly `logits` [V]."""
    v, h = len(logits), 4
    zeros = lambda *s: np.zeros(s, np.float32)
    weights = {"embedding": zeros(v, 3), "layers": [(zeros(3, 4 * h), zeros(h, 4 * h), zeros(4 * h))],
               "logits": (zeros(h, v), logits.astype(np.float32))}
    return CharGenerator(weights, np.arange(65, 65 + v))


def test_generate_with_fixed_logits_follows_the_distribution():
    logits = np.log(np.array([0.5, 0.25, 0.15, 0.1]))
    gen = fixed_logits_generator(logits)
    out = gen.generate(tf.constant([65]), 3000, 1.0, 0, 1.0, 9)["codepoints"].numpy() - 65
    np.testing.assert_allclose(np.bincount(out, minlength=4) / 3000, [0.5, 0.25, 0.15, 0.1], atol=0.03)
    topk = gen.generate(tf.constant([65]), 1500, 1.0, 2, 1.0, 9)["codepoints"].numpy() - 65
    np.testing.assert_allclose(np.bincount(topk, minlength=4) / 1500, [2 / 3, 1 / 3, 0, 0], atol=0.04)
    greedy = gen.generate(tf.constant([65]), 50, 0.0, 0, 1.0, 9)["codepoints"].numpy()
    assert (greedy == 65).all()


@pytest.fixture(scope="module")
def tiny():
    vocab = Vocab.from_codepoints(map(ord, "abcdefgh \n"))
    model = build_model(len(vocab), "lstm", rnn_size=8, num_layers=2, embedding_dim=4, seed=3)
    return model, vocab, CharGenerator.from_keras(model, vocab)


def collect(gen, ids, length, **kw):
    return np.concatenate(list(gen.stream(ids, length, **kw)), axis=1)


def test_stream_is_seeded_and_matches_generate(tiny):
    model, vocab, gen = tiny
    ids = vocab.encode("abc")
    a = collect(gen, ids, 150, seed=5, chunk=40)
    np.testing.assert_array_equal(a, collect(gen, ids, 150, seed=5, chunk=64))
    assert (a != collect(gen, ids, 150, seed=6)).any()
    batch = collect(gen, ids, 150, num_samples=3, seed=5)
    np.testing.assert_array_equal(batch[0], a[0])
    for i, seed in enumerate(prng.sample_seeds(5, 3)):
        want = gen.generate(tf.constant(vocab.codepoints[ids]), 150, 1.0, 0, 1.0, int(seed))["codepoints"].numpy()
        np.testing.assert_array_equal(vocab.codepoints[batch[i]], want)


def test_prime_unknown_code_points_are_skipped_and_empty_prime_reads_id_0(tiny):
    _, vocab, gen = tiny
    gen_ids = lambda cps: gen.generate(tf.constant(cps, tf.int32), 60, 1.0, 0, 1.0, 1)["codepoints"].numpy()
    np.testing.assert_array_equal(gen_ids([97, 9731, 98]), gen_ids([97, 98]))
    np.testing.assert_array_equal(gen_ids([]), gen_ids([9731]))
    np.testing.assert_array_equal(gen_ids([]), vocab.codepoints[collect(gen, [], 60, seed=1)[0]])


def test_keras_runtime_samples_follow_weight_updates(tiny):
    model, vocab, _ = tiny
    runtime = KerasRuntime(model, vocab, config=None)

    def text():
        return vocab.decode_codepoints(runtime.generate(vocab.encode("ab"), 80, seed=2)[0])

    a = text()
    assert len(a) == 80 and set(a) <= set("abcdefgh \n")
    assert a == text()
    old = model.get_weights()
    try:
        model.set_weights([w * 1.5 for w in old])
        runtime.refresh()  # the runtime's generator must see the new weights
        fresh = CharGenerator.from_keras(model, vocab)
        want = vocab.decode(collect(fresh, vocab.encode("ab"), 80, seed=2)[0])
        assert text() == want != a
    finally:
        model.set_weights(old)


def test_a_stop_string_ends_each_sample_after_its_first_occurrence(tiny):
    model, vocab, _ = tiny
    runtime = KerasRuntime(model, vocab, config=None)
    full = runtime.generate(vocab.encode("ab"), 400, seed=4, num_samples=2)
    for stop in ("a", "h ", "cd\n"):
        cut = runtime.generate(vocab.encode("ab"), 400, seed=4, num_samples=2, stop=stop)
        for whole, got in zip(full, cut):
            text, want = vocab.decode_codepoints(whole), vocab.decode_codepoints(got)
            end = text.find(stop)
            assert want == (text if end < 0 else text[:end + len(stop)]), stop


def test_cut_at_stop_finds_a_match_that_spans_pieces():
    from tfchar.runtimes.base import cut_at_stop

    pieces = [(0, np.array([1, 2, 3])), (0, np.array([4, 5])), (0, np.array([6]))]
    assert [p.tolist() for _, p in cut_at_stop(iter(pieces), [3, 4])] == [[1, 2, 3], [4]]
    assert [p.tolist() for _, p in cut_at_stop(iter(pieces), [9])] == [[1, 2, 3], [4, 5], [6]]
