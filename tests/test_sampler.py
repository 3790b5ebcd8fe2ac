"""The sampling ops (PRNG and draw) against naive numpy references; the generator's loops (generate,
generate_until, chained generate_chunk calls) against each other, in TensorFlow; the host chunk loop."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfchar.core.errors import ConfigError
from tfchar.core.vocab import Vocab
from tfchar.nn.generator import CharGenerator
from tfchar.nn.models import build_model
from tfchar.ops import draw
from tfchar.ops import rng as prng
from tfchar.runtimes.chunked import ChunkSignature, chunked_samples
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


def test_next_rng64_is_the_same_generator():
    x = np.concatenate([[1, 2, M - 2, M - 1], np.random.default_rng(1).integers(1, M, 1000)]).astype(np.int32)
    np.testing.assert_array_equal(prng.next_rng64(tf.constant(x, tf.int64)).numpy(), prng.next_rng(tf.constant(x)).numpy())


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


@pytest.mark.parametrize("vocab_size", [2, 65, 300])
def test_loop_shortcuts_pick_exactly_what_draw_picks(vocab_size):
    """pick_full/pick_truncated vs the definition, on ties, tiny and huge logits and extreme u, greedy too."""
    rng = np.random.default_rng(vocab_size)
    checked = 0
    for i in range(60):
        logits = (rng.normal(size=[32, vocab_size]) * rng.choice([0.1, 3.0, 30.0])).astype(np.float32)
        if i % 3 == 0:
            logits[:, rng.integers(0, vocab_size, max(1, vocab_size // 3))] = logits.max(axis=1, keepdims=True)
        bits = rng.integers(0, 1 << 24, [32, 1]).astype(np.float32)
        bits[:3, 0] = [0, (1 << 24) - 1, 1 << 23]
        t, k = float(rng.choice([0.0, 0.5, 1.0, 2.0])), int(rng.choice([0, 1, 2, vocab_size - 1, vocab_size + 5]))
        s = draw.settings(t, k, float(np.float32(rng.choice([1.0, 0.97, 0.5, 1e-6]))), vocab_size)
        want = draw.draw(tf.constant(logits), tf.constant(bits[:, 0] * prng.UNIT), s).numpy()
        picks = [draw.pick_truncated] + ([draw.pick_full] if int(s.mode) != draw.TRUNCATED else [])
        for pick in picks:  # the loop's pick for s.mode, and TRUNCATED's, exact for every mode
            np.testing.assert_array_equal(pick(tf.constant(logits), tf.constant(bits), s).numpy(), want)
            checked += 1
    assert checked >= 60


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
    model.set_weights([w * 3 for w in model.get_weights()])  # sharper logits: greedy and top-p cut more
    return model, vocab, CharGenerator.from_keras(model, vocab, chunk_size=16)


def generate(gen, codepoints, length, temperature=1.0, top_k=0, top_p=1.0, seed=0, stop=None) -> list[int]:
    """The generator's in-graph `generate` (or `generate_until` with a stop code point)."""
    args = (tf.constant(codepoints, tf.int32), length, temperature, top_k, top_p, seed)
    out = gen.generate(*args) if stop is None else gen.generate_until(*args, stop)
    return out["codepoints"].numpy().tolist()


def chained(chunks, vocab, text, length, temperature=1.0, top_k=0, top_p=1.0, seed=0, stop="") -> list[int]:
    """`generate_chunk` called in a chain by the host loop every runtime uses."""
    pieces = chunked_samples(chunks, vocab.encode(text, unknown="skip"), length, temperature, top_k, top_p, seed, 1,
                             vocab.units(stop))
    return [int(c) for _, piece in pieces for c in piece]


def graph_chunks(gen, vocab) -> ChunkSignature:
    call = lambda **inputs: gen.generate_chunk(**{k: tf.constant(v) for k, v in inputs.items()})
    return ChunkSignature(call, gen.chunk_size, gen.state_size, vocab, "test graph")


LOOP_KNOBS = [dict(), dict(temperature=0.0), dict(temperature=0.7, top_k=3), dict(temperature=1.3, top_p=0.8),
              dict(top_k=2, top_p=0.5)]


@pytest.mark.parametrize("knobs", LOOP_KNOBS, ids=lambda k: "-".join(f"{a}{b}" for a, b in k.items()) or "plain")
def test_chained_chunks_equal_generate(tiny, knobs):
    model, vocab, gen = tiny
    prime = "abc de" * 5  # 30 code points: two calls of K = 16 read it
    for seed in (0, -9):
        want = generate(gen, [ord(c) for c in prime], 100, seed=seed, **knobs)
        assert chained(graph_chunks(gen, vocab), vocab, prime, 100, seed=seed, **knobs) == want


def test_chunk_boundaries_do_not_matter(tiny):
    model, vocab, gen = tiny
    want = generate(gen, [ord(c) for c in "abc de" * 5], 100, temperature=0.9, top_k=4, seed=5)
    for k in (1, 7):  # every chunk boundary, and the prime's, lands somewhere else
        other = CharGenerator.from_keras(model, vocab, chunk_size=k)
        assert chained(graph_chunks(other, vocab), vocab, "abc de" * 5, 100, temperature=0.9, top_k=4, seed=5) == want


def test_chunk_calls_of_any_length_continue_exactly(tiny):
    _, vocab, gen = tiny
    chunks = graph_chunks(gen, vocab)
    want = generate(gen, [ord(c) for c in "hag"], 60, seed=3)
    state, carry = chunks.zeros()
    got, prime = [], [ord(c) for c in "hag"]
    for i, n in enumerate([0, 1, 16, 5, 0, 16, 16, 6]):  # prime in two calls, then uneven pieces
        piece = prime[:2] if i == 0 else prime[2:] if i == 1 else []
        out = chunks(piece, len(piece), n, state, carry, 1.0, 0, 1.0, 3)
        state, carry = out["state"], out["carry"]
        assert out["valid"] == n and (out["codepoints"][n:] == 0).all()
        got += out["codepoints"][:n].tolist()
    assert got == want


def test_prime_unknown_code_points_are_skipped_and_empty_prime_reads_id_0(tiny):
    _, vocab, gen = tiny
    assert generate(gen, [97, 9731, 98], 60, seed=1) == generate(gen, [97, 98], 60, seed=1)
    assert generate(gen, [], 60, seed=1) == generate(gen, [9731], 60, seed=1)
    one_hot_start = generate(gen, [int(vocab.codepoints[0])] * 2, 60, seed=1)
    assert generate(gen, [], 60, seed=1) != one_hot_start  # reads token 0 once, not twice
    assert chained(graph_chunks(gen, vocab), vocab, "", 60, seed=1) == generate(gen, [], 60, seed=1)


def test_generate_until_stops_after_the_first_stop_code_point(tiny):
    _, vocab, gen = tiny
    prime = [ord(c) for c in "ab"]
    for seed in range(4):
        full = generate(gen, prime, 300, seed=seed)
        for stop in "a h":
            cut = generate(gen, prime, 300, seed=seed, stop=ord(stop))
            end = full.index(ord(stop)) + 1 if ord(stop) in full else len(full)
            assert cut == full[:end]
    assert generate(gen, prime, 300, seed=1, stop=-1) == generate(gen, prime, 300, seed=1)
    assert generate(gen, prime, 300, seed=1, stop=9731) == generate(gen, prime, 300, seed=1)  # never sampled
    one = CharGenerator.from_keras(tiny[0], vocab, chunk_size=1)  # every stop fills its chunk: still the end
    full = generate(gen, prime, 100, seed=2)
    assert generate(one, prime, 100, seed=2, stop=ord(" ")) == full[:full.index(ord(" ")) + 1]


def test_a_chunk_ending_at_the_stop_continues_where_generate_goes_on(tiny):
    _, vocab, gen = tiny
    chunks = graph_chunks(gen, vocab)
    full = generate(gen, [ord("a")], 200, seed=2)
    state, carry = chunks.zeros()
    got, prime = [], [ord("a")]
    while len(got) < 200:
        out = chunks(prime, len(prime), min(16, 200 - len(got)), state, carry, 1.0, 0, 1.0, 2, ord(" "))
        prime, state, carry = [], out["state"], out["carry"]
        piece = out["codepoints"][:out["valid"]].tolist()
        assert piece and (piece[-1] == ord(" ") or ord(" ") not in piece)
        got += piece
    assert got == full and full.count(ord(" ")) > 3


def test_a_stop_string_ends_each_sample_after_its_first_occurrence(tiny):
    model, vocab, _ = tiny
    runtime = KerasRuntime(model, vocab, config=None)
    full = runtime.generate(vocab.encode("ab"), 400, seed=4, num_samples=2)
    for stop in ("a", "h ", "cd\n", "ggg"):
        cut = runtime.generate(vocab.encode("ab"), 400, seed=4, num_samples=2, stop=stop)
        for whole, got in zip(full, cut):
            text, want = vocab.decode_codepoints(whole), vocab.decode_codepoints(got)
            end = text.find(stop)
            assert want == (text if end < 0 else text[:end + len(stop)]), stop


@pytest.mark.parametrize("change, expect", [
    (dict(state=np.zeros([1, 31], np.float32)), "state must be float32[1, 32]"),
    (dict(state=np.zeros([32], np.float32)), "state must be float32[1, 32]"),
    (dict(carry=np.zeros([3], np.int32)), "carry must be int32[2]"),
    (dict(stop=9731), "stop code point 9731 ('\u2603') is not in the model's vocabulary"),
    (dict(prime=[97] * 17, prime_length=17), "at most 16 prime code points"),
    (dict(length=17), "length 17 must be in"),
])
def test_bad_chunk_calls_are_one_line_errors(tiny, change, expect):
    _, vocab, gen = tiny
    chunks = graph_chunks(gen, vocab)
    state, carry = chunks.zeros()
    args = dict(prime=[97], prime_length=1, length=4, state=state, carry=carry, temperature=1.0, top_k=0, top_p=1.0,
                seed=1, stop=-1) | change
    with pytest.raises(ConfigError) as e:
        chunks(**args)
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_a_stop_text_the_model_cannot_write_is_an_error(tiny):
    model, vocab, _ = tiny
    runtime = KerasRuntime(model, vocab, config=None)
    with pytest.raises(ConfigError, match="the stop text 'a\u2603' has 1 character"):
        runtime.samples(vocab.encode("ab"), 10, 1.0, 0, 1.0, 0, 1, stop="a\u2603")


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
        assert text() == vocab.decode_codepoints(generate(fresh, [97, 98], 80, seed=2)) != a
    finally:
        model.set_weights(old)


def test_cut_at_stop_finds_a_match_that_spans_pieces():
    from tfchar.runtimes.base import cut_at_stop

    pieces = [(0, np.array([1, 2, 3])), (0, np.array([4, 5])), (0, np.array([6]))]
    assert [p.tolist() for _, p in cut_at_stop(iter(pieces), [3, 4])] == [[1, 2, 3], [4]]
    assert [p.tolist() for _, p in cut_at_stop(iter(pieces), [9])] == [[1, 2, 3], [4, 5], [6]]
