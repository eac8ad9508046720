"""The engine's worker loop: a worker exits only when the study is over, in
every kind (a tuned study's worker waits for confirmations other workers run)."""

from __future__ import annotations

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
seeds = [7]
[tuning.space]
"optim.lr" = { low = 0.0003, high = 0.03, log = true }
[factors]
"model.depth" = [1, 2]
[set]
"data.source" = "synthphone:tiny"
"model.width" = 32
"""


def test_a_tuned_worker_waits_while_another_worker_runs_a_confirmation(home, monkeypatch):
    """Jobs are claimed and told by hand (what workers do around training), so no model trains."""
    from ablation.study import engine, load_study

    monkeypatch.setattr(engine.time, "sleep", lambda s: None)  # the wait's poll, not what is tested
    (home / "studies" / "tun.toml").write_text(TUNED)
    study = load_study("tun")
    session = engine.prepare_study(study, engine.open_storage(None), None)
    phases = []
    while (job := study.kind.next_job(session)) is not None:
        phases.append(job.phase)
        if job.phase == "confirm" and "confirm" not in phases[:-1]:
            running = job  # "another worker" is running this confirmation
            continue
        job.opt.tell(job.trial, 0.5 + 0.01 * len(phases))
    assert phases == ["tuning"] * 4 + ["confirm"] * 4  # 2 arms x 2 slots, then 2 arms x 2 seeds
    # every tuning trial is over and nothing is left to claim, but a confirmation is still running elsewhere
    assert engine._wait_for_others(session) is True
    running.opt.tell(running.trial, 0.6)
    assert engine._wait_for_others(session) is False
    assert sum(s.state == "done" for s in engine.states(session)) == 4
