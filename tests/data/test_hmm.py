import itertools

import numpy as np
import pytest
from scipy.stats import norm

from ablation.data import hmm


def _random_hmm(rng, n_states):
    trans = rng.random((n_states, n_states)) + 0.1
    trans /= trans.sum(axis=1, keepdims=True)
    init = rng.random(n_states) + 0.1
    return trans, init / init.sum()


def _brute_force(log_path_weight, n_states, n_frames):
    """Posterior marginals by enumerating every state path."""
    post = np.zeros((n_frames, n_states))
    paths = list(itertools.product(range(n_states), repeat=n_frames))
    logw = np.array([log_path_weight(p) for p in paths])
    w = np.exp(logw - logw.max())
    w /= w.sum()
    for p, wi in zip(paths, w):
        post[np.arange(n_frames), p] += wi
    return post


def test_forward_backward_matches_enumeration():
    rng = np.random.default_rng(0)
    trans, init = _random_hmm(rng, 3)
    log_emit = rng.normal(size=(5, 3)) * 2.0
    final = np.array([0.2, 0.0, 0.7])

    def weight(p):
        lw = np.log(init[p[0]]) + log_emit[0, p[0]] + np.log(final[p[-1]]) if final[p[-1]] > 0 else -np.inf
        return lw + sum(np.log(trans[a, b]) + log_emit[t + 1, b] for t, (a, b) in enumerate(zip(p, p[1:])))

    with np.errstate(divide="ignore"):
        got = hmm.forward_backward(log_emit, np.log(trans), np.log(init), np.log(final))
    np.testing.assert_allclose(got, _brute_force(weight, 3, 5), atol=1e-12)
    assert np.all(got[-1, 1] == 0.0)  # state 1 cannot end the sequence


@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_ar1_factorisation_matches_enumeration(rho):
    rng = np.random.default_rng(1)
    n_states, n_frames, dim, sd = 3, 5, 2, np.array([0.8, 1.3])
    trans, init = _random_hmm(rng, n_states)
    means = rng.normal(size=(n_states, dim))
    x = rng.normal(size=(n_frames, dim))
    sd_w = sd * np.sqrt(1 - rho**2)

    def weight(p):
        e = x - means[list(p)]
        lw = np.log(init[p[0]]) + norm.logpdf(e[0], scale=sd).sum()
        lw += norm.logpdf(e[1:] - rho * e[:-1], scale=sd_w).sum()
        return lw + sum(np.log(trans[a, b]) for a, b in zip(p, p[1:]))

    log_emit, log_pair = hmm.ar1_log_factors(x, means, sd, rho)
    got = hmm.forward_backward(log_emit, np.log(trans) + log_pair, np.log(init))
    np.testing.assert_allclose(got, _brute_force(weight, n_states, n_frames), atol=1e-12)
    if rho == 0.0:
        assert np.all(log_pair == 0.0)


def test_ar1_factors_of_padded_batch_equal_single_sequences():
    rng = np.random.default_rng(2)
    means = rng.normal(size=(4, 3))
    x = rng.normal(size=(2, 7, 3))
    lengths = np.array([7, 4])
    batch, pair = hmm.ar1_log_factors(x, means, 1.1, 0.4, lengths)
    for b, n in enumerate(lengths):
        single, pair1 = hmm.ar1_log_factors(x[b, :n], means, 1.1, 0.4)
        np.testing.assert_allclose(batch[b, :n], single, atol=1e-12)
        np.testing.assert_array_equal(batch[b, n:], 0.0)
        np.testing.assert_allclose(pair, pair1)


def _random_chain(rng, n_chains=3, n_sub=3):
    cross = rng.random((n_chains, n_chains)) * (1 - np.eye(n_chains))
    cross /= cross.sum(axis=1, keepdims=True)
    cross[-1] = 0.0  # the last chain only exits
    return cross, rng.uniform(0.3, 0.9, size=n_chains * n_sub)


def test_chain_matrix_rows_sum_to_one_except_exit():
    rng = np.random.default_rng(3)
    cross, stay = _random_chain(rng)
    trans = hmm.chain_transition_matrix(stay, cross)
    sums = trans.sum(axis=1)
    np.testing.assert_allclose(sums[:-1], 1.0)
    assert sums[-1] == pytest.approx(stay[-1])  # the rest is the exit
    assert trans[0, 1] == pytest.approx(1 - stay[0]) and trans[0, 2] == 0.0
    np.testing.assert_allclose(trans[2, [0, 3, 6]], (1 - stay[2]) * cross[0])


def test_chain_forward_backward_equals_dense_per_sequence():
    rng = np.random.default_rng(4)
    cross, _ = _random_chain(rng)
    n_states = 9
    lengths = np.array([8, 6, 11])  # 6 frames is the shortest path to the exit
    stay = rng.uniform(0.3, 0.9, size=(3, n_states))
    advance = rng.uniform(0.2, 1.0, size=n_states)
    cross_w = cross * rng.uniform(0.2, 1.0, size=cross.shape)
    init = np.eye(n_states)[0]
    final = np.zeros((3, n_states))
    final[:, -1] = 1 - stay[:, -1]
    log_emit = rng.normal(size=(3, 11, n_states)) * 1.5
    emit = np.exp(log_emit - log_emit.max(axis=2, keepdims=True))
    got = hmm.chain_forward_backward(emit, lengths, stay, cross_w, init, final, advance)
    assert got.shape == (3, 11, n_states)
    for b, n in enumerate(lengths):
        trans = hmm.chain_transition_matrix(stay[b], cross_w, advance)
        with np.errstate(divide="ignore"):
            want = hmm.forward_backward(log_emit[b, :n], np.log(trans), np.log(init), np.log(final[b]))
        np.testing.assert_allclose(got[b, :n], want, atol=1e-10)
        np.testing.assert_array_equal(got[b, n:], 0.0)
    # starts in the first state, ends in the last one
    np.testing.assert_allclose(got[:, 0, 0], 1.0)
    np.testing.assert_allclose(got[np.arange(3), lengths - 1, -1], 1.0)


def test_chain_steps_equal_dense_products():
    rng = np.random.default_rng(5)
    cross, _ = _random_chain(rng, n_chains=4, n_sub=2)
    stay = rng.uniform(0.1, 0.9, size=(2, 8))
    advance = rng.uniform(0.5, 1.0, size=8)
    v = rng.random((2, 8))
    for b in range(2):
        trans = hmm.chain_transition_matrix(stay[b], cross, advance)
        np.testing.assert_allclose(hmm.chain_forward_step(v, stay, cross, advance)[b], v[b] @ trans)
        np.testing.assert_allclose(hmm.chain_backward_step(v, stay, cross, advance)[b], trans @ v[b])
