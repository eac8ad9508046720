"""Where corpora come from: ``--data`` specs, the two real layouts, and export.

Specs:

- ``synthphone:PRESET``: the generated corpus (``tiny``, ``small``, ``libri``; ``*-v2``: generator version 2);
- ``libriphone:PATH``: the 2022 course layout (``train_split.txt``,
  ``test_split.txt``, ``train_labels.txt``, ``feat/{train,test}/<id>.pt``);
- ``timit11:PATH``: the 2021 layout (``train_11.npy``, ``train_label_11.npy``,
  ``test_11.npy``; PATH is that folder or the one holding ``timit_11/``).

No names are published for libriphone's 41 classes, so they are called
``p00`` .. ``p40`` (metrics read ``recall.p07``); class ``p00`` is silence.

The frame width and the class count are read from the data, not assumed:
every ``.pt`` of a libriphone folder must have the width of the first one read,
and the classes are ``0 .. max label`` of ``train_labels.txt`` (80-dim
filterbanks with 45 classes work as 39-dim MFCC with 41 do), or the lines of
an optional ``classes.txt`` (one name per class, in index order; ``export``
writes it, so a corpus keeps its classes even where a split lacks the last). A TIMIT row is 11
frames of any width. Every file of a layout is checked as it is read: what is
wrong is one line naming the file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ablation.data.corpus import Corpus, Dataset
from ablation.errors import DataError, closest

SCHEMES = ("synthphone", "libriphone", "timit11")
LIBRIPHONE_CLASSES = tuple(f"p{i:02d}" for i in range(41))
MAX_CLASSES = 10_000  # far beyond any phone set: a larger label is a corrupt file
TIMIT_CLASSES = tuple(
    "iy ih eh ae ah uw uh aa ey ay oy aw ow l r y w er m n ng ch jh dh b d dx g p t k z v f th s sh hh sil".split()
)
TIMIT_WIDTH = 11


def parse_spec(spec: str) -> tuple[str, str]:
    """``'scheme:arg'`` -> ``(scheme, arg)``, the scheme checked against ``SCHEMES``."""
    scheme, sep, arg = str(spec).partition(":")
    if scheme not in SCHEMES or not sep or not arg:
        known = ", ".join(f"{s}:{'PRESET' if s == 'synthphone' else 'PATH'}" for s in SCHEMES)
        if scheme in SCHEMES:
            raise DataError(f"data spec '{spec}' names no {'preset' if scheme == 'synthphone' else 'path'}; use {known}")
        raise DataError(f"unknown data spec '{spec}'{closest(scheme, SCHEMES)}; use one of {known}")
    return scheme, arg


def load_dataset(spec: str) -> Dataset:
    """The dataset a ``--data`` spec names (see the module docstring)."""
    scheme, arg = parse_spec(spec)
    if scheme == "synthphone":
        from ablation.data import synthphone

        return synthphone.load(arg)
    path = Path(arg).expanduser().resolve()
    return load_libriphone(path) if scheme == "libriphone" else load_timit11(path)


# ---- libriphone ----------------------------------------------------------
def load_libriphone(root: Path) -> Dataset:
    """Read a libriphone folder; the test corpus has no labels."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"libriphone folder {root} does not exist; pass the folder holding train_split.txt")
    train_ids = _read_ids(root / "train_split.txt")
    test_ids = _read_ids(root / "test_split.txt", allow_empty=True)
    both = set(train_ids) & set(test_ids)
    if both:
        raise DataError(
            f"{root}: utterance '{min(both)}' is listed in both train_split.txt and test_split.txt; "
            "keep each id in one split"
        )
    labels, n_classes = _read_labels(root / "train_labels.txt", train_ids)
    names = _read_class_names(root / "classes.txt", n_classes)
    pool = _libriphone_corpus("libriphone", root / "feat" / "train", train_ids, labels, names)
    first = (pool.frame_dim, root / "feat" / "train" / f"{train_ids[0]}.pt")
    test = (_libriphone_corpus("libriphone/test", root / "feat" / "test", test_ids, None, names, first)
            if test_ids else None)
    return Dataset(source=f"libriphone:{root}", pool=pool, test=test)


def class_names(n: int) -> tuple[str, ...]:
    """``p00`` .. for ``n`` unnamed classes (the real set's 41 are ``LIBRIPHONE_CLASSES``)."""
    digits = max(2, len(str(n - 1)))
    return tuple(f"p{i:0{digits}d}" for i in range(n))


def _read_class_names(path: Path, n_seen: int) -> tuple[str, ...]:
    if not path.is_file():
        return class_names(n_seen)
    names = tuple(line.strip() for line in read_text(path).splitlines() if line.strip())
    if len(set(names)) != len(names):
        raise DataError(f"{path} names a class twice; give one distinct name per line")
    if len(names) < n_seen:
        raise DataError(f"{path} names {len(names)} classes but train_labels.txt has label {n_seen - 1}; "
                        "name every class, one per line in index order, or remove the file")
    return names


def read_text(path: Path) -> str:
    """A text file of the layout, as UTF-8; anything else is one line naming the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line} is not UTF-8 text (byte {e.start}: {e.reason}); "
                        "save it as UTF-8 (ids and integer labels are plain ASCII)") from None


def _read_ids(path: Path, allow_empty: bool = False) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path} is missing; a libriphone folder needs train_split.txt and test_split.txt")
    ids = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not ids and not allow_empty:
        raise DataError(f"{path} lists no utterance ids; put one id per line")
    seen: set[str] = set()
    for i, uid in enumerate(ids):
        if uid in seen:
            raise DataError(f"{path}: utterance id '{uid}' is listed twice (line {i + 1}); list each id once")
        seen.add(uid)
    return ids


def _read_labels(path: Path, wanted: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """(labels of the ``wanted`` ids, the class count: 1 + the largest label of
    any line). Lines for other ids are checked and counted, not kept (a trimmed
    split keeps the data set's classes)."""
    if not path.is_file():
        raise DataError(f"{path} is missing; a libriphone folder needs train_labels.txt")
    wanted_set, labels, seen, top = set(wanted), {}, set(), -1
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        uid, _, rest = line.strip().partition(" ")
        if not uid:
            continue
        if uid in seen:
            raise DataError(f"{path}:{lineno}: utterance '{uid}' has a second label line; keep one per id")
        seen.add(uid)
        try:
            lab = np.array(rest.split(), dtype=np.int64)
        except (ValueError, OverflowError):
            raise DataError(f"{path}:{lineno}: labels of '{uid}' are not all integers; "
                            "use ints 0..C-1 for C classes") from None
        if lab.size == 0:
            raise DataError(f"{path}:{lineno}: utterance '{uid}' has no labels; give one label per frame")
        if lab.min() < 0 or lab.max() >= MAX_CLASSES:
            bad = int(lab[(lab < 0) | (lab >= MAX_CLASSES)][0])
            raise DataError(f"{path}:{lineno}: utterance '{uid}' has label {bad}; "
                            f"labels are class indices 0..C-1 (C at most {MAX_CLASSES:,})")
        top = max(top, int(lab.max()))
        if uid in wanted_set:
            labels[uid] = lab
    if top < 1 and wanted:
        raise DataError(f"{path} has only class 0; a classifier needs labels of at least two classes")
    missing = [u for u in wanted if u not in labels]
    if missing:
        raise DataError(
            f"{path} has no labels for {len(missing)} id(s) of train_split.txt (first: '{missing[0]}'); "
            "add their lines or remove them from train_split.txt"
        )
    return labels, top + 1


def _read_features(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} is missing; every listed utterance needs its feature file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        # torch's reason (e.g. "Unsupported global: GLOBAL posix.system") is on a later line: keep it all, on one line
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{path} cannot be read as a torch tensor ({reason}); re-extract the data set") from None
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a tensor; each .pt must be one float32 (T, D) tensor")
    if obj.ndim != 2 or obj.shape[0] == 0 or obj.shape[1] == 0 or not obj.is_floating_point():
        raise DataError(f"{path} holds a {obj.dtype} tensor of shape {tuple(obj.shape)}; expected float32 (T, D): "
                        "T frames of D features")
    return obj.to(torch.float32).numpy()


def _libriphone_corpus(name: str, feat_dir: Path, ids: list[str], labels: dict | None,
                       names: tuple[str, ...], first: tuple[int, Path] | None = None) -> Corpus:
    """The utterances of one split; every frame as wide as ``first`` says
    (width, file it was read from; default: this split's first file)."""
    feats = []
    for uid in ids:
        x = _read_features(feat_dir / f"{uid}.pt")
        width, ref = first or (first := (x.shape[1], feat_dir / f"{uid}.pt"))
        if x.shape[1] != width:
            raise DataError(f"{feat_dir / (uid + '.pt')} has {x.shape[1]}-dim frames but {ref} has {width}-dim "
                            "ones; every utterance needs the same features")
        if labels is not None and len(labels[uid]) != len(x):
            raise DataError(
                f"{feat_dir / (uid + '.pt')} has {len(x)} frames but train_labels.txt gives {len(labels[uid])} labels; "
                "each frame needs exactly one label"
            )
        if not np.isfinite(x).all():
            raise DataError(f"{feat_dir / (uid + '.pt')} holds NaN or infinite values; re-extract that utterance")
        feats.append(x)
    corpus = from_utterances(name, feats, None if labels is None else [labels[u] for u in ids], ids, names)
    corpus.validate()
    return corpus


def from_utterances(
    name: str,
    features: list[np.ndarray],
    labels: list[np.ndarray] | None,
    utt_ids: list[str],
    class_names: tuple[str, ...],
) -> Corpus:
    """A corpus from per-utterance arrays (``[T_u, 39]`` features, ``[T_u]`` labels).

    The speaker of an utterance is the first ``-``-separated field of its id
    (LibriSpeech ids read ``speaker-chapter-utterance``).
    """
    lengths = [len(x) for x in features]
    return Corpus(
        name=name,
        features=np.ascontiguousarray(np.concatenate(features), dtype=np.float32),
        labels=None if labels is None else np.concatenate(labels).astype(np.int64),
        utt_ids=tuple(utt_ids),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        speakers=tuple(u.split("-")[0] for u in utt_ids),
        class_names=tuple(class_names),
    )


# ---- timit11 -------------------------------------------------------------
def load_timit11(path: Path) -> Dataset:
    """Read the 2021 pre-windowed TIMIT arrays (memory-mapped, copy-on-write)."""
    path = Path(path)
    folder = path / "timit_11" if (path / "timit_11").is_dir() else path
    if not folder.is_dir():
        raise DataError(f"timit11 folder {path} does not exist; pass the folder holding train_11.npy")
    train = _load_npy(folder / "train_11.npy", mmap=True)
    labels = _load_npy(folder / "train_label_11.npy", mmap=False)
    test = _load_npy(folder / "test_11.npy", mmap=True)
    width = train.shape[1] if train.ndim == 2 else 0  # 11 frames of any width: 429 for 39-dim MFCC
    for p, a in ((folder / "train_11.npy", train), (folder / "test_11.npy", test)):
        if (a.ndim != 2 or not np.issubdtype(a.dtype, np.floating) or a.shape[1] == 0
                or a.shape[1] % TIMIT_WIDTH or a.shape[1] != width):
            want = f"{width} (11 x {width // TIMIT_WIDTH})" if width and not width % TIMIT_WIDTH else "11 x D"
            raise DataError(f"{p} holds {a.dtype} of shape {a.shape}; expected float rows of {want}, "
                            "as train_11.npy's")
    label_path = folder / "train_label_11.npy"
    if labels.shape != (len(train),):
        raise DataError(f"{label_path} holds {labels.shape} labels for {len(train)} rows of train_11.npy; expected one per row")
    try:
        labels = labels.astype(np.int64)
    except ValueError:
        raise DataError(f"{label_path} holds labels that are not integers; expected ints 0..38 (as strings)") from None
    if len(labels) and (labels.min() < 0 or labels.max() >= len(TIMIT_CLASSES)):
        raise DataError(f"{label_path} holds labels {labels.min()}..{labels.max()}; expected 0..38")
    return Dataset(
        source=f"timit11:{folder}",
        pool=_timit_corpus("timit11", train, labels, "train"),
        test=_timit_corpus("timit11/test", test, None, "test"),
    )


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} is missing; a timit11 folder needs train_11.npy, train_label_11.npy and test_11.npy")
    try:
        # copy-on-write maps are writable for torch.from_numpy yet never touch the file
        return np.load(path, mmap_mode="c" if mmap else None, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(
                f"{path} is not a plain .npy array (pickled Python objects, which are never loaded, or not .npy at all); "
                "save it with np.save from a numeric or string array"
            ) from None
        raise DataError(f"{path} is not a readable .npy file ({e}); re-extract the data set") from None
    except OSError as e:
        raise DataError(f"{path} is not a readable .npy file ({e}); re-extract the data set") from None


def _timit_corpus(name: str, rows: np.ndarray, labels: np.ndarray | None, prefix: str) -> Corpus:
    if rows.dtype != np.float32:
        rows = rows.astype(np.float32)
    n = len(rows)
    return Corpus(
        name=name,
        features=rows,
        labels=labels,
        utt_ids=tuple(f"{prefix}-{i}" for i in range(n)),
        offsets=np.arange(n + 1, dtype=np.int64),
        speakers=("unknown",) * n,
        class_names=TIMIT_CLASSES,
        prewindowed=TIMIT_WIDTH,
    )


# ---- export --------------------------------------------------------------
def export(dataset: Dataset, out_dir: Path) -> Path:
    """Write ``dataset`` in the libriphone layout under ``out_dir``; return that folder.

    Test labels are not written (the real layout has none). The folder is
    built next to ``out_dir`` and renamed into place at the end, so a failed
    export leaves nothing half-written.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    pool, test = dataset.pool, dataset.test
    for corpus in (pool, test):
        if corpus is not None and not corpus.has_boundaries:
            raise DataError(f"{corpus.name} has no utterance boundaries, so it has no libriphone form; export another source")
    if pool.labels is None:
        raise DataError(f"{pool.name} has no labels; the libriphone layout needs train labels")
    for uid in pool.utt_ids + (test.utt_ids if test is not None else ()):
        if not uid or any(c.isspace() for c in uid) or "/" in uid or uid.startswith("."):
            raise DataError(f"utterance id '{uid}' cannot be a libriphone file name; use ids without spaces or '/'")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir} already exists and is not an empty folder; choose another --out or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_split(tmp, "train", pool)
        _write_split(tmp, "test", test)
        (tmp / "classes.txt").write_text("\n".join(pool.class_names) + "\n")
        with (tmp / "train_labels.txt").open("w") as f:
            for u, uid in enumerate(pool.utt_ids):
                lab = pool.labels[pool.offsets[u] : pool.offsets[u + 1]]
                f.write(uid + " " + " ".join(map(str, lab.tolist())) + "\n")
        if out_dir.is_dir():
            out_dir.rmdir()  # empty, checked above
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_split(root: Path, split: str, corpus: Corpus | None) -> None:
    feat_dir = root / "feat" / split
    feat_dir.mkdir(parents=True)
    ids = corpus.utt_ids if corpus is not None else ()
    (root / f"{split}_split.txt").write_text("\n".join(ids))  # like the original: no final newline
    for u, uid in enumerate(ids):
        # a copy: saving a view would store the whole corpus behind it
        x = torch.from_numpy(np.array(corpus.features[corpus.offsets[u] : corpus.offsets[u + 1]]))
        torch.save(x, feat_dir / f"{uid}.pt")
