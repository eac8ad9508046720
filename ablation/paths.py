"""Where the project keeps its files. Everything lives in the project folder
(``mlruns/``, ``reports/``) or the user's cache (generated corpora).

The project folder is found as git finds a repository: ``$ABLATION_HOME``
(which ``--project`` sets) if given, else the nearest folder from the current
one upwards holding ``ablation.toml`` (what ``ablation init`` writes), else
the checkout holding the package. The checkout's own experiments and studies
(the built-in ones) stay available by name from any project; a project's file
of the same name wins.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent  # the checkout: the built-in experiments/ and studies/
MARKER = "ablation.toml"


def find_project(start: Path) -> Path | None:
    """The nearest folder from ``start`` upwards holding the marker file, if any."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / MARKER).is_file():
            return folder
    return None


def project_dir() -> Path:
    """The project root: $ABLATION_HOME, else the nearest project above the
    current folder, else the checkout holding the package."""
    if "ABLATION_HOME" in os.environ:
        return Path(os.environ["ABLATION_HOME"]).expanduser().resolve()
    return find_project(Path.cwd()) or PROJECT_DIR


def mlruns_dir() -> Path:
    return project_dir() / "mlruns"


def experiments_dir() -> Path:
    return project_dir() / "experiments"


def studies_dir() -> Path:
    return project_dir() / "studies"


def reports_dir() -> Path:
    return project_dir() / "reports"


def models_dir() -> Path:
    """The project's own model families: every ``*.py`` here is imported."""
    return project_dir() / "models"


def cache_dir() -> Path:
    """Generated corpora: $ABLATION_CACHE, else $XDG_CACHE_HOME/ablation, else ~/.cache/ablation."""
    if "ABLATION_CACHE" in os.environ:
        return Path(os.environ["ABLATION_CACHE"]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return (base / "ablation").resolve()


# ---- named experiment and study files: the project's, then the built-in ones --
def _folders(kind: str) -> tuple[Path, Path | None]:
    """(the project's folder of ``kind``, the built-in one unless it is the same folder)."""
    sub = {"experiment": "experiments", "study": "studies"}[kind]
    own, builtin = project_dir() / sub, PROJECT_DIR / sub
    return own, (None if own.resolve() == builtin.resolve() else builtin)


def names(kind: str) -> list[str]:
    """Every ``kind`` ('experiment' or 'study') known by name: the project's and the built-in ones."""
    out: set[str] = set()
    for folder in _folders(kind):
        if folder is not None:
            out.update(p.stem for p in folder.glob("*.toml"))
    return sorted(out)


_ANNOUNCED: set[Path] = set()


def find_named(name_or_path: str | Path, kind: str, error: type[Exception]) -> Path:
    """``NAME`` (the project's ``NAME.toml``, else the built-in one) or a path
    to a ``.toml`` file -> an existing path; otherwise ``error`` with one line
    listing the known names and suggesting the closest."""
    from ablation.errors import closest

    p = Path(name_or_path).expanduser()
    own, builtin = _folders(kind)
    mine = sorted(f.stem for f in own.glob("*.toml"))
    theirs = sorted(f.stem for f in builtin.glob("*.toml")) if builtin is not None else []
    known = ", ".join(mine) or "none"
    if builtin is not None:
        known += f"; built-in: {', '.join(theirs) or 'none'}"
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise error(f"{kind} file {p} does not exist; known: {known}")
        return p
    for folder in (own, builtin):
        candidate = folder / f"{p.name}.toml" if folder is not None else None
        if candidate is not None and candidate.is_file():
            _announce(kind, p.name, candidate, builtin / f"{p.name}.toml" if folder is own and builtin else None)
            return candidate
    raise error(f"unknown {kind} '{name_or_path}'{closest(str(name_or_path), mine + theirs)}; known: {known}")


def _announce(kind: str, name: str, path: Path, builtin: Path | None) -> None:
    # a project's file that hides a different built-in one of the same name is said once, so
    # nobody reads the built-in study's question into their own study's report; a plain copy
    # changes nothing and is not worth a line
    if builtin is None or path in _ANNOUNCED or not builtin.is_file():
        return
    if path.read_bytes() != builtin.read_bytes():
        _ANNOUNCED.add(path)
        print(f"{kind} '{name}': this project's {path} (not the built-in one of the same name)")


def find_experiment(name_or_path: str | Path) -> Path:
    from ablation.errors import ConfigError

    return find_named(name_or_path, "experiment", ConfigError)


def find_study(name_or_path: str | Path) -> Path:
    from ablation.errors import StudyError

    return find_named(name_or_path, "study", StudyError)
