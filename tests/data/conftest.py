import pytest

from ablation.data import synthphone


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test in tests/data writes generated corpora to its own empty cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("ABLATION_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """``synthphone.load("tiny")``, generated once per session into a session cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATION_CACHE", str(tmp_path_factory.mktemp("tiny_cache")))
        return synthphone.load("tiny")
