"""What tells a fair comparison from an artefact of how the arms were trained:
the protocol line every report opens with, and the diagnostics rows of the
fairness section (still improving, optimizer steps, identical arms, tuning
budget, generalisation gap)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ablation.report.load import StudyInfo


def protocol_line(info: StudyInfo) -> str:
    """One sentence: how every arm was trained before it was compared."""
    s = info.protocol_settings
    cap, patience = s.get("max_epochs"), s.get("patience")
    frac = s.get("select_fraction", 1.0)
    picked = ("the best epoch picked on the whole val split" if frac is None or frac >= 1.0 else
              f"the best epoch picked on a fixed {frac:.0%} of the val utterances (the same for every arm), "
              "its metrics reported on the whole val split")
    if info.protocol == "converged":
        return (f"**Protocol:** converged: every cell trains until val stops improving for {patience} "
                f"epoch(s), at most {cap} epochs; {picked}, its weights restored and evaluated.")
    if info.protocol == "tuned":
        t = s.get("tuning", {})
        space = ", ".join(f"`{k}`" for k in t.get("space", {})) or "n/a"
        stop = (f"each run early-stopped (patience {patience}, at most {cap} epochs)" if patience
                else f"each run {cap} epochs")
        return (f"**Protocol:** tuned: every arm got {t.get('trials', '?')} TPE trials over {space} on tuning "
                f"seeds {', '.join(map(str, t.get('seeds', [])))} (pruner: {t.get('pruner', 'none')}); its best "
                f"values were then run on the study's seeds, and only those confirmation runs make the verdict; "
                f"{stop}, {picked}.")
    return (f"**Protocol:** fixed: every arm trains {cap if cap else 'the same number of'} epochs at the same "
            f"settings; {picked}.")


# ---- the diagnostics rows ------------------------------------------------------

IMPROVING_TOL = 0.005  # a rise of the val metric over the last epochs above this: still improving
LAST_EPOCHS = 2
LR_ANNEALED = 0.1  # a best-last epoch at an lr below this share of the peak is the schedule's end
LR_COOLING = 0.5  # below this share of its peak, a schedule's lr is cooling the run down
STEPS_SPREAD = 2.0  # max / min optimizer steps across arms above this: flagged
GAP_FLOOR = -0.02  # train accuracy this far below val: the train figure is depressed (dropout, too few epochs)


@dataclass(frozen=True)
class Diagnostic:
    """A fairness-section row that flags without calling the study unfair
    (``ok`` None: not a violation; ``status`` says ok or flagged)."""

    name: str
    flagged: bool
    detail: str
    ok: None = None

    @property
    def status(self) -> str:
        return "flagged" if self.flagged else "ok"


def _curves(history: pd.DataFrame, key: str = "epoch.val_acc") -> dict[tuple[str, int], list[float]]:
    if history is None or history.empty:
        return {}
    h = history[history["key"] == key].sort_values("step")
    return {(arm, int(seed)): g["value"].tolist() for (arm, seed), g in h.groupby(["arm", "seed"], sort=False)}


def _annealed(lrs: list[float] | None, frac: float) -> bool:
    """Did the run's last epoch train at an lr below ``frac`` of its peak?
    ``epoch.lr`` is logged after an epoch's steps, so the last epoch began at
    the lr logged for the epoch before it (and ran down from there); a
    1-epoch run began at its initial lr, which is not annealed."""
    if not lrs or len(lrs) < 2:
        return False
    peak = max(lrs)
    return peak > 0 and lrs[-2] < frac * peak


def _climbing_when_cooled(val: list[float], lrs: list[float] | None, tol: float, last: int,
                          cooling: float = LR_COOLING) -> bool:
    """Did the run find its best epoch while its schedule cooled it down, having still been climbing
    at full lr? Full lr: the epochs that began at ``cooling`` of the peak lr or more (an epoch begins
    at the lr logged for the one before it). Such a run rose by more than ``tol`` over the ``last``
    full-lr epochs before the cooling began, so the annealing harvested a climb that a constant lr
    would have continued: the best epoch is the schedule's, not the net's."""
    if not lrs or len(lrs) != len(val) or len(val) < 2:
        return False
    peak_lr = max(lrs)
    began = [lrs[0]] + lrs[:-1]  # the lr each epoch began at (the first one: about the initial lr)
    full = [e for e, lr in enumerate(began) if lr >= cooling * peak_lr]
    end = full[-1] if full else 0  # 0-based index of the last full-lr epoch
    if end == len(val) - 1 or int(np.argmax(val)) <= end:
        return False  # never cooled, or the best came at full lr: the schedule did not make it
    return end >= last and val[end] - val[end - last] > tol


def still_improving(arms: list[str], history: pd.DataFrame, tol: float = IMPROVING_TOL,
                    last: int = LAST_EPOCHS, annealed: float = LR_ANNEALED,
                    stall_cut: frozenset = frozenset()) -> tuple[Diagnostic, dict[str, bool]]:
    """An arm is still improving when, at some seed, its val metric rose by
    more than ``tol`` over its last ``last`` epochs; or its best val epoch is
    its last while the lr there is still at least ``annealed`` of the run's
    peak; or its best epoch came while the schedule cooled the lr (below half
    its peak) after a rise of more than ``tol`` over the ``last`` epochs at
    full lr (``_climbing_when_cooled``). A schedule that anneals to 0 at the
    cap makes the last epoch the best almost always, by gains of a few 0.001:
    those alone do not flag an arm, but neither can the annealing hide an arm
    that was still climbing when it began. Runs that logged no ``epoch.lr``
    count every best-last epoch. ``stall_cut``: the (arm, seed) runs whose lr
    is cut only by their own stalls (the ``plateau`` schedule): a cut there
    follows an epoch without a new best and the run goes on until patience
    ends it, so a best epoch found after a cut is the net's, not the clock's,
    and the cooled-climb rule does not count them (the other two rules do)."""
    curves, lrs = _curves(history), _curves(history, "epoch.lr")
    flags, parts = {}, []
    for arm in arms:
        keys = [key for key, v in curves.items() if key[0] == arm and v]
        mine = [(curves[key], lrs.get(key)) for key in keys]
        if not mine:
            continue
        best_last = [(v, lr) for v, lr in mine if int(np.argmax(v)) == len(v) - 1]
        cooled = [(v, lr) for v, lr in best_last if _annealed(lr, annealed)]
        hidden = sum(_climbing_when_cooled(v, lr, tol, last) for key, (v, lr) in zip(keys, mine)
                     if key not in stall_cut)
        cut = sum(key in stall_cut for key in keys)
        rising = sum(len(v) > last and v[-1] - v[-1 - last] > tol for v, _ in mine)
        flags[arm] = bool(len(best_last) - len(cooled) or rising or hidden)
        epochs = sorted({len(v) for v, _ in mine})
        n = len(mine)
        why = ""
        if cooled:
            at = "there" if len(cooled) == len(best_last) else f"there at {len(cooled)} of them"
            why = f", with lr annealed to <{annealed:.0%} of its peak {at} (not counted)"
        parts.append(f"`{arm}`: best epoch is the last at {len(best_last)}/{n} seeds{why}, rose > {tol:g} over the "
                     f"last {last} epochs at {rising}/{n}, best epoch found while the lr cooled after a rise > "
                     f"{tol:g} over the last {last} epochs at full lr at {hidden}/{n}"
                     + (f" (not counted for the {cut} runs whose lr only their own stalls cut)" if cut else "")
                     + f" (epochs run {', '.join(map(str, epochs))})")
    if not flags:
        return Diagnostic("still improving", False, "no per-epoch val history logged"), {}
    return Diagnostic("still improving", any(flags.values()), "; ".join(parts)), flags


def epoch_budget(cells: pd.DataFrame) -> int | None:
    col = "metrics.epochs_run"
    if col not in cells.columns or cells[col].isna().all():
        return None
    return int(cells[col].max())


def optimizer_steps(arms: list[str], cells: pd.DataFrame, spread: float = STEPS_SPREAD) -> Diagnostic:
    name = "optimizer steps"
    cols = ("metrics.steps_per_epoch", "metrics.steps_total")
    if any(c not in cells.columns for c in cols):
        return Diagnostic(name, False, "steps not logged by the runs")
    per, parts = {}, []
    for arm in arms:
        rows = cells[cells["arm"] == arm]
        if rows.empty or rows[cols[0]].isna().all():
            continue
        per[arm] = float(rows[cols[1]].mean())
        parts.append(f"`{arm}`: {rows[cols[0]].mean():,.0f} / epoch, {per[arm]:,.0f} in total")
    if not per:
        return Diagnostic(name, False, "steps not logged by the runs")
    lo, hi = min(per.values()), max(per.values())
    ratio = hi / lo if lo > 0 else float("inf")
    return Diagnostic(name, ratio > spread, f"total steps spread {ratio:.2f}x (flagged above {spread:g}x); "
                      + "; ".join(parts))


def identical_arms(arms: list[str], cells: pd.DataFrame, metric: str) -> tuple[Diagnostic, list[list[str]]]:
    """Arms whose metric is identical at every seed (and that share at least one
    seed) are one computation run twice, not separate evidence."""
    col = "metrics." + metric
    values = {arm: dict(zip(cells.loc[cells["arm"] == arm, "seed"].astype(int), cells.loc[cells["arm"] == arm, col]))
              for arm in arms} if col in cells.columns else {}
    groups: list[list[str]] = []
    for arm in arms:
        v = values.get(arm)
        if not v:
            continue
        for g in groups:
            if values[g[0]] == v:
                g.append(arm)
                break
        else:
            groups.append([arm])
    same = [g for g in groups if len(g) > 1]
    if not same:
        return Diagnostic("identical arms", False, f"no two arms have the same {metric} at every seed"), []
    text = "; ".join(" = ".join(f"`{a}`" for a in g) for g in same)
    return Diagnostic("identical arms", True, f"{text}: {metric} identical at every seed, so each group is one "
                      "computation, not separate evidence"), same


def generalisation_gap(arms: list[str], cells: pd.DataFrame, history: pd.DataFrame,
                       floor: float = GAP_FLOOR) -> Diagnostic:
    """Train minus val accuracy at each cell's best epoch, mean per arm."""
    train = _curves(history, "epoch.train_acc")
    parts, flagged = [], False
    for arm in arms:
        gaps = []
        for r in cells[cells["arm"] == arm].itertuples():
            t = train.get((arm, int(r.seed)))
            row = cells.loc[r.Index]
            best = row.get("metrics.best_epoch")
            val = row.get("metrics.val.acc")
            if t and best is not None and np.isfinite(best) and val is not None and 1 <= int(best) <= len(t):
                gaps.append(t[int(best) - 1] - float(val))
        if gaps:
            g = float(np.mean(gaps))
            flagged |= g < floor
            parts.append(f"`{arm}`: {g:+.4f}")
    if not parts:
        return Diagnostic("generalisation gap", False, "train accuracy not logged")
    return Diagnostic("generalisation gap", flagged, f"train minus val accuracy at the best epoch (flagged below "
                      f"{floor:+g}: train depressed by regularisation or too few epochs): " + "; ".join(parts))


def tuning_budget(arms: list[str], tuning: pd.DataFrame, expected: int | None) -> Diagnostic:
    """Finished tuning trials and epochs spent per arm: equal by construction."""
    name = "tuning budget"
    if tuning is None or tuning.empty:
        return Diagnostic(name, True, "no tuning runs found")
    done = tuning[tuning["status"] == "FINISHED"]
    parts, counts = [], []
    for arm in arms:
        rows = done[done["arm"] == arm]
        epochs = rows["metrics.epochs_run"].sum() if "metrics.epochs_run" in rows.columns else float("nan")
        counts.append(len(rows))
        parts.append(f"`{arm}`: {len(rows)} trials, {epochs:.0f} epochs")
    equal = len(set(counts)) == 1 and (expected is None or counts[0] == expected)
    return Diagnostic(name, not equal, f"{expected} trials per arm declared; " + "; ".join(parts))


def stall_cut_runs(cells: pd.DataFrame) -> frozenset:
    """The (arm, seed) cells trained under a schedule that only their own stalls cut (``plateau``)."""
    col = "params.optim.schedule"
    if cells is None or cells.empty or col not in cells.columns:
        return frozenset()
    rows = cells[cells[col] == "plateau"]
    return frozenset((arm, int(seed)) for arm, seed in zip(rows["arm"], rows["seed"]))


def diagnostics(info: StudyInfo, cells: pd.DataFrame, history: pd.DataFrame,
                tuning: pd.DataFrame | None = None) -> tuple[list[Diagnostic], int | None]:
    """Every diagnostics row, and the epoch budget the verdict holds at when
    an arm is still improving (None when none is)."""
    improving, flags = still_improving(info.arms, history, stall_cut=stall_cut_runs(cells))
    if improving.flagged and info.budget_note:  # the study's own reason for its budget, beside the flag
        improving = replace(improving, detail=f"{improving.detail}. Why this budget: {info.budget_note}")
    rows = [improving, optimizer_steps(info.arms, cells), identical_arms(info.arms, cells, info.metric)[0]]
    if info.protocol == "tuned":
        rows.append(tuning_budget(info.arms, tuning, info.protocol_settings.get("tuning", {}).get("trials")))
    rows.append(generalisation_gap(info.arms, cells, history))
    return rows, (epoch_budget(cells) if improving.flagged else None)


def best_so_far(arms: list[str], tuning: pd.DataFrame, metric: str, maximize: bool, path) -> object:
    """Each arm's best-so-far tuning value over its trials, in the order they started (a plot)."""
    col = "metrics." + metric
    if tuning is None or tuning.empty or col not in tuning.columns:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in arms:
        rows = tuning[(tuning["arm"] == arm) & (tuning["status"] == "FINISHED")].sort_values("start_time")
        v = rows[col].astype(float).to_numpy()
        v = v[np.isfinite(v)]
        if not len(v):
            continue
        best = np.maximum.accumulate(v) if maximize else np.minimum.accumulate(v)
        ax.step(np.arange(1, len(best) + 1), best, where="post", marker="o", label=arm)
    ax.set_xlabel("tuning trial (in start order)")
    ax.set_ylabel(f"best {metric} so far")
    ax.set_title("Tuning budget: each arm's best-so-far value over its trials")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
