"""A user's project, made by ``ablation init`` in a temporary folder outside
the checkout and found from the current folder (no ABLATION_HOME)."""

from __future__ import annotations

import pytest

from ablation.commands.init import create


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    create(root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("ABLATION_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ABLATION_STORAGE", raising=False)
    yield root
    from ablation.models import registry

    registry._forget_user_families()  # the next test's project registers its own
