from dataclasses import replace

import numpy as np
import pytest

from ablation.data.corpus import Dataset, make_splits
from ablation.data.info import ceiling_per_split, ceiling_table, format_summary, segment_lengths, summarize
from ablation.data.sources import from_utterances
from ablation.errors import DataError

NAMES = ("sil", "aa", "b", "k")


def hand_dataset(with_ceiling=True):
    rng = np.random.default_rng(4)
    lengths = [6, 3, 9, 4, 12, 5, 7, 2, 8, 4]
    # runs of 1..4 frames, class 3 rare
    labels = [np.repeat(rng.choice(3, 4), rng.integers(1, 5, 4))[:t] for t in lengths]
    labels = [np.pad(lab, (0, t - len(lab)), mode="edge") for lab, t in zip(labels, lengths)]
    labels[2][4] = 3
    feats = [np.zeros((t, 39), np.float32) for t in lengths]
    pool = from_utterances("hand", feats, labels, [f"s{u % 3}-0-{u}" for u in range(10)], NAMES)
    test = from_utterances("hand/test", feats[:3], labels[:3], ["t-0-0", "t-0-1", "t-0-2"], NAMES)
    if with_ceiling:
        def bayes(c, seed):
            pred = c.labels.copy()
            flip = np.random.default_rng(seed).random(c.n_frames) < 0.3
            pred[flip] = (pred[flip] + 1) % 4
            return replace(c, bayes_pred=pred.astype(np.int16), meta={})

        pool, test = bayes(pool, 1), bayes(test, 2)
    return Dataset("hand", pool, test)


def test_segment_lengths_stop_at_utterance_boundaries():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2])
    assert segment_lengths(labels, np.array([0, 5, 8])).tolist() == [2, 3, 2, 1]
    assert segment_lengths(labels, np.array([0, 8])).tolist() == [2, 5, 1]


def test_summary_numbers_match_brute_force():
    ds = hand_dataset()
    s = summarize(ds, val_ratio=0.3, seed=9)
    splits = make_splits(ds, val_ratio=0.3, seed=9)
    for name, corpus in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        got = s["splits"][name]
        assert got["utterances"] == corpus.n_utts and got["frames"] == corpus.n_frames
        assert got["len_min"] == corpus.lengths.min() and got["len_max"] == corpus.lengths.max()
        assert got["len_mean"] == pytest.approx(corpus.lengths.mean())
        assert got["ceiling"] == pytest.approx(corpus.ceiling())
    assert s["splits"]["train"]["utterances"] == 7 and s["splits"]["val"]["frames"] + s["splits"]["train"]["frames"] == 60

    counts = np.bincount(ds.pool.labels, minlength=4)
    c = s["classes"]
    assert c["present"] == 4 and c["rarest"] == "k" and c["rarest_count"] == counts[3] == 1
    assert c["most_frequent"] == NAMES[int(np.argmax(counts))]
    assert c["most_frequent_share"] == pytest.approx(counts.max() / 60)

    runs = []  # brute force over utterances
    for u in range(ds.pool.n_utts):
        lab = ds.pool.labels[ds.pool.offsets[u] : ds.pool.offsets[u + 1]].tolist()
        n = 1
        for a, b in zip(lab, lab[1:] + [None]):
            if a == b:
                n += 1
            else:
                runs.append(n)
                n = 1
    seg = s["segments"]
    assert seg["count"] == len(runs) and seg["mean"] == pytest.approx(np.mean(runs))
    assert seg["median"] == np.median(runs) and seg["share_shorter_than_11"] == 1.0
    assert s["fingerprint"] == ds.fingerprint


def test_format_summary_shows_the_numbers():
    s = summarize(hand_dataset(), val_ratio=0.3, seed=9)
    text = format_summary(s)
    assert "rarest k (1 frames)" in text
    assert f"{s['segments']['count']:,} runs" in text
    train = s["splits"]["train"]
    row = next(line for line in text.splitlines() if line.startswith("train"))
    assert row.split() == [
        "train", str(train["utterances"]), str(train["frames"]), str(train["len_min"]),
        f"{train['len_mean']:.1f}", str(train["len_max"]), f"{train['ceiling']:.4f}",
    ]


def test_real_data_has_no_ceiling_and_prewindowed_no_structure():
    ds = hand_dataset(with_ceiling=False)
    assert summarize(ds)["splits"]["val"]["ceiling"] is None
    assert ceiling_table(ds) is None
    n = ds.pool.n_frames
    pre = replace(
        ds.pool, features=np.zeros((n, 429), np.float32), prewindowed=11, offsets=np.arange(n + 1),
        utt_ids=tuple(map(str, range(n))), speakers=("unknown",) * n, meta={},
    )
    s = summarize(Dataset("pre", pre, None))
    assert s["segments"] is None and s["splits"]["train"]["utterances"] is None
    assert s["splits"]["train"]["frames"] == 48 and "test" not in s["splits"]
    assert "no utterance boundaries" in format_summary(s)


def test_ceiling_table_matches_corpus_ceilings():
    ds = hand_dataset()
    table = ceiling_table(ds, val_ratio=0.3, seed=9)
    splits = make_splits(ds, val_ratio=0.3, seed=9)
    assert list(table.index) == list(NAMES) and list(table.columns) == ["frames", "train", "val", "test"]
    np.testing.assert_allclose(table["val"].to_numpy(), splits.val.ceiling_per_class(), equal_nan=True)
    np.testing.assert_allclose(table["test"].to_numpy(), ds.test.ceiling_per_class(), equal_nan=True)
    assert table["frames"].tolist() == np.bincount(ds.pool.labels, minlength=4).tolist()
    per_split = ceiling_per_split(ds, val_ratio=0.3, seed=9)
    assert per_split["train"] == pytest.approx(splits.train.ceiling())


def test_summary_does_not_touch_the_pool():
    ds = hand_dataset()
    fp = ds.pool.fingerprint
    summarize(ds)
    assert ds.pool.fingerprint == fp and ds.pool.features.shape == (60, 39)


def test_bad_ratio_is_a_data_error():
    with pytest.raises(DataError, match="val_ratio must be in"):
        summarize(hand_dataset(), val_ratio=1.5)
