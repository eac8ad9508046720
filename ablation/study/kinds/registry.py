"""The registry of kinds of study (``ablation.study.kinds``)."""

from __future__ import annotations

from pathlib import Path

from ablation.errors import StudyError, closest
from ablation.study.kinds.base import Kind, refuse_foreign_sections
from ablation.study.spec import StudySpec

_KINDS: dict[str, Kind] = {}


def register_kind(cls: type[Kind]) -> type[Kind]:
    """Class decorator: make a kind of study available by its ``name``."""
    if not cls.name or cls.name in _KINDS:
        raise ValueError(f"kind of study {cls.__name__} needs a name of its own, got {cls.name!r}")
    _KINDS[cls.name] = cls()
    return cls


def list_kinds() -> list[str]:
    return list(_KINDS)


def get_kind(name: str) -> Kind:
    if name not in _KINDS:
        raise StudyError(f"unknown kind of study '{name}'{closest(name, list(_KINDS))}; known: {', '.join(_KINDS)}")
    return _KINDS[name]


def kind_of(spec: StudySpec, path: Path) -> Kind:
    """The kind a study file selects (the default one when no selector is set);
    the kind's foreign sections are refused here."""
    chosen = [k for k in _KINDS.values() if k.selects(spec)]
    if len(chosen) > 1:
        keys = " and ".join(f'{k.selector[0]} = "{k.selector[1]}"' for k in chosen)
        raise StudyError(f"{path}: {keys} select different kinds of study ({', '.join(k.name for k in chosen)}); "
                         "drop one")
    kind = chosen[0] if chosen else next(k for k in _KINDS.values() if k.selector is None)
    refuse_foreign_sections(kind, spec, path, list(_KINDS.values()))
    return kind
