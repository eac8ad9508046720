"""Study protocols on the tiny corpus: converged cells stop by patience at
their own epochs; tuned studies give every arm the same tuning budget and
decide from confirmation runs only; bad protocol declarations are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ablation.cli import main

REPO = Path(__file__).resolve().parents[2]

SMALL_NET = """
[set]
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.depth" = 1
"model.width" = 64
"""

CONVERGED = """
question = "Does a high learning rate converge sooner?"
base = "mlp_strong"
baseline = { "optim.lr" = 0.0001 }
seeds = [1]
protocol = "converged"
[stopping]
patience = 1
max_epochs = 6
[factors]
"optim.lr" = [0.0001, 0.05]
""" + SMALL_NET


def _client(home: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")


def _cells(home: Path, name: str):
    c = _client(home)
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    return c, [r for r in runs if r.data.tags.get("ablation.kind") == "cell"]


def test_converged_cells_stop_by_patience_and_report_the_restored_best_epoch(home):
    (home / "studies" / "conv.toml").write_text(CONVERGED)
    assert main(["run", "conv", "--no-report", "--jobs", "1"]) == 0
    c, cells = _cells(home, "conv")
    assert len(cells) == 2
    stopped = {}
    for r in cells:
        m = r.data.metrics
        accs = [x.value for x in sorted(c.get_metric_history(r.info.run_id, "epoch.val_acc"), key=lambda x: x.step)]
        best = max(range(len(accs)), key=lambda i: (accs[i], -i)) + 1  # the first of equal maxima
        assert r.data.params["train.patience"] == "1" and r.data.params["train.epochs"] == "6"
        assert m["epochs_run"] == len(accs) == min(6, best + 1)  # one epoch without a gain ends it
        assert m["best_epoch"] == best and m["val.acc"] == accs[best - 1]  # the restored epoch's own score
        stopped[r.data.tags["ablation.arm"]] = int(m["epochs_run"])
    # the slow arm is still improving at the cap; the fast one stopped early
    assert stopped == {"lr=0.0001": 6, "lr=0.05": 4}


BASE = "question = 'x'\nbase = 'mlp_strong'\nseeds = [0, 1]\n[factors]\n'model.depth' = [1, 2]\n"
TUNED_SPACE = "[tuning.space]\n'optim.lr' = { low = 0.0003, high = 0.01, log = true }\n"
BAD = {
    "tuned without a space": ("protocol = 'tuned'\n" + BASE + "[tuning]\ntrials = 2\nseeds = [5]\n", "needs a [tuning.space]"),
    "tuning seeds overlap": ("protocol = 'tuned'\n" + BASE + "[tuning]\nseeds = [1, 7]\n" + TUNED_SPACE,
                             "tuning seeds [1] are also study seeds"),
    "nuisance is a factor": ("protocol = 'tuned'\n" + BASE + "[tuning]\nseeds = [7]\n[tuning.space]\n"
                             "'model.depth' = { choices = [1, 2] }\n", "is both a factor and in [tuning.space]"),
    "patience zero": ("protocol = 'converged'\n" + BASE + "[stopping]\npatience = 0\n",
                      "'stopping.patience'"),
    "cap not an int": ("protocol = 'converged'\n" + BASE + "[stopping]\nmax_epochs = 2.5\n",
                       "'stopping.max_epochs'"),
    "cap negative": ("protocol = 'converged'\n" + BASE + "[stopping]\nmax_epochs = -3\n",
                     "'stopping.max_epochs'"),
    "stopping on a fixed study": (BASE + "[stopping]\npatience = 2\n", "[stopping] needs protocol"),
    "unknown nuisance path": ("protocol = 'tuned'\n" + BASE + "[tuning]\nseeds = [7]\n[tuning.space]\n"
                              "'optim.lrr' = { low = 0.1, high = 0.2 }\n", "unknown tuning path 'optim.lrr'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_protocols_get_one_line_exit_2_and_nothing_is_enqueued(home, capsys, case):
    text, expected = BAD[case]
    (home / "studies" / "bad.toml").write_text(text)
    assert main(["run", "bad", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (home / "mlruns" / "optuna.db").exists()
    assert not (home / "mlruns" / "mlflow.db").exists()


def test_seeds_added_by_the_command_line_may_not_reach_the_tuning_seeds(home, capsys):
    (home / "studies" / "t.toml").write_text("protocol = 'tuned'\n" + BASE + "[tuning]\nseeds = [2]\n" + TUNED_SPACE)
    assert main(["run", "t", "--no-report", "--seeds", "3"]) == 2  # seeds 0, 1, 2
    assert "tuning seeds [2] are also study seeds" in capsys.readouterr().err


TUNED = """
question = "Is a 2-layer MLP better than a 1-layer one, each at its own best learning rate?"
base = "mlp_strong"
baseline = {{ "model.depth" = 1 }}
seeds = [0, 1]
protocol = "tuned"
[stopping]
patience = 1
max_epochs = {epochs}
[tuning]
trials = 2
seeds = [7, 8]
[tuning.space]
"optim.lr" = {{ low = 0.0003, high = 0.03, log = true }}
[factors]
"model.depth" = [1, 2]
""" + SMALL_NET.replace('"model.depth" = 1\n', "")


def _tuning_trials(home: Path, arm_index: int):
    import optuna

    from ablation.study import load_study
    from ablation.study.kinds.tuned import tuning_name

    study = load_study("tun")
    storage = f"sqlite:///{home / 'mlruns' / 'optuna.db'}"
    main = optuna.load_study(study_name="tun", storage=storage)
    return optuna.load_study(study_name=tuning_name(study, study.arms[arm_index], main), storage=storage).get_trials()


def _check_tuned(home: Path, k: int = 2):
    """Exactly k finished tuning trials per arm in Optuna and in MLflow, on the
    tuning seeds; confirmations on the study's seeds with the arm's best lr."""
    c, cells = _cells(home, "tun")
    finished = [r for r in cells if r.info.status == "FINISHED"]
    tuning = [r for r in finished if r.data.tags["ablation.phase"] == "tuning"]
    confirm = [r for r in finished if r.data.tags["ablation.phase"] == "confirm"]
    for i, arm in enumerate(("depth=1", "depth=2")):
        done = [t for t in _tuning_trials(home, i) if t.state.name in ("COMPLETE", "PRUNED")]
        assert sorted(t.user_attrs["slot"] for t in done) == list(range(k))
        runs = [r for r in tuning if r.data.tags["ablation.arm"] == arm]
        assert len(runs) == k and {r.data.tags["ablation.seed"] for r in runs} == {"7", "8"}
        best = max((t for t in done if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
        mine = [r for r in confirm if r.data.tags["ablation.arm"] == arm]
        assert sorted(r.data.tags["ablation.seed"] for r in mine) == ["0", "1"]
        assert [float(r.data.params["optim.lr"]) for r in mine] == pytest.approx([best.params["optim.lr"]] * 2)
    return tuning, confirm


def test_tuned_gives_each_arm_k_trials_and_decides_from_confirmations_only(home):
    (home / "studies" / "tun.toml").write_text(TUNED.format(epochs=1))
    assert main(["run", "tun", "--no-report", "--jobs", "1"]) == 0
    tuning, confirm = _check_tuned(home)
    from ablation.report.analysis import analyse
    from ablation.report.load import load_study

    runs = load_study("tun")
    assert set(runs.cells["run_id"]) == {r.info.run_id for r in confirm}
    assert set(runs.tuning["run_id"]) == {r.info.run_id for r in tuning}
    a = analyse(runs)
    for arm in ("depth=1", "depth=2"):
        mean = a.summary.set_index(["arm", "metric"]).loc[(arm, "val.acc"), "mean"]
        vals = [r.data.metrics["val.acc"] for r in confirm if r.data.tags["ablation.arm"] == arm]
        assert mean == pytest.approx(sum(vals) / len(vals))
    assert runs.info.protocol == "tuned" and runs.info.protocol_settings["tuning"]["trials"] == 2
    # the parent run shows the report's numbers: confirmation runs only, never a tuning trial's
    c, _ = _cells(home, "tun")
    parent = c.get_run(runs.info.parent_run_id).data
    for arm in ("depth=1", "depth=2"):
        vals = [r.data.metrics["val.acc"] for r in confirm if r.data.tags["ablation.arm"] == arm]
        key = "arm/" + arm.replace("=", "_")
        assert parent.metrics[f"{key}/val.acc.mean"] == pytest.approx(sum(vals) / len(vals))
        assert parent.metrics[f"{key}/seeds"] == 2
    assert parent.tags["ablation.study.best_arm"] == a.verdict.best
    assert parent.tags["ablation.study.cells_finished"] == "4" and parent.tags["ablation.verdict.cells"] == "4/4"
    assert parent.tags["ablation.verdict"] == a.verdict.sentence
    assert parent.tags["ablation.decision.depth_2"] == a.decisions["depth=2"].decision


@pytest.mark.slow
def test_a_killed_tuning_phase_resumes_with_exactly_k_trials_per_arm(home):
    import os
    import signal
    import subprocess
    import sys
    import time

    (home / "studies" / "tun.toml").write_text(TUNED.format(epochs=4))
    env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "ablation", "run", "tun", "--no-report", "--jobs", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed, deadline = None, time.time() + 180
    while killed is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            running = [t for t in _tuning_trials(home, 0) if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs]
        except Exception:
            continue
        if running:
            os.kill(proc.pid, signal.SIGKILL)
            killed = running[0]
    proc.wait(timeout=30)
    assert killed is not None, "no tuning trial started within the time limit"
    assert main(["run", "tun", "--no-report", "--jobs", "1"]) == 0
    _check_tuned(home)
    c, cells = _cells(home, "tun")
    assert c.get_run(killed.user_attrs["mlflow_run_id"]).info.status in ("KILLED", "FAILED")
    assert not [r for r in cells if r.info.status == "RUNNING"]



@pytest.mark.slow
def test_tuned_with_adaptive_seeds_adds_confirmation_seeds_only_while_undecided(home, capsys):
    import optuna

    from ablation.decision import SeedDesign, compare, extents

    # a margin no difference can be shown inside: each arm stays undecided and gains seeds up to max
    spec = TUNED.format(epochs=1).replace("seeds = [0, 1]\n", "seeds = { min = 2, max = 3 }\nmin_effect = 1e-9\n")
    (home / "studies" / "tun.toml").write_text(spec)
    assert main(["run", "tun", "--no-report", "--jobs", "1"]) == 0
    assert "adaptive seeds 2 to 3: 4 of up to 6 cells wanted so far" in capsys.readouterr().out
    storage = f"sqlite:///{home / 'mlruns' / 'optuna.db'}"
    done = [t for t in optuna.load_study(study_name="tun", storage=storage).get_trials() if t.state.name == "COMPLETE"]
    values = {(t.user_attrs["arm"], t.user_attrs["seed"]): t.value for t in done}
    assert len(values) == len(done)  # no confirmation cell ran twice
    ext = extents(["depth=1", "depth=2"], "depth=1", [0, 1, 2], values, SeedDesign(2, 3, True), 1e-9, True)
    assert set(values) == {(arm, seed) for arm, n in ext.items() for seed in range(n)}  # what the decisions want
    d = [values[("depth=2", s)] - values[("depth=1", s)] for s in range(ext["depth=2"])]
    c = compare({"depth=2": d}, 1e-9, design=SeedDesign(2, 3, True))["depth=2"]
    assert c.n == ext["depth=2"] and (c.decision != "undecided" or c.n == 3)  # stopped at a decision or at max
    assert ext["depth=1"] == 3  # and a seed was added (2 paired seeds of these arms are far from a decision)
    # every confirmation, added seeds included, trains at its arm's tuned lr
    _, cells = _cells(home, "tun")
    for i, arm in enumerate(("depth=1", "depth=2")):
        tuned = [t for t in _tuning_trials(home, i) if t.state.name == "COMPLETE"]
        best = max(tuned, key=lambda t: (t.value, -t.number)).params["optim.lr"]
        mine = [r for r in cells if r.data.tags["ablation.phase"] == "confirm" and r.data.tags["ablation.arm"] == arm]
        assert len(mine) == ext[arm] and all(float(r.data.params["optim.lr"]) == pytest.approx(best) for r in mine)
    assert main(["run", "tun", "--no-report", "--jobs", "1"]) == 0 and len(_cells(home, "tun")[1]) == len(cells)


PLACEMENT = """
question = "Does dropout before or after ReLU differ?"
base = "mlp_strong"
baseline = { "model.dropout_place" = "after" }
seeds = [0, 1]
[factors]
"model.dropout_place" = ["after", "before"]
[set]
"train.epochs" = 1
"model.dropout" = 0.25
"model.batchnorm" = false
"model.activation" = "relu"
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.depth" = 2
"model.width" = 32
"""


def test_diagnostics_name_identical_arms_and_a_1_epoch_budget(home, tmp_path):
    """Dropout before or after ReLU is one computation (ReLU commutes with a
    non-negative mask scale), and a 1-epoch study's best epoch is its last."""
    from ablation.report import analyse, build_report, load_study

    (home / "studies" / "place.toml").write_text(PLACEMENT)
    assert main(["run", "place", "--no-report", "--jobs", "1"]) == 0
    runs = load_study("place")
    accs = runs.cells.pivot(index="seed", columns="arm", values="metrics.val.acc")
    assert (accs["dropout_place=after"] == accs["dropout_place=before"]).all()  # bit-identical, seed by seed
    a = analyse(runs)
    rows = {c.name: c for c in a.fairness}
    assert rows["identical arms"].status == "flagged" and "`dropout_place=after` = `dropout_place=before`" in rows["identical arms"].detail
    assert rows["still improving"].status == "flagged"
    assert rows["optimizer steps"].status == "ok" and "spread 1.00x" in rows["optimizer steps"].detail
    assert "at a 1-epoch budget" in a.verdict.sentence
    assert not a.violations  # flags, not fairness violations
    md = build_report("place", out_dir=tmp_path / "reports").read_text()
    assert re.search(r"\| identical arms +\| flagged +\|", md) and "at a 1-epoch budget" in md
    assert "**Protocol:** fixed: every arm trains 1 epochs" in md


def test_shipped_studies_declare_their_protocols():
    import os

    from ablation.study import list_studies, load_study

    os.environ.pop("ABLATION_HOME", None)
    for name in list_studies():
        s = load_study(name)
        if name == "deep_vs_shallow":
            assert s.spec.protocol == "tuned" and "optim.lr" in s.spec.tuning.space and s.param_budget
            assert not set(s.spec.tuning.seeds) & set(s.seeds)
            # every depth at its val peak: a constant lr and a cap that patience reaches first
            assert {(c.config.train.patience, c.config.train.epochs, c.config.optim.schedule, c.config.model.dropout)
                    for c in s.cells} == {(2, 30, "constant", 0.0)}
            assert s.design.adaptive and (s.design.min, s.design.max) == (3, 4)
        elif name == "tune":
            assert s.spec.protocol == "fixed" and s.spec.sampler == "tpe"
        else:
            assert s.spec.protocol == "converged", name
            # every arm at its val peak: a schedule cut by the net's own stall, never by the cap, and a cap
            # that patience reaches first
            assert {(c.config.train.patience, c.config.train.epochs, c.config.optim.schedule)
                    for c in s.cells} == {(2, 60, "plateau")}, name
    dropout = load_study("dropout")
    assert {c.config.model.dropout_place for c in dropout.cells} == {"after"}  # placement is not asked under ReLU
