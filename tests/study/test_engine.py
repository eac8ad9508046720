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


def test_an_arms_tuning_slots_run_one_after_another_whatever_the_number_of_workers(home, monkeypatch):
    """TPE past its start-up points and the pruner decide a slot from the slots before it: a slot of an
    arm is claimed only once no other slot of that arm runs, so two workers tune an arm as one does."""
    from ablation.study import engine, load_study

    monkeypatch.setattr(engine.time, "sleep", lambda s: None)
    (home / "studies" / "tun.toml").write_text(TUNED)
    study = load_study("tun")
    session = engine.prepare_study(study, engine.open_storage(None), None)
    first = study.kind.next_job(session)  # worker A: depth=1, slot 0
    second = study.kind.next_job(session)  # worker B may not take depth=1's slot 1 beside it
    assert (first.phase, first.cell.arm.label, first.trial.user_attrs["slot"]) == ("tuning", "depth=1", 0)
    assert (second.phase, second.cell.arm.label, second.trial.user_attrs["slot"]) == ("tuning", "depth=2", 0)
    assert study.kind.next_job(session) is None  # both arms have a slot running: a third worker waits
    assert engine._wait_for_others(session) is True
    first.opt.tell(first.trial, 0.5)
    third = study.kind.next_job(session)
    assert (third.cell.arm.label, third.trial.user_attrs["slot"]) == ("depth=1", 1)
    # the slot started after the one before it finished
    done = [t for t in first.opt.get_trials(deepcopy=False) if t.user_attrs.get("slot") == 0][0]
    started = [t for t in third.opt.get_trials(deepcopy=False) if t.user_attrs.get("slot") == 1][0]
    assert started.datetime_start >= done.datetime_complete


GRID = """
question = "Does a wider window help a 1-layer MLP?"
base = "mlp_strong"
baseline = { "features.n_concat" = 1 }
seeds = [0, 1]
[factors]
"features.n_concat" = [1, 5, 3]
[set]
"data.source" = "synthphone:tiny"
"model.depth" = 1
"model.width" = 32
"train.epochs" = 2
"""


def test_a_grid_studys_costliest_cells_are_claimed_first(home):
    """A cell's expected cost is its epoch cap times its model's multiply-accumulates per frame; the
    claims take the costliest arm first (declared order breaks no tie here), each arm's seeds in order."""
    from ablation.study import _optuna as O
    from ablation.study import engine, load_study

    (home / "studies" / "win.toml").write_text(GRID)
    study = load_study("win")
    session = engine.prepare_study(study, engine.open_storage(None), None)

    def by_hand(n):  # Linear(39n -> 32), BatchNorm(32), head Linear(32 -> 41); two epochs
        return 2 * (39 * n * 32 + 32 + 32 * 41)

    waiting = {t.user_attrs["arm"]: t.user_attrs[O.COST] for t in session.opt.get_trials(deepcopy=False)}
    assert waiting == {f"n_concat={n}": by_hand(n) for n in (1, 5, 3)}
    claimed = []
    while (job := study.kind.next_job(session)) is not None:
        claimed.append((job.cell.arm.label, job.cell.seed))
        job.opt.tell(job.trial, 0.5)
    assert claimed == [(f"n_concat={n}", s) for n in (5, 3, 1) for s in (0, 1)]


def test_a_tuned_studys_confirmations_are_claimed_longest_tuning_first(home):
    """A confirmation trains its arm's best tuning trial again at another seed: that trial's seconds are
    its expected cost, and the arm whose best trial took longest is confirmed first."""
    import time

    from ablation.study import _optuna as O
    from ablation.study import engine, load_study

    (home / "studies" / "tun.toml").write_text(TUNED)
    study = load_study("tun")
    session = engine.prepare_study(study, engine.open_storage(None), None)
    confirmed = []
    while (job := study.kind.next_job(session)) is not None:
        if job.phase == "tuning":
            slow = job.cell.arm.label == "depth=2" and job.trial.user_attrs["slot"] == 1
            time.sleep(0.3 if slow else 0.0)  # depth=2's best trial (the higher value below) takes longest
            job.opt.tell(job.trial, 0.6 if slow else 0.5)
        else:
            confirmed.append((job.cell.arm.label, job.cell.seed, job.trial.user_attrs[O.COST]))
            job.opt.tell(job.trial, 0.5)
    assert [(arm, seed) for arm, seed, _ in confirmed] == [("depth=2", 0), ("depth=2", 1), ("depth=1", 0), ("depth=1", 1)]
    for arm, _, cost in confirmed:
        tuner = session.state["tuners"][next(a.index for a in study.arms if a.label == arm)]
        best = study.kind.best_trial(study, tuner)
        assert cost == best.duration.total_seconds()
    assert confirmed[0][2] >= 0.3 > confirmed[-1][2]


def test_with_adaptive_seeds_the_baselines_cells_are_claimed_before_the_costlier_arms(home):
    """Every arm's next seed waits for its decision, which pairs it with the baseline: the baseline's
    cells go first however cheap, then the costliest arms."""
    from ablation.study import _optuna as O
    from ablation.study import engine, load_study

    (home / "studies" / "win.toml").write_text(GRID.replace("seeds = [0, 1]", "seeds = { min = 2, max = 3 }"))
    study = load_study("win")
    assert study.design.adaptive
    session = engine.prepare_study(study, engine.open_storage(None), None)
    first = {t.user_attrs["arm"] for t in session.opt.get_trials(deepcopy=False) if t.user_attrs.get(O.FIRST)}
    assert first == {"n_concat=1"}
    claimed = []
    for _ in range(6):  # the first two seeds of every arm (the third is wanted only while undecided)
        job = study.kind.next_job(session)
        claimed.append((job.cell.arm.label, job.cell.seed))
        job.opt.tell(job.trial, 0.5)
    assert claimed == [(f"n_concat={n}", s) for n in (1, 5, 3) for s in (0, 1)]


def test_a_worker_says_once_that_it_is_idle_while_another_worker_runs_the_last_cell(home, monkeypatch):
    """The first time a worker finds nothing to claim while the study goes on, it calls ``on_idle``
    (the command imports the report's code then, on the free core); not again, and not when the study
    is simply over."""
    from ablation.study import engine, load_study

    monkeypatch.setattr(engine.time, "sleep", lambda s: None)
    (home / "studies" / "win.toml").write_text(GRID)
    study = load_study("win")
    session = engine.prepare_study(study, engine.open_storage(None), None)
    jobs = []
    while (job := study.kind.next_job(session)) is not None:
        jobs.append(job)
    *told, last = jobs  # "another worker" still runs the last cell
    for job in told:
        job.opt.tell(job.trial, 0.5)
    calls = []

    def idle():
        calls.append(len(calls))
        assert engine._wait_for_others(session) is True  # the last cell still runs while this worker waits
        last.opt.tell(last.trial, 0.5)  # ... then ends

    counts = engine.worker(study, None, None, on_idle=idle)
    assert counts == {"done": 0, "failed": 0, "pruned": 0} and calls == [0]
    calls.clear()
    assert engine.worker(study, None, None, on_idle=idle) == counts and calls == []  # over: never idle


def test_the_supervisor_runs_its_on_idle_once_however_many_workers_wait(monkeypatch):
    """The workers' "__idle__" messages: the supervisor (the command's process) acts on the first."""
    import queue as queue_mod
    from types import SimpleNamespace

    from ablation.study import workers

    messages = [("__idle__", None), ("a seed=0", "done"), ("__idle__", None), ("__done__", {}), ("__done__", {})]

    class Proc:  # a worker that has put its messages, and exits once the supervisor has read them all
        def __init__(self, target, args):
            self.queue, self.pid = args[4], 0

        def start(self):
            for m in messages:
                self.queue.put(m)
            messages.clear()

        @property
        def exitcode(self):
            return 0 if self.queue.empty() else None

        def join(self, timeout=None):
            pass

    ctx = SimpleNamespace(Queue=queue_mod.Queue, Process=Proc)
    monkeypatch.setattr(workers, "context", lambda start=False: ctx)
    study = SimpleNamespace(n_cells=2)
    idle, cells = [], []
    counts = workers.supervise(study, 2, None, None, lambda name, outcome: cells.append((name, outcome)),
                               on_idle=lambda: idle.append(1))
    assert idle == [1] and cells == [("a seed=0", "done")] and counts["done"] == 1

    # an on_idle that fails does not stop the supervisor from watching its workers to the end
    messages.extend([("__idle__", None), ("b seed=1", "done"), ("__done__", {})])

    def fails():
        raise ImportError("no report today")

    cells.clear()
    counts = workers.supervise(study, 1, None, None, lambda name, outcome: cells.append((name, outcome)), on_idle=fails)
    assert cells == [("b seed=1", "done")] and counts["done"] == 1


def test_messages_left_after_the_workers_exit_are_counted_and_a_workers_counts_do_not_break_the_count():
    """Two workers that end together leave messages the supervisor's loop never read: the cells among
    them still count, and a "__done__" (whose value is the worker's own counts, a dict) is skipped."""
    import queue as queue_mod

    from ablation.study import workers

    q = queue_mod.Queue()
    for m in [("__done__", {"done": 3, "failed": 0, "pruned": 0}), ("b seed=1", "failed"), ("__idle__", None),
              ("a seed=0", "done")]:
        q.put(m)
    counts = {"done": 1, "failed": 0, "pruned": 0}
    workers._drain(q, counts)
    assert counts == {"done": 2, "failed": 1, "pruned": 0} and q.empty()
