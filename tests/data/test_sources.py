import warnings

import numpy as np
import pytest
import torch

from ablation.data.corpus import Dataset
from ablation.data.sources import (
    LIBRIPHONE_CLASSES,
    TIMIT_CLASSES,
    export,
    from_utterances,
    load_dataset,
    parse_spec,
)
from ablation.data.windows import Windows
from ablation.errors import DataError


def hand_dataset(seed=0):
    rng = np.random.default_rng(seed)

    def corpus(name, lengths, prefix, labelled):
        feats = [rng.standard_normal((t, 39)).astype(np.float32) for t in lengths]
        labels = [rng.integers(0, 41, t) for t in lengths] if labelled else None
        ids = [f"{prefix}{u}-7-{u:04d}" for u in range(len(lengths))]
        return from_utterances(name, feats, labels, ids, LIBRIPHONE_CLASSES)

    return Dataset("hand", corpus("hand", [5, 1, 8, 3], "1", True), corpus("hand/test", [2, 6], "9", False))


@pytest.fixture
def libri(tmp_path):
    ds = hand_dataset()
    return ds, export(ds, tmp_path / "libriphone")


# ---- specs ---------------------------------------------------------------
def test_parse_spec():
    assert parse_spec("libriphone:/data/x") == ("libriphone", "/data/x")
    assert parse_spec("timit11:a:b") == ("timit11", "a:b")


@pytest.mark.parametrize(
    "spec, match",
    [
        ("libriphon:/x", "unknown data spec 'libriphon:/x' \\(did you mean 'libriphone'\\?\\); use one of synthphone:PRESET"),
        ("nothing", "unknown data spec 'nothing'; use one of synthphone:PRESET, libriphone:PATH, timit11:PATH"),
        ("libriphone:", "names no path"),
        ("synthphone", "names no preset"),
    ],
)
def test_bad_spec(spec, match):
    with pytest.raises(DataError, match=match):
        load_dataset(spec)


def test_home_is_expanded(libri, monkeypatch):
    _, folder = libri
    monkeypatch.setenv("HOME", str(folder.parent))
    ds = load_dataset("libriphone:~/libriphone")
    assert ds.source == f"libriphone:{folder}"


# ---- export and libriphone -----------------------------------------------
def test_export_writes_the_libriphone_layout(libri):
    ds, folder = libri
    assert sorted(p.name for p in folder.iterdir()) == ["classes.txt", "feat", "test_split.txt", "train_labels.txt",
                                                        "train_split.txt"]
    assert (folder / "classes.txt").read_text().split() == list(LIBRIPHONE_CLASSES)
    assert (folder / "train_split.txt").read_text() == "10-7-0000\n11-7-0001\n12-7-0002\n13-7-0003"
    assert (folder / "test_split.txt").read_text() == "90-7-0000\n91-7-0001"
    lines = (folder / "train_labels.txt").read_text().splitlines()
    assert len(lines) == 4 and lines[1] == "11-7-0001 " + str(ds.pool.labels[5])
    assert lines[0].split()[1:] == [str(v) for v in ds.pool.labels[:5]]
    x = torch.load(folder / "feat" / "train" / "12-7-0002.pt", weights_only=True)
    assert x.dtype == torch.float32 and x.shape == (8, 39)
    np.testing.assert_array_equal(x.numpy(), ds.pool.features[6:14])
    assert sorted(p.name for p in (folder / "feat" / "test").iterdir()) == ["90-7-0000.pt", "91-7-0001.pt"]
    assert [p.name for p in folder.parent.iterdir()] == ["libriphone"]  # no temporary folder left


def test_round_trip(libri):
    ds, folder = libri
    back = load_dataset(f"libriphone:{folder}")
    for a, b in ((ds.pool, back.pool), (ds.test, back.test)):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        assert a.utt_ids == b.utt_ids
    np.testing.assert_array_equal(ds.pool.labels, back.pool.labels)
    assert back.test.labels is None
    assert back.pool.speakers == ("10", "11", "12", "13")
    assert back.pool.class_names == LIBRIPHONE_CLASSES and back.pool.class_names[7] == "p07"


def test_synthphone_round_trip(tmp_path):
    ds = load_dataset("synthphone:tiny")
    back = load_dataset(f"libriphone:{export(ds, tmp_path / 'x')}")
    for a, b in ((ds.pool, back.pool), (ds.test, back.test)):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        assert a.utt_ids == b.utt_ids
    np.testing.assert_array_equal(ds.pool.labels, back.pool.labels)


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    export(hand_dataset(), tmp_path / "out")  # an empty folder is fine
    with pytest.raises(DataError, match="already exists and is not an empty folder"):
        export(hand_dataset(), tmp_path / "out")


def test_split_files_may_end_with_newlines_and_blank_lines(libri):
    _, folder = libri
    (folder / "test_split.txt").write_text("90-7-0000\n\n91-7-0001\n")
    assert load_dataset(f"libriphone:{folder}").test.utt_ids == ("90-7-0000", "91-7-0001")


def _corrupt(folder, what):
    feat = folder / "feat" / "train" / "11-7-0001.pt"
    if what == "missing folder":
        return folder / "nope", "does not exist"
    if what == "missing labels":
        (folder / "train_labels.txt").unlink()
        return folder, "train_labels.txt is missing"
    if what == "garbage pt":
        feat.write_bytes(b"not a zip")
        return folder, "11-7-0001.pt cannot be read as a torch tensor"
    if what == "dict pt":
        torch.save({"x": torch.zeros(1, 39)}, feat)
        return folder, "11-7-0001.pt holds a dict, not a tensor"
    if what == "wrong width":  # the first file that differs from the first one read is named
        torch.save(torch.zeros(1, 40), feat)
        return folder, "train/11-7-0001.pt has 40-dim frames but .*train/10-7-0000.pt has 39-dim ones"
    if what == "test width":
        torch.save(torch.zeros(2, 40), folder / "feat" / "test" / "90-7-0000.pt")
        return folder, "test/90-7-0000.pt has 40-dim frames but .*train/10-7-0000.pt has 39-dim ones"
    if what == "no features":
        torch.save(torch.zeros(1, 0), feat)
        return folder, "shape \\(1, 0\\); expected float32 \\(T, D\\)"
    if what == "labels not utf-8":
        text = (folder / "train_labels.txt").read_bytes().replace(b"11-7-0001", b"11-7-\xff001")
        (folder / "train_labels.txt").write_bytes(text)
        byte = text.index(b"\xff")
        return folder, f"train_labels.txt:2 is not UTF-8 text \\(byte {byte}: invalid start byte\\)"
    if what == "split not utf-8":
        (folder / "test_split.txt").write_bytes(b"90-7-0000\n\xe9t\xe9")
        return folder, "test_split.txt:2 is not UTF-8 text"
    if what == "class names repeat":
        (folder / "classes.txt").write_text("a\nb\na\n")
        return folder, "classes.txt names a class twice"
    if what == "missing pt":
        feat.unlink()
        return folder, "11-7-0001.pt is missing"
    if what == "nan":
        torch.save(torch.full((1, 39), float("nan")), feat)
        return folder, "11-7-0001.pt holds NaN"
    lines = (folder / "train_labels.txt").read_text().splitlines()
    if what == "label count":
        lines[1] += " 3"
        msg = "11-7-0001.pt has 1 frames but train_labels.txt gives 2 labels"
    elif what == "label range":
        lines[1] = "11-7-0001 41"
        msg = "classes.txt names 41 classes but train_labels.txt has label 41"
    elif what == "negative label":
        lines[1] = "11-7-0001 -1"
        msg = "train_labels.txt:2: utterance '11-7-0001' has label -1; labels are class indices 0..C-1"
    elif what == "label text":
        lines[1] = "11-7-0001 x"
        msg = "train_labels.txt:2: labels of '11-7-0001' are not all integers"
    elif what == "duplicate label line":
        lines.append(lines[0])
        msg = "train_labels.txt:5: utterance '10-7-0000' has a second label line"
    elif what == "missing label line":
        del lines[2]
        msg = "no labels for 1 id\\(s\\) of train_split.txt \\(first: '12-7-0002'\\)"
    elif what == "duplicate split id":
        (folder / "train_split.txt").write_text("10-7-0000\n11-7-0001\n10-7-0000")
        msg = "'10-7-0000' is listed twice \\(line 3\\)"
    elif what == "id in both splits":
        (folder / "test_split.txt").write_text("10-7-0000")
        msg = "'10-7-0000' is listed in both train_split.txt and test_split.txt"
    (folder / "train_labels.txt").write_text("\n".join(lines))
    return folder, msg


@pytest.mark.parametrize(
    "what",
    ["missing folder", "missing labels", "garbage pt", "dict pt", "wrong width", "test width", "no features",
     "labels not utf-8", "split not utf-8", "class names repeat", "missing pt", "nan", "label count",
     "label range", "negative label", "label text", "duplicate label line", "missing label line", "duplicate split id",
     "id in both splits"],
)
def test_bad_libriphone_input_is_one_line(libri, what):
    folder, match = _corrupt(libri[1], what)
    with pytest.raises(DataError, match=match) as err:
        load_dataset(f"libriphone:{folder}")
    assert "\n" not in str(err.value)


def test_labels_for_ids_outside_the_split_are_ignored(libri):
    _, folder = libri
    (folder / "train_split.txt").write_text("12-7-0002\n10-7-0000")
    ds = load_dataset(f"libriphone:{folder}")
    assert ds.pool.utt_ids == ("12-7-0002", "10-7-0000") and ds.pool.n_frames == 13


# ---- timit11 -------------------------------------------------------------
def write_timit(folder, n_train=6, n_test=3, labels=None):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(folder / "train_11.npy", rng.standard_normal((n_train, 429)).astype(np.float32))
    np.save(folder / "test_11.npy", rng.standard_normal((n_test, 429)).astype(np.float32))
    labels = np.array(["0", "38", "5", "12", "0", "7"][:n_train]) if labels is None else labels
    np.save(folder / "train_label_11.npy", labels, allow_pickle=True)
    return folder


@pytest.mark.parametrize("parent", [False, True])
def test_timit11(tmp_path, parent):
    folder = write_timit(tmp_path / "timit_11")
    ds = load_dataset(f"timit11:{tmp_path if parent else folder}")
    pool = ds.pool
    assert pool.prewindowed == 11 and not pool.has_boundaries
    assert pool.labels.tolist() == [0, 38, 5, 12, 0, 7] and pool.labels.dtype == np.int64
    assert pool.offsets.tolist() == list(range(7))
    assert pool.utt_ids[:2] == ("train-0", "train-1") and ds.test.utt_ids[-1] == "test-2"
    assert pool.class_names == TIMIT_CLASSES and TIMIT_CLASSES[38] == "sil" and TIMIT_CLASSES[20] == "ng"
    assert isinstance(pool.features, np.memmap) and ds.test.labels is None
    np.testing.assert_array_equal(pool.features, np.load(folder / "train_11.npy"))
    pool.validate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = Windows(pool, 3)(torch.tensor([4]), flat=True)
    np.testing.assert_array_equal(x[0].numpy(), pool.features[4, 4 * 39 : 7 * 39])


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([1, 2, None, 3, 4, 5], dtype=object), "not a plain .npy array \\(pickled Python objects"),
        (np.array(["0", "39", "1", "1", "1", "1"]), "labels 0..39; expected 0..38"),
        (np.array(["0", "1"]), "\\(2,\\) labels for 6 rows"),
        (np.array(["a", "1", "1", "1", "1", "1"]), "not integers"),
    ],
)
def test_bad_timit_labels(tmp_path, labels, match):
    write_timit(tmp_path / "t", labels=labels)
    with pytest.raises(DataError, match=match):
        load_dataset(f"timit11:{tmp_path / 't'}")


def test_timit_wrong_width_and_missing_file(tmp_path):
    folder = write_timit(tmp_path / "t")
    np.save(folder / "test_11.npy", np.zeros((2, 39), np.float32))
    with pytest.raises(DataError, match="test_11.npy holds float32 of shape \\(2, 39\\); expected float rows of 429"):
        load_dataset(f"timit11:{folder}")
    (folder / "test_11.npy").unlink()
    with pytest.raises(DataError, match="test_11.npy is missing"):
        load_dataset(f"timit11:{folder}")


def test_garbage_npy_is_refused(tmp_path):
    folder = write_timit(tmp_path / "t")
    (folder / "train_11.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="train_11.npy is not a plain .npy array"):
        load_dataset(f"timit11:{folder}")


def test_prewindowed_cannot_be_exported(tmp_path):
    ds = load_dataset(f"timit11:{write_timit(tmp_path / 't')}")
    with pytest.raises(DataError, match="no utterance boundaries"):
        export(ds, tmp_path / "out")


class _Shell:
    def __reduce__(self):  # a malicious .pt: unpickling would call os.system
        import os

        return (os.system, ("true",))


def test_a_malicious_pt_is_refused_with_torchs_whole_reason_on_one_line(libri):
    folder = libri[1]
    torch.save(_Shell(), folder / "feat" / "train" / "11-7-0001.pt")
    with pytest.raises(DataError) as err:
        load_dataset(f"libriphone:{folder}")
    msg = str(err.value)
    # torch's reason is on a later line of its message, and past 120 characters: kept whole
    assert "GLOBAL posix.system" in msg and "\n" not in msg and msg.endswith("; re-extract the data set"), msg
