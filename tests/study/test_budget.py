"""The budget check end to end on one tiny converged study (cap 2, patience 1):
which runs it trains again, the decisions it recomputes (against a hand
computation from the logged values), the report's section and the parent's
tag, a re-run that trains nothing, and each bad input refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ablation.cli import main

REPO = Path(__file__).resolve().parents[2]

# A baseline whose lr is far too high (its val accuracy falls after the first epoch, so patience ends
# it at epoch 2, its best epoch 1) against an arm still climbing at the cap (the cap ends it, best epoch 2).
CAPPED = """
question = "Does a usable learning rate beat a far too high one?"
base = "mlp_strong"
baseline = { "optim.lr" = 10.0 }
seeds = [0, 1]
protocol = "converged"
[stopping]
patience = 1
max_epochs = 2
[factors]
"optim.lr" = [10.0, 0.03]
[set]
"data.source" = "synthphone:tiny-v2"
"optim.batch_size" = 256
"optim.schedule" = "constant"
"model.depth" = 1
"model.width" = 32
"""
FIXED = CAPPED.replace('protocol = "converged"\n[stopping]\npatience = 1\nmax_epochs = 2\n', "")
BASELINE, BEST = "lr=10.0", "lr=0.03"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """The study run once (cells, budget check, report), shared by this module's tests."""
    root = tmp_path_factory.mktemp("budget")
    shutil.copytree(REPO / "experiments", root / "experiments")
    (root / "studies").mkdir()
    (root / "studies" / "capped.toml").write_text(CAPPED)
    (root / "studies" / "never.toml").write_text(CAPPED)
    (root / "studies" / "fixed.toml").write_text(FIXED)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATION_HOME", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("ABLATION_STORAGE", raising=False)
        assert main(["run", "capped", "--jobs", "1"]) == 0
        yield root


def _runs(home: Path):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    exps = c.search_experiments()
    return c, [r for e in exps for r in c.search_runs([e.experiment_id], max_results=1000)]


def _by_phase(home: Path):
    c, runs = _runs(home)
    cells = [r for r in runs if r.data.tags.get("ablation.kind") == "cell" and r.data.tags.get("ablation.phase") != "budget"]
    budget = [r for r in runs if r.data.tags.get("ablation.phase") == "budget"]
    return c, cells, budget


def test_it_retrains_the_runs_the_cap_ended_and_keeps_those_patience_ended(home):
    _, cells, budget = _by_phase(home)
    assert len(cells) == 4
    capped, kept = set(), set()
    for r in cells:
        m = r.data.metrics
        assert r.data.params["train.epochs"] == "2" and r.data.params["optim.schedule"] == "constant"
        # patience 1: a run whose last epoch brought no gain was ended by patience (whatever the cap)
        (capped if m["best_epoch"] == m["epochs_run"] else kept).add((r.data.tags["ablation.arm"],
                                                                       int(r.data.tags["ablation.seed"]), r.info.run_id))
    # the fixture shows both cases: the flat baseline ended by patience, the climbing arm by the cap
    assert {a for a, _, _ in kept} == {BASELINE} and {a for a, _, _ in capped} == {BEST}
    assert len(budget) == len(capped) == 2
    got = {(r.data.tags["ablation.arm"], int(r.data.tags["ablation.seed"]), r.data.tags["ablation.budget.of_run"])
           for r in budget}
    assert got == capped  # exactly the capped ones, each tagged with the run it retrains
    for r in budget:
        assert r.info.status == "FINISHED"
        assert r.data.params["train.epochs"] == "4" and r.data.tags["ablation.budget.factor"] == "2.0"
        assert r.data.metrics["epochs_run"] >= 2
        assert r.data.tags["mlflow.parentRunId"] == cells[0].data.tags["mlflow.parentRunId"]


def test_the_decisions_at_twice_the_cap_match_a_hand_computation(home):
    from ablation.decision import compare, paired
    from ablation.report.budget import check
    from ablation.report.load import load_study

    c, cells, budget = _by_phase(home)
    runs = load_study("capped")
    assert len(runs.cells) == 4 and set(runs.budget["run_id"]) == {r.info.run_id for r in budget}
    at_cap = {(r.data.tags["ablation.arm"], int(r.data.tags["ablation.seed"])): r.data.metrics["val.acc"] for r in cells}
    longer = dict(at_cap)
    of = {r.info.run_id: (r.data.tags["ablation.arm"], int(r.data.tags["ablation.seed"])) for r in cells}
    for r in budget:
        longer[of[r.data.tags["ablation.budget.of_run"]]] = r.data.metrics["val.acc"]
    info = runs.info
    arms, seeds = [BASELINE, BEST], [0, 1]
    before = compare(paired(arms, BASELINE, seeds, at_cap), info.smallest_effect, True, info.design)
    after = compare(paired(arms, BASELINE, seeds, longer), info.smallest_effect, True, info.design)
    b = check(info, runs.cells, runs.budget, BEST)
    assert b.arms == [BASELINE, BEST] and b.factor == 2.0
    assert b.longer[BEST] == pytest.approx((longer[(BEST, 0)] + longer[(BEST, 1)]) / 2)
    assert b.longer[BASELINE] == b.at_cap[BASELINE] == pytest.approx((at_cap[(BASELINE, 0)] + at_cap[(BASELINE, 1)]) / 2)
    changed = before[BEST].decision != after[BEST].decision
    assert b.status == ("changed" if changed else "unchanged")
    assert b.changes == ([(BEST, before[BEST].decision, after[BEST].decision)] if changed else [])
    # the report says it, and so does the parent run
    text = (home / "reports" / "capped.md").read_text()
    section = text[text.index("## Budget check"):text.index("## Results per arm")]
    expected = (f"**Decisions change at twice the cap: `{BEST}` {before[BEST].decision} -> {after[BEST].decision}.**"
                if changed else "**Decisions unchanged at twice the cap.**")
    assert expected in section
    assert f"`{BEST}` {b.at_cap[BEST]:.4f} at the cap, {b.longer[BEST]:.4f} at twice the cap" in section
    assert section.count("| trained again") == 2 and section.count("| kept ") == 2 and section.count("| the same run") == 2
    parent = c.get_run(cells[0].data.tags["mlflow.parentRunId"])
    assert parent.data.tags["ablation.study.budget_check"] == b.status
    assert parent.data.tags["ablation.study.budget_cap"] == "2"


def test_a_second_check_trains_nothing(home, capsys, monkeypatch):
    monkeypatch.setenv("ABLATION_HOME", str(home))
    _, _, before = _by_phase(home)
    assert main(["budget", "capped", "--no-report"]) == 0
    _, _, after = _by_phase(home)
    assert {r.info.run_id for r in after} == {r.info.run_id for r in before}
    out = capsys.readouterr().out
    assert "budget check: training" not in out and "budget check: Decisions" in out


def test_run_reads_the_runs_once_for_its_budget_check_and_report_and_writes_the_same_report(home, tmp_path,
                                                                                          monkeypatch):
    from ablation.report import analysis, build as report_build
    from ablation.report import load as report_load
    from ablation.study import budget as study_budget

    monkeypatch.setenv("ABLATION_HOME", str(home))
    loads, analyses = [], []

    def counting(fn, calls):
        def wrapped(*a, **k):
            calls.append(a[0] if a else None)
            return fn(*a, **k)
        return wrapped

    for module in (study_budget, report_build):
        monkeypatch.setattr(module, "load_study", counting(report_load.load_study, loads))
    monkeypatch.setattr(analysis, "_analyse", counting(analysis._analyse, analyses))
    written = home / "reports" / "capped.md"
    written.unlink()
    assert main(["run", "capped", "--jobs", "1"]) == 0  # every cell done, the check trains nothing
    assert loads == ["capped"] and len(analyses) == 1  # one load, one analysis: the check's, then the report's
    # the same report as one built from a fresh load of the store
    fresh = report_build.build("capped", out_dir=tmp_path)
    assert len(loads) == 2 and len(analyses) == 2
    assert fresh.path.read_text() == written.read_text()


@pytest.mark.parametrize("argv, words", [
    (["budget", "fixed"], "has no epoch cap to check"),
    (["budget", "capped", "--factor", "1"], "--factor must be above 1"),
    (["budget", "capped", "--factor", "0.5"], "--factor must be above 1"),
    (["budget", "never"], "no study 'never'"),
    (["budget", "capped", "--data", "synthphone:small-v9"], "small-v9"),
    (["budget", "capped", "--set", "model.width=16"], "give budget the same"),
])
def test_a_bad_budget_check_is_one_line_exit_2_and_writes_nothing(home, capsys, monkeypatch, argv, words):
    monkeypatch.setenv("ABLATION_HOME", str(home))
    _, before = _runs(home)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    _, after = _runs(home)
    assert len(after) == len(before)


def test_a_cap_below_the_patience_is_refused_when_the_study_is_loaded(home, capsys, monkeypatch):
    monkeypatch.setenv("ABLATION_HOME", str(home))
    path = home / "studies" / "short.toml"
    path.write_text(CAPPED.replace("patience = 1\nmax_epochs = 2", "patience = 3\nmax_epochs = 2"))
    _, before = _runs(home)
    try:
        for argv in (["run", "short"], ["budget", "short"]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and str(path) in err and "'stopping'" in err
            assert "max_epochs (2) is below patience (3)" in err
    finally:
        path.unlink()
    c, after = _runs(home)
    assert len(after) == len(before) and c.get_experiment_by_name("short") is None
