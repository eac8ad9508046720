"""What a benchmark measures (figures over repeats, goals) and ``RESULTS.md``.

A ``Figure`` is one quantity measured once per repeat: the report shows its
median and its spread (min - max). A benchmark's figures are laid out as
tables (one per ``section``), a row per ``group`` (e.g. a model and window
length) and a column per ``name``. Every goal is a verdict computed from the figures, with the figure
it was decided on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


@dataclass
class Figure:
    group: str
    name: str
    unit: str
    samples: list[float]
    section: str = ""  # figures of one section share a table

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def lo(self) -> float:
        return float(min(self.samples))

    @property
    def hi(self) -> float:
        return float(max(self.samples))

    def cell(self) -> str:
        if len(self.samples) == 1 or self.lo == self.hi:
            return fmt(self.median)
        return f"{fmt(self.median)} ({fmt(self.lo)}-{fmt(self.hi)})"


@dataclass
class Goal:
    text: str
    met: bool
    measured: str

    def line(self) -> str:
        return f"{'met' if self.met else 'NOT met'}: {self.text} (measured: {self.measured})"


@dataclass
class BenchResult:
    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # why the benchmark did not finish, if it did not
    headline: str = ""  # one sentence computed from the figures, for RESULTS.md and the README

    def add(self, group: str, name: str, unit: str, samples, section: str = "") -> Figure:
        f = Figure(group, name, unit, [float(s) for s in samples], section)
        self.figures.append(f)
        return f

    def get(self, group: str, name: str) -> Figure:
        for f in self.figures:
            if f.group == group and f.name == name:
                return f
        raise KeyError(f"{self.key}: no figure '{name}' for '{group}'")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchResult":
        d = dict(d)
        d["figures"] = [Figure(**f) for f in d.get("figures", [])]
        d["goals"] = [Goal(**g) for g in d.get("goals", [])]
        return cls(**d)


@dataclass
class Entry:
    """One benchmark's latest result, with the machine and options it was measured with."""

    result: BenchResult
    info: dict[str, str]
    size: str
    repeats: int

    def to_dict(self) -> dict:
        return {"result": self.result.to_dict(), "info": self.info, "size": self.size, "repeats": self.repeats}

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        return cls(BenchResult.from_dict(d["result"]), d["info"], d["size"], int(d["repeats"]))


def store_path(out: Path) -> Path:
    """Where the figures behind ``out`` are kept (``RESULTS.md`` -> ``results.json``), so a run of
    some benchmarks (``--only``) updates their sections and keeps the others' last figures."""
    out = Path(out)
    return out.with_name(out.stem.lower() + ".json")


def merge(store: Path, new: list[Entry], order: list[str]) -> list[Entry]:
    """The stored entries with ``new`` in place of those of the same benchmark, saved back to
    ``store``, in ``order``. Entries of another size are dropped: one file reports one size."""
    size = new[0].size if new else None
    kept: dict[str, Entry] = {}
    if store.exists():
        for d in json.loads(store.read_text()):
            e = Entry.from_dict(d)
            if e.size == size:
                kept[e.result.key] = e
    for e in new:
        kept[e.result.key] = e
    entries = sorted(kept.values(), key=lambda e: order.index(e.result.key) if e.result.key in order else len(order))
    write(store, json.dumps([e.to_dict() for e in entries], indent=1) + "\n")
    return entries


def fmt(v: float) -> str:
    """Three significant digits, thousands separated; no exponent for everyday magnitudes."""
    a = abs(v)
    if v != v or a == float("inf"):
        return str(v)
    if a >= 1e4:
        return f"{v:,.0f}"
    if float(v).is_integer():
        return str(int(v))
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.001 or a == 0:
        return f"{v:.3g}"
    return f"{v:.2e}"


def tables(result: BenchResult) -> str:
    """The figures of one benchmark as markdown tables, one per section."""
    sections = list(dict.fromkeys(f.section for f in result.figures))
    parts = []
    for s in sections:
        figures = [f for f in result.figures if f.section == s]
        parts.append((f"**{s}**\n\n" if s else "") + table(figures))
    return "\n\n".join(parts)


def table(figures: list[Figure]) -> str:
    """Figures as one markdown table (a row per group, a column per name)."""
    groups = list(dict.fromkeys(f.group for f in figures))
    names = list(dict.fromkeys(f.name for f in figures))
    units = {f.name: f.unit for f in figures}
    cells = {(f.group, f.name): f.cell() for f in figures}
    header = ["", *(f"{n} [{units[n]}]" if units[n] else n for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        lines.append("| " + " | ".join([g, *(cells.get((g, n), "") for n in names)]) + " |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("nan")


def machine() -> dict[str, str]:
    """CPU, cores, memory, load and library versions, as the report header shows them."""
    import torch

    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable by this process)",
        "memory": f"{_mem_total_gb():.1f} GB",
        "load average at start": " / ".join(f"{x:.2f}" for x in load) + " (1 / 5 / 15 min)",
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (default intra-op threads: {torch.get_num_threads()})",
        "numpy": version("numpy"),
        "mlflow": version("mlflow"),
        "optuna": version("optuna"),
    }


_RUN_KEYS = ("date", "load average at start")  # what differs from one run to the next on one machine


def render(entries: list[Entry], command: str, carried: tuple[list[str], list[str]] = ([], [])) -> str:
    """The whole ``RESULTS.md``, from each benchmark's latest entry, then ``carried``: the goal lines
    and sections of the last file for the benchmarks the store lacks (``carried_sections``)."""
    newest = max(entries, key=lambda e: e.info.get("date", ""))
    machines = {json.dumps({k: v for k, v in e.info.items() if k not in _RUN_KEYS}, sort_keys=True) for e in entries}
    dates = sorted({e.info.get("date", "")[:10] for e in entries})
    out = [
        "# Benchmark results",
        "",
        f"Written by `{command}`; {len(entries)} benchmark(s), measured "
        + (f"on {dates[0]}" if len(dates) == 1 else f"between {dates[0]} and {dates[-1]}")
        + " (each section says when; `--only NAME` re-measures one and keeps the others' last figures, "
        "kept in `results.json`). Each cell is the median over the repeats, the spread (min-max) in "
        "parentheses; a single number was measured once. Ratios are taken repeat by repeat from "
        "figures measured side by side in the same process.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in newest.info.items()),
    ]
    if len(machines) > 1:
        out += ["", "Some sections were measured on another machine or library version: their own lines say which."]
    out += [
        "",
        "## Headline",
        "",
        *(f"- {e.result.headline}" for e in entries if e.result.headline),
        "",
        "## Goals",
        "",
    ]
    for e in entries:
        r = e.result
        out += [f"- **{r.title}**: " + g.line() for g in r.goals]
        if r.error:
            out.append(f"- **{r.title}**: FAILED, nothing measured: {r.error}")
    out += carried[0]
    for e in entries:
        r, info = e.result, e.info
        when = (f"{r.seconds:.0f} s; measured {info.get('date', '?')}, load average at start "
                f"{info.get('load average at start', '?')}, --repeats {e.repeats}")
        if len(machines) > 1:
            when += "; " + ", ".join(f"{k} {info[k]}" for k in ("cpu", "cores", "torch") if k in info)
        out += ["", f"## {r.title}", "", f"({when})", "", tables(r)]
        if r.notes:
            out += ["", *(f"- {n}" for n in r.notes)]
    out += carried[1]
    return "\n".join(out) + "\n"


CARRIED = "(not re-measured since the file of {when}: its figures, kept from it, come from that date's code and machine; `--only NAME` re-measures it)"


def carried_sections(previous: str, entries: list[Entry], order: list[str]) -> tuple[list[str], list[str]]:
    """The goal lines and sections of the last ``RESULTS.md`` (``previous``, its text) for the
    benchmarks that ``entries`` lack, each section under a line saying it was not re-measured.
    Figures written before they were kept in ``results.json`` exist only there, so they are
    carried rather than dropped. Section ``## N. ...`` is benchmark ``order[N - 1]``."""
    if "## Machine" not in previous:
        return [], []
    goals = re.search(r"^## Goals\n(.*?)(?=^## )", previous, re.M | re.S)
    old_goals = goals.group(1).strip("\n").splitlines() if goals else []
    have = {e.result.key for e in entries}
    date = re.search(r"^- date: (\S+)", previous, re.M)
    note = CARRIED.format(when=date.group(1)[:10] if date else "an earlier date")
    out, kept_goals = [], []
    for block in re.split(r"^(?=## )", previous, flags=re.M):
        m = re.match(r"## (\d+)\. ", block)
        if not m or not 1 <= int(m.group(1)) <= len(order) or order[int(m.group(1)) - 1] in have:
            continue
        title, _, body = block.partition("\n")
        body = body.strip("\n")
        out += ["", title, ""] + ([] if body.startswith("(not re-measured since") else [note, ""]) + [body]
        kept_goals += [g for g in old_goals if g.startswith(f"- **{title[3:]}**")]
    return kept_goals, out


README = RESULTS.parent.parent / "README.md"
HEADLINE_START = "<!-- benchmarks:headline -->"
HEADLINE_END = "<!-- /benchmarks:headline -->"


def with_headline(text: str, entries: list[Entry], order: list[str] | None = None) -> str | None:
    """``text`` (the README) with the lines between the headline markers replaced: one line per
    benchmark, each ending in the date it was measured and a hidden ``<!-- bench:KEY -->`` tag. A
    benchmark in ``entries`` gets its new headline; a tagged line of one that ``entries`` lacks
    (``--only`` re-measured another) is kept as it was, so the block never mixes up dates. None when
    the markers are missing."""
    start, end = text.find(HEADLINE_START), text.find(HEADLINE_END)
    if start < 0 or end < start:
        return None
    old = {}
    for line in text[start + len(HEADLINE_START):end].splitlines():
        m = re.search(r"<!-- bench:(\w+) -->\s*$", line)
        if m:
            old[m.group(1)] = line
    new = {e.result.key: f"- {e.result.headline.rstrip('.')} (measured {e.info['date'][:10]}). <!-- bench:{e.result.key} -->"
           for e in entries if e.result.headline}
    keys = list(order or []) + [k for k in [*old, *new] if k not in (order or [])]
    lines = [new.get(k) or old.get(k) for k in dict.fromkeys(keys)]
    info = max(entries, key=lambda e: e.info["date"]).info if entries else {"cpu": "?", "cores": "?"}
    head = f"Headline figures of the full-size benchmarks ({info['cpu']}, {info['cores']}), each with the date it was measured:"
    return text[: start + len(HEADLINE_START)] + "\n" + "\n".join([head, ""] + [l for l in lines if l]) + "\n" + text[end:]


def write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
