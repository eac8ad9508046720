"""What a command can refuse before it imports torch or MLflow (seconds on a busy machine).

A local store is a SQLite file: whether it holds a study or a run is one
read-only query, with Python's own ``sqlite3``. Anything these checks cannot
tell (a remote store, a schema they do not know) is left to the command's own
check after the imports, so they only ever make a refusal faster, never a
different one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ablation.errors import AblationError, closest
from ablation.tags import TAG

# the experiments holding a study's parent run, as ``tracking.study_names`` finds them
_STUDIES = f"""
SELECT DISTINCT e.name FROM experiments e
JOIN runs r ON r.experiment_id = e.experiment_id
JOIN tags t ON t.run_uuid = r.run_uuid
WHERE t.key = '{TAG}kind' AND t.value = 'study' AND e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active'
"""


class UnknownInStore(AblationError):
    """A study or run the tracking store does not hold."""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; ``None`` for any other store."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix):]) if uri.startswith(prefix) else None


def _query(db: Path, sql: str, args: tuple = ()) -> list[tuple] | None:
    """Rows of a read-only query; ``None`` when the file cannot answer it."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.Error:
        return None
    finally:
        con.close()


def study_names(uri: str) -> list[str] | None:
    """The studies a local store holds (none when it does not exist yet); ``None``: not known without MLflow."""
    db = sqlite_file(uri)
    if db is None:
        return None
    if not db.exists():
        return []
    rows = _query(db, _STUDIES)
    return None if rows is None else sorted(r[0] for r in rows)


def check_study(name: str, uri: str) -> None:
    """Refuse a study the local store does not hold, with the message the report's own check gives."""
    known = study_names(uri)
    if known is None or name in known:
        return
    raise UnknownInStore(f"no study '{name}' in tracking store {uri}{closest(name, known)}; "
                         f"known studies: {', '.join(known) or 'none'}; "
                         f"run 'python -m ablation run {name}' first or pass the right --tracking-uri")


def check_run(run_id: str, uri: str) -> None:
    """Refuse a run id the local store does not hold, with the message ``predict``'s own check gives."""
    db = sqlite_file(uri)
    if db is None:
        return
    rows = [] if not db.exists() else _query(db, "SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,))
    if rows == []:
        raise UnknownInStore(f"run '{run_id}' is not in the tracking store {uri}; find run ids with `ablation ui`")


# the message ``sources`` gives for a folder that does not exist (it imports torch: not called from here)
_MISSING = {"libriphone": "libriphone folder {} does not exist; pass the folder holding train_split.txt",
            "timit11": "timit11 folder {} does not exist; pass the folder holding train_11.npy"}


def check_data(spec: str) -> None:
    """Refuse an unknown synthphone preset, or a data folder that does not exist; any other mistake in
    ``spec`` is left to ``sources.parse_spec``."""
    scheme, _, arg = str(spec).partition(":")
    if scheme == "synthphone" and arg:
        from ablation.data import synthphone

        synthphone.resolve(arg)
    elif scheme in _MISSING and arg:
        path = Path(arg).expanduser().resolve()
        if not path.exists():
            from ablation.errors import DataError

            raise DataError(_MISSING[scheme].format(path))
