"""`ablation init DIR`: a project folder of the user's own, with one example
family (models/classifier.py), its experiment and a study of it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "project"
# files shipped under another name: a package holding a file called .gitignore would apply it to itself
RENAMED = {"gitignore": ".gitignore"}


def register(sub) -> None:
    p = sub.add_parser("init", help="create a project folder (experiments, studies, models, reports)",
                       description="Write a small commented project into DIR: an example model family, "
                                   "an experiment and a study of it. Commands run inside DIR then use it.")
    p.add_argument("dir", metavar="DIR", help="the folder to create (or an empty one)")
    p.set_defaults(func=run)


def files() -> dict[Path, str]:
    """The project's files, relative to its folder, and their text."""
    out = {}
    for src in sorted(TEMPLATE.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            rel = src.relative_to(TEMPLATE)
            out[rel.with_name(RENAMED.get(rel.name, rel.name))] = src.read_text(encoding="utf-8")
    return out


def create(folder: Path) -> list[Path]:
    """Write the project into ``folder`` (missing or empty); return the files written."""
    from ablation.errors import ConfigError

    folder = Path(folder).expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} already exists and is not an empty folder; choose a new one for the project")
    # built beside the folder and renamed into place: a failure leaves nothing half-written
    tmp = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    try:
        for rel, text in files().items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text, encoding="utf-8")
        (tmp / "reports").mkdir()
        if folder.is_dir():
            folder.rmdir()  # empty, checked above
        tmp.rename(folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot write the project into {folder}: {e.strerror}; choose a writable folder") from None
    return [folder / rel for rel in files()]


def run(args) -> int:
    folder = Path(args.dir)
    written = create(folder)
    print(f"created the project {folder.resolve()}:")
    for path in written:
        print(f"  {path.relative_to(folder.resolve())}")
    print(f"next: cd {args.dir} && python -m ablation run classifier_depth")
    return 0
