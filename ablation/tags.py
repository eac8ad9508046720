"""The tags of a study's MLflow runs: one schema, written by the runner and read
by the report through the same code.

MLflow tags are strings. Each field below knows its key and its encoding
(JSON for lists and tables, ``""`` for none), so renaming a key or changing an
encoding changes the writer and the reader together; the report's test
fixtures are built with these classes too, so they cannot drift from it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ablation.errors import AblationError

TAG = "ablation."

# keys (without the ``ablation.`` prefix) that more than one place filters or selects on
KIND = "kind"
STUDY = "study"
STUDY_HASH = "study.hash"
ARM = "arm"
ARM_LEVELS = "arm.levels"
SEED = "seed"
TRIAL = "trial"
BASELINE = "baseline"
PRUNED = "pruned"
WORKER = "worker"
PHASE = "phase"
ERROR = "error"
DATA_SOURCE = "data.source"
DATA_FINGERPRINT = "data.fingerprint"
DATA_SIZES = "data.sizes"
CEILING_VIEW = "ceiling.view"
VERDICT = "verdict"  # the parent run's verdict sentence, from the report's analysis
VERDICT_CELLS = "verdict.cells"  # the cells it was computed from ("4/4")
DECISION = "decision."  # + arm: better, worse, equivalent or undecided vs the baseline
BEST_ARM = "study.best_arm"
CELLS_FINISHED = "study.cells_finished"
BUDGET_CHECK = "study.budget_check"  # the parent run's budget check: unchanged, changed or not run

# the values of the ``phase`` tag of a tuned study's runs
PHASE_TUNING, PHASE_CONFIRM = "tuning", "confirm"
# a budget check's retraining of a cell at a longer cap: never evidence of the comparison
PHASE_BUDGET = "budget"


class TagError(AblationError):
    """A run's tag does not decode as its schema says."""


def key(name: str) -> str:
    """The full MLflow tag key: ``arm`` -> ``ablation.arm``."""
    return TAG + name


def column(name: str) -> str:
    """The column ``mlflow.search_runs`` gives that tag: ``tags.ablation.arm``."""
    return "tags." + TAG + name


def _encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _decode(kind: str, text: str, name: str) -> Any:
    if kind == "str":
        return text
    text = text.strip()
    if kind == "bool":
        return text.lower() == "true"
    if kind in ("json_list", "json_dict"):
        if not text:
            return [] if kind == "json_list" else {}
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise TagError(f"tag {key(name)} is not JSON ({text[:60]!r})") from None
    if not text:
        return None
    try:
        return int(float(text)) if kind in ("int", "opt_int") else float(text)
    except ValueError:
        raise TagError(f"tag {key(name)} is not a number ({text[:60]!r})") from None


def _field(tag: str, kind: str, default: Any = "", **kw):
    factory = {"json_list": list, "json_dict": dict}.get(kind)
    meta = {"tag": tag, "kind": kind}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def _tagged(cls_or_obj) -> list:
    """The fields that are tags (a subclass may add fields of its own, such as where it was read from)."""
    return [f for f in fields(cls_or_obj) if "tag" in f.metadata]


class _Schema:
    """Shared encode/decode of a tag dataclass; ``_kind`` is its ``ablation.kind``."""

    _kind = ""

    def to_tags(self) -> dict[str, str]:
        out = {key(KIND): self._kind}
        for f in _tagged(self):
            out[key(f.metadata["tag"])] = _encode(getattr(self, f.name))
        return out

    @classmethod
    def from_tags(cls, tags: Mapping[str, Any]):
        """Decode from a mapping of full tag keys (``ablation.arm``) to values;
        a missing tag takes the field's default."""
        values = {}
        for f in _tagged(cls):
            raw = tags.get(key(f.metadata["tag"]))
            if raw is None or (isinstance(raw, float) and math.isnan(raw)):
                continue
            decoded = _decode(f.metadata["kind"], str(raw), f.metadata["tag"])
            if decoded is not None:
                values[f.name] = decoded
        return cls(**values)


@dataclass(frozen=True)
class StudyTags(_Schema):
    """The study's parent run: what the report says about the study as a whole."""

    _kind = "study"
    study: str = _field(STUDY, "str")
    hash: str = _field(STUDY_HASH, "str")
    question: str = _field("study.question", "str")
    base: str = _field("study.base", "str")
    factors: list = _field("study.factors", "json_list")
    arms: list = _field("study.arms", "json_list")
    arm_levels: dict = _field("study.arm_levels", "json_dict")
    baseline_arm: str = _field("study.baseline_arm", "str")
    metric: str = _field("study.metric", "str", "val.acc")
    direction: str = _field("study.direction", "str", "maximize")
    seeds: list = _field("study.seeds", "json_list")
    scale: str = _field("study.scale", "str")
    sampler: str = _field("study.sampler", "str")
    param_budget: int | None = _field("study.param_budget", "opt_int", None)
    budget_tolerance: float = _field("study.budget_tolerance", "float", 0.01)
    cells_total: int | None = _field("study.cells_total", "opt_int", None)
    min_effect: float | None = _field("study.min_effect", "float", None)
    seed_design: dict = _field("study.seed_design", "json_dict")  # {"min": 3, "max": 10} when adaptive
    command: str = _field("study.command", "str")
    data_source: str = _field(DATA_SOURCE, "str")
    data_fingerprint: str = _field(DATA_FINGERPRINT, "str")
    data_sizes: dict = _field(DATA_SIZES, "json_dict")
    git_commit: str = _field("git.commit", "str")
    # how the arms were trained (ablation.study.kinds): fixed, converged or tuned, and its settings
    protocol: str = _field("study.protocol", "str", "fixed")
    protocol_settings: dict = _field("study.protocol_settings", "json_dict")
    budget_note: str = _field("study.budget_note", "str")  # why the epoch budget is what it is; "" for none
    # its kind (ablation.study.kinds): grid, search or tuned; "" on runs from before kinds were tagged
    study_kind: str = _field("study.kind", "str")
    # the epoch cap of cells stopped by patience, which a budget check raises; None: the study has no budget check
    budget_cap: int | None = _field("study.budget_cap", "opt_int", None)


@dataclass(frozen=True)
class CellTags(_Schema):
    """One cell's run (an arm x seed of the study)."""

    _kind = "cell"
    study: str = _field(STUDY, "str")
    study_hash: str = _field(STUDY_HASH, "str")
    arm: str = _field(ARM, "str")
    arm_levels: dict = _field(ARM_LEVELS, "json_dict")
    seed: int | None = _field(SEED, "opt_int", None)
    trial: int | None = _field(TRIAL, "opt_int", None)
    baseline: bool = _field(BASELINE, "bool", False)
    pruned: bool = _field(PRUNED, "bool", False)
    worker: str = _field(WORKER, "str")
    phase: str = _field(PHASE, "str")  # tuned studies: "tuning" or "confirm"; "budget": a budget check's; "" otherwise


@dataclass(frozen=True)
class BudgetTags(CellTags):
    """A budget check's run: a used cell's run trained again at ``factor`` times its cap (phase ``budget``)."""

    of_run: str = _field("budget.of_run", "str")  # the cell's run it retrains
    factor: float | None = _field("budget.factor", "float", None)


def row_tags(row: Mapping[str, Any]) -> dict[str, Any]:
    """The tags of a ``mlflow.search_runs`` row (``tags.X`` columns) as ``{X: value}``."""
    return {k[len("tags."):]: v for k, v in row.items() if isinstance(k, str) and k.startswith("tags.")}


# A tuned study's tuning trials nest, per arm, under one run of this kind (``ablation.kind = tuning``), a
# sibling of the study's parent run that names it: so the parent's children are the comparison's runs only.
TUNING_OF = "study.parent_run"


@dataclass(frozen=True)
class TuningTags(_Schema):
    """The run an arm's tuning trials nest under (it has no phase: its trials do)."""

    _kind = "tuning"
    study: str = _field(STUDY, "str")
    study_hash: str = _field(STUDY_HASH, "str")
    arm: str = _field(ARM, "str")
    parent_run: str = _field(TUNING_OF, "str")  # the study parent run whose arm it tunes


def comparison_phase(kind: str) -> str:
    """The ``phase`` tag of the runs a study's verdict is made from: a tuned
    study's confirmations; the cells of any other kind carry none."""
    return PHASE_CONFIRM if kind == "tuned" else ""
