"""The corpus: one contiguous frame array plus the utterance structure around it.

A ``Corpus`` holds one pool of utterances (e.g. the labelled training pool, or
the test set). ``Dataset`` bundles the labelled pool with the test corpus of a
source. Splitting train/val happens by utterance (or by speaker) and is
deterministic for a seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from ablation.errors import closest

N_FEATURES = 39  # the course's MFCC width (synthphone's); a real source may have any width


@dataclass(frozen=True, eq=False)
class Corpus:
    """Frames of many utterances, stored back to back.

    Utterance ``u`` spans frames ``offsets[u]:offsets[u + 1]``.

    - ``features``: float32 ``[N, 39]`` (C-contiguous). For a pre-windowed
      source (``prewindowed = w``, e.g. TIMIT-11 with w = 11) it is
      ``[N, w * 39]`` frame-major, each row a window centred on its frame, and
      every "utterance" is a single row with no real boundary.
    - ``labels``: int64 ``[N]`` in ``0..n_classes-1``, or ``None`` (unlabelled).
    - ``bayes_pred``: for generated corpora, the Bayes-optimal prediction per
      frame (int16 ``[N]``) and ``bayes_conf`` its posterior (float32 ``[N]``),
      so the ceiling of any subset of utterances is ``mean(bayes_pred == labels)``.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray | None
    utt_ids: tuple[str, ...]
    offsets: np.ndarray
    speakers: tuple[str, ...]
    class_names: tuple[str, ...]
    prewindowed: int = 0
    bayes_pred: np.ndarray | None = None
    bayes_conf: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    # ---- shape -----------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_utts(self) -> int:
        return len(self.utt_ids)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def has_boundaries(self) -> bool:
        """False for pre-windowed sources: no utterance structure to model."""
        return self.prewindowed == 0

    @property
    def frame_dim(self) -> int:
        """Features of one frame (a pre-windowed row holds ``prewindowed`` frames of it)."""
        return self.features.shape[1] // max(self.prewindowed, 1) if self.features.ndim == 2 else N_FEATURES

    # ---- identity --------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Content hash (features, labels, utterance structure): 16 hex digits."""
        cached = self.meta.get("_fingerprint")
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update(memoryview(np.ascontiguousarray(self.features)).cast("B"))  # no copy of the features
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.offsets, dtype=np.int64).tobytes())
        h.update("\n".join(self.utt_ids).encode())
        digest = h.hexdigest()[:16]
        self.meta["_fingerprint"] = digest
        return digest

    # ---- ceiling ---------------------------------------------------------
    @property
    def has_ceiling(self) -> bool:
        return self.bayes_pred is not None and self.labels is not None

    def ceiling(self) -> float | None:
        """Bayes-optimal frame accuracy over this corpus, when known."""
        if not self.has_ceiling:
            return None
        return float(np.mean(self.bayes_pred == self.labels))

    def ceiling_per_class(self) -> np.ndarray | None:
        """Bayes-optimal recall per class (NaN for a class with no frames)."""
        if not self.has_ceiling:
            return None
        correct = (self.bayes_pred == self.labels).astype(np.float64)
        hits = np.bincount(self.labels, weights=correct, minlength=self.n_classes)
        counts = np.bincount(self.labels, minlength=self.n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)

    # ---- subsets ---------------------------------------------------------
    def subset(self, utt_indices, name: str | None = None) -> "Corpus":
        """A new corpus holding the given utterances, in the given order."""
        utt_indices = np.asarray(utt_indices, dtype=np.int64)
        starts, ends = self.offsets[utt_indices], self.offsets[utt_indices + 1]
        frame_idx = frame_indices_of(starts, ends)
        new_offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)

        def take(a):
            return None if a is None else np.ascontiguousarray(a[frame_idx])

        meta = {k: v for k, v in self.meta.items() if not k.startswith("_")}
        return replace(
            self,
            name=name or self.name,
            features=take(self.features),
            labels=take(self.labels),
            utt_ids=tuple(self.utt_ids[i] for i in utt_indices),
            offsets=new_offsets,
            speakers=tuple(self.speakers[i] for i in utt_indices),
            bayes_pred=take(self.bayes_pred),
            bayes_conf=take(self.bayes_conf),
            meta=meta,
        )

    def validate(self) -> None:
        """Raise ``DataError`` if the arrays disagree with each other."""
        from ablation.errors import DataError

        n = self.n_frames
        width = self.frame_dim * max(self.prewindowed, 1)
        if self.features.ndim != 2 or self.features.shape != (n, width) or width == 0:
            raise DataError(f"{self.name}: features have shape {self.features.shape}, expected ({n}, {width})")
        if self.features.dtype != np.float32:
            raise DataError(f"{self.name}: features are {self.features.dtype}, expected float32")
        if len(self.offsets) != self.n_utts + 1 or self.offsets[0] != 0 or np.any(np.diff(self.offsets) <= 0):
            raise DataError(f"{self.name}: offsets do not describe {self.n_utts} non-empty utterances")
        if len(self.speakers) != self.n_utts:
            raise DataError(f"{self.name}: {len(self.speakers)} speakers for {self.n_utts} utterances")
        if len(set(self.utt_ids)) != self.n_utts:
            raise DataError(f"{self.name}: duplicate utterance ids")
        if self.labels is not None:
            if self.labels.shape != (n,):
                raise DataError(f"{self.name}: {self.labels.shape[0]} labels for {n} frames")
            if n and (self.labels.min() < 0 or self.labels.max() >= self.n_classes):
                raise DataError(
                    f"{self.name}: labels outside 0..{self.n_classes - 1} "
                    f"(found {int(self.labels.min())}..{int(self.labels.max())})"
                )


def frame_indices_of(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, e)`` for each pair, without a Python loop."""
    lengths = (ends - starts).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # repeat each start, then add the position within its run
    run_starts = np.repeat(starts.astype(np.int64), lengths)
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return run_starts + pos


@dataclass(frozen=True, eq=False)
class Dataset:
    """What a source provides: a labelled pool to split, and a test corpus.

    ``test.labels`` is ``None`` for real test sets (Kaggle); generated corpora
    keep their test labels so reports can show honest test accuracy.
    """

    source: str
    pool: Corpus
    test: Corpus | None

    @property
    def fingerprint(self) -> str:
        parts = [self.pool.fingerprint, self.test.fingerprint if self.test is not None else "-"]
        return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Splits:
    train: Corpus
    val: Corpus
    test: Corpus | None


SPLITS = ("seed", "course")  # data.split: how the pool is cut into train / val
COURSE_SEED = 1337


def course_split(n_utts: int, train_ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """The course notebook's split, on utterance positions in train_split.txt order:
    ``random.seed(1337)``, ``random.shuffle`` of the list, the first
    ``int(train_ratio * N)`` for training. A shuffle depends only on the list's
    length and the generator, so shuffling positions picks the same utterances."""
    import random

    order = list(range(n_utts))
    random.Random(COURSE_SEED).shuffle(order)  # the same Mersenne Twister stream as random.seed(1337)
    n_train = int(train_ratio * n_utts)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def describe_split(split: str, seed: int, val_ratio: float) -> str:
    """One line saying which split a command used."""
    if split == "course":
        return (f"course (random.seed({COURSE_SEED}), random.shuffle of train_split.txt, "
                f"first int({1 - val_ratio:g} * N) for train)")
    return f"seed {seed} (utterances shuffled with train.seed, val_ratio {val_ratio:g})"


def split_utterances(
    pool: Corpus, val_ratio: float = 0.2, seed: int = 1337, by: str = "utterance", split: str = "seed"
) -> tuple[np.ndarray, np.ndarray]:
    """Utterance indices for train and val: the one split definition that
    ``data info``, ``train``, ``predict`` and studies share.

    ``split="seed"``: shuffle with ``seed`` (studies pass each cell's seed, so
    split variance lands in the seed spread) and take the first
    ``(1 - val_ratio)``; ``by="speaker"`` does the same over speakers, so no
    speaker is in both. ``split="course"``: the course notebook's fixed split
    (``course_split``) over the pool in its train_split.txt order.
    """
    from ablation.errors import DataError

    if not 0.0 < val_ratio < 1.0:
        raise DataError(f"val_ratio must be in (0, 1), got {val_ratio}")
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'{closest(split, SPLITS)}; use one of: {', '.join(SPLITS)}")
    if split == "course":
        if not pool.has_boundaries:
            raise DataError(
                f"{pool.name} has no utterances in a train_split.txt order, so the course split cannot be made; "
                "use data.split = 'seed'"
            )
        if by != "utterance":
            raise DataError("the course split is by utterance; set data.split_by = 'utterance'")
        tr, va = course_split(pool.n_utts, 1.0 - val_ratio)
        if len(tr) == 0 or len(va) == 0:
            raise DataError(f"{pool.name}: {pool.n_utts} utterances cannot be split with val_ratio={val_ratio}")
        return tr, va
    rng = np.random.default_rng(seed)
    if by == "utterance":
        order = rng.permutation(pool.n_utts)
        n_train = int(round(pool.n_utts * (1.0 - val_ratio)))
        if n_train in (0, pool.n_utts):
            raise DataError(f"{pool.name}: {pool.n_utts} utterances cannot be split with val_ratio={val_ratio}")
        return np.sort(order[:n_train]), np.sort(order[n_train:])
    if by == "speaker":
        speakers = np.array(pool.speakers)
        unique = np.unique(speakers)
        order = rng.permutation(len(unique))
        n_train = int(round(len(unique) * (1.0 - val_ratio)))
        if n_train in (0, len(unique)):
            raise DataError(
                f"{pool.name}: {len(unique)} speakers cannot be split with val_ratio={val_ratio}; split by utterance"
            )
        train_spk = set(unique[order[:n_train]])
        is_train = np.array([s in train_spk for s in speakers])
        return np.flatnonzero(is_train), np.flatnonzero(~is_train)
    raise DataError(f"unknown split_by '{by}': use 'utterance' or 'speaker'")


def make_splits(ds: Dataset, val_ratio: float = 0.2, seed: int = 1337, by: str = "utterance",
                split: str = "seed") -> Splits:
    tr, va = split_utterances(ds.pool, val_ratio, seed, by, split)
    return Splits(
        train=ds.pool.subset(tr, name=f"{ds.pool.name}/train"),
        val=ds.pool.subset(va, name=f"{ds.pool.name}/val"),
        test=ds.test,
    )
