"""Figures of a tuning study: how the search progressed, the metric against
each searched value, and every trial's per-epoch curve. Same conventions as
``plots``: Agg canvas, PNG, ``None`` when there is nothing to draw."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ablation.report.plots import new_figure, save_figure, unit
from ablation.report.stats import label
from ablation.report.search import SearchParam

FINISHED, PRUNED, BEST, TREND = "tab:blue", "tab:red", "tab:orange", "tab:green"


def _ylabel(metric: str) -> str:
    u = unit(metric)
    return label(metric) + (f" ({u})" if u else "")


def _split(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(finished, pruned with a reported value, the best finished trial)."""
    finished = trials[trials["state"] == "finished"]
    pruned = trials[(trials["state"] == "pruned") & trials["last_value"].notna()]
    return finished, pruned, finished.head(1)  # the table is ranked: the first finished row is the best


def optimisation_history(trials: pd.DataFrame, metric: str, maximize: bool, key: str, ceiling: float | None,
                         path: Path, title: str) -> Path | None:
    finished, pruned, best = _split(trials)
    if finished.empty:
        return None
    fig, (ax,) = new_figure(max(6.5, 0.22 * len(trials) + 4.0), 4.2)
    ax.scatter(finished["trial"], finished["value"], color=FINISHED, s=22, zorder=3, label="finished trial")
    ordered = finished.sort_values("trial")
    values = ordered["value"].to_numpy(dtype=float)
    trend = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    xs = np.append(ordered["trial"].to_numpy(dtype=float), trials["trial"].max())  # carry the line to the last trial
    ax.step(xs, np.append(trend, trend[-1]), where="post", color=TREND, lw=1.5, zorder=2, label="best so far")
    if len(pruned):
        ax.scatter(pruned["trial"], pruned["last_value"], marker="x", color=PRUNED, s=30, zorder=3,
                   label=f"pruned (last {key} reported)")
    ax.scatter(best["trial"], best["value"], marker="*", s=180, color=BEST, edgecolor="black", zorder=4,
               label=f"best: {best['arm'].iloc[0]}")
    if ceiling is not None:
        ax.axhline(ceiling, color="tab:red", ls="--", lw=1.2, label=f"Bayes ceiling {ceiling:.4f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number (order of sampling)")
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positions(param: SearchParam, values: list) -> tuple[np.ndarray, list | None]:
    """x of each value, and the category labels when the values are not numbers."""
    if values and all(_is_number(v) for v in values):
        return np.array(values, dtype=float), None
    cats = [str(c) for c in param.choices] if param.choices else []
    cats += sorted({str(v) for v in values} - set(cats))
    return np.array([cats.index(str(v)) for v in values], dtype=float), cats


def search_slices(trials: pd.DataFrame, search: list[SearchParam], metric: str, key: str, path: Path,
                  title: str) -> Path | None:
    finished, pruned, best = _split(trials)
    if finished.empty or not search:
        return None
    ncols = min(3, len(search))
    nrows = -(-len(search) // ncols)
    fig, axes = new_figure(4.3 * ncols + 0.6, 3.4 * nrows + 0.6, ncols=ncols, nrows=nrows, sharey=True)
    for ax in axes[len(search):]:
        ax.set_visible(False)
    shown = pd.concat([finished, pruned])
    for ax, param in zip(axes, search):
        values = [lv.get(param.key) for lv in shown["levels"]]
        keep = [v is not None for v in values]
        x, cats = _positions(param, [v for v, k in zip(values, keep) if k])
        part = shown[keep]
        is_fin = (part["state"] == "finished").to_numpy()
        y = np.where(is_fin, part["value"], part["last_value"]).astype(float)
        ax.scatter(x[is_fin], y[is_fin], color=FINISHED, s=22, zorder=3, label="finished trial")
        if (~is_fin).any():
            ax.scatter(x[~is_fin], y[~is_fin], marker="x", color=PRUNED, s=30, zorder=3,
                       label=f"pruned (last {key})")
        at = (part["trial"] == best["trial"].iloc[0]).to_numpy() & is_fin
        ax.scatter(x[at], y[at], marker="*", s=180, color=BEST, edgecolor="black", zorder=4,
                   label=f"best: {best['arm'].iloc[0]}")
        if cats is not None:
            ax.set_xticks(range(len(cats)), cats)
            ax.set_xlim(-0.5, len(cats) - 0.5)
        elif param.log and np.all(x > 0):
            ax.set_xscale("log")
            # 1-2-5 ticks: a search range often spans about one decade, which has a single power of ten
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        elif param.choices and all(_is_number(c) for c in param.choices):
            ax.set_xticks([float(c) for c in param.choices], [f"{c:g}" for c in param.choices])
        if cats is None and param.bounds is not None:  # show how much of the declared range was explored
            lo, hi = param.bounds
            pad = (hi / lo) ** 0.04 if param.log and lo > 0 else None
            ax.set_xlim(*((lo / pad, hi * pad) if pad else (lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo))))
        ax.set_xlabel(param.key + (" (log scale)" if param.log and cats is None else ""))
        ax.grid(alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel(_ylabel(metric))
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return save_figure(fig, path)


def trial_curves(history: pd.DataFrame, trials: pd.DataFrame, metric: str, key: str, path: Path,
                 title: str) -> Path | None:
    part = history[history["key"] == key] if not history.empty else history
    if part.empty:
        return None
    finished, pruned, best = _split(trials)
    fig, (ax,) = new_figure(7.5, 4.4)
    best_run = best["run_id"].iloc[0] if len(best) else None
    styles = ((finished, FINISHED, "-", "finished trial"), (pruned, PRUNED, "--", "pruned trial"))
    for group, colour, style, name in styles:
        others = [r for r in group["run_id"] if r != best_run]
        for i, run_id in enumerate(others):
            curve = part[part["run_id"] == run_id].sort_values("step")
            ax.plot(curve["step"], curve["value"], style, color=colour, lw=0.9, alpha=0.55,
                    label=name if i == 0 else None)
            if style == "--" and len(curve):
                ax.plot(curve["step"].iloc[-1], curve["value"].iloc[-1], "x", color=colour, ms=6)
    if best_run is not None:
        curve = part[part["run_id"] == best_run].sort_values("step")
        ax.plot(curve["step"], curve["value"], "o-", color=BEST, lw=2.2, ms=4, label=f"best: {best['arm'].iloc[0]}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{key} ({unit(metric)})" if unit(metric) else key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)
