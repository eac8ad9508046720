"""Search studies (``sampler = "tpe"``, the ``search`` kind): each trial samples one configuration
and runs it at one seed, so there are no arms to pair and no baseline. The
report gives instead the best finished trial, how the search went, and the
commands that confirm the winner over fresh seeds. Pure functions of the
loaded runs, like the ablation analysis."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ablation.report.fairness import Check, check_epochs, check_fingerprint
from ablation import tags
from ablation.report.load import StudyRuns, epoch_key
from ablation.report.stats import CEILINGS, QUALITY_METRICS
from ablation.report.search_verdict import TuningVerdict, confirm_commands

DONE = ("finished", "pruned")  # what `ablation status` counts as done: both end a trial of the search
TRIAL_METRICS = QUALITY_METRICS + ("n_params", "train_time_s", "epochs_run") + tuple(CEILINGS.values())


@dataclass(frozen=True)
class SearchParam:
    """One searched config path, as declared in the study file (when logged)."""

    key: str
    declared: str  # e.g. "float in [0.0003, 0.01], log scale"; "" when the study file is not available
    log: bool | None  # None: not known (no study file), so plots stay linear
    choices: tuple | None = None
    bounds: tuple[float, float] | None = None  # a range's low and high


@dataclass(frozen=True)
class TuningAnalysis:
    metric: str
    epoch_key: str  # the per-epoch metric a trial reports to the pruner
    trials: pd.DataFrame  # trial_table: ranked, one row per trial
    search: list[SearchParam]
    verdict: TuningVerdict
    fairness: list[Check]

    @property
    def violations(self) -> list[Check]:
        return [c for c in self.fairness if c.ok is False]

    @property
    def best_run_id(self) -> str | None:
        if self.verdict.best is None:
            return None
        return str(self.trials.loc[self.trials["arm"] == self.verdict.best, "run_id"].iloc[0])

    @property
    def done(self) -> pd.DataFrame:
        return self.trials[self.trials["state"].isin(DONE)]


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _levels(row: pd.Series, factors: list[str]) -> dict:
    """The sampled values (typed, from the trial's JSON tag); the logged
    params (strings) stand in for a run that lacks the tag."""
    text = row.get(tags.column(tags.ARM_LEVELS))
    try:
        levels = json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        levels = {}
    for key in factors:
        if key not in levels and isinstance(row.get("params." + key), str):
            levels[key] = row["params." + key]
    return levels


def _trial_state(row: pd.Series, value: float, metric: str) -> tuple[str, str]:
    reason = str(row.get("error") or "").strip().splitlines()
    reason = reason[0][:200] if reason else ""
    status = str(row["status"])
    if status == "FINISHED" and row["pruned"]:
        return "pruned", reason
    if status == "FINISHED" and np.isfinite(value):
        return "finished", ""
    if status == "FINISHED":  # the trial failed after its run ended, e.g. a test metric without test labels
        return "failed", f"finished run has no finite {metric}" + (f" ({reason})" if reason else "")
    if status in ("RUNNING", "SCHEDULED"):
        return "running", reason
    return status.lower(), reason or "no reason recorded"


def trial_table(runs: StudyRuns) -> pd.DataFrame:
    """One row per trial (its newest run): ``trial``, ``arm``, ``run_id``,
    ``seed``, ``state`` (finished, pruned, failed, killed, running),
    ``value`` (the study metric, finished trials only), ``last_value`` /
    ``stop_epoch`` (the last per-epoch value reported and its epoch),
    ``reason``, ``levels`` and the ``TRIAL_METRICS``. Ranked: finished trials
    by the metric, then pruned ones by their last reported value, then the
    rest; ties by trial number. ``rank`` numbers the finished trials."""
    info, kids, hist = runs.info, runs.children, runs.history
    ekey = epoch_key(info.metric)
    trials = kids[kids["arm"] != ""].copy()
    from_label = pd.to_numeric(trials["arm"].str.extract(r"(\d+)$")[0], errors="coerce")
    trials["trial"] = trials["trial"].fillna(from_label)
    trials = trials.dropna(subset=["trial"])
    curves = hist[hist["key"] == ekey] if not hist.empty else pd.DataFrame(columns=["run_id", "step", "value"])
    rows = []
    for number, group in trials.groupby("trial", sort=True):
        row = group.iloc[-1]
        value = _float(row.get("metrics." + info.metric))
        state, reason = _trial_state(row, value, info.metric)
        curve = curves[curves["run_id"] == row["run_id"]].sort_values("step")
        last_step = int(curve["step"].iloc[-1]) if len(curve) else None
        stop = last_step
        if state == "finished" and np.isfinite(_float(row.get("metrics.epochs_run"))):
            stop = int(_float(row["metrics.epochs_run"]))
        elif state == "pruned" and stop is None and (m := re.search(r"epoch (\d+)", reason)):
            stop = int(m.group(1))
        out = {
            "trial": int(number), "arm": row["arm"], "run_id": row["run_id"],
            "seed": None if pd.isna(row["seed"]) else int(row["seed"]), "state": state,
            "value": value if state == "finished" else np.nan,
            "last_value": float(curve["value"].iloc[-1]) if len(curve) else np.nan,
            "stop_epoch": stop, "reason": reason, "levels": _levels(row, info.factors),
        }
        out.update({m: _float(row.get("metrics." + m)) for m in TRIAL_METRICS})
        rows.append(out)
    columns = ["trial", "arm", "run_id", "seed", "state", "value", "last_value", "stop_epoch", "reason", "levels",
               *TRIAL_METRICS]
    table = pd.DataFrame(rows, columns=columns)
    table[["seed", "stop_epoch"]] = table[["seed", "stop_epoch"]].astype("Int64")  # whole numbers, NA where unknown
    return rank_trials(table, info.maximize)


def rank_trials(table: pd.DataFrame, maximize: bool) -> pd.DataFrame:
    sign = -1.0 if maximize else 1.0
    group = table["state"].map({"finished": 0, "pruned": 1}).fillna(2)
    score = np.where(table["state"] == "finished", table["value"], table["last_value"]).astype(float)
    key = pd.Series(sign * score, index=table.index).fillna(np.inf)
    order = pd.DataFrame({"g": group, "k": key, "t": table["trial"]}).sort_values(["g", "k", "t"], kind="stable")
    out = table.loc[order.index].reset_index(drop=True)
    finished = out["state"] == "finished"
    out["rank"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out.loc[finished, "rank"] = np.arange(1, int(finished.sum()) + 1)
    return out


def _g(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def search_space(factors: list[str], study_file: dict) -> list[SearchParam]:
    """What each searched path was allowed to take, from the logged study file."""
    declared = study_file.get("search") or {}
    out = []
    for key in factors:
        dim = declared.get(key)
        if not isinstance(dim, dict):
            out.append(SearchParam(key, "", None))
            continue
        if dim.get("choices") is not None:
            choices = tuple(dim["choices"])
            out.append(SearchParam(key, "one of " + ", ".join(json.dumps(c) for c in choices), False, choices))
            continue
        kind = "int" if dim.get("int") else "float"
        log = bool(dim.get("log"))
        text = f"{kind} in [{_g(dim.get('low'))}, {_g(dim.get('high'))}]" + (", log scale" if log else "")
        numeric = all(isinstance(dim.get(b), (int, float)) for b in ("low", "high"))
        bounds = (float(dim["low"]), float(dim["high"])) if numeric else None
        out.append(SearchParam(key, text, log, bounds=bounds))
    return out


def tuning_fairness(runs: StudyRuns, trials: pd.DataFrame) -> list[Check]:
    """Like-for-like across trials: same data and epoch budget. Pruning is
    how a tuning study spends its budget, so it is shown, not flagged."""
    done = trials[trials["state"].isin(DONE)]
    kids = runs.children
    order = {run_id: i for i, run_id in enumerate(done.sort_values("trial")["run_id"])}
    compared = kids[kids["run_id"].isin(order)].sort_values("run_id", key=lambda ids: ids.map(order))
    seeds = sorted({int(s) for s in done["seed"].dropna()})
    seed_text = (f"every trial ran seed {seeds[0]} (one seed per trial: no spread to estimate)" if len(seeds) == 1
                 else "trials ran seeds " + ", ".join(map(str, seeds)) if seeds else "seed not logged")
    pruned = done[done["state"] == "pruned"].sort_values("trial")
    where = ", ".join(f"trial {r.trial}" + (f" at epoch {r.stop_epoch}" if pd.notna(r.stop_epoch) else "")
                      for r in pruned.itertuples())
    pruner = runs.study_file.get("pruner", "median") if runs.study_file else "not logged"
    prune_text = (f"expected in a tuning study (pruner: {pruner}); {len(pruned)} of {len(done)} done trials "
                  "stopped early" + (f": {where}" if where else ""))
    return [check_fingerprint(runs.info, compared), check_epochs(runs.info, compared), Check("seed", None, seed_text),
            Check("pruning", None, prune_text)]


def winner_config_path(study: str) -> str:
    """Where the report writes the winner's config by default, as the project names it."""
    return f"reports/{study}/winner.toml"


def analyse_tuning(runs: StudyRuns, config_path: str | None = None) -> TuningAnalysis:
    """``config_path``: where the winner's logged config.toml is written (the
    confirmation commands name it); by default under ``reports/``."""
    info = runs.info
    trials = trial_table(runs)
    finished = trials[trials["state"] == "finished"]
    best = finished.iloc[0] if len(finished) else None
    runner = finished.iloc[1] if len(finished) > 1 else None
    scores, ceilings = {}, {}
    if best is not None:
        scores = {info.metric: float(best["value"])}  # the study metric first, whichever it is
        scores.update({m: float(best[m]) for m in QUALITY_METRICS if m != info.metric and np.isfinite(best[m])})
        ceilings = {m: float(best[c]) for m, c in CEILINGS.items() if m in scores and np.isfinite(best[c])}
    verdict = TuningVerdict(
        metric=info.metric, maximize=info.maximize, planned=info.cells_total,
        n_finished=len(finished), n_pruned=int((trials["state"] == "pruned").sum()),
        n_unfinished=int((~trials["state"].isin(DONE)).sum()),
        best=None if best is None else str(best["arm"]),
        best_value=np.nan if best is None else float(best["value"]),
        levels={} if best is None else dict(best["levels"]),
        seed=None if best is None or pd.isna(best["seed"]) else int(best["seed"]),
        scores=scores, ceilings=ceilings,
        runner_up=None if runner is None else str(runner["arm"]),
        runner_up_value=np.nan if runner is None else float(runner["value"]),
    )
    if best is not None and runs.configs.get(str(best["run_id"])):
        path = config_path or winner_config_path(info.name)
        verdict = replace(verdict, config_path=path, commands=tuple(confirm_commands(info, path, verdict.seed)))
    return TuningAnalysis(
        metric=info.metric, epoch_key=epoch_key(info.metric), trials=trials,
        search=search_space(info.factors, runs.study_file), verdict=verdict, fairness=tuning_fairness(runs, trials),
    )
