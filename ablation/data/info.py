"""Summary statistics of a dataset: sizes per split, classes, label runs, ceiling.

The train/val split is the one training uses (``split_utterances`` with the
same ratio and seed). Only labels and utterance structure are read: the
split subsets drop the feature columns, so summarising costs no feature copy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from tabulate import tabulate

from ablation.data.corpus import Corpus, Dataset, split_utterances

SHORT_RUN = 11  # frames: the course hint's window length


def segment_lengths(labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal labels; a run never crosses an utterance boundary."""
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.zeros(n, dtype=bool)
    starts[np.asarray(offsets[:-1], dtype=np.int64)] = True
    starts[1:] |= labels[1:] != labels[:-1]
    return np.diff(np.append(np.flatnonzero(starts), n))


def label_stats(dataset: Dataset) -> dict:
    """The labelled pool's class and run statistics and the utterance lengths (pool and test) that
    libriphone's are held against (``data calibrate``, ``data presets``); a class with no frame counts as 0."""
    pool = dataset.pool
    runs = segment_lengths(pool.labels, pool.offsets)
    lengths = np.concatenate([pool.lengths] + ([dataset.test.lengths] if dataset.test is not None else []))
    return {"class 0 share": float(np.mean(pool.labels == 0)), "label-run mean": float(runs.mean()),
            "label-run median": float(np.median(runs)), "runs under 11 frames": float(np.mean(runs < SHORT_RUN)),
            "utterance length min": int(lengths.min()), "utterance length mean": float(lengths.mean()),
            "utterance length max": int(lengths.max()),
            "rarest class frames": int(np.bincount(pool.labels, minlength=pool.n_classes).min())}  # fmt: skip


def _without_features(corpus: Corpus) -> Corpus:
    # zero feature columns: subsets then copy labels and structure only (and drop the cached fingerprint)
    return replace(corpus, features=corpus.features[:, :0], meta={k: v for k, v in corpus.meta.items() if k[0] != "_"})


def split_corpora(dataset: Dataset, val_ratio: float = 0.2, seed: int = 0,
                  split: str = "seed") -> dict[str, Corpus]:
    """Feature-less train / val (/ test) corpora, split as training splits them
    (the same ``split_utterances``; ``train`` with ``train.seed = seed`` gets these)."""
    pool = _without_features(dataset.pool)
    train_idx, val_idx = split_utterances(pool, val_ratio, seed, split=split)
    parts = {"train": pool.subset(train_idx, name=f"{pool.name}/train"), "val": pool.subset(val_idx, name=f"{pool.name}/val")}
    if dataset.test is not None:
        parts["test"] = _without_features(dataset.test)
    return parts


def _split_stats(corpus: Corpus) -> dict:
    lengths = corpus.lengths
    bounded = corpus.has_boundaries
    return {
        "utterances": corpus.n_utts if bounded else None,
        "frames": corpus.n_frames,
        "len_min": int(lengths.min()) if bounded else None,
        "len_mean": float(lengths.mean()) if bounded else None,
        "len_max": int(lengths.max()) if bounded else None,
        "labelled": corpus.labels is not None,
        "ceiling": corpus.ceiling(),
    }


def summarize(dataset: Dataset, val_ratio: float = 0.2, seed: int = 0, split: str = "seed") -> dict:
    """Sizes per split, class distribution and label runs of the pool, fingerprint, ceiling."""
    pool = dataset.pool
    splits = {name: _split_stats(c) for name, c in split_corpora(dataset, val_ratio, seed, split).items()}
    classes = None
    segments = None
    if pool.labels is not None:
        counts = np.bincount(pool.labels, minlength=pool.n_classes)
        present = np.flatnonzero(counts)
        top = int(np.argmax(counts))
        rare = int(present[np.argmin(counts[present])])
        classes = {
            "n_classes": pool.n_classes,
            "present": int(len(present)),
            "most_frequent": pool.class_names[top],
            "most_frequent_share": float(counts[top] / counts.sum()),
            "rarest": pool.class_names[rare],
            "rarest_count": int(counts[rare]),
        }
        if pool.has_boundaries:
            runs = segment_lengths(pool.labels, pool.offsets)
            segments = {
                "count": int(len(runs)),
                "mean": float(runs.mean()),
                "median": float(np.median(runs)),
                "share_shorter_than_11": float(np.mean(runs < SHORT_RUN)),
            }
    return {
        "source": dataset.source,
        "fingerprint": dataset.fingerprint,
        "boundaries": pool.has_boundaries,
        "prewindowed": pool.prewindowed,
        "val_ratio": val_ratio,
        "seed": seed,
        "split": split,
        "splits": splits,
        "classes": classes,
        "segments": segments,
    }


def format_summary(summary: dict) -> str:
    """A few lines and one table, for a terminal."""
    lines = [f"source       {summary['source']}", f"fingerprint  {summary['fingerprint']}"]
    if not summary["boundaries"]:
        lines.append(f"structure    pre-windowed rows of {summary['prewindowed']} frames; no utterance boundaries")
    c = summary["classes"]
    if c is not None:
        lines.append(
            f"classes      {c['present']} of {c['n_classes']} present; most frequent {c['most_frequent']} "
            f"({c['most_frequent_share']:.1%} of frames); rarest {c['rarest']} ({c['rarest_count']:,} frames)"
        )
    s = summary["segments"]
    if s is not None:
        lines.append(
            f"label runs   {s['count']:,} runs; mean {s['mean']:.1f} frames, median {s['median']:g}; "
            f"{s['share_shorter_than_11']:.1%} shorter than {SHORT_RUN} frames"
        )
    if any(v["ceiling"] is not None for v in summary["splits"].values()):
        from ablation.data.ceiling import UTTERANCE_CONDITIONS

        lines.append(f"ceiling      Bayes accuracy given {UTTERANCE_CONDITIONS}; "
                     "`data ceiling --n 1,11` gives it for what an n-frame window sees")
    table = pd.DataFrame.from_dict(summary["splits"], orient="index")
    table = table.drop(columns="labelled").rename(
        columns={"len_min": "len min", "len_mean": "len mean", "len_max": "len max"}
    )
    table["ceiling"] = table["ceiling"].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.4f}")
    for col in ("utterances", "frames", "len min", "len max"):
        table[col] = table[col].map(lambda v: "-" if v is None or pd.isna(v) else f"{int(v):,}")
    table["len mean"] = table["len mean"].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.1f}")
    table = table.reset_index(names="split")
    from ablation.data.corpus import describe_split

    title = "split: " + describe_split(summary.get("split", "seed"), summary["seed"], summary["val_ratio"])
    align = ("left",) + ("right",) * (table.shape[1] - 1)
    lines += ["", title, tabulate(table, headers="keys", showindex=False, disable_numparse=True, colalign=align)]
    return "\n".join(lines)


def ceiling_table(dataset: Dataset, val_ratio: float = 0.2, seed: int = 1337) -> pd.DataFrame | None:
    """Bayes-optimal recall per class (rows) and split (columns), plus frames per class in the pool.

    ``None`` when the source has no known ceiling (real data).
    """
    parts = {k: c for k, c in split_corpora(dataset, val_ratio, seed).items() if c.has_ceiling}
    if not dataset.pool.has_ceiling or not parts:
        return None
    names = list(dataset.pool.class_names)
    table = pd.DataFrame({"frames": np.bincount(dataset.pool.labels, minlength=len(names))}, index=names)
    for split, corpus in parts.items():
        table[split] = corpus.ceiling_per_class()
    table.index.name = "class"
    return table


def ceiling_per_split(dataset: Dataset, val_ratio: float = 0.2, seed: int = 1337) -> dict[str, float | None]:
    """Bayes-optimal frame accuracy of each split (``None`` where unknown)."""
    return {k: c.ceiling() for k, c in split_corpora(dataset, val_ratio, seed).items()}
