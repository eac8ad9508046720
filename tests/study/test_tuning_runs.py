"""Where a tuned study's runs sit: the parent run's children are the
confirmation cells, each arm's tuning trials nest under that arm's tuning run,
the study link's shared view finds exactly the report's runs, and the tuning
studies are named for their arm; a store begun under the old layout (tuning
trials beside the cells, tuning studies named by arm index) still resumes
and reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ablation.cli import main

ARMS = ("depth=1", "depth=2")

TUNED = """
question = "Is a 2-layer MLP better than a 1-layer one, each at its own best learning rate?"
base = "mlp_strong"
baseline = { "model.depth" = 1 }
seeds = [0, 1]
protocol = "tuned"
[stopping]
patience = 1
max_epochs = 1
[tuning]
trials = 2
seeds = [7, 8]
[tuning.space]
"optim.lr" = { low = 0.0003, high = 0.03, log = true }
[factors]
"model.depth" = [1, 2]
[set]
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.width" = 64
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose tiny tuned study ``tun`` has run to the end (2 arms x 2 tuning trials, 2 x 2 cells)."""
    root = tmp_path_factory.mktemp("tuned")
    shutil.copytree(Path(__file__).resolve().parents[2] / "experiments", root / "experiments")
    (root / "studies").mkdir()
    (root / "studies" / "tun.toml").write_text(TUNED)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATION_HOME", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("ABLATION_STORAGE", raising=False)
        assert main(["run", "tun", "--no-report", "--jobs", "1"]) == 0
        yield root


def _client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def _storage(root: Path) -> str:
    return f"sqlite:///{root / 'mlruns' / 'optuna.db'}"


def _runs(c, filter_string: str = ""):
    exp = c.get_experiment_by_name("tun")
    return c.search_runs([exp.experiment_id], filter_string, max_results=1000)


def _parent(c) -> str:
    (parent,) = _runs(c, "tags.`ablation.kind` = 'study'")
    return parent.info.run_id


def _arm_seeds(runs) -> list[tuple[str, str]]:
    return sorted((r.data.tags["ablation.arm"], r.data.tags["ablation.seed"]) for r in runs)


def test_the_parent_runs_children_are_exactly_the_confirmation_cells(project):
    c = _client(project)
    kids = _runs(c, f"tags.`mlflow.parentRunId` = '{_parent(c)}'")
    assert _arm_seeds(kids) == [(a, s) for a in ARMS for s in ("0", "1")]
    assert {r.data.tags["ablation.phase"] for r in kids} == {"confirm"}
    assert {r.info.status for r in kids} == {"FINISHED"}


def test_each_arms_tuning_trials_nest_under_its_tuning_run(project):
    import optuna

    c = _client(project)
    parent = _parent(c)
    tuning = _runs(c, "tags.`ablation.kind` = 'tuning'")
    assert sorted(r.data.tags["ablation.arm"] for r in tuning) == list(ARMS)
    by_arm = {r.data.tags["ablation.arm"]: r for r in tuning}
    for arm in ARMS:
        run = by_arm[arm]
        assert run.info.run_name == f"{arm} tuning" and "ablation.phase" not in run.data.tags
        assert run.data.tags["ablation.study.parent_run"] == parent and "mlflow.parentRunId" not in run.data.tags
        trials = _runs(c, f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        assert _arm_seeds(trials) == [(arm, "7"), (arm, "8")]
        assert {r.data.tags["ablation.phase"] for r in trials} == {"tuning"}
        # finished as its last trial ended
        assert run.info.status == "FINISHED" and run.info.end_time == max(r.info.end_time for r in trials)
        # its Optuna study, named for the arm, records the run and the arm
        opt = optuna.load_study(study_name=f"tun~{parent}~tune~{arm}", storage=_storage(project))
        assert opt.user_attrs["mlflow_tuning_run_id"] == run.info.run_id and opt.user_attrs["arm"] == arm
        assert len(opt.trials) == 2
    names = {s.study_name for s in optuna.get_all_study_summaries(_storage(project))}
    assert names == {"tun", *(f"tun~{parent}~tune~{arm}" for arm in ARMS)}


def _view(c) -> dict:
    exp = c.get_experiment_by_name("tun")
    return json.loads(exp.tags["mlflow.sharedViewState.ablation-arms"])


def _report_means(root: Path) -> dict[str, float]:
    from ablation.report.analysis import analyse
    from ablation.report.load import load_study

    summary = analyse(load_study("tun")).summary.set_index(["arm", "metric"])
    return {arm: float(summary.loc[(arm, "val.acc"), "mean"]) for arm in ARMS}


def _means(runs) -> dict[str, float]:
    vals: dict[str, list[float]] = {}
    for r in runs:
        vals.setdefault(r.data.tags["ablation.arm"], []).append(r.data.metrics["val.acc"])
    return {arm: sum(v) / len(v) for arm, v in vals.items()}


def test_the_shared_view_finds_the_reports_runs_and_their_means(project, monkeypatch):
    monkeypatch.setenv("ABLATION_HOME", str(project))
    c = _client(project)
    view = _view(c)
    parent = _parent(c)
    assert view["searchFilter"] == (f"tags.`mlflow.parentRunId` = '{parent}' AND tags.`ablation.phase` = 'confirm'")
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "ablation.arm"}]
    shown = _runs(c, view["searchFilter"])  # the filter as MLflow's search reads it, the UI's too
    assert _arm_seeds(shown) == [(a, s) for a in ARMS for s in ("0", "1")]
    assert _means(shown) == pytest.approx(_report_means(project))
    # the report's tuning runs are the nested trials
    from ablation.report.load import load_study

    nested = {r.info.run_id for t in _runs(c, "tags.`ablation.kind` = 'tuning'")
              for r in _runs(c, f"tags.`mlflow.parentRunId` = '{t.info.run_id}'")}
    assert len(nested) == 4 and set(load_study("tun").tuning["run_id"]) == nested


def _to_old_layout(root: Path) -> list[str]:
    """Make the store what a study begun before the nesting left: tuning
    studies named by arm index, without a tuning run; the tuning trials'
    runs children of the parent run; no tuning runs. Returns the old names."""
    import optuna

    c, storage = _client(root), _storage(root)
    parent = _parent(c)
    old = []
    for i, arm in enumerate(ARMS):
        new = f"tun~{parent}~tune~{arm}"
        old.append(f"tun~{parent}~tune~{i}")
        optuna.copy_study(from_study_name=new, from_storage=storage, to_storage=storage, to_study_name=old[-1])
        optuna.delete_study(study_name=new, storage=storage)
        optuna.load_study(study_name=old[-1], storage=storage).set_user_attr("mlflow_tuning_run_id", "")
    for run in _runs(c, "tags.`ablation.kind` = 'tuning'"):
        for trial in _runs(c, f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"):
            c.set_tag(trial.info.run_id, "mlflow.parentRunId", parent)
        c.delete_run(run.info.run_id)
    return old


def test_a_store_begun_under_the_old_names_resumes_and_reports(project, tmp_path, monkeypatch):
    import optuna

    old_home = tmp_path / "old"
    shutil.copytree(project, old_home)
    monkeypatch.setenv("ABLATION_HOME", str(old_home))
    old_names = _to_old_layout(old_home)
    c = _client(old_home)
    cells_before = {r.info.run_id for r in _runs(c, "tags.`ablation.kind` = 'cell'")}
    assert len(cells_before) == 8

    assert main(["run", "tun", "--no-report", "--jobs", "1"]) == 0
    # found under their old names: no tuning study made anew, no trial run again
    names = {s.study_name for s in optuna.get_all_study_summaries(_storage(old_home))}
    assert names == {"tun", *old_names}
    for name in old_names:
        assert len(optuna.load_study(study_name=name, storage=_storage(old_home)).trials) == 2
    assert {r.info.run_id for r in _runs(c, "tags.`ablation.kind` = 'cell'")} == cells_before

    # the report still tells the tuning trials (beside the cells) from the confirmations
    from ablation.report.load import load_study

    runs = load_study("tun")
    assert len(runs.tuning) == 4 and set(runs.tuning["phase"]) == {"tuning"}
    assert _arm_seeds_frame(runs.cells) == [(a, s) for a in ARMS for s in (0, 1)]
    # and the shared view leaves them out
    shown = _runs(c, _view(c)["searchFilter"])
    assert {r.data.tags["ablation.phase"] for r in shown} == {"confirm"} and len(shown) == 4


def _arm_seeds_frame(df) -> list[tuple[str, int]]:
    return sorted(zip(df["arm"], df["seed"].astype(int)))


def test_an_arm_label_too_long_for_the_storage_is_cut_and_kept_unique():
    from types import SimpleNamespace

    from ablation.study.kinds.tuned import MAX_NAME, tuning_name

    study, main_opt = SimpleNamespace(name="s"), SimpleNamespace(user_attrs={"mlflow_parent_run_id": "p"})
    short = SimpleNamespace(label="depth=1", index=0)
    assert tuning_name(study, short, main_opt) == "s~p~tune~depth=1"
    long_a, long_b = (SimpleNamespace(label="x" * 600 + tail, index=i) for i, tail in enumerate("ab"))
    a, b = tuning_name(study, long_a, main_opt), tuning_name(study, long_b, main_opt)
    assert len(a) == len(b) == MAX_NAME and a != b and a.startswith("s~p~tune~0:xxx")


def test_a_lock_file_is_named_safely_for_any_study_name():
    from ablation.study._optuna import lock_file_part

    assert lock_file_part("tun~abc~tune~depth=1") == "tun~abc~tune~depth=1"  # a safe name as it was
    odd = lock_file_part("s~p~tune~data.source=libriphone:~/data model=big")
    assert "/" not in odd and " " not in odd and len(odd) <= 97
    assert lock_file_part("a/b") != lock_file_part("a_b")  # a digest of the whole keeps them apart
    assert len(lock_file_part("y" * 600)) <= 97
