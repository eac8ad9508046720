"""`ablation predict`: a Kaggle submission (Id,Class) from a logged run, one row
per test frame in test_split.txt order."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from ablation import cli, paths
from ablation.data.sources import export, load_dataset, load_libriphone
from ablation.predict import load_run_model
from ablation.train import predict

EXPERIMENTS = paths.PROJECT_DIR / "experiments"
MODELS = {
    # a 5-frame window: frames near an utterance's ends see only their own utterance
    "mlp-window": [str(EXPERIMENTS / "mlp_sample.toml"), "--set", "features.n_concat=5"],
    "bilstm-sequence": [str(EXPERIMENTS / "bilstm_utt.toml"), "--set", "model.hidden=8", "--set", "model.layers=1"],
}


@pytest.fixture(scope="module")
def libri(tmp_path_factory):
    """synthphone:tiny exported to the libriphone layout."""
    return export(load_dataset("synthphone:tiny"), tmp_path_factory.mktemp("data") / "libriphone")


@pytest.fixture(scope="module", params=list(MODELS))
def trained(request, libri, tmp_path_factory, isolated_store):
    root = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as mp:
        uri = isolated_store(root, mp)
        argv = ["train", *MODELS[request.param], "--data", f"libriphone:{libri}", "--set", "train.epochs=1",
                "--tracking-uri", uri, "--no-progress"]  # fmt: skip
        assert cli.main(argv) == 0
        c = MlflowClient(tracking_uri=uri)
        (run,) = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]
        yield {"uri": uri, "run_id": run.info.run_id, "libri": libri, "root": root}


def _submit(trained, data_dir, out, capsys) -> pd.DataFrame:
    argv = ["predict", trained["run_id"], "--data", f"libriphone:{data_dir}", "--out", str(out),
            "--tracking-uri", trained["uri"]]  # fmt: skip
    assert cli.main(argv) == 0
    assert out.read_text().splitlines()[0] == "Id,Class"
    df = pd.read_csv(out)
    assert capsys.readouterr().out == (f"wrote {len(df):,} predictions to {out} (model trained on split: "
                                       "seed 0 (utterances shuffled with train.seed, val_ratio 0.2))\n")
    return df


def _one_by_one(cfg, model, corpus, ids) -> np.ndarray:
    """Each listed utterance predicted on its own, in the listed order."""
    index = {u: i for i, u in enumerate(corpus.utt_ids)}
    return np.concatenate(
        [predict(model, cfg, corpus.subset([index[u]]), torch.device("cpu"))[0] for u in ids]
    )


def test_submission_holds_one_row_per_test_frame_in_split_order(trained, tmp_path, capsys):
    libri = trained["libri"]
    out = tmp_path / "nested" / "sub.csv"
    df = _submit(trained, libri, out, capsys)
    test = load_libriphone(libri).test
    split = (libri / "test_split.txt").read_text().split("\n")
    assert list(test.utt_ids) == split
    assert list(df.columns) == ["Id", "Class"]
    assert len(df) == test.n_frames == int(sum(test.lengths))
    assert df["Id"].tolist() == list(range(test.n_frames))
    cfg, model = load_run_model(trained["run_id"], trained["uri"])
    direct, _ = predict(model, cfg, test, torch.device("cpu"))
    assert np.array_equal(df["Class"].to_numpy(), direct)
    assert np.array_equal(direct, _one_by_one(cfg, model, test, split))
    assert df["Class"].between(0, 40).all()
    assert sorted(p.name for p in out.parent.iterdir()) == ["sub.csv"]  # no temporary file left behind
    # the export kept the frames: the generated test corpus predicts the same
    original = load_dataset("synthphone:tiny").test
    assert np.array_equal(predict(model, cfg, original, torch.device("cpu"))[0], direct)


def test_rows_follow_the_order_of_test_split(trained, tmp_path, capsys):
    moved = tmp_path / "reordered"
    shutil.copytree(trained["libri"], moved)
    ids = (moved / "test_split.txt").read_text().split("\n")
    order = ids[::-1]
    (moved / "test_split.txt").write_text("\n".join(order))
    df = _submit(trained, moved, tmp_path / "sub.csv", capsys)
    cfg, model = load_run_model(trained["run_id"], trained["uri"])
    test = load_libriphone(trained["libri"]).test
    assert np.array_equal(df["Class"].to_numpy(), _one_by_one(cfg, model, test, order))
    assert not np.array_equal(df["Class"].to_numpy(), _one_by_one(cfg, model, test, ids))  # the order shows


def test_the_rebuilt_model_is_the_trained_one(trained):
    cfg, model = load_run_model(trained["run_id"], trained["uri"])
    c = MlflowClient(tracking_uri=trained["uri"])
    run = c.get_run(trained["run_id"])
    assert sum(p.numel() for p in model.parameters()) == run.data.metrics["n_params"]
    from ablation import experiment

    # config.toml is the logged config: the params are its fields that apply to the run, the model as built
    built = json.loads(run.data.tags["ablation.model.kwargs"])
    assert {k: str(v) for k, v in experiment.run_params(cfg, built)[0].items()} == run.data.params

    _, splits = experiment.prepare(cfg)
    val_pred, _ = predict(model, cfg, splits.val, torch.device("cpu"))
    assert float(np.mean(val_pred == splits.val.labels)) == pytest.approx(run.data.metrics["val.acc"], abs=1e-12)


def test_unknown_run_id_is_one_line(trained, tmp_path, capsys):
    out = tmp_path / "sub.csv"
    argv = ["predict", "0123456789abcdef", "--data", f"libriphone:{trained['libri']}", "--out", str(out),
            "--tracking-uri", trained["uri"]]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ablation predict: run '0123456789abcdef' is not in the tracking store ")
    assert not out.exists()


def test_a_run_without_a_model_is_refused(trained, tmp_path, capsys):
    c = MlflowClient(tracking_uri=trained["uri"])
    bare = c.create_run(c.get_experiment_by_name("Default").experiment_id).info.run_id
    argv = ["predict", bare, "--data", f"libriphone:{trained['libri']}", "--out", str(tmp_path / "s.csv"),
            "--tracking-uri", trained["uri"]]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"ablation predict: run '{bare}' has no saved model (config.toml, model.json, model.pt); " \
                  "only finished training runs can predict\n"
    c.delete_run(bare)


def test_data_without_a_test_set_is_refused(trained, tmp_path, capsys):
    empty = tmp_path / "no_test"
    shutil.copytree(trained["libri"], empty)
    (empty / "test_split.txt").write_text("")
    argv = ["predict", trained["run_id"], "--data", f"libriphone:{empty}", "--out", str(tmp_path / "s.csv"),
            "--tracking-uri", trained["uri"]]  # fmt: skip
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"ablation predict: libriphone:{empty} has no test set to predict\n"
