"""A study's MLflow runs -> pandas DataFrames: the report's only input.

The current study generation is the newest parent run (``ablation.kind=study``)
of the experiment named after the study; only its children count (a tuned
study's tuning trials are read apart, from its arms' tuning runs, which name
the parent: ``tags.TuningTags``). Each cell
(arm x seed) is represented by its newest FINISHED child; a cell without one,
or whose run lacks a finite value of the study metric, is listed as missing
with the reason instead of being used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from ablation import tags, tracking
from ablation.decision import SeedDesign, default_min_effect, extents
from ablation.errors import AblationError, closest
from ablation.tags import CellTags, StudyTags, TagError, row_tags

TAG = "tags." + tracking.TAG
PARENT = "tags.mlflow.parentRunId"
HISTORY_KEYS = ("epoch.val_acc", "epoch.train_acc", "epoch.lr")  # lr: the still-improving check


class ReportError(AblationError):
    """A report cannot be built from what the tracking store holds."""


@dataclass(frozen=True)
class StudyInfo(StudyTags):
    """What the parent run says about the study: its tags (``tags.StudyTags``,
    decoded by the schema itself), completed from the cell runs, plus where
    they were read from."""

    name: str = ""
    parent_run_id: str = ""
    started: str = ""
    baseline: str = ""  # the declared baseline arm, else the first arm

    @property
    def study_hash(self) -> str:
        return self.hash

    @property
    def declared_baseline(self) -> str:
        return self.baseline_arm

    @property
    def kind(self) -> str:
        """The study's kind (``ablation.study.kinds``); runs from before it was tagged say it by sampler and protocol."""
        if self.study_kind:
            return self.study_kind
        if self.sampler == "tpe":
            return "search"
        return "tuned" if self.protocol == "tuned" else "grid"

    @property
    def design(self) -> SeedDesign:
        if self.seed_design:
            return SeedDesign(int(self.seed_design["min"]), int(self.seed_design["max"]), adaptive=True)
        return SeedDesign.fixed(len(self.seeds))

    @property
    def smallest_effect(self) -> float:
        return self.min_effect or default_min_effect(self.metric)

    @property
    def maximize(self) -> bool:
        return self.direction != "minimize"

    @property
    def baseline_declared(self) -> bool:
        return bool(self.baseline_arm)

    def normalised(self) -> "StudyInfo":
        """Types as the report uses them (tags decode JSON as it was written) and the defaults of old runs."""
        return replace(
            self, arms=[str(a) for a in self.arms], factors=[str(f) for f in self.factors],
            arm_levels={str(k): dict(v) for k, v in self.arm_levels.items()}, seeds=[int(s) for s in self.seeds],
            metric=self.metric or "val.acc", direction=self.direction or "maximize",
            protocol=self.protocol or "fixed", protocol_settings=dict(self.protocol_settings),
            budget_note=self.budget_note.strip(),
        )


@dataclass(frozen=True)
class StudyRuns:
    """Everything the report uses, as plain DataFrames.

    - ``cells``: one row per used cell (columns ``arm``, ``seed``, ``run_id``,
      ``run_name``, ``fingerprint``, ``pruned``, ``metrics.*``, ``params.*``),
      in declared arm order, then by seed.
    - ``missing``: ``arm``, ``seed``, ``reason`` for every cell not used.
    - ``children``: every child run of the current parent, any status.
    - ``history``: long per-epoch metrics of the used cells
      (``arm``, ``seed``, ``run_id``, ``key``, ``step``, ``value``); in a
      tuning study, of every finished run, pruned ones included.
    - ``study_file``: the study file logged on the parent run (``study.toml``,
      parsed), read for tuning studies; empty when absent or unreadable.
    - ``configs``: run id -> the ``config.toml`` a finished tuning trial
      logged (the text as logged), from which its confirmation is run.
    """

    info: StudyInfo
    cells: pd.DataFrame
    missing: pd.DataFrame
    children: pd.DataFrame
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    study_file: dict = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    # a tuned study's tuning-phase runs (any status), apart from ``children``: never evidence
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)
    # a budget check's runs (any status; ``of_run``, ``factor`` columns), apart from ``children``: never evidence
    budget: pd.DataFrame = field(default_factory=pd.DataFrame)
    expected: int | None = None  # adaptive seeds: the cells the decisions wanted
    # what is computed from these very runs, once (``report.analysis.analyse``): `run`'s budget
    # check and its report read one load of the runs; a copy made by ``dataclasses.replace`` starts empty
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_expected(self) -> int:
        if self.expected is not None:
            return self.expected
        grid = len(self.info.arms) * len(self.info.seeds)
        return max(grid, self.info.cells_total or 0)


def load_study(name: str, tracking_uri: str | None = None) -> StudyRuns:
    """Read the current generation of study ``name`` from the tracking store."""
    c = tracking.client(tracking_uri)
    runs = tracking.search_runs(c, name)
    if runs is None or runs.empty or not _is_study(runs).any():
        known = tracking.study_names(c)
        raise ReportError(
            f"no study '{name}' in tracking store {tracking.resolve_tracking_uri(tracking_uri)}"
            f"{closest(name, known)}; known studies: {', '.join(known) or 'none'}; "
            f"run 'python -m ablation run {name}' first or pass the right --tracking-uri"
        )
    parent = newest_parent(runs)
    info = study_info(name, parent)
    children = child_runs(runs, parent["run_id"])
    is_tuning = children["phase"] == tags.PHASE_TUNING  # a tuned study decides from its confirmation runs only
    # tuning trials nest under their arm's tuning run; a store begun before that has them beside the cells
    nested = child_runs(runs, *tuning_runs(runs, parent["run_id"]))
    tuning = pd.concat([t for t in (children[is_tuning], nested) if not t.empty] or [children[is_tuning]])
    tuning = tuning.sort_values(["start_time", "run_id"]).reset_index(drop=True)
    children = children[~is_tuning].reset_index(drop=True)
    budget, children = budget_runs(children), children[children["phase"] != tags.PHASE_BUDGET].reset_index(drop=True)
    if children.empty and not tuning.empty and info.arms:
        why = why_unconfirmed(pd.DataFrame([(a, None, "not run") for a in info.arms], columns=["arm", "seed", "reason"]),
                              tuning)
        stuck = [f"`{r.arm}`: {r.reason.removeprefix('not run: ')}" for r in why.itertuples() if r.reason != "not run"]
        if len(stuck) == len(info.arms):
            raise ReportError(
                f"study '{name}' (parent run {parent['run_id']}) has no confirmation runs: " + "; ".join(stuck)
                + "; narrow or move its [tuning.space] (a new study) and run it again"
            )
    if children.empty:
        raise ReportError(
            f"study '{name}' (parent run {parent['run_id']}) has no cell runs yet; run '{info.command or 'python -m ablation run ' + name}'"
        )
    info = _fill_from_children(info, children)
    cells, missing = select_cells(children, info.arms, info.seeds, info.metric)
    missing = why_unconfirmed(missing, tuning)
    tuning = with_epochs_run(c, tuning)
    expected = None
    if info.design.adaptive and not cells.empty:
        missing, expected = _wanted_only(info, cells, missing)
    if cells.empty:
        first = missing["reason"].iloc[0] if not missing.empty else "no runs"
        raise ReportError(
            f"study '{name}': none of its {len(info.arms) * len(info.seeds)} cells has a finished run with a finite "
            f"{info.metric} (e.g. {first}); fix the cause and re-run '{info.command or 'python -m ablation run ' + name}'"
        )
    if info.kind == "search":
        # a pruned trial stops at its last reported epoch value: the report plots it
        ran = children[(children["status"] == "FINISHED") & children["seed"].notna()]
        history = load_history(c, ran, HISTORY_KEYS + (epoch_key(info.metric),))
        study_file = read_study_file(c, info.parent_run_id)
        unpruned = ran[~ran["pruned"]]["run_id"]
        configs = {rid: text for rid in unpruned if (text := read_artifact_text(c, rid, "config.toml"))}
    else:
        history, study_file, configs = load_history(c, cells), {}, {}
    return StudyRuns(info=info, cells=cells, missing=missing, children=children, history=history,
                     study_file=study_file, configs=configs, tuning=tuning, budget=budget, expected=expected)


def budget_runs(children: pd.DataFrame) -> pd.DataFrame:
    """The budget check's runs among ``children``, with the run each retrains (``of_run``) and its ``factor``."""
    out = children[children["phase"] == tags.PHASE_BUDGET].copy()
    decoded = [_tags_of(tags.BudgetTags, row) for _, row in out.iterrows()]
    out["of_run"] = pd.Series([t.of_run for t in decoded], index=out.index, dtype=object)
    out["factor"] = pd.Series([t.factor for t in decoded], index=out.index, dtype=float)
    return out.reset_index(drop=True)


def _wanted_only(info: StudyInfo, cells: pd.DataFrame, missing: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Adaptive seeds: the cells the decisions wanted (replayed from the used
    values, as the runner plans them); a seed no arm needed is not missing."""
    col = "metrics." + info.metric
    values = {(r["arm"], int(r["seed"])): float(r[col]) for _, r in cells.iterrows()}
    failed = {(a, int(s)) for a, s, why in zip(missing["arm"], missing["seed"], missing["reason"])
              if str(why).startswith("failed")}  # failed for good: settled, as the seed policy counts it
    ext = extents(info.arms, info.baseline, info.seeds, values, info.design, info.smallest_effect, info.maximize,
                  failed)
    wanted = {(arm, seed) for arm, n in ext.items() for seed in info.seeds[:n]}
    keep = [(a, int(s)) in wanted for a, s in zip(missing["arm"], missing["seed"])]
    return missing[keep].reset_index(drop=True), len(wanted)


def epoch_key(metric: str) -> str:
    """The per-epoch metric a tuning trial reports to the pruner (``val.acc`` -> ``epoch.val_acc``)."""
    return "epoch." + metric.replace(".", "_")


def read_artifact_text(c, run_id: str, name: str) -> str:
    """A text artifact of a run, or "" when it cannot be had: the report says
    what it cannot tell without it instead of failing."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            return tracking.download_artifact(c, run_id, name, tmp).read_text(encoding="utf-8")
    except Exception:  # absent artifact, unreachable artifact store
        return ""


def read_study_file(c, run_id: str) -> dict:
    """The parsed ``study.toml`` artifact of a parent run, or ``{}``."""
    import tomllib

    try:
        return tomllib.loads(read_artifact_text(c, run_id, "study.toml"))
    except tomllib.TOMLDecodeError:
        return {}


# ---- pure steps (DataFrame in, DataFrame out) -----------------------------


def _col(df: pd.DataFrame, name: str, default=None) -> pd.Series:
    """A column, or a column of ``default`` when no run logged it."""
    return df[name] if name in df.columns else pd.Series([default] * len(df), index=df.index, dtype=object)


def _is_study(runs: pd.DataFrame) -> pd.Series:
    return _col(runs, tags.column(tags.KIND)) == StudyTags._kind


def newest_parent(runs: pd.DataFrame) -> pd.Series:
    """The newest study parent run (ties broken by run id, for determinism)."""
    parents = runs[_is_study(runs)].sort_values(["start_time", "run_id"])
    return parents.iloc[-1]


def _tag(row: pd.Series, key: str, default: str = "") -> str:
    v = row.get(TAG + key)
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _json_tag(row: pd.Series, key: str, default):
    text = _tag(row, key)
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ReportError(
            f"tag {tracking.TAG}{key} of study run {row['run_id']} is not JSON ({text[:60]!r}); "
            "re-run the study with a current version of ablation"
        ) from None


def study_info(name: str, parent: pd.Series) -> StudyInfo:
    try:
        t = StudyTags.from_tags(row_tags(parent))
    except TagError as e:
        raise ReportError(f"{e} on study run {parent['run_id']}; re-run the study with a current version of ablation") from None
    arms = [str(a) for a in t.arms]
    started = parent.get("start_time")
    return StudyInfo(
        **{f.name: getattr(t, f.name) for f in fields(StudyTags)},
        name=name,
        parent_run_id=str(parent["run_id"]),
        started="" if started is None or pd.isna(started) else pd.Timestamp(started).strftime("%Y-%m-%d %H:%M UTC"),
        baseline=t.baseline_arm or (arms[0] if arms else ""),
    ).normalised()


def tuning_runs(runs: pd.DataFrame, parent_run_id: str) -> list[str]:
    """The ids of the tuning runs (one per arm) of the study generation whose parent run is ``parent_run_id``."""
    mine = (_col(runs, tags.column(tags.KIND)) == tags.TuningTags._kind) & (
        _col(runs, tags.column(tags.TUNING_OF)) == parent_run_id)
    return [str(r) for r in runs.loc[mine, "run_id"]]


def child_runs(runs: pd.DataFrame, *parent_run_ids: str) -> pd.DataFrame:
    """The cell runs of the given parents, with normalised ``arm``/``seed``/... columns."""
    kids = runs[_col(runs, PARENT).isin(parent_run_ids)].copy()
    decoded = [_cell_tags(row) for _, row in kids.iterrows()]  # the schema the runner wrote them with
    kids["arm"] = pd.Series([t.arm for t in decoded], index=kids.index, dtype=object)
    kids["seed"] = pd.to_numeric(pd.Series([t.seed for t in decoded], index=kids.index, dtype=object))
    kids["trial"] = pd.to_numeric(pd.Series([t.trial for t in decoded], index=kids.index, dtype=object))
    kids["run_name"] = _col(kids, "tags.mlflow.runName", "").fillna("").astype(str)
    kids["fingerprint"] = _col(kids, tags.column(tags.DATA_FINGERPRINT), "").fillna("").astype(str)
    kids["pruned"] = pd.Series([t.pruned for t in decoded], index=kids.index, dtype=bool)
    kids["error"] = _col(kids, tags.column(tags.ERROR), "").fillna("").astype(str)
    kids["phase"] = pd.Series([t.phase for t in decoded], index=kids.index, dtype=object)
    return kids.sort_values(["start_time", "run_id"]).reset_index(drop=True)


def _cell_tags(row: pd.Series) -> CellTags:
    return _tags_of(CellTags, row)


def _tags_of(schema, row: pd.Series):
    try:
        return schema.from_tags(row_tags(row))
    except TagError as e:
        raise ReportError(f"{e} on cell run {row['run_id']}; re-run the study with a current version of ablation") from None


def _fill_from_children(info: StudyInfo, children: pd.DataFrame) -> StudyInfo:
    """Complete the parent's description from the cell runs: a sampler-driven
    study declares no arms (each trial is its own arm, levels in its
    ``ablation.arm.levels`` tag, in trial order), and the data sizes are
    logged by the cells."""
    arms, levels, seeds = info.arms, info.arm_levels, info.seeds
    labelled = children[children["arm"] != ""]
    if info.kind == "search" or not arms or not labelled["arm"].isin(arms).any():
        order = labelled.sort_values(["trial", "start_time"], kind="stable")
        arms = list(dict.fromkeys(order["arm"]))
        levels = {}
        for arm in arms:
            first = order[order["arm"] == arm].iloc[0]
            levels[arm] = _json_tag(first, tags.ARM_LEVELS, {})
    if not seeds:
        seeds = sorted(int(s) for s in children["seed"].dropna().unique())
    baseline = info.baseline if info.baseline in arms else (arms[0] if arms else "")
    first = children.iloc[-1]
    return replace(
        info, arms=arms, arm_levels=levels, seeds=seeds, baseline=baseline,
        data_sizes=info.data_sizes or _json_tag(first, tags.DATA_SIZES, {}),
        data_source=info.data_source or _tag(first, tags.DATA_SOURCE),
    )


def select_cells(
    children: pd.DataFrame, arms: list[str], seeds: list[int], metric: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One used run per (arm, seed) and the list of cells that have none."""
    key = "metrics." + metric
    used, missing = [], []
    for arm in arms:
        for seed in seeds:
            runs = children[(children["arm"] == arm) & (children["seed"] == seed)]
            finished = runs[runs["status"] == "FINISHED"]
            if not finished.empty:
                row = finished.iloc[-1]
                value = row.get(key)
                if value is not None and np.isfinite(float(value)):
                    used.append(row)
                elif row["pruned"]:
                    missing.append((arm, seed, "pruned" + (f": {row['error']}" if row["error"] else "")))
                else:
                    missing.append((arm, seed, f"finished run {row['run_id']} has no finite {metric}"))
            elif runs.empty:
                missing.append((arm, seed, "not run"))
            else:
                last = runs.iloc[-1]
                reason = str(last["status"]).lower()
                if last["error"]:
                    reason += ": " + last["error"].splitlines()[0][:200]
                missing.append((arm, seed, reason))
    cells = pd.DataFrame(used).reset_index(drop=True) if used else pd.DataFrame(columns=children.columns)
    if not cells.empty:
        cells["seed"] = cells["seed"].astype(int)
    return cells, pd.DataFrame(missing, columns=["arm", "seed", "reason"])


def with_epochs_run(c, tuning: pd.DataFrame) -> pd.DataFrame:
    """``tuning`` with ``metrics.epochs_run`` filled in for runs that do not log it (a trial the pruner
    stopped logs no summary metrics): the number of epochs in its logged history."""
    if tuning.empty:
        return tuning
    out = tuning.copy()
    if "metrics.epochs_run" not in out.columns:
        out["metrics.epochs_run"] = np.nan
    for i in out.index[out["metrics.epochs_run"].isna() & (out["status"] == "FINISHED")]:
        out.at[i, "metrics.epochs_run"] = float(len(tracking.metric_history(c, out.at[i, "run_id"], "epoch.val_acc")))
    return out


def why_unconfirmed(missing: pd.DataFrame, tuning: pd.DataFrame) -> pd.DataFrame:
    """``missing`` with a reason for a tuned study's confirmation cells that were never enqueued
    because their arm's tuning gave no values to confirm: every tuning trial pruned (diverged
    ones among them), or tuning still under way."""
    if missing.empty or tuning.empty:
        return missing
    out = missing.copy()
    for i, row in out.iterrows():
        if row["reason"] != "not run":
            continue
        mine = tuning[tuning["arm"] == row["arm"]]
        if mine.empty:
            continue
        done = mine[mine["status"] == "FINISHED"]
        if (~done["pruned"]).any():
            continue  # a complete trial: the confirmation is merely not run yet
        if len(done) < len(mine):
            out.at[i, "reason"] = f"not run: its arm's tuning is not finished ({len(done)} of {len(mine)} trials done)"
            continue
        errors = [e.splitlines()[0][:160] for e in done["error"] if e]
        diverged = [e for e in errors if "diverged" in e]
        out.at[i, "reason"] = (f"not run: all {len(done)} tuning trials of its arm were pruned, so it has no values to confirm"
                               + (f" ({len(diverged)} diverged, e.g. {diverged[0]})" if diverged else ""))
    return out


def load_history(c, cells: pd.DataFrame, keys: tuple[str, ...] = HISTORY_KEYS) -> pd.DataFrame:
    rows = []
    for _, cell in cells.iterrows():
        for key in dict.fromkeys(keys):
            for step, value in tracking.metric_history(c, cell["run_id"], key):
                rows.append((cell["arm"], int(cell["seed"]), cell["run_id"], key, int(step), float(value)))
    return pd.DataFrame(rows, columns=["arm", "seed", "run_id", "key", "step", "value"])
