import json
import re
from dataclasses import asdict, replace

import numpy as np
import pytest

from ablation.data import synthphone
from ablation.data.corpus import make_splits
from ablation.errors import ConfigError

# the real length distribution and acoustics, 80 utterances: about 50k frames
STATS_CFG = replace(synthphone.PRESETS["small"], name="stats", n_train_utts=60, n_test_utts=20, n_speakers=25, seed=11)


@pytest.fixture(scope="module")
def stats_ds():
    return synthphone.generate(STATS_CFG)


def _runs(corpus):
    out = []
    for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:]):
        change = np.flatnonzero(np.diff(corpus.labels[a:b])) + 1
        out.append(np.diff(np.concatenate([[0], change, [b - a]])))
    return np.concatenate(out)


def _cmvn(x):
    return (x - x.mean(axis=0)) / x.std(axis=0)


def test_class_names():
    names = synthphone.CLASS_NAMES
    assert len(names) == 41 and names[0] == "sil" and names[-1] == "spn"
    assert list(names[1:-1]) == sorted(names[1:-1]) and len(set(names)) == 41
    assert {"aa", "zh", "ng", "th", "dh", "hh"} <= set(names)


def test_tiny_dataset_is_valid(tiny_dataset):
    ds = tiny_dataset
    assert ds.source == "synthphone:tiny"
    for corpus, n_utts in ((ds.pool, 24), (ds.test, 8)):
        corpus.validate()
        assert corpus.n_utts == n_utts and corpus.class_names == synthphone.CLASS_NAMES
        assert corpus.features.dtype == np.float32 and corpus.features.shape[1] == 39
        assert corpus.labels.dtype == np.int64 and corpus.offsets.dtype == np.int64
        assert corpus.bayes_pred.dtype == np.int16 and corpus.bayes_conf.dtype == np.float32
        assert corpus.bayes_pred.shape == corpus.bayes_conf.shape == (corpus.n_frames,)
        assert np.all((corpus.bayes_conf > 0) & (corpus.bayes_conf <= 1.0 + 1e-6))
        assert corpus.meta["synth_config"] == asdict(synthphone.PRESETS["tiny"])
        assert corpus.meta["ceiling"] == pytest.approx(corpus.ceiling())


def test_statistics_follow_the_real_corpus(stats_ds):
    pool, test = stats_ds.pool, stats_ds.test
    share = np.bincount(pool.labels, minlength=41) / pool.n_frames
    assert 0.15 < share[0] < 0.20  # real: 17.4%
    assert share[0] == share.max()
    assert share.min() < 0.001  # real: the rarest class holds 0.05% of frames
    runs = _runs(pool)
    assert 8.8 < runs.mean() < 10.4  # real: 9.6
    assert 6 <= np.median(runs) <= 8  # real: 7
    assert 0.65 < np.mean(runs < 11) < 0.80  # real: 0.73
    lengths = np.concatenate([pool.lengths, test.lengths])
    assert lengths.min() >= 139 and lengths.max() <= 998
    assert 560 < lengths.mean() < 680  # real: 617
    for c in (pool, test):
        assert np.all(c.labels[c.offsets[:-1]] == 0) and np.all(c.labels[c.offsets[1:] - 1] == 0)


def test_ids_and_speakers(stats_ds):
    pool, test = stats_ds.pool, stats_ds.test
    ids = pool.utt_ids + test.utt_ids
    assert len(set(ids)) == 80
    assert all(re.fullmatch(r"\d+-\d+-\d{4}", u) for u in ids)
    assert all(u.split("-")[0] == s for u, s in zip(ids, pool.speakers + test.speakers))
    assert len(set(pool.speakers + test.speakers)) == 25
    assert len(set(pool.speakers) & set(test.speakers)) >= 10  # speakers are shared, as in libriphone


def test_features_are_cmvn_of_statics_and_their_deltas(stats_ds):
    pool = stats_ds.pool
    for u in (0, 7, 31):
        f = pool.features[pool.offsets[u] : pool.offsets[u + 1]].astype(np.float64)
        np.testing.assert_allclose(f.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(f.std(axis=0), 1.0, atol=1e-4)
        # deltas are linear and ignore offsets, so CMVN commutes with them up to the scale CMVN removes
        d1 = synthphone.regression_deltas(f[:, :13])
        np.testing.assert_allclose(f[:, 13:26], _cmvn(d1), atol=2e-4)
        np.testing.assert_allclose(f[:, 26:], _cmvn(synthphone.regression_deltas(d1)), atol=2e-4)


def test_regression_deltas_by_hand():
    c = np.array([0.0, 1.0, 4.0, 9.0, 16.0])[:, None]
    # (c[t+1] - c[t-1] + 2 (c[t+2] - c[t-2])) / 10 on [0, 0, | 0, 1, 4, 9, 16, | 16, 16]
    want = np.array([0.9, 2.2, 4.0, 4.2, 3.1])[:, None]
    np.testing.assert_allclose(synthphone.regression_deltas(c), want)
    np.testing.assert_allclose(synthphone.regression_deltas(np.full((4, 2), 3.0)), 0.0)


def test_ceiling_equals_mean_posterior(stats_ds):
    for corpus in (stats_ds.pool, stats_ds.test):
        ceiling = corpus.ceiling()
        assert 0.80 < ceiling < 0.95  # the calibrated difficulty
        assert abs(float(np.mean(corpus.bayes_conf)) - ceiling) < 0.02
    sub = stats_ds.pool.subset([2, 5])
    lo, hi = stats_ds.pool.offsets[2], stats_ds.pool.offsets[3]
    assert sub.ceiling() == pytest.approx(
        (np.sum(sub.bayes_pred == sub.labels)) / sub.n_frames
    ) and sub.n_frames > hi - lo


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_ceiling_is_near_one_without_noise(rho):
    cfg = replace(synthphone.PRESETS["tiny"], noise_scale=0.02, rho=rho, n_train_utts=10, n_test_utts=0)
    ds = synthphone.generate(cfg)
    assert ds.test is None
    assert ds.pool.ceiling() > 0.99
    assert float(np.mean(ds.pool.bayes_conf)) > 0.99


def test_batched_ceiling_equals_log_space_ceiling(monkeypatch):
    cfg = replace(synthphone.PRESETS["tiny"], n_train_utts=6, n_test_utts=0, rho=0.6)
    fast = synthphone.generate(cfg).pool
    monkeypatch.setattr(synthphone.hmm, "ar1_scaled_is_safe", lambda *a, **k: False)
    exact = synthphone.generate(cfg).pool
    np.testing.assert_allclose(fast.bayes_conf, exact.bayes_conf, atol=1e-6)
    assert np.mean(fast.bayes_pred == exact.bayes_pred) > 0.999  # ties may break either way


def test_determinism_and_seed():
    cfg = synthphone.PRESETS["tiny"]
    a, b = synthphone.generate(cfg), synthphone.generate(cfg)
    for name in ("features", "labels", "offsets", "bayes_pred", "bayes_conf"):
        np.testing.assert_array_equal(getattr(a.pool, name), getattr(b.pool, name))
        np.testing.assert_array_equal(getattr(a.test, name), getattr(b.test, name))
    assert a.pool.utt_ids == b.pool.utt_ids and a.pool.fingerprint == b.pool.fingerprint
    c = synthphone.generate(replace(cfg, seed=cfg.seed + 1))
    assert c.pool.utt_ids != a.pool.utt_ids
    n = min(a.pool.n_frames, c.pool.n_frames)
    assert np.mean(a.pool.labels[:n] == c.pool.labels[:n]) < 0.5
    assert not np.allclose(a.pool.features[:n], c.pool.features[:n])


def test_cache_round_trip(cache_dir, monkeypatch):
    first = synthphone.load("tiny", seed=3)
    cfg = synthphone.resolve("tiny", seed=3)
    folder = cache_dir / "synthphone" / cfg.hash
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "pool.npz", "test.npz"]
    assert [p.name for p in folder.parent.iterdir()] == [cfg.hash]  # no temporary folder left

    def fail(_):
        raise AssertionError("a cached corpus must not be generated again")

    monkeypatch.setattr(synthphone, "generate", fail)
    again = synthphone.load("tiny", seed=3)
    for split in ("pool", "test"):
        x, y = getattr(first, split), getattr(again, split)
        for name in ("features", "labels", "offsets", "bayes_pred", "bayes_conf"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
            assert getattr(x, name).dtype == getattr(y, name).dtype
        assert (x.name, x.utt_ids, x.speakers, x.class_names) == (y.name, y.utt_ids, y.speakers, y.class_names)
        assert {k: v for k, v in x.meta.items() if k[0] != "_"} == y.meta
    assert again.source == "synthphone:tiny" and again.pool.meta["synth_config"]["seed"] == 3
    assert make_splits(again).train.n_utts == 19


def test_a_corpus_cached_into_a_folder_that_holds_a_side_file_keeps_it(cache_dir, monkeypatch):
    """The ceiling hits may be written before the corpus they belong to: reading finds no corpus and leaves
    the side file; writing moves the corpus in beside it."""
    cfg = synthphone.resolve("tiny", seed=4)
    folder = cache_dir / "synthphone" / cfg.hash
    folder.mkdir(parents=True)
    (folder / "ceiling-hits.json").write_text('{"hits": {}}')
    calls = []
    real = synthphone.generate
    monkeypatch.setattr(synthphone, "generate", lambda c: calls.append(c) or real(c))
    first = synthphone.load("tiny", seed=4)
    again = synthphone.load("tiny", seed=4)
    assert len(calls) == 1  # generated once, then read back
    np.testing.assert_array_equal(first.pool.features, again.pool.features)
    assert sorted(p.name for p in folder.iterdir()) == ["ceiling-hits.json", "index.json", "pool.npz", "test.npz"]
    assert (folder / "ceiling-hits.json").read_text() == '{"hits": {}}'
    assert [p.name for p in folder.parent.iterdir()] == [cfg.hash]  # no temporary folder left


def test_failed_cache_write_leaves_nothing(cache_dir, monkeypatch):
    def broken_savez(path, **arrays):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(synthphone.np, "savez", broken_savez)
    with pytest.warns(UserWarning, match="cannot cache"):
        ds = synthphone.load("tiny")
    assert ds.pool.n_utts == 24
    assert list((cache_dir / "synthphone").iterdir()) == []


def test_corrupt_cache_is_regenerated(cache_dir):
    ds = synthphone.load("tiny")
    folder = cache_dir / "synthphone" / synthphone.PRESETS["tiny"].hash
    (folder / "pool.npz").write_bytes(b"garbage")
    again = synthphone.load("tiny")
    np.testing.assert_array_equal(ds.pool.features, again.pool.features)
    assert json.loads((folder / "index.json").read_text())["source"] == "synthphone:tiny"


def test_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'small'"):
        synthphone.load("smal")
    with pytest.raises(ConfigError, match=r"rho=1\.0 is invalid"):
        replace(synthphone.PRESETS["small"], rho=1.0)
    with pytest.raises(ConfigError, match="min_frames"):
        synthphone.SynthConfig(min_frames=500, max_frames=400)
    assert synthphone.PRESETS["small"].hash != synthphone.resolve("small", seed=5).hash


def test_libri_preset_has_the_real_size():
    cfg = synthphone.PRESETS["libri"]
    assert (cfg.n_train_utts, cfg.n_test_utts, cfg.n_speakers) == (4286, 1078, 251)
    assert (cfg.min_frames, cfg.max_frames) == (139, 998)
    a, b = cfg.length_beta
    assert cfg.min_frames + (cfg.max_frames - cfg.min_frames) * a / (a + b) == pytest.approx(617, abs=2)


def test_bigram_rows_are_distributions():
    cfg = synthphone.PRESETS["small"]
    model = synthphone._build_model(cfg, np.random.default_rng(0))
    sums = model.cross.sum(axis=1)
    np.testing.assert_allclose(sums[:-1], 1.0)  # every chain but the trailing silence moves on
    assert sums[-1] == 0.0
    assert np.all(np.diag(model.cross)[1:41] == 0.0)  # a label run is one phone
    assert np.all(model.cross[1:41, 0] == cfg.pause_prob) and model.cross[0, 0] == 0.0


def test_state_paths_follow_the_hmm_given_the_length():
    """Empirical state marginals of sampled paths equal the exact prior marginals (forward-backward, no emissions)."""
    cfg = synthphone.PRESETS["small"]
    model = synthphone._build_model(cfg, np.random.default_rng(0))
    stay = synthphone._stay_probs(model, np.array([1.0]))
    n_paths, n_frames = 3000, 40
    paths = synthphone._sample_paths(
        model, stay, np.zeros(n_paths, dtype=np.int64), np.full(n_paths, n_frames), np.random.default_rng(1)
    )
    n_states = stay.shape[1]
    init = np.eye(n_states)[synthphone._LEAD * 3]
    prior = synthphone.hmm.chain_forward_backward(
        np.ones((1, n_frames, n_states)), np.array([n_frames]), stay, model.cross, init, synthphone._exit_probs(stay)
    )[0]
    empirical = np.stack([np.bincount(paths[:, t], minlength=n_states) for t in range(n_frames)]) / n_paths
    assert np.abs(empirical - prior).max() < 0.04  # about 3 standard errors of a proportion near 0.5
    assert np.all(paths[:, 0] == synthphone._LEAD * 3) and np.all(paths[:, -1] == n_states - 1)
