"""What every report shares, ablation or tuning: the formatting of values and
tables, the machine-readable first line (the index reads it), the header, the
fairness banner, the setup table, and the fairness / figures / reproduce
sections. A report kind only adds the sections that are its own."""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pandas as pd

from ablation.report.fairness import Check
from ablation.report.load import StudyInfo

MARKER = "<!-- ablation-report "


# ---- values -----------------------------------------------------------------


def table(rows: list[dict]) -> str:
    """A markdown table; ``|`` inside a value is escaped, numbers are printed as given."""
    if not rows:
        return "(none)"
    frame = pd.DataFrame(rows).map(lambda v: str(v).replace("|", "\\|"))
    return frame.to_markdown(index=False, disable_numparse=True)


def fmt_value(v) -> str:
    """A config value for reading (4 significant digits for floats)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return v if isinstance(v, str) else json.dumps(v)


def fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def num(v, fmt: str = "{:.4f}") -> str:
    return fmt.format(v) if v is not None and np.isfinite(v) else "n/a"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def sizes(split_sizes) -> str:
    if not isinstance(split_sizes, dict) or not split_sizes:
        return "not logged"
    parts = []
    for split, v in split_sizes.items():
        if isinstance(v, dict):
            v = ", ".join(f"{x:,} {k}" if isinstance(x, int) else f"{x} {k}" for k, x in v.items())
        parts.append(f"{split}: {v}")
    return "; ".join(parts)


# ---- shared sections --------------------------------------------------------


def marker(info: StudyInfo, sentence: str, cells: str, fair: bool, kind: str = "ablation",
           extra: dict | None = None) -> str:
    """The first line of a report: what the index lists (``kind`` tells trials
    from cells; an ablation report leaves it out, as it always has)."""
    meta = {"study": info.name, "question": info.question, "verdict": sentence, "cells": cells, "fair": fair}
    if kind != "ablation":
        meta["kind"] = kind
    meta.update(extra or {})
    return MARKER + json.dumps(meta, sort_keys=True).replace(">", "\\u003e") + " -->"


def header(info: StudyInfo, first_line: str, title: str, violations: list[Check], compared: str,
           consequence: str) -> list[str]:
    """Marker, title, question and, when a fairness check failed, the banner
    that says so before anything else is read."""
    from ablation.report.diagnostics import protocol_line

    out = [first_line, f"# {title} `{info.name}`", "", f"**Question:** {info.question or '(not given)'}", "",
           protocol_line(info), ""]
    if violations:
        out += [f"> **Fairness violation.** The {compared} are not compared like-for-like, so {consequence}:"]
        out += [f"> - **{c.name}**: {c.detail}" for c in violations]
        out += ["> See [Fairness](#fairness).", ""]
    return out


def setup_section(info: StudyInfo, what: list[tuple[str, str]], completeness: str, after: Iterable = (),
                  tail: Iterable = (), pruner: str | None = None) -> list[str]:
    """The setup table: the rows every study has, with the kind's own rows
    (``what``: what varies, data, seeds; ``after`` the sampler; ``tail`` last);
    a tuning study names its pruner beside the sampler."""
    scale = ("scale / sampler", f"{info.scale or 'n/a'} / {info.sampler or 'n/a'}")
    if pruner is not None:
        scale = ("scale / sampler / pruner", f"{scale[1]} / {pruner}")
    rows = [("base experiment", f"`{info.base}`" if info.base else "not logged"), *what, scale, *after,
            ("code commit", f"`{info.git_commit or 'unknown'}`"), report_code_row(info),
            ("study run", f"parent `{info.parent_run_id}`, hash `{info.study_hash or 'n/a'}`, "
                          f"started {info.started or 'n/a'}"),
            ("completeness", completeness), *tail]
    return ["## Setup", "", table([{"": k, " ": v} for k, v in rows]), ""]


def report_code_row(info: StudyInfo) -> tuple[str, str]:
    """The commit of the code writing this report (``code commit`` is the cells'): a
    report rewritten by newer code over the same runs says so."""
    from ablation import tracking

    mine = tracking.git_commit()
    differs = info.git_commit and mine != info.git_commit
    why = " (not the cells' code commit: other code wrote this report from their runs)" if differs else " (the cells' code)"
    return ("report code", f"`{mine}`{why}")


def data_row(info: StudyInfo, cells: pd.DataFrame | None = None) -> tuple[str, str]:
    """Source, split sizes and fingerprint; the sizes of every seed's split when the cells logged them."""
    return ("data", f"{info.data_source or 'not logged'}; {_seed_sizes(info, cells)}; "
                    f"fingerprint `{info.data_fingerprint or 'n/a'}`")


def _seed_sizes(info: StudyInfo, cells: pd.DataFrame | None) -> str:
    from ablation import tags

    col = tags.column(tags.DATA_SIZES)
    if cells is None or col not in cells.columns or "seed" not in cells.columns:
        return sizes(info.data_sizes)
    per_seed = {}
    for seed, text in zip(cells["seed"], cells[col]):
        try:
            per_seed.setdefault(int(seed), json.loads(text))
        except (TypeError, ValueError):
            continue
    if not per_seed:
        return sizes(info.data_sizes)
    distinct = {json.dumps(v, sort_keys=True) for v in per_seed.values()}
    if len(distinct) == 1:
        return sizes(next(iter(per_seed.values()))) + " (every seed)"
    return "; ".join(f"seed {seed}: {sizes(v)}" for seed, v in sorted(per_seed.items()))


def fairness_section(checks: list[Check]) -> list[str]:
    return ["## Fairness", "", table([{"check": c.name, "status": c.status, "detail": c.detail} for c in checks]), ""]


def figures_section(figures: dict[str, str]) -> list[str]:
    """Every figure embedded under its title."""
    out = ["## Figures", ""]
    for title, rel in figures.items():
        out += [f"### {title}", "", f"![{title}]({rel})", ""]
    if not figures:
        out += ["(no figure: nothing to draw)", ""]
    return out


def reproduce_section(info: StudyInfo, lead: str = "") -> list[str]:
    return ["## Reproduce", "", *([lead, ""] if lead else []), "```",
            info.command or f"python -m ablation run {info.name}", "```", ""]


def finish(lines: list[str]) -> str:
    return "\n".join(lines).rstrip() + "\n"
