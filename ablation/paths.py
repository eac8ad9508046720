"""Where the project keeps its files. Everything lives in the project folder
(``mlruns/``, ``reports/``) or the user's cache (generated corpora)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def project_dir() -> Path:
    """The project root: $ABLATION_HOME if set, else the checkout holding the package."""
    return Path(os.environ.get("ABLATION_HOME", PROJECT_DIR)).resolve()


def mlruns_dir() -> Path:
    return project_dir() / "mlruns"


def experiments_dir() -> Path:
    return project_dir() / "experiments"


def studies_dir() -> Path:
    return project_dir() / "studies"


def reports_dir() -> Path:
    return project_dir() / "reports"


def cache_dir() -> Path:
    """Generated corpora: $ABLATION_CACHE, else $XDG_CACHE_HOME/ablation, else ~/.cache/ablation."""
    if "ABLATION_CACHE" in os.environ:
        return Path(os.environ["ABLATION_CACHE"]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return (base / "ablation").resolve()
