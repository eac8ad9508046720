"""What a benchmark measures (figures over repeats, goals) and ``RESULTS.md``.

A ``Figure`` is one quantity measured once per repeat: the report shows its
median and its spread (min - max). A benchmark's figures are laid out as
tables (one per ``section``), a row per ``group`` (e.g. a model and window
length) and a column per ``name``. Every goal is a verdict computed from the figures, with the figure
it was decided on.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from dataclasses import dataclass, field
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


def render(results: list[BenchResult], info: dict[str, str], size: str, repeats: int, total_s: float) -> str:
    """The whole ``RESULTS.md``."""
    out = [
        "# Benchmark results",
        "",
        f"`python -m benchmarks --size {size} --repeats {repeats}`: {len(results)} benchmark(s) in "
        f"{total_s / 60:.1f} min. Each cell is the median over the repeats, the spread (min-max) in "
        "parentheses; a single number was measured once. Ratios are taken repeat by repeat from "
        "figures measured side by side in the same process.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
        "## Headline",
        "",
        *(f"- {r.headline}" for r in results if r.headline),
        "",
        "## Goals",
        "",
    ]
    for r in results:
        out += [f"- **{r.title}**: " + g.line() for g in r.goals]
        if r.error:
            out.append(f"- **{r.title}**: FAILED, nothing measured: {r.error}")
    for r in results:
        out += ["", f"## {r.title}", "", f"({r.seconds:.0f} s)", "", tables(r)]
        if r.notes:
            out += ["", *(f"- {n}" for n in r.notes)]
    return "\n".join(out) + "\n"


README = RESULTS.parent.parent / "README.md"
HEADLINE_START = "<!-- benchmarks:headline -->"
HEADLINE_END = "<!-- /benchmarks:headline -->"


def with_headline(text: str, results: list[BenchResult], info: dict[str, str]) -> str | None:
    """``text`` (the README) with the lines between the headline markers replaced by the results'
    headlines; None when the markers are missing."""
    start, end = text.find(HEADLINE_START), text.find(HEADLINE_END)
    if start < 0 or end < start:
        return None
    lines = [f"Headline figures of the last full run ({info['date'][:10]}, {info['cpu']}, {info['cores']}):", ""]
    lines += [f"- {r.headline}" for r in results if r.headline]
    return text[: start + len(HEADLINE_START)] + "\n" + "\n".join(lines) + "\n" + text[end:]


def write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
