"""Project-wide fixtures: generated corpora go to one temporary cache per test
session (so a corpus is generated once and reused; each pytest-xdist worker is
a session of its own), and no test reads the user's MLflow settings. Tests
that log runs ask for ``tracking_uri``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# one thread: the suite shares small machines, and results stay bit-for-bit repeatable
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    # session scope, so module-scoped fixtures (built before any function
    # fixture) already see it
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATION_CACHE", str(tmp_path_factory.mktemp("ablation-cache")))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory):
    """An empty, migrated SQLite store, made once: creating one costs about a
    second, copying it nothing."""
    from ablation import tracking

    db = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    tracking.client(f"sqlite:///{db}")
    return db


@pytest.fixture(scope="session")
def isolated_store(_empty_store):
    """``isolated_store(root, monkeypatch) -> uri``: a fresh store under ``root``
    with its artifacts beside it (``tracking.artifact_root``), not under the
    project's mlruns/ (for module-scoped fixtures, which cannot use
    ``tracking_uri``)."""
    from ablation import tracking

    def make(root, mp: pytest.MonkeyPatch) -> str:
        db = root / "mlflow.db"
        shutil.copyfile(_empty_store, db)
        return f"sqlite:///{db}"

    return make


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch, isolated_store) -> str:
    """A fresh store for one test."""
    return isolated_store(tmp_path, monkeypatch)


@pytest.fixture
def poison_forward():
    """``poison_forward(monkeypatch, call, make)``: the ``call``-th training
    forward (1-based) of the next models built returns ``make(output)``."""
    from ablation import train

    def install(monkeypatch, call: int, make):
        real, seen = train.build_model, {"n": 0}

        def build_model(cfg, n_classes, frame_dim=39):
            model, kwargs = real(cfg, n_classes, frame_dim)
            forward = model.forward

            def poisoned(*args, **kw):
                out = forward(*args, **kw)
                if model.training:
                    seen["n"] += 1
                    if seen["n"] == call:
                        return make(out)
                return out

            model.forward = poisoned
            return model, kwargs

        monkeypatch.setattr(train, "build_model", build_model)

    return install


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A project folder of its own: the shipped experiments, an empty ``studies/`` (``mlruns/`` comes
    with the first run), and no tracking or storage setting from the environment. A module whose
    tests need more (a study written in, a shorter grace period) defines its own ``home``."""
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    (tmp_path / "studies").mkdir()
    monkeypatch.setenv("ABLATION_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ABLATION_STORAGE", raising=False)
    return tmp_path
