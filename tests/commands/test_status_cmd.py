"""`ablation status NAME` of a tuned study: each arm's tuning trials done of
its budget and the best value so far, from the arm's own Optuna study."""

from __future__ import annotations

import re

from ablation.cli import main

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
trials = 3
seeds = [7, 8]
[tuning.space]
"optim.lr" = { low = 0.0003, high = 0.03, log = true }
[factors]
"model.depth" = [1, 2]
[set]
"data.source" = "synthphone:tiny"
"model.width" = 32
"""


def test_status_shows_each_arms_tuning_trials_and_best_so_far(home, capsys):
    """Slots are claimed and told by hand (what a worker does around training), so no model trains."""
    from optuna.trial import TrialState

    from ablation.study import engine, load_study
    from ablation.study.cells import DIVERGED

    (home / "studies" / "tun.toml").write_text(TUNED)
    study = load_study("tun")
    session = engine.prepare_study(study, engine.open_storage(None), None)
    kind, storage = study.kind, session.storage
    arm1 = study.arms[0]
    told = []
    for value in (0.41, 0.47):  # two complete slots of depth=1 (the first arm's slots are claimed first)
        job = kind.next_job(session)
        assert job.cell.arm == arm1 and job.phase == "tuning"
        job.opt.tell(job.trial, value)
        told.append((value, job.cell.config.optim.lr))
    job = kind.next_job(session)  # the third diverged: pruned, with its reason
    storage.set_trial_user_attr(job.trial._trial_id, DIVERGED, "diverged: loss is inf at epoch 1, step 3")
    job.opt.tell(job.trial, state=TrialState.PRUNED)
    capsys.readouterr()

    assert main(["status", "tun"]) == 0
    out = capsys.readouterr().out
    assert "tuning: 3 TPE trials per arm over optim.lr on tuning seeds 7, 8" in out
    best_lr = max(told)[1]
    row1 = next(line for line in out.splitlines() if line.startswith("depth=1 "))
    assert re.split(r"\s{2,}", row1.strip()) == ["depth=1", "3/3", "0", "1 (1 diverged)", "0.4700",
                                                 f"optim.lr={best_lr:.4g}"]
    row2 = next(line for line in out.splitlines() if line.startswith("depth=2 "))
    assert re.split(r"\s{2,}", row2.strip()) == ["depth=2", "0/3", "0", "0", "n/a"]
    assert [p["done"] for p in kind.progress(session)] == [3, 0]
