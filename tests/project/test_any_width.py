"""A user's family on 80-dim features with 45 classes in the libriphone layout:
trained, logged with the data's width and class count, and predicted to a
Kaggle CSV; a data set of another width is refused by predict in one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from ablation.cli import main
from ablation.data.sources import load_libriphone
from ablation.predict import load_run_model
from ablation.train import predict

WIDTH, CLASSES = 80, 45


def write_libriphone(root, width=WIDTH, classes=CLASSES, seed=0):
    """A hand-made libriphone folder: 8 train and 2 test utterances, no classes.txt."""
    rng = np.random.default_rng(seed)
    train, test = [f"{s}-1-{u}" for s, u in zip(range(1, 9), range(8))], ["90-1-0", "91-1-1"]
    lines = []
    for split, ids in (("train", train), ("test", test)):
        (root / "feat" / split).mkdir(parents=True)
        for i, uid in enumerate(ids):
            t = 20 + 3 * i
            torch.save(torch.from_numpy(rng.standard_normal((t, width)).astype(np.float32)),
                       root / "feat" / split / f"{uid}.pt")
            if split == "train":  # the last class appears once, in the last utterance
                lab = rng.integers(0, classes - 1, t)
                lab[-1] = classes - 1 if i == len(ids) - 1 else lab[-1]
                lines.append(uid + " " + " ".join(map(str, lab)))
    (root / "train_split.txt").write_text("\n".join(train))
    (root / "test_split.txt").write_text("\n".join(test))
    (root / "train_labels.txt").write_text("\n".join(lines) + "\n")
    return root


def test_a_family_on_80_dim_features_with_45_classes_runs_through_predict(project, tmp_path, capsys):
    data = write_libriphone(tmp_path / "fbank80")
    ds = load_libriphone(data)
    assert (ds.pool.frame_dim, ds.pool.n_classes, ds.test.frame_dim) == (WIDTH, CLASSES, WIDTH)
    assert ds.pool.class_names[-1] == "p44"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["train", "classifier", "--data", f"libriphone:{data}", "--set", "features.n_concat=3",
            "--set", "model.hidden_dim=16", "--set", "train.epochs=1", "--tracking-uri", uri, "--no-progress"]
    assert main(argv) == 0
    c = MlflowClient(tracking_uri=uri)
    (run,) = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags["ablation.data.frame_dim"], tags["ablation.data.n_classes"]) == ("80", "45")
    # 3 frames of 80 into 16, one hidden block of 16, 45 classes: by hand
    assert metrics["n_params"] == (3 * 80 + 1) * 16 + (16 + 1) * 16 + (16 + 1) * 45
    assert "recall.p44" in metrics and "recall.p45" not in metrics

    out = tmp_path / "submission.csv"
    capsys.readouterr()
    assert main(["predict", run.info.run_id, "--data", f"libriphone:{data}", "--out", str(out),
                 "--tracking-uri", uri]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["Id", "Class"] and len(df) == ds.test.n_frames == 20 + 23
    assert df["Id"].tolist() == list(range(43)) and df["Class"].between(0, CLASSES - 1).all()
    cfg, model = load_run_model(run.info.run_id, uri)
    assert model.fc[0].block[0].in_features == 3 * 80 and model.fc[-1].out_features == 45
    direct, _ = predict(model, cfg, ds.test, torch.device("cpu"))
    assert np.array_equal(df["Class"].to_numpy(), direct)

    mfcc = write_libriphone(tmp_path / "mfcc39", width=39)
    assert main(["predict", run.info.run_id, "--data", f"libriphone:{mfcc}", "--out", str(tmp_path / "x.csv"),
                 "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == (f"ablation predict: libriphone:{mfcc} has 39-dim frames but run "
                                       f"'{run.info.run_id}' was trained on 80-dim ones; predict with the "
                                       "features the run was trained on\n")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("command", ["data info", "run"])
def test_a_label_file_that_is_not_utf8_is_one_line(project, tmp_path, capsys, command):
    data = write_libriphone(tmp_path / "bad")
    (data / "train_labels.txt").write_bytes(b"1-1-0 0 1\n\xff\xfe broken\n")
    argv = [*command.split(), "--data", f"libriphone:{data}"] + (["classifier_depth"] if command == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"ablation {command.split()[0]}: {data / 'train_labels.txt'}:2 is not UTF-8 text (byte 10: "
                   "invalid start byte); save it as UTF-8 (ids and integer labels are plain ASCII)\n")
    assert not (project / "mlruns" / "optuna.db").exists()
