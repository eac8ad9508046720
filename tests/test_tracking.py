"""The MLflow layer: run life cycle, batching, the store, and the run schema
(``ablation.tracking``'s docstring) of a run logged by ``ablation train``."""

from __future__ import annotations

import os
import json
import math
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from ablation import paths, tracking
from ablation.errors import TrackingError

SAMPLE = str(paths.PROJECT_DIR / "experiments" / "mlp_sample.toml")
EPOCH_KEYS = [
    "epoch.train_loss", "epoch.train_acc", "epoch.val_loss", "epoch.val_acc",
    "epoch.val_macro_f1", "epoch.lr", "epoch.steps", "epoch.frames_per_s",
]  # fmt: skip
ARTIFACTS = {"confusion_val.png", "confusion_val.csv", "per_class.csv", "config.toml", "model.pt", "model.json"}


class BatchSpy:
    """Records every ``MlflowClient.log_batch`` call: (run id, metric count, param count, tag count, steps)."""

    def __init__(self, mp: pytest.MonkeyPatch):
        self.calls: list[dict] = []
        real = MlflowClient.log_batch

        def log_batch(client, run_id, metrics=(), params=(), tags=(), synchronous=None):
            self.calls.append({
                "run_id": run_id, "metrics": [m.key for m in metrics], "params": len(params), "tags": len(tags),
                "steps": sorted({m.step for m in metrics}),
            })  # fmt: skip
            return real(client, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

        mp.setattr(MlflowClient, "log_batch", log_batch)


# ---- small pieces ---------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory, isolated_store):
    """(uri, root) of one store shared by the tests below; each uses its own experiment."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        uri = isolated_store(root, mp)
        tracking.client(uri)
        yield uri, root


def test_flatten():
    assert tracking.flatten({"a": 1, "m": {"d": 2, "x": {"y": "z"}}}) == {"a": 1, "m.d": 2, "m.x.y": "z"}
    assert tracking.flatten({}) == {}


def test_tracking_uri_precedence(monkeypatch):
    default = f"sqlite:///{paths.project_dir() / 'mlruns' / 'mlflow.db'}"
    assert tracking.default_tracking_uri() == default
    assert tracking.resolve_tracking_uri() == default
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////env/m.db")
    assert tracking.resolve_tracking_uri() == "sqlite:////env/m.db"
    assert tracking.resolve_tracking_uri("sqlite:////arg/m.db") == "sqlite:////arg/m.db"


def test_client_creates_a_sqlite_store_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'sub' / 'mlflow.db'}"
    c = tracking.client(uri)
    assert c.tracking_uri == uri
    assert (tmp_path / "sub" / "mlflow.db").is_file()
    assert not list((tmp_path / "sub").glob(".mlflow.db.creating-*"))  # migrated aside, then moved
    assert [e.name for e in tracking.client(uri).search_experiments()] == ["Default"]


@pytest.mark.slow
def test_creating_a_store_in_a_fresh_process_writes_nothing_to_stderr(tmp_path):
    """MLflow's INFO lines about creating the database stay quiet, even when
    the first import of mlflow happens inside ``client``."""
    code = f"from ablation import tracking; tracking.client('sqlite:///{tmp_path / 'm.db'}')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=paths.PROJECT_DIR, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    assert (tmp_path / "m.db").is_file()


def test_a_file_that_is_not_a_database_is_one_tracking_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not a database\n")
    with pytest.raises(TrackingError) as err:
        tracking.client(f"sqlite:///{bad}")
    assert str(err.value).startswith(f"tracking store sqlite:///{bad} cannot be used (")
    assert "\n" not in str(err.value)


def test_a_half_created_store_says_to_delete_it(tmp_path):
    """A store whose first migration was killed (by a version that migrated it
    in place) fails on its next migration step: the error says what to delete."""
    import sqlite3

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:  # what the killed migration left: some tables, no finished schema
        conn.execute("CREATE TABLE latest_metrics (key TEXT)")
    with pytest.raises(TrackingError) as err:
        tracking.client(f"sqlite:///{db}")
    msg = str(err.value)
    assert "\n" not in msg and "latest_metrics already exists" in msg, msg
    assert msg.endswith(f"it is half-created (an interrupted first run): delete {db} and run again")


def test_a_store_folder_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrackingError, match=r"cannot create .*file/sub for the tracking store"):
        tracking.client(f"sqlite:///{tmp_path / 'file' / 'sub' / 'mlflow.db'}")


def test_experiments_are_created_once_with_artifacts_under_the_artifact_root(store):
    uri, root = store
    c = tracking.client(uri)
    eid = tracking.get_or_create_experiment(c, "train/mlp sample")
    assert tracking.get_or_create_experiment(c, "train/mlp sample") == eid
    # relative to the store's artifact folder, which is where they lie on disk
    assert c.get_experiment(eid).artifact_location == "mlflow-artifacts:/train_mlp_sample"
    with tracking.start_run(c, eid, "r", {}) as run:
        (root / "note.txt").write_text("kept")
        run.log_artifact(root / "note.txt", "sub")
    assert c.get_run(run.run_id).info.artifact_uri == f"mlflow-artifacts:/train_mlp_sample/{run.run_id}/artifacts"
    on_disk = root / "artifacts" / "train_mlp_sample" / run.run_id / "artifacts" / "sub" / "note.txt"
    assert on_disk.read_text() == "kept"


def test_a_moved_store_keeps_its_artifacts(tmp_path, monkeypatch, isolated_store):
    """A project folder is zipped, moved, shared: its runs' artifacts move with it."""
    import shutil

    (tmp_path / "here").mkdir()
    c = tracking.client(isolated_store(tmp_path / "here", monkeypatch))
    with tracking.start_run(c, tracking.get_or_create_experiment(c, "moved"), "r", {}) as run:
        (tmp_path / "config.toml").write_text("[model]\ndepth = 3\n")
        run.log_artifact(tmp_path / "config.toml")
    shutil.move(tmp_path / "here", tmp_path / "there")
    moved = tracking.client(f"sqlite:///{tmp_path / 'there' / 'mlflow.db'}")
    (tmp_path / "dl").mkdir()
    got = tracking.download_artifact(moved, run.run_id, "config.toml", tmp_path / "dl")
    assert got.read_text() == "[model]\ndepth = 3\n" and got.parent == tmp_path / "dl"
    assert not (tmp_path / "here").exists()


def test_mlflow_resolves_a_local_stores_relative_artifact_uris_and_nothing_else(tmp_path):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    from ablation import project_artifacts

    assert project_artifacts.installed()  # the entry point in pyproject.toml
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    repo = get_artifact_repository("mlflow-artifacts:/e/r/artifacts", tracking_uri=uri)
    assert isinstance(repo, LocalArtifactRepository)
    assert repo.artifact_dir == str(tmp_path / "artifacts" / "e" / "r" / "artifacts")
    served = get_artifact_repository("mlflow-artifacts:/e/r/artifacts", tracking_uri="http://127.0.0.1:5000")
    assert type(served) is MlflowArtifactsRepository  # a server's URIs: MLflow's own
    assert project_artifacts.local_folder(uri, "file:///elsewhere/e/r/artifacts") is None
    with pytest.raises(TrackingError, match="leaves the artifact folder"):
        project_artifacts.local_folder(uri, "mlflow-artifacts:/e/../../../etc")


def test_an_install_without_the_plugin_keeps_absolute_artifact_paths(store, monkeypatch):
    from mlflow.store.artifact.artifact_repository_registry import get_registered_artifact_repositories
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    uri, root = store
    monkeypatch.setitem(get_registered_artifact_repositories(), "mlflow-artifacts", MlflowArtifactsRepository)
    c = tracking.client(uri)
    eid = tracking.get_or_create_experiment(c, "old install")
    assert c.get_experiment(eid).artifact_location == (root / "artifacts" / "old_install").as_uri()


def test_start_run_marks_finished_failed_and_killed(store):
    c = tracking.client(store[0])
    eid = tracking.get_or_create_experiment(c, "life")
    with tracking.start_run(c, eid, "ok", {"ablation.kind": "single"}) as ok:
        pass
    with pytest.raises(ValueError):
        with tracking.start_run(c, eid, "bad", {}, parent_run_id=ok.run_id) as bad:
            raise ValueError("boom at step 3")
    with pytest.raises(KeyboardInterrupt):
        with tracking.start_run(c, eid, "stopped", {}) as stopped:
            raise KeyboardInterrupt
    runs = {r: c.get_run(r) for r in (ok.run_id, bad.run_id, stopped.run_id)}
    assert [runs[r].info.status for r in runs] == ["FINISHED", "FAILED", "KILLED"]
    assert runs[ok.run_id].data.tags["ablation.kind"] == "single"
    assert "ablation.error" not in runs[ok.run_id].data.tags
    assert runs[bad.run_id].data.tags["ablation.error"] == "ValueError: boom at step 3"
    assert runs[bad.run_id].data.tags["mlflow.parentRunId"] == ok.run_id
    assert runs[stopped.run_id].data.tags["ablation.error"] == "interrupted by the user"
    assert all(runs[r].info.end_time is not None for r in runs)


def test_log_metrics_is_one_batch_and_skips_non_finite(store, monkeypatch):
    c = tracking.client(store[0])
    spy = BatchSpy(monkeypatch)
    with tracking.start_run(c, tracking.get_or_create_experiment(c, "m"), "r", {}) as run:
        run.log_metrics({"a": 1.5, "b": float("nan"), "c": float("inf"), "d": None, "e": np.float32(2)}, step=3)
        run.log_metrics({f"k{i}": i for i in range(2500)}, step=1)
    assert [call["metrics"] for call in spy.calls[:1]] == [["a", "e"]]
    assert [len(call["metrics"]) for call in spy.calls[1:]] == [1000, 1000, 500]  # MLflow's batch limit
    data = c.get_run(run.run_id).data
    assert data.metrics["a"] == 1.5 and data.metrics["e"] == 2.0
    assert not {"b", "c", "d"} & set(data.metrics)
    assert tracking.metric_history(c, run.run_id, "a") == [(3, 1.5)]
    assert data.metrics["k2499"] == 2499.0 and len(data.metrics) == 2502


def test_params_and_tags_are_stored_as_strings_in_chunks(store, monkeypatch):
    c = tracking.client(store[0])
    spy = BatchSpy(monkeypatch)
    params = {f"p{i:03d}": i for i in range(150)}
    params.update({"l": [1, 2], "f": 0.5, "b": True})
    with tracking.start_run(c, tracking.get_or_create_experiment(c, "p"), "r", {}) as run:
        run.log_params(params)
        run.set_tags({f"t{i}": i for i in range(120)})
    assert [call["params"] for call in spy.calls if call["params"]] == [100, 53]
    assert [call["tags"] for call in spy.calls if call["tags"]] == [100, 20]
    data = c.get_run(run.run_id).data
    assert data.params["p149"] == "149" and data.params["l"] == "[1, 2]"
    assert data.params["f"] == "0.5" and data.params["b"] == "True"
    assert data.tags["t119"] == "119"


def test_a_dataset_another_worker_inserts_first_is_linked_not_a_failed_cell(store, monkeypatch):
    """Two workers' first cells log the same split at once: each looks the dataset row up, misses
    it, and inserts it. Here the other worker's insert is committed between this run's lookup and
    its own insert, the interleaving that failed a cell with a unique-key error."""
    from sqlalchemy.orm import Session

    c = tracking.client(store[0])
    other = tracking.client(store[0])
    eid = tracking.get_or_create_experiment(c, "race")
    sizes = {"train": {"utterances": 3, "frames": 30}, "val": {"utterances": 1, "frames": 9}}
    real_add_all = Session.add_all
    fired = []

    def add_all(session, objs):
        if not fired and any(type(o).__name__ == "SqlDataset" for o in objs):
            # the other worker commits the same rows first, in its own session
            with tracking.start_run(other, eid, "other", {}) as rival:
                fired.append(rival.run_id)
                rival.log_datasets("synthphone:tiny", "d1g3st", sizes, "seed0")
        return real_add_all(session, objs)

    monkeypatch.setattr(Session, "add_all", add_all)
    with tracking.start_run(c, eid, "mine", {}) as mine:
        mine.log_datasets("synthphone:tiny", "d1g3st", sizes, "seed0")
    assert len(fired) == 1
    ours, theirs = c.get_run(mine.run_id), c.get_run(fired[0])
    assert ours.info.status == "FINISHED"
    names = {run.info.run_name: sorted((d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs)
             for run in (ours, theirs)}  # fmt: skip
    expected = [("synthphone:tiny/train@seed0", "d1g3st"), ("synthphone:tiny/val@seed0", "d1g3st")]
    assert names == {"mine": expected, "other": expected}


def test_a_write_error_that_is_not_a_unique_race_is_raised_at_once():
    from mlflow.exceptions import MlflowException

    calls = []

    def fails():
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run abc not found")

    with pytest.raises(MlflowException, match="not found"):
        tracking._retry_unique_race(fails)
    assert len(calls) == 1

    def always_races():
        calls.append(2)
        raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.name")

    with pytest.raises(MlflowException, match="UNIQUE"):
        tracking._retry_unique_race(always_races, attempts=3)
    assert calls.count(2) == 3


def test_search_runs_and_study_names(tracking_uri):
    c = tracking.client(tracking_uri)
    assert tracking.search_runs(c, "nothing") is None
    assert tracking.study_names(c) == []
    for name, kind in (("s1", "study"), ("s2", "single"), ("s0", "study")):
        with tracking.start_run(c, tracking.get_or_create_experiment(c, name), name, {"ablation.kind": kind}) as run:
            run.log_metrics({"val.acc": 0.5})
    assert tracking.study_names(c) == ["s0", "s1"]
    df = tracking.search_runs(c, "s1")
    assert len(df) == 1 and df["metrics.val.acc"].tolist() == [0.5] and df["tags.ablation.kind"].tolist() == ["study"]


def test_arm_view_charts_each_factor_against_the_metric_per_run_in_a_section_first():
    """The chart view the study's link opens (checked in a real browser by
    benchmarks/ui_screenshot.py): a scatter per factor and a bar chart of the
    metric, every run a point, in one section that MLflow keeps first."""
    view = tracking.arm_view("val.f1", ["model.depth", "model.width"], "tags.x = 'y'")
    assert view["searchFilter"] == "tags.x = 'y'" and view["runsHiddenMode"] == "SHOW_ALL"
    charts = view["compareRunCharts"]
    assert [(c["type"], c.get("xaxis"), c.get("yaxis"), c.get("metricKey")) for c in charts] == [
        ("SCATTER", {"key": "model.depth", "type": "PARAM"}, {"key": "val.f1", "type": "METRIC"}, None),
        ("SCATTER", {"key": "model.width", "type": "PARAM"}, {"key": "val.f1", "type": "METRIC"}, None),
        ("BAR", None, None, "val.f1")]
    assert len({c["uuid"] for c in charts}) == 3 and not any(c["deleted"] or c["isGenerated"] for c in charts)
    [section] = view["compareRunSections"]
    assert all(c["metricSectionId"] == section["uuid"] for c in charts) and section["display"]
    assert view["isAccordionReordered"] is True  # MLflow appends its own sections after it instead of sorting
    assert view["useGroupedValuesInCharts"] is False  # a point per run; grouped, MLflow draws one per arm
    assert [c["type"] for c in tracking.arm_view("val.acc", [])["compareRunCharts"]] == ["BAR"]
    json.dumps(view)  # stored as an experiment tag


# ---- the schema of a run logged by `ablation train` -----------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory, isolated_store):
    """One `ablation train` run of the sample model, 2 epochs on synthphone:tiny."""
    from ablation import cli, experiment
    from ablation.config import load_experiment

    root = tmp_path_factory.mktemp("schema")
    with pytest.MonkeyPatch.context() as mp:
        uri = isolated_store(root, mp)
        spy = BatchSpy(mp)
        argv = ["train", SAMPLE, "--data", "synthphone:tiny", "--set", "train.epochs=2",
                "--tracking-uri", uri, "--no-progress"]  # fmt: skip
        assert cli.main(argv) == 0
    c = MlflowClient(tracking_uri=uri)
    runs = c.search_runs([c.get_experiment_by_name("train/mlp_sample").experiment_id])
    assert len(runs) == 1
    cfg = load_experiment(SAMPLE, ["train.epochs=2", 'data.source="synthphone:tiny"'])
    ds, splits = experiment.prepare(cfg)
    (root / "downloads").mkdir()
    return {"c": c, "uri": uri, "run": runs[0], "cfg": cfg, "ds": ds, "splits": splits, "calls": spy.calls,
            "dir": root / "downloads"}  # fmt: skip


def _artifact(logged, name):
    return tracking.download_artifact(logged["c"], logged["run"].info.run_id, name, logged["dir"])


def test_run_is_finished_with_its_tags(logged):
    run, ds, splits = logged["run"], logged["ds"], logged["splits"]
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "mlp_sample seed=0"
    assert tags["ablation.kind"] == "single"
    assert tags["ablation.experiment"] == "mlp_sample"
    assert tags["ablation.data.source"] == "synthphone:tiny"
    assert tags["ablation.data.fingerprint"] == ds.fingerprint
    assert len(ds.fingerprint) == 16
    assert tags["ablation.git.commit"] == tracking.git_commit()
    assert tags["ablation.git.commit"] == "unknown" or len(tags["ablation.git.commit"].split("-")[0]) == 40
    sizes = json.loads(tags["ablation.data.sizes"])
    assert sizes == {name: {"utterances": getattr(splits, name).n_utts, "frames": getattr(splits, name).n_frames}
                     for name in ("train", "val", "test")}
    assert json.loads(tags["ablation.model.kwargs"])["width"] == 256
    import torch

    assert tags["ablation.torch.threads"] == str(torch.get_num_threads())  # trained in this process
    assert tags["ablation.torch.cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert "ablation.error" not in tags


def test_params_are_the_resolved_config_fields_that_apply(logged):
    # the sample model: an AdamW-trained window MLP, so no SGD momentum and no sequence batching
    unused = {"optim.momentum", "optim.max_frames", "train.chunk_len"}
    expected = {k: str(v) for k, v in logged["cfg"].flat().items() if k not in unused}
    assert unused <= set(logged["cfg"].flat())
    assert logged["run"].data.params == expected
    assert logged["run"].data.params["optim.batch_size"] == "512"
    assert logged["run"].data.params["train.epochs"] == "2"
    assert logged["run"].data.params["data.source"] == "synthphone:tiny"


def test_each_epoch_metric_has_steps_one_and_two(logged):
    c, rid = logged["c"], logged["run"].info.run_id
    for key in EPOCH_KEYS:
        history = tracking.metric_history(c, rid, key)
        assert [step for step, _ in history] == [1, 2], key
        assert all(math.isfinite(v) for _, v in history)
    lr = [v for _, v in tracking.metric_history(c, rid, "epoch.lr")]
    assert lr == [1e-4, 1e-4]  # the sample's constant schedule


def test_each_epoch_is_logged_in_one_batch_call(logged):
    rid = logged["run"].info.run_id
    epoch_calls = [call for call in logged["calls"] if any(k.startswith("epoch.") for k in call["metrics"])]
    assert [call["steps"] for call in epoch_calls] == [[1], [2]]
    assert all(sorted(call["metrics"]) == sorted(EPOCH_KEYS) for call in epoch_calls)
    assert all(call["run_id"] == rid for call in epoch_calls)
    # the final metrics: one more call; params and tags: one call each batch of 100
    metric_calls = [call for call in logged["calls"] if call["metrics"]]
    assert len(metric_calls) == 3


def test_params_are_the_built_model_of_its_own_family_only(logged):
    from ablation.models import model_fields

    params = logged["run"].data.params
    built = json.loads(logged["run"].data.tags["ablation.model.kwargs"])
    assert {k for k in params if k.startswith("model.")} == {"model.name", "model.param_budget"} | {
        f"model.{k}" for k in model_fields("mlp")}
    assert {k: params[f"model.{k}"] for k in built} == {k: str(v) for k, v in built.items()}
    assert (params["model.depth"], params["model.width"]) == ("2", "256")
    assert not {"model.cell", "model.hidden", "model.bidirectional", "model.mode", "model.layers"} & set(params)


def test_final_metrics(logged):
    m, splits, cfg = logged["run"].data.metrics, logged["splits"], logged["cfg"]
    from ablation.predict import load_run_model
    from ablation.train import predict

    _, model = load_run_model(logged["run"].info.run_id, logged["uri"])
    n_params = sum(p.numel() for p in model.parameters())
    assert m["n_params"] == n_params == 86_569 == (39 * 256 + 256) + (256 * 256 + 256) + (256 * 41 + 41)
    assert m["macs_per_frame"] == model.macs_per_frame() == 39 * 256 + 256 * 256 + 256 * 41
    assert m["ceiling.val_acc"] == pytest.approx(splits.val.ceiling(), abs=1e-12)
    assert m["ceiling.test_acc"] == pytest.approx(splits.test.ceiling(), abs=1e-12)
    from ablation.data.ceiling import View, info_ceilings

    assert logged["run"].data.tags["ablation.ceiling.view"] == "1-frame window"
    for split in ("val", "test"):
        corpus = getattr(splits, split)
        assert m[f"ceiling.arm.{split}_acc"] == pytest.approx(info_ceilings(corpus, [View("window", 1)])[View("window", 1)])
        assert m[f"ceiling.arm.{split}_acc"] < m[f"ceiling.{split}_acc"]
    assert m["epochs_run"] == 2 and m["best_epoch"] in (1, 2)
    assert m["train_time_s"] > 0 and m["frames_per_s"] > 0 and m["eval_time_s"] > 0
    # the logged accuracies are those of the saved model
    val_pred, _ = predict(model, cfg, splits.val, torch.device("cpu"))
    test_pred, _ = predict(model, cfg, splits.test, torch.device("cpu"))
    assert m["val.acc"] == pytest.approx(np.mean(val_pred == splits.val.labels), abs=1e-12)
    assert m["test.acc"] == pytest.approx(np.mean(test_pred == splits.test.labels), abs=1e-12)
    assert 0 < m["val.macro_f1"] <= 1 and 0 < m["test.macro_f1"] <= 1
    assert m["val.acc"] == pytest.approx(
        dict(tracking.metric_history(logged["c"], logged["run"].info.run_id, "epoch.val_acc"))[m["best_epoch"]]
    )


def test_per_class_metrics_for_every_phone(logged):
    m, splits = logged["run"].data.metrics, logged["splits"]
    names = splits.train.class_names
    assert len(names) == 41
    support = np.bincount(splits.val.labels, minlength=41)
    test_support = np.bincount(splits.test.labels, minlength=41)
    conf = np.loadtxt(_artifact(logged, "confusion_val.csv"), delimiter=",", skiprows=1, dtype=np.int64)
    predicted = conf.sum(0)
    for i, name in enumerate(names):
        if support[i]:
            assert m[f"recall.{name}"] == pytest.approx(conf[i, i] / support[i], abs=1e-12), name
        else:
            # a class with no val frames has no recall, and NaN is not logged
            assert f"recall.{name}" not in m, name
        assert m[f"precision.{name}"] == pytest.approx(conf[i, i] / predicted[i] if predicted[i] else 0.0, abs=1e-12)
        assert (f"test_recall.{name}" in m) == bool(test_support[i]), name
    assert sum(f"recall.{n}" in m for n in names) == int(np.count_nonzero(support))


def test_artifacts(logged):
    c, rid, splits, cfg = logged["c"], logged["run"].info.run_id, logged["splits"], logged["cfg"]
    assert {f.path for f in c.list_artifacts(rid)} == ARTIFACTS
    assert _artifact(logged, "confusion_val.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = _artifact(logged, "confusion_val.csv").read_text().splitlines()
    assert lines[0].split(",") == list(splits.train.class_names)
    conf = np.loadtxt(lines[1:], delimiter=",", dtype=np.int64)
    assert conf.shape == (41, 41)
    assert conf.sum() == splits.val.n_frames
    assert np.array_equal(conf.sum(1), np.bincount(splits.val.labels, minlength=41))
    assert np.trace(conf) / conf.sum() == pytest.approx(logged["run"].data.metrics["val.acc"], abs=1e-12)
    import pandas as pd

    table = pd.read_csv(_artifact(logged, "per_class.csv"))
    assert table["class"].tolist() == list(splits.train.class_names)
    assert table["val_support"].tolist() == conf.sum(1).tolist()
    assert table["test_support"].tolist() == np.bincount(splits.test.labels, minlength=41).tolist()
    from ablation.config import build

    assert build(tomllib.loads(_artifact(logged, "config.toml").read_text())).to_dict() == cfg.to_dict()
    spec = json.loads(_artifact(logged, "model.json").read_text())
    assert spec == {"name": "mlp", "n_concat": 1, "n_classes": 41, "frame_dim": 39,
                    "class_names": list(splits.train.class_names), "kwargs": spec["kwargs"]}
    assert spec["kwargs"]["width"] == 256 and spec["kwargs"]["depth"] == 2
    state = torch.load(_artifact(logged, "model.pt"), weights_only=True)
    assert sum(t.numel() for t in state.values()) == logged["run"].data.metrics["n_params"]


def test_reading_runs_does_not_leak_the_tracking_uri(tracking_uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    c = tracking.client(tracking_uri)
    tracking.get_or_create_experiment(c, "leak")
    assert len(tracking.search_runs(c, "leak")) == 0
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/else.db")
    tracking.search_runs(c, "leak")
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////somewhere/else.db"


def test_study_link_is_the_runs_table_on_the_server_or_on_ablation_ui(tmp_path, monkeypatch):
    from unittest import mock

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    c = tracking.client(uri)
    eid = tracking.get_or_create_experiment(c, "depth")
    c.create_run(eid, tags={"ablation.kind": "study"})  # the parent run: the link opens the runs by arm
    assert tracking.study_link(c, "depth") == (
        f"http://127.0.0.1:5000/#/experiments/{eid}/runs?workflowType=machine_learning"
        f"&viewStateShareKey=ablation-arms (once `python -m ablation ui --tracking-uri {uri}` serves it)")
    monkeypatch.setenv("ABLATION_HOME", str(tmp_path))  # now the project's default store
    assert tracking.study_link(c, "depth").endswith("(once `python -m ablation ui` serves it)")
    server = mock.Mock(tracking_uri="http://mlflow:5000/")
    server.get_experiment_by_name.return_value = mock.Mock(experiment_id="7")
    server.search_runs.return_value = []  # no parent run yet: the plain runs table
    assert tracking.study_link(server, "depth") == "http://mlflow:5000/#/experiments/7/runs?workflowType=machine_learning"
