import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ablation.data.sources import from_utterances
from ablation.data.windows import (
    WindowBatches,
    Windows,
    check_window,
    frame_bounds,
    gather_prewindowed,
    gather_windows,
)
from ablation.errors import DataError

LENGTHS = [1, 2, 3, 7, 40, 5]  # shorter than, equal to and longer than the windows


def make_corpus(lengths=LENGTHS, seed=0, labelled=True):
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((t, 39)).astype(np.float32) for t in lengths]
    labels = [rng.integers(0, 41, t) for t in lengths] if labelled else None
    ids = [f"{100 + u}-1-{u}" for u in range(len(lengths))]
    return from_utterances("hand", feats, labels, ids, tuple(f"p{i:02d}" for i in range(41)))


def naive_windows(corpus, n):
    """The course recipe: materialise every window with Python loops."""
    k = n // 2
    rows = []
    for u in range(corpus.n_utts):
        x = corpus.features[corpus.offsets[u] : corpus.offsets[u + 1]]
        for t in range(len(x)):
            rows.append(np.stack([x[min(max(t + j, 0), len(x) - 1)] for j in range(-k, k + 1)]))
    return np.stack(rows)  # (N, n, 39)


@pytest.mark.parametrize("n", [1, 3, 5, 61])
def test_gather_matches_naive_recipe(n):
    c = make_corpus()
    start, end = frame_bounds(c.offsets)
    feats = torch.from_numpy(c.features)
    idx = torch.randperm(c.n_frames, generator=torch.Generator().manual_seed(n))
    got = gather_windows(feats, idx, start, end, n)
    expected = naive_windows(c, n)[idx.numpy()]
    assert got.shape == (c.n_frames, n, 39)
    np.testing.assert_array_equal(got.numpy(), expected)
    flat = gather_windows(feats, idx, start, end, n, flat=True)
    assert flat.shape == (c.n_frames, 39 * n)
    np.testing.assert_array_equal(flat.numpy(), expected.reshape(c.n_frames, -1))


def test_window_edges_repeat_first_and_last_frame():
    c = make_corpus([4])
    got = Windows(c, 5)(torch.tensor([0, 3]))
    x = c.features
    np.testing.assert_array_equal(got[0].numpy(), x[[0, 0, 0, 1, 2]])
    np.testing.assert_array_equal(got[1].numpy(), x[[1, 2, 3, 3, 3]])


def test_frame_bounds():
    start, end = frame_bounds(np.array([0, 1, 3, 6]))
    assert start.tolist() == [0, 1, 1, 3, 3, 3]
    assert end.tolist() == [1, 3, 3, 6, 6, 6]


@pytest.mark.parametrize("bad", [0, 2, -3, 4.0, True, "11"])
def test_bad_window_length_is_refused(bad):
    with pytest.raises(DataError, match="n_concat=.*odd positive integer"):
        check_window(bad)


def test_windows_share_corpus_memory():
    c = make_corpus()
    w = Windows(c, 3)
    assert w.features.data_ptr() == c.features.ctypes.data
    assert w.dim == 117


def prewindowed_from(corpus):
    rows = naive_windows(corpus, 11).reshape(corpus.n_frames, 11 * 39)
    n = corpus.n_frames
    return replace(
        corpus, features=np.ascontiguousarray(rows), prewindowed=11, offsets=np.arange(n + 1),
        utt_ids=tuple(f"train-{i}" for i in range(n)), speakers=("unknown",) * n, meta={},
    )


@pytest.mark.parametrize("n", [1, 5, 11])
def test_prewindowed_rows_give_their_centre_frames(n):
    base = make_corpus()
    pre = prewindowed_from(base)
    pre.validate()
    idx = torch.tensor([0, 5, 17, base.n_frames - 1])
    got = Windows(pre, n)(idx, flat=True)
    np.testing.assert_array_equal(got.numpy(), naive_windows(base, n)[idx.numpy()].reshape(len(idx), -1))


def test_prewindowed_refuses_wider_windows():
    pre = prewindowed_from(make_corpus())
    with pytest.raises(DataError, match="no utterance boundaries; use n_concat <= 11"):
        Windows(pre, 13)
    with pytest.raises(DataError, match="n_concat <= 11"):
        gather_prewindowed(torch.from_numpy(pre.features), torch.tensor([0]), 11, 15)


def test_batches_cover_every_frame_once_with_centre_labels():
    c = make_corpus()
    batches = WindowBatches(c, 5, batch_size=8, shuffle=True, seed=3)
    assert len(batches) == 8 and batches.n_frames == 58  # ceil(58 / 8)
    seen, naive = [], naive_windows(c, 5)
    for x, y in batches:
        # the centre frame identifies the frame: features are continuous random values
        centre = x[:, 2].numpy()
        idx = [int(np.flatnonzero((c.features == row).all(axis=1))[0]) for row in centre]
        np.testing.assert_array_equal(x.numpy(), naive[idx])
        assert y.tolist() == c.labels[idx].tolist()
        seen += idx
    assert sorted(seen) == list(range(c.n_frames))
    assert [len(y) for _, y in batches] == [8] * 7 + [2]


def test_a_single_frame_last_batch_joins_the_one_before_when_training():
    c = make_corpus()  # 58 frames = 3 x 19 + 1
    train = WindowBatches(c, 3, batch_size=19, shuffle=True, seed=0)
    assert len(train) == 3 and [len(y) for _, y in train] == [19, 19, 20]
    assert sorted(torch.cat([y for _, y in train]).tolist()) == sorted(c.labels.tolist())
    evaluation = WindowBatches(c, 3, batch_size=19)  # in order: nothing trains on it
    assert [len(y) for _, y in evaluation] == [19, 19, 19, 1]
    assert [len(y) for _, y in WindowBatches(c, 3, batch_size=8, shuffle=True)] == [8] * 7 + [2]


def test_shuffle_is_deterministic_per_epoch():
    c = make_corpus()
    a = WindowBatches(c, 3, batch_size=16, shuffle=True, seed=7)
    b = WindowBatches(c, 3, batch_size=16, shuffle=True, seed=7)
    assert torch.equal(a.order(), b.order())
    first = a.order()
    a.set_epoch(1)
    assert not torch.equal(a.order(), first)
    b.set_epoch(1)
    assert torch.equal(a.order(), b.order())
    assert sorted(a.order().tolist()) == list(range(c.n_frames))


def test_unshuffled_batches_follow_corpus_order_and_unlabelled_gives_none():
    c = make_corpus(labelled=False)
    xs, ys = zip(*WindowBatches(c, 1, batch_size=10, flat=True))
    assert all(y is None for y in ys)
    np.testing.assert_array_equal(torch.cat(xs).numpy(), c.features)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_batch_size_is_refused(bad):
    with pytest.raises(DataError, match="batch_size"):
        WindowBatches(make_corpus(), 3, batch_size=bad)


def test_memory_benchmark_smoke():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "window_memory.py"
    spec = importlib.util.spec_from_file_location("window_memory", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(preset="tiny", n=61)
    assert result["frames"] > 0
    assert result["recipe_bytes"] == result["frames"] * 39 * 61 * 4
    assert result["batches"] == -(-result["frames"] // result["batch_size"])
    assert result["peak_rss_bytes"] > 0
