from dataclasses import replace

import numpy as np
import pytest
from torch.nn.utils.rnn import pack_padded_sequence

from ablation.data.sequences import PAD_LABEL, SequenceBatches, plan_batches, segments
from ablation.data.sources import from_utterances
from ablation.errors import DataError

LENGTHS = [9, 3, 12, 1, 7, 7, 4, 10]  # 53 frames


def make_corpus(lengths=LENGTHS, labelled=True):
    rng = np.random.default_rng(1)
    n = sum(lengths)
    feats = rng.standard_normal((n, 39)).astype(np.float32)
    feats[:, 0] = np.arange(n)  # column 0 names the frame, so every cell can be traced back
    off = np.concatenate([[0], np.cumsum(lengths)])
    labels = [rng.integers(0, 41, t) for t in lengths] if labelled else None
    return from_utterances(
        "hand", [feats[a:b] for a, b in zip(off[:-1], off[1:])], labels,
        [f"s{u}-c-{u}" for u in range(len(lengths))], tuple(f"p{i:02d}" for i in range(41)),
    )


def naive_window(corpus, frame, n):
    u = int(np.searchsorted(corpus.offsets, frame, side="right")) - 1
    lo, hi = corpus.offsets[u], corpus.offsets[u + 1] - 1
    return np.concatenate([corpus.features[min(max(frame + j, lo), hi)] for j in range(-(n // 2), n // 2 + 1)])


def test_segments_whole_and_chunked():
    offsets = np.array([0, 5, 6, 13])
    s, l = segments(offsets)
    assert s.tolist() == [0, 5, 6] and l.tolist() == [5, 1, 7]
    s, l = segments(offsets, chunk_len=3)
    assert s.tolist() == [0, 3, 5, 6, 9, 12]
    assert l.tolist() == [3, 2, 1, 3, 3, 1]


def test_plan_respects_budget_and_sorts_longest_first():
    lengths = np.array(LENGTHS)
    batches = plan_batches(lengths, max_frames=20)
    # sorted 12 10 9 7 7 4 3 1; a batch takes 20 // (its longest) sequences: 1, 2, 2, then 5 (3 left)
    assert [lengths[b].tolist() for b in batches] == [[12], [10, 9], [7, 7], [4, 3, 1]]
    assert all(len(b) * lengths[b[0]] <= 20 for b in batches)


def test_padding_fraction_is_exact():
    sb = SequenceBatches(make_corpus(), max_frames=20)
    # cells: 12 + 2*10 + 2*7 + 3*4 = 58 for 53 frames
    assert sb.padding_fraction == pytest.approx(1 - 53 / 58)
    assert len(sb) == 4 and sb.n_frames == 53


@pytest.mark.parametrize("chunk_len", [None, 4])
@pytest.mark.parametrize("n", [1, 5])
def test_every_frame_once_with_its_label_and_window(chunk_len, n):
    c = make_corpus()
    sb = SequenceBatches(c, max_frames=24, shuffle=True, seed=5, chunk_len=chunk_len, n=n)
    seen = []
    for x, y, lengths, idx in sb.iter_indexed():
        b, t, d = x.shape
        assert d == 39 * n and y.shape == (b, t) and t == lengths[0]
        assert b * t <= 24
        assert lengths.tolist() == sorted(lengths.tolist(), reverse=True)
        for i in range(b):
            L = int(lengths[i])
            frames = idx[i, :L].numpy()
            assert (idx[i, L:] == -1).all() and (y[i, L:] == PAD_LABEL).all() and (x[i, L:] == 0).all()
            assert y[i, :L].tolist() == c.labels[frames].tolist()
            expected = np.stack([naive_window(c, f, n) for f in frames])
            np.testing.assert_array_equal(x[i, :L].numpy(), expected)
            assert np.all(np.diff(frames) == 1)  # a sequence is consecutive frames
            seen += frames.tolist()
    assert sorted(seen) == list(range(c.n_frames))


def test_chunk_windows_cross_chunk_but_not_utterance_boundaries():
    c = make_corpus([6, 6])
    sb = SequenceBatches(c, max_frames=12, chunk_len=3, n=3)
    cells = {}
    for x, _, lengths, idx in sb.iter_indexed():
        for i in range(len(lengths)):
            for j in range(int(lengths[i])):
                cells[int(idx[i, j])] = x[i, j].view(3, 39)[:, 0].tolist()  # frame numbers in the window
    assert cells[3] == [2, 3, 4]  # first frame of the second chunk sees the first chunk
    assert cells[5] == [4, 5, 5]  # last frame of utterance 0 repeats itself
    assert cells[6] == [6, 6, 7]  # first frame of utterance 1 does not see utterance 0


def test_shuffle_is_deterministic_and_changes_with_epoch():
    c = make_corpus()

    def orders(epoch):
        sb = SequenceBatches(c, max_frames=12, shuffle=True, seed=2, chunk_len=2)
        sb.set_epoch(epoch)
        return [b.tolist() for b in sb.plan()]

    assert orders(0) == orders(0)
    assert orders(0) != orders(1)
    assert sorted(sum(orders(1), [])) == list(range(29))  # 29 chunks of <= 2 frames


def test_batches_feed_pack_padded_sequence():
    x, y, lengths = next(iter(SequenceBatches(make_corpus(), max_frames=30)))
    packed = pack_padded_sequence(x, lengths, batch_first=True)
    assert packed.data.shape == (int(lengths.sum()), 39)


def test_unlabelled_corpus_gives_none():
    _, y, _ = next(iter(SequenceBatches(make_corpus(labelled=False), max_frames=30)))
    assert y is None


def test_budget_below_longest_is_refused():
    with pytest.raises(DataError, match="max_frames=10 is below the longest utterance .* \\(12 frames\\)"):
        SequenceBatches(make_corpus(), max_frames=10)
    assert len(SequenceBatches(make_corpus(), max_frames=10, chunk_len=5)) > 0


def test_prewindowed_corpus_is_refused():
    c = make_corpus([1] * 4)
    pre = replace(c, features=np.zeros((4, 429), np.float32), prewindowed=11)
    with pytest.raises(DataError, match="recurrent models need utterance boundaries; hand has none.*model.name = 'mlp'"):
        SequenceBatches(pre, max_frames=100)


@pytest.mark.parametrize("kw", [{"max_frames": 0}, {"max_frames": 100, "chunk_len": 0}])
def test_bad_sizes_are_refused(kw):
    with pytest.raises(DataError, match="positive integer"):
        SequenceBatches(make_corpus(), **kw)
