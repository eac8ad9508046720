"""One split definition: the course's split reproduced exactly, and `data info`
and `train` cutting the same split."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ablation.cli import main
from ablation.data import sources
from ablation.data.corpus import course_split, make_splits


def course_notebook_split(folder, train_ratio=0.8):
    """The course's HW2 notebook, verbatim but for the path."""
    random.seed(1337)
    usage_list = open(folder / "train_split.txt").readlines()
    random.shuffle(usage_list)
    train_len = int(train_ratio * len(usage_list))
    return [u.strip() for u in usage_list[:train_len]], [u.strip() for u in usage_list[train_len:]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    ds = sources.load_dataset("synthphone:tiny")
    out = tmp_path_factory.mktemp("export") / "libriphone"
    sources.export(ds, out)
    return ds, out


def test_course_split_of_an_exported_folder_is_the_notebooks(exported):
    ds, folder = exported
    libri = sources.load_dataset(f"libriphone:{folder}")
    splits = make_splits(libri, 0.2, seed=0, split="course")
    train_ids, val_ids = course_notebook_split(folder)
    assert sorted(splits.train.utt_ids) == sorted(train_ids)
    assert sorted(splits.val.utt_ids) == sorted(val_ids)
    assert len(train_ids) == int(0.8 * ds.pool.n_utts)
    # the generated corpus splits alike: its pool order is the order export writes
    direct = make_splits(ds, 0.2, seed=5, split="course")
    assert sorted(direct.train.utt_ids) == sorted(train_ids)


def test_course_split_at_the_real_size_is_3428_858():
    train, val = course_split(4286)
    assert (len(train), len(val)) == (3428, 858)
    random.seed(1337)
    lines = list(range(4286))
    random.shuffle(lines)
    assert sorted(lines[:3428]) == train.tolist()


def test_seed_split_follows_the_seed():
    ds = sources.load_dataset("synthphone:tiny")
    a, b = make_splits(ds, 0.2, seed=0), make_splits(ds, 0.2, seed=1)
    assert a.train.utt_ids != b.train.utt_ids
    assert make_splits(ds, 0.2, seed=0).train.utt_ids == a.train.utt_ids


def _info_sizes(capsys, *args) -> dict[str, int]:
    assert main(["data", "info", "--data", "synthphone:tiny", *args]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("train", "val") and len(parts) > 2:
            rows[parts[0]] = int(parts[1].replace(",", ""))
    return rows, out


@pytest.mark.parametrize("split", ["seed", "course"])
def test_data_info_and_train_report_the_same_split(split, capsys, tracking_uri):
    info, out = _info_sizes(capsys, "--split", split)
    ds = sources.load_dataset("synthphone:tiny")
    expected = make_splits(ds, 0.2, seed=0, split=split)
    assert info == {"train": expected.train.n_utts, "val": expected.val.n_utts}
    assert f"split: {split}" in out
    argv = ["train", "mlp_sample", "--data", "synthphone:tiny", "--set", "train.epochs=1",
            "--set", f"data.split={split}", "--tracking-uri", tracking_uri, "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("train / val"))
    assert f"{info['train']:,} / {info['val']:,} utterances" in row
    split_row = next(line for line in out.splitlines() if line.startswith("split"))
    assert split_row.split(None, 1)[1].startswith(split)


def test_unknown_split_name_is_one_line(capsys):
    assert main(["train", "mlp_sample", "--data", "synthphone:tiny", "--set", "data.split=courses"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "The 'data.split' parameter must be one of 'seed', 'course'. Got 'courses' instead." in err
    assert main(["data", "info", "--data", "synthphone:tiny", "--split", "curse"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown split 'curse' (did you mean 'course'?)" in err


def test_course_split_needs_a_train_split_order(tmp_path, capsys):
    folder = tmp_path / "timit_11"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "train_11.npy", rng.normal(size=(60, 429)).astype(np.float32))
    np.save(folder / "train_label_11.npy", rng.integers(0, 39, 60).astype(str))
    np.save(folder / "test_11.npy", rng.normal(size=(20, 429)).astype(np.float32))
    argv = ["train", "mlp_sample", "--data", f"timit11:{tmp_path}", "--set", "data.split=course",
            "--set", "features.n_concat=11"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "has no utterances in a train_split.txt order" in err and "data.split = 'seed'" in err
