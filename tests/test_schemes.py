"""Each training scheme's defining property, against naive numpy references on a tiny real corpus.

Which positions are scored (single_loss: the last; overlap with burn_in: all but the first ones) and
whether state carries (stateful: batch k+1 continues batch k; windows: every window from zero state).
The optimizer is SGD with learning rate 0 wherever a loss is compared, so weights stay fixed.
"""

import math

import keras
import numpy as np
import pytest

from conftest import tiny_overrides
from tfchar.nn import checkpoint as ckpt_lib
from tfchar.core.config import DataConfig
from tfchar.data.corpus import load_corpus
from tfchar.core.choices import SCHEMES
from tfchar.data.pipeline import loss_weights, make_dataset
from tfchar.nn.models import build_model, get_states
from tfchar.ops.loss import token_nll, weighted_mean
from tfchar.training.step import make_train_step
from tfchar.training.run_dir import resolve_config
from tfchar.training.trainer import fit

B, T = 4, 16


@pytest.fixture(scope="module")
def corpus(small_text_file):
    return load_corpus(DataConfig(source=str(small_text_file)))


def model_for(corpus, stateful=False):
    model = build_model(len(corpus.vocab), "lstm", 16, 2, embedding_dim=8, batch_size=B, seq_length=T,
                        stateful=stateful, seed=3)
    # Fresh initial weights predict almost uniformly; scaled up, every position's loss differs visibly.
    model.set_weights([w * 4.0 for w in model.get_weights()])
    return model


def frozen_step(model, weights=None):
    """A real train step that cannot change the weights (SGD, learning rate 0, no clipping)."""
    return make_train_step(model, keras.optimizers.SGD(0.0), 0.0, weights)


def naive_nll(logits, y):
    """-log softmax(logits)[y] in float64: logits [B, T, V], y [B, T] -> [B, T]."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    log_z = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))[..., 0]
    return log_z - np.take_along_axis(logits, np.asarray(y)[..., None], -1)[..., 0]


def batches(ids, scheme, n=2, **kw):
    return [(x.numpy(), y.numpy()) for x, y in make_dataset(ids, B, T, scheme, seed=5, **kw).take(n)]


def test_single_loss_scores_only_the_last_position(corpus):
    model = model_for(corpus)
    step = frozen_step(model, loss_weights("single_loss", T))
    (x, y), = batches(corpus.train, "single_loss", 1)
    logits = model(x)
    loss, _ = step(x, y)
    assert float(loss) == pytest.approx(naive_nll(logits, y)[:, -1].mean(), abs=1e-5)
    other = y.copy()
    other[:, :-1] = (other[:, :-1] + 1) % len(corpus.vocab)  # every target but the last changes...
    assert float(step(x, other)[0]) == pytest.approx(float(loss), abs=1e-6)  # ...and the loss does not
    other[:, -1] = (other[:, -1] + 1) % len(corpus.vocab)
    assert float(step(x, other)[0]) == pytest.approx(naive_nll(logits, other)[:, -1].mean(), abs=1e-5)


def test_overlap_burn_in_excludes_the_first_positions(corpus):
    burn_in, stride = 5, 4
    model = model_for(corpus)
    step = frozen_step(model, loss_weights("overlap", T, burn_in))
    (x, y), = batches(corpus.train, "overlap", 1, stride=stride)
    nll = naive_nll(model(x), y)
    assert float(step(x, y)[0]) == pytest.approx(nll[:, burn_in:].mean(), abs=1e-5)
    other = y.copy()
    other[:, :burn_in] = (other[:, :burn_in] + 1) % len(corpus.vocab)
    assert float(step(x, other)[0]) == pytest.approx(nll[:, burn_in:].mean(), abs=1e-5)
    # Without burn_in every position counts, and weighted_mean agrees with the plain mean.
    assert float(frozen_step(model)(x, y)[0]) == pytest.approx(nll.mean(), abs=1e-5)
    w = loss_weights("overlap", T, burn_in)
    assert float(weighted_mean(token_nll(y, model(x)), w)) == pytest.approx(nll[:, burn_in:].mean(), abs=1e-5)


def test_overlap_windows_start_every_stride(corpus):
    stride = 4
    ids = np.asarray(corpus.train)
    starts = set()
    for x, y in batches(corpus.train, "overlap", 3, stride=stride):
        for row_x, row_y in zip(x, y):
            j = next(j for j in range(0, len(ids) - T, stride) if np.array_equal(ids[j:j + T], row_x))
            assert np.array_equal(ids[j + 1:j + T + 1], row_y)
            starts.add(j)
    assert all(s % stride == 0 for s in starts) and len(starts) == 3 * B


def test_stateful_carries_state_into_the_next_batch(corpus):
    model = model_for(corpus, stateful=True)
    step = frozen_step(model)
    (x1, y1), (x2, y2) = batches(corpus.train, "stateful")
    assert np.array_equal(x2[:, 0], y1[:, -1])  # row i of batch 2 continues row i of batch 1
    step(x1, y1)
    assert any(np.abs(s).max() > 1e-3 for s in get_states(model))  # batch 1 left a state behind
    carried = float(step(x2, y2)[0])
    # Reference: the same weights without state, reading both batches as one [B, 2T] sequence.
    plain = build_model(len(corpus.vocab), "lstm", 16, 2, embedding_dim=8)
    plain.set_weights(model.get_weights())
    nll = naive_nll(plain(np.concatenate([x1, x2], 1)), np.concatenate([y1, y2], 1))
    assert carried == pytest.approx(nll[:, T:].mean(), abs=1e-5)
    assert abs(carried - naive_nll(plain(x2), y2).mean()) > 1e-3  # and not what a fresh state gives


def test_windows_loss_does_not_depend_on_earlier_batches(corpus):
    model = model_for(corpus)
    step = frozen_step(model)
    (x1, y1), (x2, y2) = batches(corpus.train, "windows")
    fresh = float(step(x2, y2)[0])
    step(x1, y1)
    assert float(step(x2, y2)[0]) == pytest.approx(fresh, abs=1e-6)
    assert fresh == pytest.approx(naive_nll(model(x2), y2).mean(), abs=1e-5)
    ids = np.asarray(corpus.train)
    for row in np.concatenate([x1, x2]):  # non-overlapping: every window starts at a multiple of T
        assert any(np.array_equal(ids[j:j + T], row) for j in range(0, len(ids) - T, T))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fit_carries_state_only_in_the_stateful_scheme(scheme, small_text_file, tmp_path):
    extra = {"train.scheme": scheme, "train.max_steps": 6, "train.eval_every": 6, "train.sample_length": 0}
    if scheme == "overlap":
        extra["train.burn_in"] = 4
    cfg, run_dir = resolve_config(None, tiny_overrides(small_text_file, tmp_path / scheme, **extra))
    result = fit(cfg, run_dir, log=lambda s: None)
    assert math.isfinite(result["best_val_loss"]) and result["steps"] == 6
    ckpt = ckpt_lib.resolve_checkpoint(run_dir, "last")
    saved_state = ckpt_lib.load_rnn_state(ckpt)
    if scheme == "stateful":
        assert saved_state and any(np.abs(s).max() > 0 for s in saved_state)  # carried state is part of resume
    else:
        assert saved_state is None  # a non-stateful model: nothing to carry


# ============================================================================================ sampling schemes

@pytest.fixture(scope="module")
def generator(corpus):
    from tfchar.runtimes.keras import KerasRuntime

    model = model_for(corpus)
    return model, KerasRuntime(model, corpus.vocab, config=None)


def test_windowed_sampling_with_a_long_window_is_progressive_sampling(generator, corpus):
    from tfchar.sampling.windowed import windowed_sample

    _, runtime = generator
    prime = corpus.vocab.encode("ROMEO:")
    knobs = dict(temperature=0.8, top_k=5, top_p=0.95, seed=11, num_samples=2)
    progressive = np.stack(runtime.generate(prime, 40, **knobs))  # code points [2, 40]
    windowed = windowed_sample(runtime, prime, 40, window=46, **knobs)  # token ids [2, 40]
    codepoints = np.asarray(runtime.vocab.codepoints)[windowed]
    assert windowed.shape == (2, 40) and np.array_equal(codepoints, progressive)  # same draws, same seeds


def test_windowed_sampling_reads_only_the_last_k_characters(generator, corpus):
    """Naive reference: the Keras model on the last K ids from zero state, drawn with the sampler's own ops."""
    import tensorflow as tf

    from tfchar.ops import draw, rng as prng
    from tfchar.sampling.windowed import windowed_sample

    model, runtime = generator
    plain = build_model(len(corpus.vocab), "lstm", 16, 2, embedding_dim=8)
    plain.set_weights(model.get_weights())
    prime, k, n = list(corpus.vocab.encode("First Citizen:\n")), 5, 25
    rng, context = prng.seed_rng(tf.constant(prng.sample_seeds(3, 1))), list(prime)
    for _ in range(n):
        logits = plain(np.array([context[-k:]], np.int32))[:, -1]  # [1, V]
        rng = prng.next_rng(rng)
        context.append(int(draw.sample_ids(logits, prng.uniform(rng), 1.0, 0, 1.0)[0]))
    got = windowed_sample(runtime, prime, n, window=k, seed=3)
    assert got[0].tolist() == context[len(prime):]


def test_windowed_sampling_rejects_an_empty_window(generator):
    from tfchar.core.errors import ConfigError
    from tfchar.sampling.windowed import windowed_sample

    _, runtime = generator
    with pytest.raises(ConfigError, match="--window 0 must be >= 1"):
        windowed_sample(runtime, [1, 2], 5, window=0)
