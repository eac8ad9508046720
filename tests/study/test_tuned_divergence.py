"""A tuning trial whose settings diverge is one of its arm's K trials (told
pruned, ranked below every complete trial by TPE), not a failure run again."""

from __future__ import annotations

from ablation.cli import main


# SGD at lr 10 without batchnorm blows the loss up to inf in the second epoch on the tiny corpus;
# lr 0.01 trains. Each slot draws its lr from its own seeded sampler, alike for every arm.
TUNED = """
question = "Is a 64-wide MLP better than a 32-wide one, each at its own best learning rate?"
base = "mlp_strong"
baseline = { "model.width" = 32 }
seeds = [0]
protocol = "tuned"
[stopping]
patience = 2
max_epochs = 2
[tuning]
trials = 3
seeds = [7]
[tuning.space]
"optim.lr" = { choices = [10.0, 0.01] }
[factors]
"model.width" = [32, 64]
[set]
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"optim.name" = "sgd"
"optim.schedule" = "constant"
"model.batchnorm" = false
"model.depth" = 1
"""


def test_a_diverged_tuning_trial_counts_as_one_of_the_arms_k_trials(home):
    import optuna
    from mlflow.tracking import MlflowClient

    from ablation.study import load_study
    from ablation.study.kinds.tuned import tuning_name

    (home / "studies" / "div.toml").write_text(TUNED)
    assert main(["run", "div", "--no-report", "--jobs", "1"]) == 0
    storage = f"sqlite:///{home / 'mlruns' / 'optuna.db'}"
    study = load_study("div")
    top = optuna.load_study(study_name="div", storage=storage)
    c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("div").experiment_id], max_results=1000)
    diverged = 0
    for arm in study.arms:
        trials = optuna.load_study(study_name=tuning_name(study, arm, top), storage=storage).get_trials()
        assert len(trials) == 3 and sorted(t.user_attrs["slot"] for t in trials) == [0, 1, 2]  # none run again
        for t in trials:
            if t.params["optim.lr"] == 10.0:
                assert t.state.name == "PRUNED" and "diverged: loss is" in t.user_attrs["diverged"]
                diverged += 1
            else:
                assert t.state.name == "COMPLETE"
        mine = [r for r in runs if r.data.tags.get("ablation.arm") == arm.label
                and r.data.tags.get("ablation.phase") == "tuning"]
        assert len(mine) == 3 and all(r.info.status == "FINISHED" for r in mine)
        assert sum(r.data.tags.get("ablation.pruned") == "true" and "diverged" in r.data.tags["ablation.error"]
                   for r in mine) == sum(t.params["optim.lr"] == 10.0 for t in trials)
        confirm = [r for r in runs if r.data.tags.get("ablation.arm") == arm.label
                   and r.data.tags.get("ablation.phase") == "confirm"]
        assert [float(r.data.params["optim.lr"]) for r in confirm] == [0.01]  # the best complete trial's
    assert 0 < diverged < 6, "the seeded draws must mix both learning rates for the test to mean something"


def test_an_arm_whose_every_tuning_trial_diverged_is_reported_with_the_reason(home, capsys):
    (home / "studies" / "div.toml").write_text(TUNED.replace("choices = [10.0, 0.01]", "choices = [10.0]"))
    assert main(["run", "div", "--jobs", "1"]) == 1  # nothing can be confirmed: a failure, not a success
    err = capsys.readouterr().err
    assert err.count("(its 3 tuning trials were all pruned (3 diverged), so it has no values to confirm)") == 2
    assert "has no confirmation runs: `width=32`: all 3 tuning trials of its arm were pruned" in err
    assert "diverged: loss is" in err and not (home / "reports" / "div.md").exists()


def test_why_unconfirmed_names_the_arms_tuning_state():
    import pandas as pd

    from ablation.report.load import why_unconfirmed

    missing = pd.DataFrame([("a", 0, "not run"), ("b", 0, "not run"), ("c", 0, "not run"), ("d", 0, "failed: x")],
                           columns=["arm", "seed", "reason"])
    tuning = pd.DataFrame(
        [("a", "FINISHED", True, "diverged: loss is inf at epoch 2"), ("a", "FINISHED", True, ""),  # all pruned
         ("b", "FINISHED", True, ""), ("b", "FINISHED", False, ""),  # one complete: merely not run yet
         ("c", "FINISHED", True, ""), ("c", "RUNNING", False, ""),  # tuning under way
         ("d", "FINISHED", True, "")],
        columns=["arm", "status", "pruned", "error"])
    out = why_unconfirmed(missing, tuning)["reason"].tolist()
    assert out == ["not run: all 2 tuning trials of its arm were pruned, so it has no values to confirm "
                   "(1 diverged, e.g. diverged: loss is inf at epoch 2)",
                   "not run", "not run: its arm's tuning is not finished (1 of 2 trials done)", "failed: x"]
    assert why_unconfirmed(missing, tuning.iloc[0:0]).equals(missing)
