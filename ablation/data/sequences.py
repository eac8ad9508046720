"""Padded sequence batches for recurrent models.

A sequence is either a whole utterance or a fixed-length chunk of one. The
sequences are sorted by length and cut into batches under a frame budget
(``max_frames``, padding included), so each batch holds sequences of nearly
the same length and padding stays small. Every frame of the corpus appears
exactly once per epoch.

A frame may carry its n-frame context window (``n > 1``): windows are
gathered with the utterance bounds of the corpus, so a chunk's first frame
still sees the frames before it in its utterance.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ablation.data.corpus import Corpus
from ablation.data.windows import Windows, check_positive, shared_tensor
from ablation.errors import DataError

PAD_LABEL = -100  # torch.nn.CrossEntropyLoss's default ignore_index


def segments(offsets: np.ndarray, chunk_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start frame and length of every sequence: whole utterances, or chunks of ``chunk_len``.

    Each utterance is cut from its first frame; its last chunk holds what is left.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    starts, lengths = offsets[:-1], np.diff(offsets)
    if chunk_len is None:
        return starts.copy(), lengths.copy()
    counts = -(-lengths // chunk_len)
    utt = np.repeat(np.arange(len(lengths)), counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    chunk_starts = starts[utt] + within * chunk_len
    return chunk_starts, np.minimum(chunk_len, offsets[utt + 1] - chunk_starts)


def plan_batches(lengths: np.ndarray, max_frames: int, order: np.ndarray | None = None) -> list[np.ndarray]:
    """Sequence indices per batch, each batch longest first, with ``len(batch) * longest <= max_frames``.

    ``order`` breaks ties between equal lengths (default: index order); the
    batch sizes depend only on the lengths.
    """
    order = np.arange(len(lengths)) if order is None else np.asarray(order)
    # stable sort of the tie-break order by descending length
    ranked = order[np.argsort(-lengths[order], kind="stable")]
    batches, i = [], 0
    while i < len(ranked):
        size = max(1, max_frames // int(lengths[ranked[i]]))
        batches.append(ranked[i : i + size])
        i += size
    return batches


class SequenceBatches:
    """Batches ``(x, y, lengths)`` of padded sequences over every frame of a corpus.

    - ``x``: float32 ``[B, T, 39 * n]``, zero past each sequence's end;
    - ``y``: int64 ``[B, T]``, ``-100`` past the end (``None`` if unlabelled);
    - ``lengths``: int64 ``[B]`` in descending order, ready for
      ``torch.nn.utils.rnn.pack_padded_sequence``.

    ``chunk_len=None`` batches whole utterances; an integer cuts them into
    chunks of that many frames. With ``shuffle`` the batch order (and which of
    equally long sequences share a batch) is drawn from ``seed + epoch``.
    """

    def __init__(
        self,
        corpus: Corpus,
        max_frames: int,
        shuffle: bool = False,
        seed: int = 0,
        chunk_len: int | None = None,
        n: int = 1,
        device: str | torch.device = "cpu",
    ):
        if not corpus.has_boundaries:
            raise DataError(
                f"recurrent models need utterance boundaries; {corpus.name} has none (pre-windowed rows); "
                "use a window model (model.name = 'mlp')"
            )
        check_positive("max_frames", max_frames, 20000)
        if chunk_len is not None:
            check_positive("chunk_len", chunk_len, 100)
        self.starts, self.lengths = segments(corpus.offsets, chunk_len)
        longest = int(self.lengths.max())
        if longest > max_frames:
            what = "chunk" if chunk_len is not None else "utterance"
            raise DataError(
                f"max_frames={max_frames} is below the longest {what} of {corpus.name} ({longest} frames); "
                f"raise max_frames to at least {longest} or set a smaller chunk_len"
            )
        self.windows = Windows(corpus, n, device)
        labels = corpus.labels
        self.labels = None if labels is None else shared_tensor(np.asarray(labels, dtype=np.int64)).to(device)
        self.max_frames = int(max_frames)
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), 0
        self.chunk_len = chunk_len
        self._n_batches = len(plan_batches(self.lengths, self.max_frames))

    @property
    def n_frames(self) -> int:
        return int(self.lengths.sum())

    @property
    def dim(self) -> int:
        return self.windows.n * self.windows.corpus.frame_dim

    @property
    def padding_fraction(self) -> float:
        """Share of the batch cells (``sum of B * T``) that are padding; the same in every epoch."""
        cells = sum(len(b) * int(self.lengths[b[0]]) for b in plan_batches(self.lengths, self.max_frames))
        return 1.0 - self.n_frames / cells

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._n_batches

    def plan(self) -> list[np.ndarray]:
        """Sequence indices of each batch, in the order of the current epoch."""
        if not self.shuffle:
            return plan_batches(self.lengths, self.max_frames)
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        ties = torch.randperm(len(self.lengths), generator=gen).numpy()
        batches = plan_batches(self.lengths, self.max_frames, ties)
        return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]

    def iter_indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]]:
        """As ``iter(self)``, plus the corpus frame index of every cell (``-1`` in padding).

        Predictions are put back into corpus order with it.
        """
        device = self.windows.device
        for batch in self.plan():
            starts = torch.from_numpy(self.starts[batch]).to(device)
            lengths = torch.from_numpy(self.lengths[batch])
            pos = torch.arange(int(lengths[0]), device=device)
            valid = pos[None, :] < lengths.to(device)[:, None]  # (B, T)
            idx = torch.where(valid, starts[:, None] + pos[None, :], starts[:, None])  # pads read a real frame
            x = self.windows(idx.reshape(-1), flat=True).view(*idx.shape, self.dim)
            x.masked_fill_(~valid[..., None], 0.0)
            y = None
            if self.labels is not None:
                y = self.labels.index_select(0, idx.reshape(-1)).view(idx.shape).masked_fill_(~valid, PAD_LABEL)
            yield x, y, lengths, idx.masked_fill(~valid, -1)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        for x, y, lengths, _ in self.iter_indexed():
            yield x, y, lengths
