"""The course's sample recipe for HW2, as the peer our input pipeline is measured against.

What the sample code does, kept to its semantics:

- ``shift`` / ``concat_feat``: the window of frame ``t`` is ``x[t-k] .. x[t+k]``
  (``k = n // 2``), frames beyond either end of the utterance replaced by its
  first / last frame;
- ``preprocess_data``: every window of every utterance is written up front into
  one preallocated float32 buffer ``[frames, 39n]`` (``materialise``);
- ``LibriDataset``: a per-item ``Dataset`` returning ``(x[i], y[i])``
  (``RecipeDataset``), read by a shuffling ``DataLoader`` with batch 512 and no
  worker processes (``recipe_loader``).

The course allocates ``3_000_000`` rows whatever the split; here the buffer has
exactly the corpus's rows (pages it never writes are never resident, so the
peak memory is the same).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ablation.data.corpus import N_FEATURES, Corpus

BATCH_SIZE = 512


def shift(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` moved by ``n`` frames (``n < 0``: back), the vacated end filled with the edge frame."""
    if n < 0:
        left = x[0].repeat(-n, 1)
        right = x[:n]
    elif n > 0:
        right = x[-1].repeat(n, 1)
        left = x[n:]
    else:
        return x
    return torch.cat((left, right), dim=0)


def concat_feat(x: torch.Tensor, concat_n: int) -> torch.Tensor:
    """``[T, D]`` -> ``[T, concat_n * D]``: each row the window around its frame, frame-major."""
    assert concat_n % 2 == 1  # n must be odd
    if concat_n < 2:
        return x
    seq_len, feature_dim = x.size(0), x.size(1)
    x = x.repeat(1, concat_n)
    x = x.view(seq_len, concat_n, feature_dim).permute(1, 0, 2)  # concat_n, seq_len, feature_dim
    mid = concat_n // 2
    for r_idx in range(1, mid + 1):
        x[mid + r_idx, :] = shift(x[mid + r_idx], r_idx)
        x[mid - r_idx, :] = shift(x[mid - r_idx], -r_idx)
    return x.permute(1, 0, 2).view(seq_len, concat_n * feature_dim)


def materialise(corpus: Corpus, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of ``corpus`` in one float32 buffer ``[N, 39n]``, and the labels ``[N]``."""
    total = corpus.n_frames
    X = torch.empty(total, N_FEATURES * n)
    y = torch.empty(total, dtype=torch.long)
    feats = torch.from_numpy(np.asarray(corpus.features))
    labels = torch.from_numpy(np.asarray(corpus.labels, dtype=np.int64))
    idx = 0
    for u in range(corpus.n_utts):
        lo, hi = int(corpus.offsets[u]), int(corpus.offsets[u + 1])
        # the course loads each utterance from its own file: a fresh tensor, not a view
        feat = concat_feat(feats[lo:hi].clone(), n)
        cur_len = hi - lo
        X[idx : idx + cur_len, :] = feat
        y[idx : idx + cur_len] = labels[lo:hi]
        idx += cur_len
    return X[:idx, :], y[:idx]


class RecipeDataset(Dataset):
    """The course's ``LibriDataset``: one ``(window, label)`` pair per item."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor | None = None):
        self.data = X
        self.label = None if y is None else torch.LongTensor(y)

    def __getitem__(self, idx):
        if self.label is not None:
            return self.data[idx], self.label[idx]
        return self.data[idx]

    def __len__(self) -> int:
        return len(self.data)


def recipe_loader(X: torch.Tensor, y: torch.Tensor, batch_size: int = BATCH_SIZE, seed: int = 0) -> DataLoader:
    """The course's training loader: per-item dataset, shuffled, default collate, no workers."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(RecipeDataset(X, y), batch_size=batch_size, shuffle=True, generator=gen)


def buffer_bytes(n_frames: int, n: int) -> int:
    """Size of the recipe's window buffer: ``frames x 39n`` float32."""
    return int(n_frames) * N_FEATURES * int(n) * 4
