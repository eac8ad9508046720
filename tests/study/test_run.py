"""Studies end to end on the tiny corpus: cells, runs, resume, kills, workers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ablation import paths
from ablation.cli import main

REPO = Path(__file__).resolve().parents[2]

MINI = """
question = "Is a 2-layer MLP better than a 1-layer one on the tiny corpus?"
base = "mlp_strong"
baseline = {{ "model.depth" = 1 }}
seeds = [0, 1]
[factors]
"model.depth" = [1, 2]
[constraints]
param_budget = 40000
[set]
"train.epochs" = {epochs}
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A project folder of its own: experiments, studies, mlruns."""
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "mini.toml").write_text(MINI.format(epochs=1))
    monkeypatch.setenv("ABLATION_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ABLATION_STORAGE", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def _mini_done(tmp_path_factory):
    """The mini study run once (1 epoch, 4 cells, no report). The tests that read
    a finished study, or start from one, get a copy of this project: a copied
    project keeps its runs, trials and artifacts (``ablation.project_artifacts``)."""
    root = tmp_path_factory.mktemp("mini-done")
    shutil.copytree(REPO / "experiments", root / "experiments")
    (root / "studies").mkdir()
    (root / "studies" / "mini.toml").write_text(MINI.format(epochs=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATION_HOME", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("ABLATION_STORAGE", raising=False)
        assert _cli("mini") == 0
    return root


@pytest.fixture
def done(home, _mini_done):
    """``home`` holding the finished mini study."""
    shutil.copytree(_mini_done / "mlruns", home / "mlruns")
    return home


def _runs(home: Path, experiment: str = "mini"):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    exp = c.get_experiment_by_name(experiment)
    return c, ([] if exp is None else c.search_runs([exp.experiment_id], max_results=1000))


def _trials(home: Path, name: str = "mini"):
    import optuna

    storage = f"sqlite:///{home / 'mlruns' / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _cli(*args) -> int:
    jobs = [] if "--jobs" in args else ["--jobs", "1"]  # in-process, so monkeypatches apply
    return main(["run", *args, "--no-report", *jobs])


def _subprocess(home: Path, *args) -> subprocess.Popen:
    env = dict(os.environ, ABLATION_HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "ablation", "run", "mini", "--no-report", "--jobs", "1", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_study_creates_one_child_run_per_cell_with_params_tags_and_metrics(done):
    from ablation.data.corpus import make_splits
    from ablation.data.sources import load_dataset

    home = done
    ds = load_dataset("synthphone:tiny")
    names = ds.pool.class_names
    val_labels = {seed: make_splits(ds, 0.2, seed=seed).val.labels for seed in (0, 1)}
    c, runs = _runs(home)
    parents = [r for r in runs if r.data.tags.get("ablation.kind") == "study"]
    cells = [r for r in runs if r.data.tags.get("ablation.kind") == "cell"]
    assert len(parents) == 1 and len(cells) == 4
    parent = parents[0]
    assert {(r.data.tags["ablation.arm"], r.data.tags["ablation.seed"]) for r in cells} == {
        ("depth=1", "0"), ("depth=1", "1"), ("depth=2", "0"), ("depth=2", "1")}
    for r in cells:
        t, p, m = r.data.tags, r.data.params, r.data.metrics
        assert r.info.status == "FINISHED"
        assert t["mlflow.parentRunId"] == parent.info.run_id
        assert r.info.run_name == f"{t['ablation.arm']} seed={t['ablation.seed']}"
        assert t["ablation.baseline"] == ("true" if t["ablation.arm"] == "depth=1" else "false")
        assert p["model.depth"] == t["ablation.arm"].split("=")[1]
        assert p["train.seed"] == t["ablation.seed"] and p["model.param_budget"] == "40000"
        assert abs(m["n_params"] - 40000) <= 400  # the budget, within 1%
        # recall is logged for every class present in this seed's val split (absent: undefined)
        present = {names[i] for i in np.unique(val_labels[int(t["ablation.seed"])])}
        assert {k[len("recall."):] for k in m if k.startswith("recall.")} == present and "sil" in present
        assert 0.0 <= m["val.acc"] <= 1.0 and m["epochs_run"] == 1
        assert t["ablation.data.fingerprint"] == parent.data.tags["ablation.data.fingerprint"]
        # the params are the model as built: the width solved for the budget, not the base's 384
        built = json.loads(t["ablation.model.kwargs"])
        assert p["model.width"] == str(built["width"]) != "384"
        assert json.loads(t["ablation.model.asked"]) == {"model.width": 384}
        assert not {"model.cell", "model.hidden", "model.bidirectional", "model.layers", "model.mode"} & set(p)
    # identical param names across runs, so the UI's compare view lines them up
    assert len({tuple(sorted(r.data.params)) for r in cells}) == 1
    # the Optuna trial keeps the run id, the run keeps the trial number
    trials = _trials(home)
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 4
    by_run = {r.info.run_id: r for r in cells}
    for t in trials:
        run = by_run[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["ablation.trial"] == str(t.number)
        assert run.data.tags["ablation.worker"] == f"{socket.gethostname()}:{os.getpid()}"  # in-process
        assert t.value == pytest.approx(run.data.metrics["val.acc"])


def test_rerun_runs_nothing(done, capsys):
    home = done
    assert _cli("mini") == 0
    assert "0 to run" in capsys.readouterr().out
    _, runs = _runs(home)
    assert sum(r.data.tags.get("ablation.kind") == "cell" for r in runs) == 4
    assert len(_trials(home)) == 4


def test_changed_study_is_refused_and_new_starts_fresh(done, capsys):
    home = done
    (home / "studies" / "mini.toml").write_text(MINI.format(epochs=2))
    capsys.readouterr()
    assert _cli("mini") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "changed since it began" in err and "--new" in err
    assert len(_trials(home)) == 4  # nothing enqueued
    assert _cli("mini", "--new") == 0
    assert [t.state.name for t in _trials(home)] == ["COMPLETE"] * 4
    _, runs = _runs(home)
    assert sum(r.data.tags.get("ablation.kind") == "study" for r in runs) == 2


def test_failed_cell_is_recorded_and_rerun(home, monkeypatch, capsys):
    from ablation import train
    from ablation.errors import DivergedError

    real_fit = train.fit

    def flaky(cfg, splits, callbacks=(), progress=False):
        if cfg.model.depth == 2 and cfg.train.seed == 1:
            raise DivergedError(1, 3, float("nan"))
        return real_fit(cfg, splits, callbacks, progress)

    monkeypatch.setattr("ablation.experiment.fit", flaky)
    assert _cli("mini") == 1  # the study carried on; one cell is not done
    assert "depth=2 seed=1" in capsys.readouterr().err
    c, runs = _runs(home)
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "diverged" in failed[0].data.tags["ablation.error"]
    assert sorted(t.state.name for t in _trials(home)) == ["COMPLETE"] * 3 + ["FAIL"]
    monkeypatch.setattr("ablation.experiment.fit", real_fit)
    assert _cli("mini") == 0
    states = sorted(t.state.name for t in _trials(home))
    assert states == ["COMPLETE"] * 4 + ["FAIL"]
    _, runs = _runs(home)
    done = [r for r in runs if r.data.tags.get("ablation.kind") == "cell" and r.info.status == "FINISHED"]
    assert len(done) == 4


@pytest.mark.slow
def test_killed_worker_is_marked_and_its_cell_rerun_once(home):
    (home / "studies" / "mini.toml").write_text(MINI.format(epochs=6))
    proc = _subprocess(home)
    deadline = time.time() + 120
    killed = None
    while time.time() < deadline and killed is None:
        time.sleep(0.2)
        try:
            running = [t for t in _trials(home) if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs]
        except Exception:
            continue
        if running:
            os.kill(proc.pid, signal.SIGKILL)
            killed = running[0]
    proc.wait(timeout=30)
    assert killed is not None, "no cell started within the time limit"
    assert _cli("mini") == 0
    c, runs = _runs(home)
    cells = [r for r in runs if r.data.tags.get("ablation.kind") == "cell"]
    finished = [r for r in cells if r.info.status == "FINISHED"]
    assert sorted((r.data.tags["ablation.arm"], r.data.tags["ablation.seed"]) for r in finished) == [
        ("depth=1", "0"), ("depth=1", "1"), ("depth=2", "0"), ("depth=2", "1")]
    assert not [r for r in cells if r.info.status == "RUNNING"]
    assert c.get_run(killed.user_attrs["mlflow_run_id"]).info.status in ("KILLED", "FAILED")
    complete = [t for t in _trials(home) if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and len({t.user_attrs["cell"] for t in complete}) == 4


@pytest.mark.slow
def test_two_workers_never_run_the_same_cell(home):
    procs = [_subprocess(home), _subprocess(home)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    _, runs = _runs(home)
    cells = [r for r in runs if r.data.tags.get("ablation.kind") == "cell"]
    keys = [(r.data.tags["ablation.arm"], r.data.tags["ablation.seed"]) for r in cells]
    assert len(keys) == 4 and len(set(keys)) == 4
    assert sorted(t.state.name for t in _trials(home)) == ["COMPLETE"] * 4


@pytest.mark.slow
def test_jobs_split_the_cells(home):
    assert _cli("mini", "--jobs", "2") == 0
    _, runs = _runs(home)
    cells = [r for r in runs if r.data.tags.get("ablation.kind") == "cell"]
    assert len(cells) == 4 and {r.info.status for r in cells} == {"FINISHED"}
    pids = {t.user_attrs["pid"] for t in _trials(home)}
    assert len(pids) == 2 and os.getpid() not in pids
    # each cell run names the worker that ran it, the same one its trial records
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in _trials(home)}
    for r in cells:
        t = by_run[r.info.run_id]
        assert r.data.tags["ablation.worker"] == f"{t.user_attrs['host']}:{t.user_attrs['pid']}"


@pytest.mark.slow
def test_jobs_workers_take_this_process_s_project_not_the_fork_server_s(home, monkeypatch):
    assert _cli("mini", "--jobs", "2") == 0  # starts the fork server with this home
    other = home / "other"
    shutil.copytree(home / "experiments", other / "experiments")
    shutil.copytree(home / "studies", other / "studies")
    monkeypatch.setenv("ABLATION_HOME", str(other))
    assert _cli("mini", "--jobs", "2") == 0
    cells = [r for r in _runs(other)[1] if r.data.tags.get("ablation.kind") == "cell"]
    assert len(cells) == 4 and {r.info.status for r in cells} == {"FINISHED"}


BAD = {
    "unknown key": ("quesion = 'x'\nbase = 'mlp_strong'\n[factors]\n'model.depth' = [1]\n", "unknown key 'quesion'"),
    "unknown factor path": ("question = 'x'\nbase = 'mlp_strong'\n[factors]\n'model.deep' = [1, 2]\n",
                            "unknown factor path 'model.deep'"),
    "wrong level type": ("question = 'x'\nbase = 'mlp_strong'\n[factors]\n'model.depth' = ['two', 3]\n",
                         "The 'model.depth' parameter must be an int"),
    "baseline not an arm": ("question = 'x'\nbase = 'mlp_strong'\nbaseline = { 'model.depth' = 5 }\n"
                            "[factors]\n'model.depth' = [1, 2]\n", "matches 0 arms"),
    "impossible budget": ("question = 'x'\nbase = 'mlp_strong'\n[factors]\n'model.depth' = [1, 2]\n"
                          "[constraints]\nparam_budget = 100\n", "budget"),
    "min_effect not positive": ("question = 'x'\nbase = 'mlp_strong'\nmin_effect = 0.0\n[factors]\n'model.depth' = [1, 2]\n",
                                "'min_effect' in"),
    "seeds min above max": ("question = 'x'\nbase = 'mlp_strong'\nseeds = { min = 5, max = 3 }\n[factors]\n"
                            "'model.depth' = [1, 2]\n", "min (5) is above max (3)"),
    "seeds max too large": ("question = 'x'\nbase = 'mlp_strong'\nseeds = { min = 3, max = 500 }\n[factors]\n"
                            "'model.depth' = [1, 2]\n", "less than or equal to 50"),
    "adaptive seeds with tpe": ("question = 'x'\nbase = 'mlp_strong'\nsampler = 'tpe'\nseeds = { min = 3, max = 5 }\n"
                                "[search]\n'optim.lr' = { low = 0.001, high = 0.01 }\n", "need a grid study"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_study_files_get_one_line_and_nothing_is_enqueued(home, capsys, case):
    text, expected = BAD[case]
    (home / "studies" / "bad.toml").write_text(text)
    assert main(["run", "bad", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (home / "mlruns" / "optuna.db").exists()
    assert not (home / "mlruns" / "mlflow.db").exists()


def test_unknown_study_lists_known_and_suggests_closest(home, capsys):
    assert main(["run", "minni"]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'minni'" in err and "did you mean 'mini'" in err and "known: mini" in err


def test_unreachable_storage_and_tracking_are_refused(home, capsys):
    assert _cli("mini", "--storage", "postgresql://nobody@127.0.0.1:1/none") == 2
    assert "Optuna storage" in capsys.readouterr().err
    assert _cli("mini", "--tracking-uri", "http://127.0.0.1:1") == 2
    assert "tracking store" in capsys.readouterr().err
    _, runs = _runs(home)
    assert runs == []


def test_status_and_list_report_progress(done, capsys):
    home = done
    assert main(["status", "mini"]) == 0
    out = capsys.readouterr().out
    assert "depth=1" in out and "2/2" in out
    from ablation.decision import seeds_needed

    value = {(t.user_attrs["arm"], t.user_attrs["seed"]): t.value for t in _trials(home) if t.value is not None}
    d = np.array([value[("depth=2", s)] - value[("depth=1", s)] for s in (0, 1)])
    assert "decisions vs the baseline depth=1 (val.acc, smallest effect of interest +-0.005, 2 seeds" in out
    row = next(line for line in out.splitlines() if line.startswith("depth=2 ") and f"{d.mean():+.4f}" in line)
    words = row.split()
    assert words[2] == "2" and words[1] in ("better", "worse", "equivalent", "undecided")
    if words[1] == "undecided":  # the seeds it would need, at its own paired spread
        assert words[-1] == str(seeds_needed(d.std(ddof=1), 0.005, 0.05))
    assert main(["list"]) == 0
    assert "4/4" in capsys.readouterr().out


def test_shipped_studies_load_and_hold_their_fairness_rules():
    from ablation.study import list_studies, load_study

    os.environ.pop("ABLATION_HOME", None)
    names = list_studies()
    for required in ("deep_vs_shallow", "dropout", "n_concat", "weighted_loss", "label_smoothing",
                     "batchnorm", "activation", "architecture", "lr_batch", "tune"):
        assert required in names
    for name in names:
        s = load_study(name)
        if s.spec.sampler == "grid":
            assert len(s.cells) == len(s.arms) * len(s.seeds)
            # three seeds, or adaptive seeds that start at three
            assert (s.design.min if s.design.adaptive else len(s.seeds)) == 3 and s.baseline in s.arms
            assert {c.config.train.epochs for c in s.cells} == {s.cells[0].config.train.epochs}
        else:
            assert s.spec.pruner == "median"
    assert paths.studies_dir() == REPO / "studies"


def test_worker_preload_modules_exist():
    # the fork server skips a module it cannot import without a word: a typo would cost every worker its imports
    import importlib

    from ablation.study.workers import WORKER_PRELOAD, context

    for name in WORKER_PRELOAD:
        importlib.import_module(name)
    expected = "forkserver" if sys.platform.startswith("linux") else "spawn"
    assert context().get_start_method() == expected


def test_every_preloaded_module_is_one_a_worker_imports(home):
    # the preload runs on the fork server before any worker can start: a module no worker needs delays them all
    # (sklearn.metrics was preloaded, 0.5 s, and no cell imports it)
    from ablation.study.workers import WORKER_PRELOAD

    code = ("import sys; from ablation.cli import main; "
            "code = main(['run', 'mini', '--jobs', '1', '--no-report']); "
            "print(sorted(m for m in sys.argv[1:] if m not in sys.modules)); sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", code, *WORKER_PRELOAD], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "ABLATION_HOME": str(home)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_trials_carry_factor_levels_and_seed_as_categorical_params(done):
    import optuna
    from optuna.distributions import CategoricalDistribution

    home = done
    trials = [t for t in _trials(home) if t.state.name == "COMPLETE"]
    assert sorted((t.params["model.depth"], t.params["seed"]) for t in trials) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for t in trials:
        assert t.distributions == {"model.depth": CategoricalDistribution([1, 2]),
                                   "seed": CategoricalDistribution([0, 1])}
        assert t.user_attrs["arm"] == f"depth={t.params['model.depth']}"
        assert list(t.intermediate_values) == [1]  # one epoch, one intermediate value
        assert t.intermediate_values[1] == pytest.approx(t.value)  # val.acc of the only epoch
    study = optuna.load_study(study_name="mini", storage=f"sqlite:///{home / 'mlruns' / 'optuna.db'}")
    assert study.metric_names == ["val.acc"]
    df = study.trials_dataframe()
    assert {"params_model.depth", "params_seed"} <= set(df.columns)


TPE = """
question = "Which learning rate?"
base = "mlp_strong"
sampler = "tpe"
n_trials = 2
pruner = "none"
seeds = [3]
[search]
"optim.lr" = { low = 0.0001, high = 0.01, log = true }
[set]
"train.epochs" = 1
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.width" = 16
"""


def test_tpe_trials_carry_the_seed_as_a_fixed_param_like_grid_cells(home):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    (home / "studies" / "tpe.toml").write_text(TPE)
    assert _cli("tpe") == 0
    trials = _trials(home, "tpe")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    lrs = []
    for t in trials:
        assert t.params["seed"] == 3 and t.user_attrs["seed"] == 3
        assert t.system_attrs["fixed_params"] == {"seed": 3}  # enqueued, as a grid cell's levels are
        assert t.distributions == {"optim.lr": FloatDistribution(0.0001, 0.01, log=True),
                                   "seed": CategoricalDistribution([3])}
        lrs.append(t.params["optim.lr"])
    runs = sorted(_runs(home, "tpe")[1], key=lambda r: r.info.start_time)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [r.data.params["train.seed"] for r in children] == ["3", "3"]
    assert sorted(float(r.data.params["optim.lr"]) for r in children) == pytest.approx(sorted(lrs))


def _complete_cells(home: Path) -> list[tuple[str, int]]:
    done = [(t.user_attrs["arm"], t.user_attrs["seed"]) for t in _trials(home) if t.state.name == "COMPLETE"]
    assert len(done) == len(set(done)), done  # no cell finished twice
    return sorted(done)


def _replayed(home: Path, min_effect: float) -> set[tuple[str, int]]:
    """The cells the decisions want, replayed by hand from the finished values."""
    from ablation.decision import SeedDesign, extents

    values = {(t.user_attrs["arm"], t.user_attrs["seed"]): t.value for t in _trials(home) if t.state.name == "COMPLETE"}
    ext = extents(["depth=1", "depth=2"], "depth=1", [0, 1, 2], values, SeedDesign(2, 3, True), min_effect, True)
    return {(arm, seed) for arm, n in ext.items() for seed in range(n)}


ADAPTIVE = MINI.replace("seeds = [0, 1]", "seeds = {{ min = 2, max = 3 }}\nmin_effect = {min_effect}")


def _complete_cells(home: Path) -> list[tuple[str, int]]:
    done = [(t.user_attrs["arm"], t.user_attrs["seed"]) for t in _trials(home) if t.state.name == "COMPLETE"]
    assert len(done) == len(set(done)), done  # no cell finished twice
    return sorted(done)


def _replayed(home: Path, min_effect: float) -> set[tuple[str, int]]:
    """The cells the decisions want, replayed by hand from the finished values."""
    from ablation.decision import SeedDesign, extents

    values = {(t.user_attrs["arm"], t.user_attrs["seed"]): t.value for t in _trials(home) if t.state.name == "COMPLETE"}
    ext = extents(["depth=1", "depth=2"], "depth=1", [0, 1, 2], values, SeedDesign(2, 3, True), min_effect, True)
    return {(arm, seed) for arm, n in ext.items() for seed in range(n)}


def test_adaptive_seeds_stop_at_a_decision(home, capsys):
    # a margin of 0.9 accuracy: two paired seeds show the arms equivalent, so no seed is added
    (home / "studies" / "mini.toml").write_text(ADAPTIVE.format(epochs=1, min_effect=0.9))
    assert main(["run", "mini", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "adaptive seeds 2 to 3: 4 of up to 6 cells wanted so far" in out
    assert _complete_cells(home) == [("depth=1", 0), ("depth=1", 1), ("depth=2", 0), ("depth=2", 1)]
    assert len(_trials(home)) == 4  # nothing else was enqueued
    md = (home / "reports" / "mini.md").read_text()
    assert '"decisions": {"depth=2": "equivalent"}' in md and "4 / 4 cells done" in md and "Missing cells" not in md
    assert "adaptive seeds: looks after 2 to 3 paired seeds" in md and "Lan-DeMets" in md
    assert main(["status", "mini"]) == 0
    assert re.search(r"depth=2\s+equivalent\s+2 ", capsys.readouterr().out)


@pytest.mark.slow
def test_adaptive_seeds_grow_while_undecided_and_resume_after_sigkill(home):
    # a margin too small to show equivalence: seeds are added while the arms are undecided, up to max
    m = 1e-9
    (home / "studies" / "mini.toml").write_text(ADAPTIVE.format(epochs=1, min_effect=m))
    proc = _subprocess(home)
    deadline, killed = time.time() + 240, False
    while time.time() < deadline and not killed and proc.poll() is None:
        time.sleep(0.2)
        try:
            trials = _trials(home)
        except Exception:
            continue
        if any(t.state.name == "RUNNING" and t.user_attrs.get("seed", 0) >= 2 for t in trials):
            os.kill(proc.pid, signal.SIGKILL)  # killed inside an added seed's cell
            killed = True
    proc.wait(timeout=30)
    assert _cli("mini") == 0
    done = set(_complete_cells(home))
    assert done == _replayed(home, m)  # exactly the cells the decisions want, each once
    seeds = {arm: sum(a == arm for a, _ in done) for arm in ("depth=1", "depth=2")}
    values = dict(_values(home))
    d = np.array([values[("depth=2", s)] - values[("depth=1", s)] for s in range(seeds["depth=2"])])
    from ablation.decision import SeedDesign, compare

    c = compare({"depth=2": d}, m, design=SeedDesign(2, 3, True))["depth=2"]
    assert seeds["depth=1"] == seeds["depth=2"] and c.n == seeds["depth=2"]
    assert c.decision != "undecided" or seeds["depth=2"] == 3  # stopped at its decision, or at max
    if seeds["depth=2"] == 3:  # a seed was added, and the worker was killed inside it
        assert killed and len(_trials(home)) == 7  # 6 cells, the killed one run again once
    assert _cli("mini") == 0 and set(_complete_cells(home)) == done  # a re-run adds nothing


def _values(home: Path):
    return [((t.user_attrs["arm"], t.user_attrs["seed"]), t.value) for t in _trials(home) if t.state.name == "COMPLETE"]


def test_runs_show_their_datasets_and_the_parent_describes_the_study(home):
    import statistics

    from ablation.data.sources import load_dataset

    assert main(["run", "mini", "--jobs", "1"]) == 0  # with the report
    c, runs = _runs(home)
    (parent,) = [r for r in runs if r.data.tags.get("ablation.kind") == "study"]
    cells = [r for r in runs if r.data.tags.get("ablation.kind") == "cell"]
    fingerprint = load_dataset("synthphone:tiny").fingerprint
    for r in cells:
        cut = "seed" + r.data.tags["ablation.seed"]
        inputs = {d.dataset.name.removesuffix("@" + cut): d for d in r.inputs.dataset_inputs}
        assert set(inputs) == {"synthphone:tiny/train", "synthphone:tiny/val", "synthphone:tiny/test"}
        contexts = {name: {t.key: t.value for t in d.tags}["mlflow.data.context"] for name, d in inputs.items()}
        assert contexts["synthphone:tiny/train"] == "training" and contexts["synthphone:tiny/val"] == "validation"
        sizes = json.loads(r.data.tags["ablation.data.sizes"])
        assert all(d.dataset.digest == fingerprint for d in inputs.values())
        assert json.loads(inputs["synthphone:tiny/train"].dataset.profile) == sizes["train"]
        assert json.loads(inputs["synthphone:tiny/val"].dataset.profile) == sizes["val"]
        assert r.data.tags["mlflow.source.git.commit"] == parent.data.tags["mlflow.source.git.commit"]
    # the parent: the question as its description, per-arm summaries, the report, a duration over the study
    assert parent.data.tags["mlflow.note.content"].startswith("Is a 2-layer MLP better")
    assert len(parent.data.tags["mlflow.source.git.commit"]) >= 7
    for arm in ("depth=1", "depth=2"):
        accs = [r.data.metrics["val.acc"] for r in cells if r.data.tags["ablation.arm"] == arm]
        key = "arm/depth_" + arm[-1] + "/val.acc"
        assert parent.data.metrics[key + ".mean"] == pytest.approx(statistics.fmean(accs))
        assert parent.data.metrics[key + ".std"] == pytest.approx(statistics.stdev(accs))
        assert parent.data.metrics["arm/depth_" + arm[-1] + "/seeds"] == 2
    assert parent.info.end_time >= max(r.info.end_time for r in cells)
    assert parent.info.start_time <= min(r.info.start_time for r in cells)
    artifacts = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"study.toml", "report"} <= artifacts
    report = {a.path for a in c.list_artifacts(parent.info.run_id, "report")}
    assert "report/mini.md" in report and "report/mini" in report
    assert any(a.path.endswith(".png") for a in c.list_artifacts(parent.info.run_id, "report/mini"))
    # the verdict and each arm's decision, as the report pipeline computes them, are the parent's tags
    from ablation.report import analyse, load_study as load_runs

    a = analyse(load_runs("mini"))
    tags = parent.data.tags
    assert tags["ablation.verdict"] == a.verdict.sentence and a.verdict.sentence in (home / "reports" / "mini.md").read_text()
    assert tags["ablation.verdict.cells"] == "4/4"
    assert tags["ablation.decision.depth_2"] == a.decisions["depth=2"].decision
    assert tags["ablation.decision.depth_2"] in ("better", "worse", "equivalent", "undecided")
    assert not any(k.startswith("ablation.decision.depth_1") for k in tags)  # the baseline is not compared with itself
