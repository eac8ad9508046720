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
