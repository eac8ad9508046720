"""The tuning report (``sampler = "tpe"``) against a hand-built MLflow store
logged the way the study runner logs tuning trials: six trial runs for a
budget of five (three finished, two pruned, one failed and replaced)."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest

from ablation.report import analyse_tuning, build_report, load_study
from ablation.report.build import read_marker
from ablation.tags import DATA_FINGERPRINT, ERROR, CellTags, StudyTags, key

from .conftest import T0, Store, _simple

PNG = b"\x89PNG\r\n\x1a\n"
N_TRIALS = 5
COMMAND = "python -m ablation run {name} --data synthphone:tiny"
LR1 = 0.0031622776601683794  # a value that must survive the confirm command exactly
STUDY_TOML = """\
question = "Which strong-MLP configuration does a small search find?"
base = "mlp_strong"
sampler = "tpe"
n_trials = 5
pruner = "median"
seeds = [0]
metric = {{ name = "{metric}", direction = "{direction}" }}

[set]
"optim.weight_decay" = 0.02

[search]
"optim.lr" = {{ low = 0.0003, high = 0.01, log = true }}
"model.dropout" = {{ low = 0.0, high = 0.5 }}
"model.depth" = {{ choices = [2, 3, 4] }}
"model.activation" = {{ choices = ["relu", "gelu"] }}

[scale.quick]
"train.epochs" = 3

[scale.full]
"train.epochs" = 20
"""
FACTORS = ["optim.lr", "model.dropout", "model.depth", "model.activation"]
CEILING_VAL, CEILING_TEST = 0.80, 0.79


def _levels(lr, dropout, depth, act):
    return {"optim.lr": lr, "model.dropout": dropout, "model.depth": depth, "model.activation": act}


# trial number -> (state, levels, final metrics or None, per-epoch (val_acc, val_loss), reason)
TRIALS = {
    0: ("finished", _levels(0.001, 0.1, 2, "relu"),
        {"val.acc": 0.610, "test.acc": 0.600, "val.macro_f1": 0.50, "test.macro_f1": 0.49, "val.loss": 1.30,
         "n_params": 120_000, "train_time_s": 11.0}, [(0.55, 1.5), (0.60, 1.4), (0.61, 1.3)], ""),
    1: ("finished", _levels(LR1, 0.25, 3, "gelu"),
        {"val.acc": 0.662, "test.acc": 0.655, "val.macro_f1": 0.56, "test.macro_f1": 0.55, "val.loss": 1.20,
         "n_params": 210_000, "train_time_s": 14.5}, [(0.60, 1.4), (0.65, 1.3), (0.662, 1.2)], ""),
    2: ("pruned", _levels(0.008, 0.45, 4, "relu"), None, [(0.40, 2.0), (0.45, 1.9)], "pruned at epoch 2"),
    3: ("failed", _levels(0.0005, 0.3, 4, "gelu"), None, [], "RuntimeError: CUDA out of memory"),
    4: ("finished", _levels(0.002, 0.2, 4, "relu"),
        {"val.acc": 0.640, "test.acc": 0.650, "val.macro_f1": 0.54, "test.macro_f1": 0.53, "val.loss": 1.10,
         "n_params": 300_000, "train_time_s": 20.0}, [(0.58, 1.3), (0.62, 1.2), (0.64, 1.1)], ""),
    5: ("pruned", _levels(0.0004, 0.05, 2, "gelu"), None, [(0.50, 1.7)], "pruned at epoch 1"),
}


def _tuning_study(s: Store, name: str, metric: str, direction: str) -> None:
    from mlflow.entities import Metric, Param

    exp = s.experiment(name)
    tags = StudyTags(
        study=name, hash="h" + name, question="Which strong-MLP configuration does a small search find?",
        base="mlp_strong", factors=FACTORS, arms=["tuned"], arm_levels={"tuned": {}}, baseline_arm="",
        metric=metric, direction=direction, seeds=[0], scale="quick", sampler="tpe", param_budget=None,
        budget_tolerance=0.01, cells_total=N_TRIALS, command=COMMAND.format(name=name),
        data_source="synthphone:tiny", data_fingerprint="fp01",
        data_sizes={"train": {"frames": 1000, "utts": 10}}, git_commit="0123abc",
    ).to_tags()
    parent = s.c.create_run(exp, run_name=name, tags=tags, start_time=s._now()).info.run_id
    s.c.log_text(parent, STUDY_TOML.format(metric=metric, direction=direction), "study.toml")
    s.c.set_terminated(parent, "FINISHED")
    for number, (state, levels, final, epochs, reason) in TRIALS.items():
        tags = CellTags(study=name, arm=f"trial {number}", arm_levels=levels, seed=0, trial=number,
                        pruned=state == "pruned").to_tags()
        tags.update({"mlflow.parentRunId": parent, key(DATA_FINGERPRINT): "fp01"})
        if reason:
            tags[key(ERROR)] = reason
        rid = s.c.create_run(exp, run_name=f"trial {number} seed=0", tags=tags, start_time=s._now()).info.run_id
        params = {**levels, "train.epochs": 3, "train.seed": 0, "optim.weight_decay": 0.02}
        s.c.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
        for step, (acc, loss) in enumerate(epochs, start=1):
            s.c.log_batch(rid, metrics=[Metric("epoch.val_acc", acc, T0, step), Metric("epoch.val_loss", loss, T0, step),
                                        Metric("epoch.train_acc", acc + 0.05, T0, step)])
        if final:  # a finished trial logs the config it ran, as the runner's cells do
            from ablation import paths
            from ablation.config import load_experiment

            cfg = load_experiment(paths.PROJECT_DIR / "experiments" / "mlp_strong.toml", {**params, "data.source": "synthphone:tiny"})
            s.c.log_text(rid, cfg.to_toml(), "config.toml")
            final = {**final, "epochs_run": len(epochs), "ceiling.val_acc": CEILING_VAL, "ceiling.test_acc": CEILING_TEST}
            s.c.log_batch(rid, metrics=[Metric(k, float(v), T0, len(epochs)) for k, v in final.items()])
        s.c.set_terminated(rid, "FAILED" if state == "failed" else "FINISHED")


@pytest.fixture(scope="module")
def tstore(tmp_path_factory):
    root = tmp_path_factory.mktemp("tunestore")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATION_CACHE", str(root / "cache"))
        mp.setenv("ABLATION_HOME", str(root / "home"))
        s = Store(root)
        _tuning_study(s, "tune", "val.acc", "maximize")
        _tuning_study(s, "tune_min", "val.loss", "minimize")
        _simple(s, "ablate", ["bn=false", "bn=true"], [7], "model.batchnorm", {"bn=false": [0.6], "bn=true": [0.64]})
    return s


@pytest.fixture(scope="module")
def report(tstore, tmp_path_factory):
    out = tmp_path_factory.mktemp("tunereports")
    path = build_report("tune", tstore.uri, out)
    return out, path.read_text()


def _ranked(metric: str, maximize: bool) -> list[int]:
    """The expected table order, by hand: finished by the metric, then pruned by their last epoch value."""
    idx = {"val.acc": 0, "val.loss": 1}[metric]
    sign = -1 if maximize else 1
    finished = sorted((n for n, t in TRIALS.items() if t[0] == "finished"), key=lambda n: sign * TRIALS[n][2][metric])
    pruned = sorted((n for n, t in TRIALS.items() if t[0] == "pruned"), key=lambda n: sign * TRIALS[n][3][-1][idx])
    return finished + pruned


def test_best_trial_order_and_counts_maximize(tstore):
    runs = load_study("tune", tstore.uri)
    a = analyse_tuning(runs)
    v = a.verdict
    assert a.done["trial"].tolist() == _ranked("val.acc", True) == [1, 4, 0, 5, 2]
    assert a.trials["state"].tolist() == ["finished"] * 3 + ["pruned"] * 2 + ["failed"]
    assert a.done["rank"].tolist()[:3] == [1, 2, 3] and a.done["rank"].isna().tolist() == [False] * 3 + [True] * 2
    assert (v.best, v.best_value, v.levels) == ("trial 1", 0.662, TRIALS[1][1])
    assert (v.n_finished, v.n_pruned, v.n_unfinished, v.done, v.planned) == (3, 2, 1, 5, 5)
    assert v.scores == pytest.approx({k: TRIALS[1][2][k] for k in ("val.acc", "test.acc", "val.macro_f1", "test.macro_f1")})
    assert v.fraction("val.acc") == pytest.approx(0.662 / CEILING_VAL)
    assert v.fraction("test.acc") == pytest.approx(0.655 / CEILING_TEST)
    assert (v.runner_up, v.runner_up_value) == ("trial 4", 0.640)
    pruned = a.trials.set_index("trial")
    assert pruned.loc[2, "stop_epoch"] == 2 and pruned.loc[2, "last_value"] == pytest.approx(0.45)
    assert pruned.loc[5, "stop_epoch"] == 1 and pruned.loc[5, "last_value"] == pytest.approx(0.50)
    assert pruned.loc[3, "reason"] == "RuntimeError: CUDA out of memory"
    assert [p.log for p in a.search] == [True, False, False, False]
    assert a.search[2].choices == (2, 3, 4)


def test_best_trial_minimize(tstore):
    a = analyse_tuning(load_study("tune_min", tstore.uri))
    assert a.epoch_key == "epoch.val_loss"
    assert a.done["trial"].tolist() == _ranked("val.loss", False) == [4, 1, 0, 5, 2]
    v = a.verdict
    assert (v.best, v.best_value, v.maximize) == ("trial 4", 1.10, False)
    assert list(v.scores)[:2] == ["val.loss", "val.acc"] and v.scores["val.loss"] == 1.10
    assert a.trials.set_index("trial").loc[2, "last_value"] == pytest.approx(1.9)
    assert "(lower is better)" in v.sentence and "`trial 4`" in v.sentence


def test_confirm_command_runs_the_winners_logged_config(report, tstore):
    from ablation.cli import build_parser
    from ablation.commands.train import load_config

    out, md = report
    v = analyse_tuning(load_study("tune", tstore.uri)).verdict
    assert v.commands == tuple(f"python -m ablation train reports/tune/winner.toml --set train.seed={s}" for s in (1, 2, 3))
    written = out / "tune" / "winner.toml"  # the report writes the winner's config.toml beside itself, as logged
    for seed, command in zip((1, 2, 3), (line for line in md.splitlines() if line.startswith("python -m ablation train"))):
        words = shlex.split(command)
        assert words[:4] == ["python", "-m", "ablation", "train"] and words[-1] == f"train.seed={seed}"
        cfg = load_config(build_parser().parse_args(words[3:]))
        assert cfg.optim.lr == LR1 and cfg.model.dropout == 0.25 and cfg.model.depth == 3  # exact, not rounded
        assert cfg.model.activation == "gelu" and cfg.train.seed == seed and cfg.train.epochs == 3
        assert cfg.optim.weight_decay == 0.02 and cfg.data.source == "synthphone:tiny"
    assert words[4] == str(written.resolve())  # a report outside the project names its file whole
    assert "`" + str(written.resolve()) + "` is the winner's config as its run logged it" in md


def test_markdown_verdict_table_and_completeness(report):
    _, md = report
    verdict = md.split("## Verdict", 1)[1].split("\n\n")[1]
    assert verdict == (
        f"**Best of 3 finished trials (5/5 trials done, 2 pruned): `trial 1` with val accuracy 0.6620 "
        f"({0.662 / CEILING_VAL:.1%} of the ceiling) at optim.lr=0.003162, model.dropout=0.25, model.depth=3, "
        "model.activation=gelu; a single-seed winner, to be confirmed over seeds.**"
    )
    assert "5 / 5 trials done (3 finished, 2 pruned); 1 failed, not counted" in md
    assert "Missing cells" not in md and "Paired differences" not in md and "reference" not in md
    assert "winner's curse" in md and "The runner-up `trial 4` scored 0.6400, 0.0220 behind" in md
    assert "test accuracy (0.6550) played no part in the choice" in md
    assert re.search(rf"\| test accuracy\s+\| 0.6550\s+\| {0.655 / CEILING_TEST:.1%}", md)
    failed = md.split("### Trials that did not finish", 1)[1].split("##", 1)[0]
    assert re.search(r"\|\s+3\s+\|\s+failed\s+\|\s+`\w+`\s+\|\s+RuntimeError: CUDA out of memory", failed)
    table = md.split("## Trials\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"\|\s+\d*\s+\|\s+\d+\s+\|", line)]
    assert [int(line.split("|")[2]) for line in rows] == [1, 4, 0, 5, 2]
    assert "pruned at epoch 2" in rows[-1] and "(0.4500)" in rows[-1] and "finished (3 epochs)" in rows[0]
    assert "210,000" in rows[0] and "14.5" in rows[0]
    space = md.split("### Search space", 1)[1].split("##", 1)[0]
    assert "float in [0.0003, 0.01], log scale" in space and 'one of "relu", "gelu"' in space
    assert "gelu (2x), relu (3x)" in space and "0.0004 to 0.008 (5 distinct values)" in space
    assert re.search(r"```\npython -m ablation train \S+/tune/winner.toml --set train.seed=1\n", md)


def test_fairness_for_tuning_does_not_flag_pruning(report, tstore):
    _, md = report
    assert "Fairness violation" not in md
    table = md.split("## Fairness", 1)[1].split("##", 1)[0]
    assert re.search(r"\| same data\s+\| ok\s+\| every run used data fingerprint `fp01`", table)
    assert re.search(r"\| same epoch budget\s+\| ok\s+\| train.epochs = 3 in every run", table)
    assert re.search(r"\| pruning\s+\| shown\s+\| expected in a tuning study \(pruner: median\); 2 of 5 done trials "
                     r"stopped early: trial 2 at epoch 2, trial 5 at epoch 1", table)
    assert "no pruning" not in table and "same seeds" not in table


def test_tuning_figures_exist_as_png(report):
    out, md = report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == ["tune/history.png", "tune/search_slices.png", "tune/trial_curves.png"]
    for rel in links:
        data = (out / rel).read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_index_uses_tuning_verdict_and_keeps_ablation_lines(report, tstore, tmp_path):
    out, md = report
    meta = read_marker(out / "tune.md")
    assert meta["kind"] == "tuning" and meta["cells"] == "5/5" and f"**{meta['verdict']}**" in md
    index = (out / "README.md").read_text()
    assert f"**Verdict:** {meta['verdict']} (5/5 trials done)" in index
    assert "A tuning study's verdict is its best finished trial" in index
    # an index of ablations alone is what it was: no tuning sentence, counted in cells
    ablation = build_report("ablate", tstore.uri, tmp_path)
    only = (tmp_path / "README.md").read_text()
    assert "tuning" not in only and "(2/2 cells)" in only and "kind" not in read_marker(ablation)
    assert "# Study `ablate`" in ablation.read_text() and "Paired differences vs the baseline `bn=false`" in ablation.read_text()
    # both kinds side by side, each with its own unit
    build_report("ablate", tstore.uri, out)
    both = (out / "README.md").read_text()
    assert "(2/2 cells)" in both and "(5/5 trials done)" in both


def test_tuning_report_is_deterministic(report, tstore):
    out, md = report
    assert build_report("tune", tstore.uri, out).read_text() == md
    assert np.isclose(float(re.search(r"with val accuracy (\d\.\d+)", md).group(1)), 0.662)


def test_winner_without_logged_config_gets_no_command(tstore):
    from dataclasses import replace

    a = analyse_tuning(replace(load_study("tune", tstore.uri), configs={}))
    assert a.verdict.best == "trial 1" and a.verdict.commands == ()
    assert "no logged `config.toml`" in a.verdict.confirm


def test_the_tuning_budget_counts_the_epochs_of_trials_the_pruner_stopped():
    from types import SimpleNamespace

    import pandas as pd

    from ablation.report.diagnostics import tuning_budget
    from ablation.report.load import with_epochs_run

    class Client:  # a pruned run logs its per-epoch history but no epochs_run
        def get_metric_history(self, run_id, key):
            assert key == "epoch.val_acc"
            return [SimpleNamespace(step=s, value=0.5) for s in range({"p1": 1, "p2": 2}[run_id])]

    tuning = pd.DataFrame({"run_id": ["c1", "p1", "c2", "p2"], "arm": ["a", "a", "b", "b"],
                           "status": ["FINISHED"] * 4, "metrics.epochs_run": [3.0, float("nan"), 3.0, float("nan")]})
    filled = with_epochs_run(Client(), tuning)
    assert filled["metrics.epochs_run"].tolist() == [3.0, 1.0, 3.0, 2.0]
    d = tuning_budget(["a", "b"], filled, 2)
    assert not d.flagged and d.detail == "2 trials per arm declared; `a`: 2 trials, 4 epochs; `b`: 2 trials, 5 epochs"
