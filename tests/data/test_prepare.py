"""A study's corpora and ceilings are prepared once, before any cell: cells and later studies only read them."""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

import pytest

from ablation.cli import main
from ablation.data import synthphone

REPO = Path(__file__).resolve().parents[2]

STUDY = """
question = "Does {factor} change anything on the tiny corpus?"
base = "mlp_strong"
seeds = [0]
[factors]
"{factor}" = {levels}
[set]
"train.epochs" = 1
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.width" = 32
"model.depth" = 1
{extra}"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "context.toml").write_text(STUDY.format(factor="features.n_concat", levels="[3, 5]",
                                                                    extra=""))
    # the second study's arms see 5 frames: a view the first one prepared
    (tmp_path / "studies" / "drop.toml").write_text(STUDY.format(factor="model.dropout", levels="[0.0, 0.5]",
                                                                 extra='"features.n_concat" = 5\n'))
    monkeypatch.setenv("ABLATION_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ABLATION_STORAGE", raising=False)
    return tmp_path


def test_ceilings_are_computed_before_the_cells_and_a_second_study_computes_none(home, monkeypatch):
    from ablation.data import ceiling

    calls = []
    real = ceiling._hits_in_parallel

    def counted(cfg, views, n_utts, jobs, **kw):  # every count of hits passes here, in whichever process
        stack = [f.name for f in traceback.extract_stack()]
        calls.append((sorted(v.key for v in views), "_count" in stack, "log_result" in stack))
        return real(cfg, views, n_utts, jobs, **kw)

    monkeypatch.setattr(ceiling, "_hits_in_parallel", counted)
    assert main(["run", "context", "--jobs", "1", "--no-report"]) == 0
    # both arms' views at once, for every utterance, counted from the start of `run` (``EarlyHits._count``),
    # before the cells; none while a cell logs
    assert calls == [(["window:3", "window:5"], True, False)]
    assert main(["run", "drop", "--jobs", "1", "--no-report"]) == 0
    assert len(calls) == 1  # the second study on the corpus computes no ceiling
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
    for name in ("context", "drop"):
        runs = c.search_runs([c.get_experiment_by_name(name).experiment_id], "tags.`ablation.kind` = 'cell'")
        assert len(runs) == 2
        assert all(0.5 < r.data.metrics["ceiling.arm.val_acc"] < r.data.metrics["ceiling.val_acc"] for r in runs)


def test_the_corpus_is_generated_while_its_hits_are_counted(cache_dir, monkeypatch):
    """An empty cache: generation runs beside the hits (their spans overlap), and both land in the cache."""
    import threading
    import time

    from ablation.config import load_experiment
    from ablation.data import cache, ceiling

    spans, calls = {}, []
    real_generate, real_hits = synthphone.generate, synthphone.information_hits

    def timed(name, fn):
        def run(*args, **kwargs):
            start = time.monotonic()
            out = fn(*args, **kwargs)
            time.sleep(0.5)  # long enough that the other one, running beside it, starts meanwhile
            spans[name] = (start, time.monotonic(), threading.get_ident())
            calls.append(name)
            return out

        return run

    monkeypatch.setattr(synthphone, "generate", timed("generate", real_generate))
    monkeypatch.setattr(synthphone, "information_hits", timed("hits", real_hits))
    cfg = load_experiment("mlp_strong", ["data.source=synthphone:tiny", "features.n_concat=3"])
    cache.prepare([cfg], jobs=1)
    (g0, g1, g_thread), (h0, h1, h_thread) = spans["generate"], spans["hits"]
    assert g_thread != h_thread and g0 < h1 and h0 < g1  # two threads, at the same time
    folder = synthphone.cache_folder(synthphone.resolve("tiny"))
    assert synthphone.load("tiny").pool.n_frames > 0 and calls.count("generate") == 1  # read back from the cache
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".ceiling-hits.json.lock", ceiling.HITS_FILE, "index.json", "pool.npz", "test.npz"])
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left
    hits = cache.read_json(folder / ceiling.HITS_FILE)["hits"]
    assert list(hits) == ["window:3"] and sum(hits["window:3"]) > 0


@pytest.mark.parametrize("preset", ["tiny", "tiny-v2"])
def test_a_sample_s_utterances_are_its_draw_s_without_drawing_paths(preset):
    from ablation.data import synthphone2

    cfg = synthphone.resolve(preset)
    d = synthphone2.draw(cfg) if cfg.version == 2 else synthphone._draw(cfg)[0]
    ids, lengths = synthphone.utterances(cfg)
    assert ids == tuple(d.utt_ids) and lengths.tolist() == [int(n) for n in d.lengths]


def test_hits_being_counted_end_at_once_when_a_stop_is_asked_for(tmp_path, monkeypatch):
    """A stop kills the counting processes and stores nothing: it does not wait for their work to finish."""
    import os
    import threading
    import time

    from ablation.data import ceiling

    started = tmp_path / "started"

    def slow(cfg, views, which=None):  # a process's share that would take a minute
        with open(started, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(60)
        raise AssertionError("a stopped process must not finish its share")

    monkeypatch.setattr(synthphone, "information_hits", slow)
    cfg, stop, ended = synthphone.resolve("tiny"), threading.Event(), {}

    def count():
        try:
            ceiling._hits_in_parallel(cfg, [ceiling.View("window", 3)], 10, 2, context="fork", stop=stop)
        except ceiling.HitsStopped as e:
            ended["stopped"] = (time.monotonic(), e)

    thread = threading.Thread(target=count)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(started.read_text().split() if started.exists() else []) < 2:
        time.sleep(0.05)
    pids = [int(p) for p in started.read_text().split()]
    asked = time.monotonic()
    stop.set()
    thread.join(30)
    assert "stopped" in ended and ended["stopped"][0] - asked < 5  # seconds, not the minute of work
    for pid in pids:  # every process of the pool is gone, the one killed and the ones the pool then ended
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_hits_counted_early_are_the_ones_prepare_then_finds(cache_dir, monkeypatch):
    from ablation.config import load_experiment
    from ablation.data import cache, ceiling

    cfgs = [load_experiment("mlp_strong", ["data.source=synthphone:tiny", f"features.n_concat={n}"]) for n in (3, 5)]
    early = cache.count_hits_early(cfgs, jobs=2)
    assert early is not None
    early.wait()
    folder = synthphone.cache_folder(synthphone.resolve("tiny"))
    hits = cache.read_json(folder / ceiling.HITS_FILE)["hits"]
    assert sorted(hits) == ["window:3", "window:5"] and all(sum(h) > 0 for h in hits.values())
    monkeypatch.setattr(synthphone, "information_hits", None)  # prepare counts nothing: it reads them
    cache.prepare(cfgs, jobs=2)
    assert cache.count_hits_early(cfgs, jobs=2) is None  # nothing left to count early either
    assert synthphone.load("tiny").pool.n_frames > 0


class _Recorder:
    def __init__(self, calls):
        self.calls = calls

    def wait(self):
        self.calls.append("wait")

    def stop(self):
        self.calls.append("stop")


def test_run_waits_for_the_hits_counted_early_and_a_refusal_stops_them(home, monkeypatch, capsys):
    from ablation import experiment
    from ablation.data import cache
    from ablation.errors import DataError

    calls = []
    monkeypatch.setattr(cache, "count_study_hits_early", lambda study, jobs: _Recorder(calls))
    real_prepare = cache.prepare_study
    monkeypatch.setattr(cache, "prepare_study", lambda study, jobs: calls.append("prepare") or real_prepare(study, jobs))
    assert main(["run", "context", "--jobs", "1", "--no-report"]) == 0
    assert calls == ["wait", "prepare", "stop"]  # waited for before the cells; stop after the wait does nothing

    calls.clear()

    def refuse(cfg, ds):
        raise DataError("the cells need what the data lacks")

    monkeypatch.setattr(experiment, "check_compatible", refuse)
    assert main(["run", "drop", "--jobs", "1", "--no-report"]) == 2
    assert calls == ["stop"]  # refused while the corpus was checked: the counting ends with the run
    assert "the cells need what the data lacks" in capsys.readouterr().err
