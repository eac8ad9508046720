"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot state,
no display) and written as PNG. Each function takes tables and a path and
returns the path it wrote, or ``None`` when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ablation.report.load import StudyInfo
from ablation.report.stats import label

DPI = 110


def new_figure(width: float, height: float, ncols: int = 1, sharey: bool = False, nrows: int = 1, sharex: bool = False):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False).ravel()
    return fig, axes


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return path


def _colour(i: int, n: int = 10):
    """Distinct categorical colours; a continuous map past ten arms."""
    if n <= 10:
        return colormaps["tab10"](i % 10)
    return colormaps["viridis"](i / (n - 1))


def unit(metric: str) -> str:
    if metric.endswith("acc") or metric.startswith(("recall.", "test_recall.")):
        return "fraction of frames"
    if metric.endswith("macro_f1"):
        return "0 to 1"
    return ""


def numeric_levels(info: StudyInfo) -> list[float] | None:
    """The level of each arm when the study has one numeric factor, else None."""
    if len(info.factors) != 1:
        return None
    out = []
    for arm in info.arms:
        level = info.arm_levels.get(arm, {}).get(info.factors[0])
        if isinstance(level, bool):
            return None
        try:
            out.append(float(level))
        except (TypeError, ValueError):
            return None
    return out if len(set(out)) == len(out) else None


def metric_vs_factor(
    summary: pd.DataFrame, cells: pd.DataFrame, info: StudyInfo, metric: str, ceiling: float | None, path: Path
) -> Path | None:
    rows = summary[summary["metric"] == metric].set_index("arm").reindex(info.arms)
    if rows["n"].fillna(0).sum() == 0:
        return None
    levels = numeric_levels(info)
    x = np.array(levels if levels is not None else range(len(info.arms)), dtype=float)
    mean, lo, hi = (rows[k].to_numpy(dtype=float) for k in ("mean", "lo", "hi"))
    fig, (ax,) = new_figure(max(6.0, 0.9 * len(info.arms) + 2.5), 4.2)
    col = "metrics." + metric
    for i, arm in enumerate(info.arms):
        seeds = cells.loc[cells["arm"] == arm, col] if col in cells.columns else []
        ax.scatter(np.full(len(seeds), x[i]), seeds, s=14, color="0.6", zorder=2, label="one seed" if i == 0 else None)
    has_ci = np.isfinite(lo) & np.isfinite(hi)
    if levels is not None:
        ax.plot(x, mean, "o-", color=_colour(0), zorder=3, label="mean over seeds")
        if has_ci.any():
            ax.fill_between(x, np.where(has_ci, lo, mean), np.where(has_ci, hi, mean), color=_colour(0), alpha=0.2, label="95% CI")
        if np.all(x > 0) and x.max() / x.min() >= 100:
            ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.set_xlabel(info.factors[0])
    else:
        err = np.vstack([mean - lo, hi - mean])
        what = "mean, 95% CI" if has_ci.any() else "mean (1 seed: no CI)"
        err = np.where(np.isfinite(err), err, 0.0) if has_ci.any() else None
        ax.errorbar(x, mean, yerr=err, fmt="o", capsize=5, color=_colour(0), zorder=3, label=what)
        ax.set_xticks(x, info.arms, rotation=20 if max(map(len, info.arms)) > 10 else 0, ha="right" if max(map(len, info.arms)) > 10 else "center")
        ax.set_xlabel("arm (" + ", ".join(info.factors) + ")" if info.factors else "arm")
        ax.set_xlim(-0.6, len(info.arms) - 0.4)
    if info.baseline in info.arms:
        ax.axvline(x[info.arms.index(info.baseline)], color="0.8", lw=1, ls=":", zorder=1,
                   label="baseline arm" if info.baseline_declared else "reference arm")
    if ceiling is not None:
        ax.axhline(ceiling, color="tab:red", ls="--", lw=1.2, label=f"Bayes ceiling {ceiling:.4f}")
    u = unit(metric)
    ax.set_ylabel(label(metric) + (f" ({u})" if u else ""))
    n = int(rows["n"].max())
    ax.set_title(f"{info.name}: {label(metric)} by arm ({n} seed{'' if n == 1 else 's'} per arm)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def learning_curves(history: pd.DataFrame, arms: list[str], path: Path) -> Path | None:
    if history.empty:
        return None
    fig, axes = new_figure(11, 4.2, ncols=2, sharey=True)
    for ax, key, title in zip(axes, ("epoch.train_acc", "epoch.val_acc"), ("train", "validation")):
        part = history[history["key"] == key]
        for i, arm in enumerate(arms):
            curve = part[part["arm"] == arm].groupby("step")["value"].mean()
            if len(curve):
                ax.plot(curve.index, curve.to_numpy(), "o-", ms=3, color=_colour(i, len(arms)), label=arm)
        ax.set_title(f"{title} accuracy per epoch (mean over seeds)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("frame accuracy (fraction of frames)")
    axes[1].legend(fontsize=8 if len(arms) <= 10 else 6, loc="lower right", title="arm", ncols=1 + len(arms) // 12)
    return save_figure(fig, path)


def recall_heatmap(matrix: pd.DataFrame, path: Path, title: str) -> Path | None:
    if matrix.empty or matrix.shape[1] == 0:
        return None
    n_arms, n_phones = matrix.shape
    fig, (ax,) = new_figure(max(6.0, 0.38 * n_phones + 3), max(3.4, 0.5 * n_arms + 2.2))
    im = ax.imshow(matrix.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n_phones), matrix.columns, rotation=90 if n_phones > 12 else 0)
    ax.set_yticks(range(n_arms), matrix.index)
    ax.set_xlabel("phone class")
    ax.set_ylabel("arm")
    if n_phones * n_arms <= 240:
        for (i, j), v in np.ndenumerate(matrix.to_numpy(dtype=float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}"[1:] if 0 <= v < 1 else f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="recall (fraction)", fraction=0.03, pad=0.01)
    ax.set_title(title)
    return save_figure(fig, path)


def recall_changes(changes: pd.DataFrame, arms: list[str], baseline: str, path: Path, top: int = 10) -> Path | None:
    others = [a for a in arms if a != baseline and (changes["arm"] == a).any()]
    if not others:
        return None
    ncols = min(3, len(others))
    nrows = -(-len(others) // ncols)
    fig, axes = new_figure(4.2 * ncols + 0.8, (0.32 * top + 1.4) * nrows + 0.4, ncols=ncols, nrows=nrows, sharex=True)
    for ax in axes[len(others):]:
        ax.set_visible(False)
    for ax, arm in zip(axes, others):
        part = changes[changes["arm"] == arm].head(top).iloc[::-1]  # largest at the top
        y = np.arange(len(part))
        d = part["mean_diff"].to_numpy(dtype=float)
        err = np.vstack([d - part["lo"].to_numpy(dtype=float), part["hi"].to_numpy(dtype=float) - d])
        err = np.where(np.isfinite(err), err, 0.0) if np.isfinite(err).any() else None
        ax.barh(y, d, xerr=err, capsize=3, color=np.where(d >= 0, "tab:green", "tab:red"), alpha=0.8)
        ax.set_yticks(y, part["phone"])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("recall change vs baseline (fraction of frames)")
        ax.set_title(f"{arm} minus {baseline}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel("phone class")
    fig.suptitle(f"Classes whose val recall changes most (paired mean over seeds, 95% CI; top {top})")
    return save_figure(fig, path)
