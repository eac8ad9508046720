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
    calls = []
    real = synthphone.information_hits

    def counted(cfg, views, which=None):
        stack = [f.name for f in traceback.extract_stack()]
        calls.append((sorted(v.key for v in views), "prepare_study" in stack, "log_result" in stack))
        return real(cfg, views, which)

    monkeypatch.setattr(synthphone, "information_hits", counted)
    assert main(["run", "context", "--jobs", "1", "--no-report"]) == 0
    # both arms' views at once, for every utterance, before the cells; none while a cell logs
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
