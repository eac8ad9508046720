"""Kinds of study, registered as model families are (``register_kind``, as
``ablation.models.register_model``): ``grid`` (every declared arm at every
seed, fixed or adaptive seeds, fixed or converged training), ``search`` (a
TPE search over ``[search]``) and ``tuned`` (an equal tuning budget per arm,
then confirmation runs). A study file selects its kind with the key its kind
declares (``sampler = "tpe"``, ``protocol = "tuned"``); ``grid`` otherwise.

A new kind is one module here that subclasses ``Kind`` and registers itself,
one report kind in ``ablation.report.kinds``, and tests.
"""

from __future__ import annotations

from ablation.study.kinds.base import Kind
from ablation.study.kinds.registry import get_kind, kind_of, list_kinds, register_kind

__all__ = ["Kind", "register_kind", "get_kind", "list_kinds", "kind_of"]

# the built-in kinds register themselves on import
from ablation.study.kinds import grid, search, tuned  # noqa: E402,F401
