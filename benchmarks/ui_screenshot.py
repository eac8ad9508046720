"""The README's MLflow UI screenshot, taken in a real headless browser from a real study.

    python -m benchmarks.ui_screenshot [--out benchmarks/mlflow_ui.png] [--project DIR]

Runs a tiny tuned study (synthphone:tiny, 1 epoch, 2 arms x 2 tuning trials,
then 2 arms x 3 seeds of confirmations) into a
temporary project (or ``--project DIR``, reused if it already holds the runs),
starts ``python -m ablation ui`` on 127.0.0.1, opens the study's link as
``ablation ui`` prints it, checks that the page is MLflow's machine-learning
runs view (not the GenAI view with its traces), already grouped by arm with
the metric, the factor, the seed and the size as columns (the view the link
opens, ``tracking.arm_view``), checks
that each group's mean of the metric, as the table shows it, is the arm's
mean in the report (the report's own analysis of the same store), that the
view holds the report's cells and the parent run only (no tuning run), and
writes the screenshot (the table). Then it switches to the chart view and
checks the points Plotly draws: the view's scatter of the factor against the
metric has one point per report cell, at the cell's factor value and metric
value, and its bar chart of the metric one bar per cell, of the cell's value
(the store's numbers, as the report reads them).

Needs Chromium (Debian: ``apt-get install chromium``) and playwright, the
``screenshot`` extra (``pip install -c constraints.txt -e '.[screenshot]'``);
playwright drives the system's Chromium (``--chromium``), it downloads no
browser of its own. Neither is needed by the tests or CI.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = "ui_demo"
# tuned, as deep_vs_shallow is: its tuning trials are runs of the experiment too, which the view must leave out
STUDY_TOML = """\
question = "Is a 2-layer MLP better than a 1-layer one on the tiny corpus, each at its own best learning rate?"
base = "mlp_strong"
baseline = { "model.depth" = 1 }
seeds = [0, 1, 2]
protocol = "tuned"
[stopping]
patience = 1
max_epochs = 1
[tuning]
trials = 2
seeds = [7, 8]
[tuning.space]
"optim.lr" = { low = 0.0003, high = 0.03, log = true }
[factors]
"model.depth" = [1, 2]
[set]
"data.source" = "synthphone:tiny"
"optim.batch_size" = 256
"model.width" = 32
"train.threads" = 1
"""
# what the sidebar shows in each of MLflow 3's views: the check that the link opens the right one
ML_ONLY = ("Model registry",)
GENAI_ONLY = ("Sessions", "Judges", "Prompts")
METRIC, FACTOR = "val.acc", "model.depth"
COLUMNS = (METRIC, FACTOR, "ablation.seed", "n_params")  # metric, factor, seed, size
# the chart view's cards the link sets up (tracking.arm_view), by the titles MLflow gives them
SCATTER, BAR = f"{FACTOR} vs. {METRIC}", METRIC
TOLERANCE = 1e-9  # the charts hold the store's floats; the table shows them in full


class ScreenshotError(Exception):
    """What went wrong, in one line."""


def _env(project: Path) -> dict[str, str]:
    env = dict(os.environ, ABLATION_HOME=str(project), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for name in ("MLFLOW_TRACKING_URI", "ABLATION_STORAGE"):
        env.pop(name, None)
    return env


def run_study(project: Path) -> None:
    """The study's runs (and report, so the parent carries the verdict), at low priority on one thread."""
    (project / "studies").mkdir(parents=True, exist_ok=True)
    (project / "studies" / f"{STUDY}.toml").write_text(STUDY_TOML)
    if not (project / "experiments").is_dir():
        import shutil

        shutil.copytree(REPO / "experiments", project / "experiments")
    cmd = ["nice", "-n", "10", sys.executable, "-m", "ablation", "run", STUDY, "--jobs", "1"]
    done = subprocess.run(cmd, env=_env(project), capture_output=True, text=True)
    if done.returncode != 0:
        raise ScreenshotError(f"the study did not run (exit {done.returncode}): {done.stderr.strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(project: Path, port: int) -> tuple[subprocess.Popen, str]:
    """``ablation ui`` and the link it prints for the study: it prints its links
    once the server answers ``/health``, so the link is ready to open."""
    proc = subprocess.Popen([sys.executable, "-m", "ablation", "ui", "--port", str(port)], env=_env(project),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    link, printed, deadline = None, [], time.time() + 240
    while link is None and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        printed.append(line.rstrip())
        m = re.match(rf"\s+{STUDY}: (http://\S+)$", line.rstrip())
        link = m.group(1) if m else None
    if link is None:
        stop_ui(proc)
        raise ScreenshotError(f"'ablation ui' printed no link for study '{STUDY}': {' | '.join(printed)[-300:]}")
    return proc, link


@dataclass(frozen=True)
class Cell:
    run_id: str
    name: str  # the run's name, the chart's hover text
    factor: float  # the factor's value (the param)
    value: float  # the metric


def report_data(project: Path) -> tuple[dict[str, float], list[Cell]]:
    """Each arm's mean of the study's metric as its report states it (the
    report's own analysis of the runs it uses: a tuned study's confirmation
    runs only), which the UI's grouped means are checked against, and the
    cells it uses, with their factor and metric as the store holds them,
    which the charts' points are checked against."""
    os.environ["ABLATION_HOME"] = str(project)  # the project's default store, as `ablation ui` opens it
    from ablation.report.analysis import analyse
    from ablation.report.load import load_study

    runs = load_study(STUDY)
    analysis = analyse(runs)
    if analysis.metric != METRIC:
        raise ScreenshotError(f"the study's metric is {analysis.metric}, not {METRIC}")
    rows = analysis.summary[analysis.summary["metric"] == analysis.metric]
    cells = [Cell(str(r["run_id"]), str(r["run_name"]), float(r[f"params.{FACTOR}"]), float(r[f"metrics.{METRIC}"]))
             for _, r in runs.cells.iterrows()]
    return {str(r.arm): float(r.mean) for r in rows.itertuples()}, cells


def stop_ui(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)  # ablation ui stops its MLflow server on SIGTERM
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def check_ml_view(page) -> None:
    """The page the link opens is the runs table of MLflow's machine-learning view."""
    nav = page.locator("nav, aside").first.inner_text() if page.locator("nav, aside").count() else ""
    body = page.inner_text("body")
    sidebar = nav or body
    missing = [w for w in ML_ONLY if w not in sidebar]
    genai = [w for w in GENAI_ONLY if re.search(rf"(^|\n){w}(\n|$)", sidebar)]
    if missing or genai or "workflowType=machine_learning" not in page.url:
        raise ScreenshotError(f"the study's link opened MLflow's GenAI view, not the runs view "
                              f"(sidebar lacks {missing}, shows {genai}; url {page.url})")


def grouped_means(page, metric: str) -> dict[str, float]:
    """The runs table's groups as the UI shows them: group (arm) -> the
    metric column's aggregate (MLflow's default, the average). The table's
    pinned and scrolled parts are separate rows that share a ``row-index``."""
    out = {}
    for row in page.locator("[row-index]").filter(has_text="Group: ").all():
        name = re.search(r"Group: (.+)", row.inner_text()).group(1).strip()
        cell = page.locator(f'[row-index="{row.get_attribute("row-index")}"] [col-id="metrics.`{metric}`"]')
        m = re.fullmatch(r"\s*(-?\d[\d.]*(?:e-?\d+)?) \(average\)\s*", cell.first.inner_text()) if cell.count() else None
        if m:
            out[name] = float(m.group(1))
    return out


def check_grouped_means(page, expected: dict[str, float], metric: str = METRIC) -> None:
    """What a user reads in the UI after grouping by arm is the report's per-arm mean."""
    shown = grouped_means(page, metric)
    wrong = {arm: (shown.get(arm), mean) for arm, mean in expected.items()
             if shown.get(arm) is None or abs(shown[arm] - mean) > TOLERANCE}
    if wrong or set(shown) != set(expected):
        raise ScreenshotError(f"the UI's grouped {metric} means are not the report's: "
                              + "; ".join(f"{arm}: UI {ui}, report {rep}" for arm, (ui, rep) in wrong.items())
                              + (f"; groups {sorted(shown)} against arms {sorted(expected)}" if not wrong else ""))


def check_only_the_reports_runs(page, n_cells: int) -> None:
    """The view holds the report's cells and the parent run MLflow loads beside
    its children (under "Additional runs"), not the tuning trials or their runs."""
    m = re.search(r"(\d+) matching runs", page.inner_text("body"))
    shown = int(m.group(1)) if m else None
    if shown != n_cells + 1:
        raise ScreenshotError(f"the view shows {shown} runs, not the report's {n_cells} cells and the parent run")


def chart_traces(page, titles: tuple[str, ...], timeout_s: float = 60) -> dict[str, list[dict]]:
    """The Plotly traces of the chart cards with these titles, as drawn
    (``data`` of each card's ``.js-plotly-plot``). MLflow draws a card only
    once it is on screen, so each is scrolled into view first."""
    read = """titles => Object.fromEntries([...document.querySelectorAll(
        '[data-testid=experiment-view-compare-runs-card]')].map(card => [card.innerText.split('\\n')[0].trim(),
        [...card.querySelectorAll('.js-plotly-plot')].flatMap(g => (g.data || []).map(t => ({
            type: t.type, x: Array.from(t.x || []), y: Array.from(t.y || []),
            text: Array.isArray(t.text) ? t.text : []})))]).filter(([t]) => titles.includes(t)))"""
    found: dict[str, list[dict]] = {}
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        cards = page.locator("[data-testid=experiment-view-compare-runs-card]")
        for i in range(cards.count()):
            if cards.nth(i).inner_text().split("\n")[0].strip() in titles:
                cards.nth(i).scroll_into_view_if_needed()
        found = page.evaluate(read, list(titles))
        if all(found.get(t) and all(tr["x"] for tr in found[t]) for t in titles):
            return found
        page.wait_for_timeout(1000)
    drawn = {t: len(found.get(t) or []) for t in titles}
    raise ScreenshotError(f"the chart view did not draw the charts the link sets up (traces per card: {drawn}; "
                          f"cards shown: {page.locator('[data-testid=experiment-view-compare-runs-card]').count()})")


def _num(v) -> float:
    """A plotted value as a number: NaN (never close to anything) when Plotly holds none."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE


def check_charts(page, cells: list[Cell]) -> None:
    """The chart view's scatter of the factor against the metric and its bar
    chart of the metric hold the report's cells, one point (bar) each, at the
    store's values: the scatter's x the cell's factor, its y the cell's metric
    (matched by the run name Plotly shows on hover), each bar the cell's metric
    (matched by run id, the bar chart's category)."""
    page.locator("label:has(input[name=runs-view-mode][value=CHART])").click()
    traces = chart_traces(page, (SCATTER, BAR))
    for t in traces[SCATTER]:
        if len(t["text"]) != len(t["x"]):  # the hover text names each point's run: without it, no matching
            raise ScreenshotError(f"the scatter '{SCATTER}' names {len(t['text'])} runs for {len(t['x'])} points "
                                  "(grouped values in the charts?)")
    by_name = {c.name: c for c in cells}
    points = [(str(n), _num(x), _num(y)) for t in traces[SCATTER] if t["type"] == "scatter"
              for n, x, y in zip(t["text"], t["x"], t["y"])]
    wrong = [p for p in points if p[0] not in by_name or not (_close(p[1], by_name[p[0]].factor)
                                                               and _close(p[2], by_name[p[0]].value))]
    if wrong or sorted(p[0] for p in points) != sorted(by_name):
        raise ScreenshotError(f"the scatter '{SCATTER}' is not the report's cells: it draws {len(points)} points "
                              f"for {len(cells)} cells; off: {wrong[:3]}, "
                              f"missing: {sorted(set(by_name) - {p[0] for p in points})}")
    by_id = {c.run_id: c for c in cells}
    bars = [(str(run), _num(x)) for t in traces[BAR] if t["type"] == "bar" for x, run in zip(t["x"], t["y"])]
    wrong = [b for b in bars if b[0] not in by_id or not _close(b[1], by_id[b[0]].value)]
    if wrong or sorted(b[0] for b in bars) != sorted(by_id):
        raise ScreenshotError(f"the bar chart '{BAR}' is not the report's cells: it draws {len(bars)} bars "
                              f"for {len(cells)} cells; off: {wrong[:3]}")
    print(f"scatter '{SCATTER}': " + ", ".join(f"{n} ({x:g}, {y:.6f})" for n, x, y in sorted(points)))
    print(f"bar '{BAR}': " + ", ".join(f"{n} {v:.6f}" for n, v in sorted((by_id[r].name, v) for r, v in bars)))


def shoot(link: str, out: Path, chromium: str, expected: dict[str, float], cells: list[Cell]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--renderer-process-limit=1"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 580})
            page.goto(link)
            page.get_by_text(re.compile(r"\d+ matching runs")).wait_for(timeout=120_000)
            check_ml_view(page)
            close = page.get_by_role("button", name=re.compile("close", re.I))
            if close.count():
                close.last.click()  # the assistant panel takes a third of the page
            # the link opens the view ablation ui shared: grouped by arm, the study's columns
            if not page.get_by_text("Group by: ablation.arm").count():
                raise ScreenshotError(f"the study's link did not open its runs grouped by arm ({page.url})")
            exit_banner = page.get_by_role("button", name="Exit shared view")
            if exit_banner.count():  # its notice, not the view: close the notice only
                exit_banner.locator("xpath=following::button[1]").first.click()
            page.wait_for_timeout(2000)
            headers = page.locator("[role=columnheader]").all_inner_texts()
            missing = [c for c in COLUMNS if not any(c in h for h in headers)]
            if missing:
                raise ScreenshotError(f"the runs table lacks the columns {missing}")
            check_grouped_means(page, expected)
            check_only_the_reports_runs(page, len(cells))
            print("grouped means: " + ", ".join(f"{a} {m:.6f}" for a, m in sorted(expected.items())))
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            check_charts(page, cells)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ui_screenshot", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "mlflow_ui.png")
    ap.add_argument("--project", type=Path, help="project folder to run the study in (default: a temporary one)")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="the browser binary (default /usr/bin/chromium)")
    args = ap.parse_args(argv)
    if not Path(args.chromium).is_file():
        print(f"ui_screenshot: no browser at {args.chromium}; install Debian's chromium or pass --chromium",
              file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("ui_screenshot: playwright is missing; pip install -c constraints.txt -e '.[screenshot]'",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ablation-ui-") as tmp:
        project = args.project or Path(tmp)
        try:
            run_study(project)
            expected, cells = report_data(project)
            if len(cells) != len(expected) * 3:  # 3 seeds an arm
                raise ScreenshotError(f"the report uses {len(cells)} cells, not {len(expected)} arms x 3 seeds")
            proc, link = start_ui(project, _free_port())
            try:
                shoot(link, args.out, args.chromium, expected, cells)
            finally:
                stop_ui(proc)
        except ScreenshotError as e:
            print(f"ui_screenshot: {e}", file=sys.stderr)
            return 1
    print(f"{args.out} (from {link})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
