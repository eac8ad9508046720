import itertools

import numpy as np
import pytest

from ablation.data import ceiling, hmm, synthphone
from ablation.data.ceiling import ChainModel, View


def _tiny_chain(rng):
    """3 chains of 2 sub-states, 2-dim AR(1) noise; chain 2 ends the sequence when left."""
    n_chains, n_sub = 3, 2
    cross = np.zeros((n_chains, n_chains))
    cross[0, 1:] = rng.dirichlet([1, 1])
    cross[1, [0, 2]] = rng.dirichlet([1, 1])
    stay = rng.uniform(0.3, 0.8, size=n_chains * n_sub)
    means = 1.5 * rng.normal(size=(n_chains * n_sub, 2))
    start = np.eye(n_chains * n_sub)[0]
    prior = rng.dirichlet(np.ones(n_chains * n_sub))
    exit_w = np.zeros(n_chains * n_sub)
    exit_w[-1] = 1.0 - stay[-1]
    return ChainModel(means, 1.0, 0.4, cross, start, prior), stay, exit_w


def _enumerate_centre(m: ChainModel, stay, x, init, final, centre):
    """Posterior of the state at ``centre`` by summing over every state path of ``x``'s frames."""
    trans = hmm.chain_transition_matrix(stay, m.cross)
    n_states, (n, _) = len(stay), x.shape
    paths = np.array(list(itertools.product(range(n_states), repeat=n)))
    e = x[None] - m.means[paths]  # [P, n, D]
    sd_w2 = m.sd**2 * (1 - m.rho**2)
    log_w = -0.5 * np.sum(e[:, 0] ** 2, axis=1) / m.sd**2
    log_w += -0.5 * np.sum((e[:, 1:] - m.rho * e[:, :-1]) ** 2, axis=(1, 2)) / sd_w2
    with np.errstate(divide="ignore"):
        log_w += np.log(init[paths[:, 0]]) + np.log(final[paths[:, -1]])
        log_w += np.log(trans[paths[:, :-1], paths[:, 1:]]).sum(axis=1)
    w = np.exp(log_w - log_w.max())
    post = np.bincount(paths[:, centre], weights=w, minlength=n_states)
    return post / post.sum()


@pytest.mark.parametrize("half", [0, 1, 2, 3])
def test_window_posteriors_equal_enumeration(half):
    rng = np.random.default_rng(half)
    m, stay, exit_w = _tiny_chain(rng)
    n_frames = 7
    x = rng.normal(size=(n_frames, 2)) * 1.5
    got = ceiling.window_posteriors(m, x[None], np.array([n_frames]), stay[None], exit_w[None], half)[0]
    for t in range(n_frames):
        lo, hi = max(t - half, 0), min(t + half, n_frames - 1)
        init = m.start if t - half < 0 else m.prior  # the window reaches past the first frame: its start is known
        final = exit_w if t + half > n_frames - 1 else np.ones_like(exit_w)
        want = _enumerate_centre(m, stay, x[lo : hi + 1], init, final, t - lo)
        np.testing.assert_allclose(got[t], want, atol=1e-10)


def test_window_posteriors_of_a_padded_batch_equal_single_sequences():
    rng = np.random.default_rng(5)
    m, stay, exit_w = _tiny_chain(rng)
    lengths = np.array([9, 4, 6])
    x = rng.normal(size=(3, 9, 2))
    stays = np.stack([stay, stay * 0.9, stay])
    finals = np.stack([exit_w, exit_w * 0.5, exit_w])
    batch = ceiling.window_posteriors(m, x, lengths, stays, finals, 2, max_cells=7)  # several chunks
    for b, n in enumerate(lengths):
        one = ceiling.window_posteriors(m, x[b : b + 1, :n], lengths[b : b + 1], stays[b : b + 1], finals[b : b + 1], 2)
        np.testing.assert_allclose(batch[b, :n], one[0], atol=1e-12)
        assert np.all(batch[b, n:] == 0)


def _tiny_class_chain(rng):
    """``_tiny_chain`` with independent frames and a full noise covariance per class (version 2's model)."""
    m, stay, exit_w = _tiny_chain(rng)
    state_class = np.array([0, 0, 1, 1, 0, 1])
    chol = np.stack([np.linalg.cholesky(c @ c.T + 0.3 * np.eye(2)) for c in rng.normal(size=(2, 2, 2))])
    log_det = np.log(np.abs(np.diagonal(chol, axis1=1, axis2=2))).sum(axis=1)
    m = ChainModel(m.means, 1.0, 0.0, m.cross, m.start, m.prior, state_class, np.linalg.inv(chol), log_det)
    return m, stay, exit_w, chol


@pytest.mark.parametrize("half", [0, 1, 2, 3])
def test_window_posteriors_with_a_covariance_per_class_equal_enumeration(half):
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(10 + half)
    m, stay, exit_w, chol = _tiny_class_chain(rng)
    n_frames, n_states = 7, len(stay)
    x = rng.normal(size=(n_frames, 2)) * 1.5
    lengths = np.array([n_frames, 5])
    batch = np.stack([x, np.pad(x[:5], ((0, 2), (0, 0)))])  # a second, shorter utterance: padded
    got = ceiling.window_posteriors(m, batch, lengths, np.stack([stay, stay]), np.stack([exit_w, exit_w]), half)
    trans = hmm.chain_transition_matrix(stay, m.cross)
    cov = chol @ np.transpose(chol, (0, 2, 1))
    log_e = np.array([[multivariate_normal.logpdf(x[t], m.means[s], cov[m.state_class[s]]) for s in range(n_states)]
                      for t in range(n_frames)])  # fmt: skip
    for b, n in enumerate(lengths):
        for t in range(n):
            lo, hi = max(t - half, 0), min(t + half, n - 1)
            init = m.start if t - half < 0 else m.prior
            final = exit_w if t + half > n - 1 else np.ones_like(exit_w)
            paths = np.array(list(itertools.product(range(n_states), repeat=hi - lo + 1)))
            with np.errstate(divide="ignore"):
                log_w = np.log(init[paths[:, 0]]) + np.log(final[paths[:, -1]])
                log_w += np.log(trans[paths[:, :-1], paths[:, 1:]]).sum(axis=1)
            log_w += log_e[lo + np.arange(hi - lo + 1), paths].sum(axis=1)
            w = np.exp(log_w - log_w.max())
            want = np.bincount(paths[:, t - lo], weights=w, minlength=n_states)
            np.testing.assert_allclose(got[b, t], want / want.sum(), atol=1e-10)
        assert np.all(got[b, n:] == 0)


@pytest.mark.parametrize("cols", [1, 3, 1000])
def test_windows_inside_utterances_swept_in_runs_equal_a_forward_backward_over_each_window(cols, monkeypatch):
    """Windows inside their utterance are swept as runs of ``cols`` consecutive flat frames, edges and
    padding computed along and dropped: each equals a forward-backward over that window's frames alone."""
    rng = np.random.default_rng(21)
    m, stay, exit_w, _ = _tiny_class_chain(rng)
    monkeypatch.setattr(ceiling, "INNER_COLS", cols)
    lengths, half = np.array([12, 5, 9, 3, 12]), 2
    x = rng.normal(size=(len(lengths), 12, 2)) * 1.5
    stays = np.stack([stay * f for f in (1.0, 0.9, 1.1, 0.8, 1.0)])
    finals = np.stack([exit_w * f for f in (1.0, 0.5, 1.0, 0.7, 0.9)])
    got = ceiling.window_posteriors(m, x, lengths, stays, finals, half)
    for b, n in enumerate(lengths):
        emit = np.exp(m.log_emit(x[b : b + 1, :n], np.array([n])))[0]
        for t in range(n):
            lo, hi = max(t - half, 0), min(t + half, n - 1)
            init = m.start if t - half < 0 else m.prior
            final = finals[b] if t + half > n - 1 else np.ones_like(exit_w)
            want = hmm.chain_forward_backward(emit[None, lo : hi + 1], np.array([hi - lo + 1]), stays[b : b + 1],
                                              m.cross, init, final[None])[0, t - lo]  # fmt: skip
            np.testing.assert_allclose(got[b, t], want, rtol=1e-9, atol=1e-12)
        assert np.all(got[b, n:] == 0)


@pytest.fixture(scope="module")
def tiny():
    return synthphone.generate(synthphone.PRESETS["tiny"])


def test_window_ceiling_rises_with_n_and_reaches_the_utterance_ceiling(tiny):
    cfg = synthphone.PRESETS["tiny"]
    pool = tiny.pool
    acc = synthphone.information_accuracy(cfg, pool.utt_ids, [View("window", n) for n in (1, 5, 11, 21)])
    values = [acc[View("window", n)] for n in (1, 5, 11, 21)]
    assert values == sorted(values) and values[-1] - values[0] > 0.05
    assert values[-1] < pool.ceiling()
    # a window wider than twice the longest utterance sees all of it: exactly the utterance ceiling
    few = np.argsort(pool.lengths)[:4]
    sub = pool.subset(few)
    n_all = 2 * int(sub.lengths.max()) + 1
    wide = synthphone.information_accuracy(cfg, sub.utt_ids, [View("window", n_all), View("chunk", 1, 10_000)])
    assert wide[View("window", n_all)] == pytest.approx(sub.ceiling(), abs=0.5 / sub.n_frames)
    assert wide[View("chunk", 1, 10_000)] == pytest.approx(sub.ceiling(), abs=0.5 / sub.n_frames)


def _old_split_ceiling(cfg, utt_ids, views):
    """The ceilings of a split as they were computed before the per-utterance cache: one pass over the
    split's own utterances (batched among themselves), hits summed over them, over their frames."""
    from ablation.data import synthphone2 as s2
    from ablation.data.ceiling import DELTA_REACH, chunk_posteriors, window_posteriors

    d = s2.draw(cfg)
    m = s2.chain_model(cfg, d)
    where = {u: i for i, u in enumerate(d.utt_ids)}
    wanted = np.array(sorted(where[u] for u in utt_ids))
    hits = dict.fromkeys(views, 0)
    for idx, states, clean in s2.clean_batches(d, wanted):
        n_len, stay = d.lengths[idx], d.stay_spk[d.spk[idx]]
        labels = d.model.chain_label[np.maximum(states, 0) // s2.N_SUB]
        final = synthphone._exit_probs(stay)
        for v in views:
            half = v.n // 2 + DELTA_REACH
            if v.kind == "window":
                post = window_posteriors(m, clean, n_len, stay, final, half, max_cells=20_000)
            else:
                post = chunk_posteriors(m, clean, n_len, stay, final, v.chunk_len or int(n_len.max()), half)
            hits[v] += int(np.sum((s2.phones(d.model, post).argmax(axis=-1) == labels) & (states >= 0)))
    return {v: h / int(d.lengths[wanted].sum()) for v, h in hits.items()}


def test_a_split_s_ceilings_from_the_per_utterance_cache_equal_the_per_split_pass_to_the_last_digit(cache_dir):
    from ablation.data.corpus import make_splits

    cfg = synthphone.resolve("tiny-v2")
    ds = synthphone.load(cfg)
    views = [View("window", 11), View("chunk", 5, 32)]
    for seed in (3,):
        splits = make_splits(ds, 0.2, seed=seed)
        for part in (splits.val, splits.test):
            got = ceiling.info_ceilings(part, views)
            assert got == _old_split_ceiling(cfg, part.utt_ids, views)  # exact: the same integers, one division
    assert (cache_dir / "synthphone" / cfg.hash / ceiling.HITS_FILE).is_file()


def test_every_split_reads_the_hits_counted_once_per_corpus(tiny, monkeypatch, cache_dir):
    from ablation.data.corpus import make_splits

    calls = []
    real = synthphone.information_hits

    def counted(cfg, views, which=None):
        calls.append(sorted(v.key for v in views))
        return real(cfg, views, which)

    monkeypatch.setattr(synthphone, "information_hits", counted)
    first = ceiling.info_ceilings(tiny.pool.subset([0, 1, 2]), [View("window", 3), View("utterance")])
    assert first[View("utterance")] == tiny.pool.subset([0, 1, 2]).ceiling()
    assert 0 < first[View("window", 3)] < first[View("utterance")]
    assert calls == [["window:3"]]  # every utterance of the corpus at once; the utterance view is the corpus's own
    for seed in range(4):  # other splits, other utterances: nothing computed again
        splits = make_splits(tiny, 0.2, seed=seed)
        ceiling.info_ceilings(splits.val, [View("window", 3)])
        ceiling.info_ceilings(splits.test, [View("window", 3)])
    assert calls == [["window:3"]]
    ceiling.info_ceilings(tiny.pool, [View("window", 3), View("window", 5)])  # a new view: only it
    assert calls == [["window:3"], ["window:5"]]
    # the pool's hits sum to its frames' share: what the whole pool gets right, over its frames
    table = ceiling.corpus_hits(synthphone.config_of(tiny.pool), [View("window", 5)])
    n_pool = tiny.pool.n_utts
    assert table["utt_ids"][:n_pool] == list(tiny.pool.utt_ids) and table["lengths"][:n_pool] == tiny.pool.lengths.tolist()
    want = sum(table["hits"]["window:5"][:n_pool]) / tiny.pool.n_frames
    assert ceiling.info_ceilings(tiny.pool, [View("window", 5)]) == {View("window", 5): want}


def test_a_window_that_sees_every_utterance_whole_is_answered_as_the_utterance_ceiling(tiny, monkeypatch):
    def fail(*a, **k):
        raise AssertionError("a window longer than every utterance needs no computation")

    monkeypatch.setattr(synthphone, "information_hits", fail)
    part = tiny.pool.subset([0, 1])
    longest = int(part.lengths.max())
    n = 2 * (longest - ceiling.DELTA_REACH) + 1  # half = longest: every span runs past both ends
    got = ceiling.info_ceilings(part, [View("window", n), View("window", 100_001), View("chunk", 1, longest)])
    assert set(got.values()) == {part.ceiling()}
    assert not ceiling.sees_whole(View("window", n - 2), longest)
    assert not ceiling.sees_whole(View("chunk", 1, longest - 1), longest)


def test_hits_dealt_to_several_processes_come_back_whole(tiny, monkeypatch):
    cfg = synthphone.config_of(tiny.pool)
    n = len(synthphone.utterances(cfg)[0])

    def marked(cfg, views, which=None):  # utterance u counts u + 1 in whichever process gets it, 0 elsewhere
        out = np.zeros(n, dtype=np.int64)
        out[which] = np.asarray(which) + 1
        return {v: out for v in views}

    monkeypatch.setattr(synthphone, "information_hits", marked)
    got = ceiling._hits_in_parallel(cfg, [View("window", 3)], n, 3, context="fork")  # the children keep the stand-in
    assert got[View("window", 3)].tolist() == list(range(1, n + 1))  # every utterance once, none twice


def test_processes_that_want_one_view_compute_it_once_and_keep_each_other_s(tiny, monkeypatch,
                                                                              cache_dir, tmp_path):
    import multiprocessing
    import time

    calls = tmp_path / "calls"

    def slow(cfg, views, which=None):  # stands in for the forward-backward: logs the call, takes a while
        with open(calls, "a") as f:
            f.write(",".join(v.key for v in views) + "\n")
        time.sleep(1.0)
        n = len(synthphone.utterances(cfg)[0])
        return {v: np.full(n, v.n) for v in views}

    monkeypatch.setattr(synthphone, "information_hits", slow)
    work = [(tiny.pool.subset([0, 1, 2]), View("window", 3)), (tiny.pool.subset([3, 4]), View("window", 3)),
            (tiny.pool.subset([0]), View("window", 5))]
    ctx = multiprocessing.get_context("fork")  # the children keep the stand-in
    procs = [ctx.Process(target=ceiling.info_ceilings, args=(c, [v])) for c, v in work]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(calls.read_text().split()) == ["window:3", "window:5"]  # each view once, none lost
    monkeypatch.setattr(synthphone, "information_hits", None)  # from the cache only now
    for c, v in work:
        assert ceiling.info_ceilings(c, [v]) == {v: v.n * c.n_utts / c.n_frames}


def test_view_of_a_config():
    from ablation.config import load_experiment

    assert ceiling.view_of(load_experiment("mlp_strong")) == View("window", 11)
    assert ceiling.view_of(load_experiment("bilstm_utt")) == View("utterance", 5)
    assert ceiling.view_of(load_experiment("bilstm_utt", ["train.chunk_len=64"])) == View("chunk", 5, 64)


def test_arm_ceilings_of_a_run_and_a_corpus_without_one(tiny, monkeypatch):
    from ablation import experiment
    from ablation.config import load_experiment
    from ablation.data.corpus import make_splits
    from ablation.errors import DataError

    cfg = load_experiment("mlp_strong", ["data.source=synthphone:tiny"])
    splits = make_splits(tiny, 0.2, seed=0)
    got = experiment.arm_ceilings(cfg, splits)
    view = View("window", 11)
    assert got == {"ceiling.arm.val_acc": ceiling.info_ceilings(splits.val, [view])[view],
                   "ceiling.arm.test_acc": ceiling.info_ceilings(splits.test, [view])[view]}  # fmt: skip

    def unsafe(*a, **k):
        raise DataError("too little noise")

    monkeypatch.setattr(synthphone, "information_hits", unsafe)
    other = make_splits(tiny, 0.2, seed=1)  # another split: its view is cached for the whole corpus
    assert set(experiment.arm_ceilings(cfg, replace_test(other))) == {"ceiling.arm.val_acc"}
    narrow = load_experiment("mlp_strong", ["data.source=synthphone:tiny", "features.n_concat=1"])
    assert experiment.arm_ceilings(narrow, other) == {}  # a view not cached: computed, and refused


def replace_test(splits):
    from dataclasses import replace

    return replace(splits, test=None)
