"""The ``[postgres]`` extra and a ``postgresql://`` URL work together: the
extra installs psycopg 3, the driver SQLAlchemy 2.1 picks for that scheme
(psycopg2 was an ImportError). No server is needed: creating an engine
imports its driver."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_postgres_extra_installs_the_driver_postgresql_urls_use():
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["postgres"]
    names = [r.split("[")[0].split(">")[0].split("=")[0].strip() for r in extra]
    assert names == ["psycopg"]
    pytest.importorskip("psycopg", reason="the [postgres] extra is not installed")
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql://u:p@127.0.0.1:9/db")  # imports the driver, connects to nothing
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_the_optuna_storage_opens_a_postgresql_url_without_an_import_error(monkeypatch):
    pytest.importorskip("psycopg", reason="the [postgres] extra is not installed")
    from ablation.errors import TrackingError
    from ablation.study import engine

    # port 9 (discard) refuses: the error is the connection's, one line, never a missing driver
    with pytest.raises(TrackingError) as err:
        engine.open_storage("postgresql://u:p@127.0.0.1:9/db")
    msg = str(err.value)
    assert "\n" not in msg and "OperationalError" in msg and "ImportError" not in msg and "psycopg2" not in msg, msg
