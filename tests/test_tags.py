"""The study's tag schema: what the runner writes is what the report reads."""

from __future__ import annotations

import pandas as pd
import pytest

from ablation.tags import CellTags, StudyTags, TagError, column, key, row_tags

STUDY = StudyTags(
    study="s", hash="abc", question="Q?", base="mlp_strong", factors=["model.depth"], arms=["d=1", "d=2"],
    arm_levels={"d=1": {"model.depth": 1}, "d=2": {"model.depth": 2}}, baseline_arm="d=2", metric="val.loss",
    direction="minimize", seeds=[3, 4], scale="quick", sampler="grid", param_budget=40_000, budget_tolerance=0.02,
    cells_total=4, command="python -m ablation run s", data_source="synthphone:tiny", data_fingerprint="fp",
    data_sizes={"train": {"frames": 10}}, git_commit="0123",
)


def test_study_tags_round_trip_through_strings():
    tags = STUDY.to_tags()
    assert all(isinstance(v, str) for v in tags.values())
    assert tags[key("kind")] == "study" and tags[key("study.baseline_arm")] == "d=2"
    assert tags[key("study.seeds")] == "[3, 4]" and tags[key("study.param_budget")] == "40000"
    assert StudyTags.from_tags(tags) == STUDY


def test_missing_tags_take_defaults_and_none_is_empty():
    assert StudyTags.from_tags({}) == StudyTags()
    assert StudyTags().to_tags()[key("study.param_budget")] == ""
    assert StudyTags.from_tags({key("study.param_budget"): ""}).param_budget is None


def test_cell_tags_round_trip():
    cell = CellTags(study="s", study_hash="abc", arm="d=1", arm_levels={"model.depth": 1}, seed=3, trial=7,
                    baseline=True, worker="host:12")
    tags = cell.to_tags()
    assert tags[key("baseline")] == "true" and tags[key("pruned")] == "false" and tags[key("seed")] == "3"
    assert CellTags.from_tags(tags) == cell


def test_bad_json_names_the_tag():
    with pytest.raises(TagError, match="ablation.study.arms is not JSON"):
        StudyTags.from_tags({key("study.arms"): "[oops"})


def test_report_reads_what_the_runner_writes():
    from ablation.report.load import study_info

    row = pd.Series({"run_id": "r1", "start_time": pd.NaT, **{"tags." + k: v for k, v in STUDY.to_tags().items()}})
    assert row_tags(row)[key("study.baseline_arm")] == "d=2" and column("arm") == "tags.ablation.arm"
    info = study_info("s", row)
    # the declared baseline, not the first arm; the declared metric and direction
    assert (info.baseline, info.metric, info.maximize, info.seeds) == ("d=2", "val.loss", False, [3, 4])
    assert (info.param_budget, info.budget_tolerance, info.cells_total) == (40_000, 0.02, 4)
    assert info.arm_levels["d=2"] == {"model.depth": 2} and info.study_hash == "abc"
