"""The whole report pipeline against an MLflow store with known numbers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as st

from ablation.cli import main
from ablation.errors import TrackingError
from ablation.report import ReportError, analyse, build_report, load_study
from ablation.report.build import read_marker

from .conftest import (
    ALPHA_ARMS, ALPHA_PARAMS, ALPHA_RECALL, ALPHA_SEEDS, ALPHA_TEST, ALPHA_VAL, ARM_CEILING_VAL, CEILING_VAL, EPOCHS,
    PHONES, SEED_SIZES,
)

PNG = b"\x89PNG\r\n\x1a\n"


def t_ci(x):
    x = np.asarray(x, float)
    n, mean = len(x), float(np.mean(x))
    half = st.t.ppf(0.975, n - 1) * np.std(x, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_p(a, b):
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return 2 * st.t.sf(abs(t), len(d) - 1)


@pytest.fixture(scope="module")
def alpha(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    path = build_report("alpha", store.uri, out)
    return out, path, path.read_text()


def test_load_uses_newest_generation_and_rerun_cells(store):
    runs = load_study("alpha", store.uri)
    assert runs.info.arms == ALPHA_ARMS and runs.info.seeds == ALPHA_SEEDS and runs.info.baseline == "depth=2"
    assert len(runs.cells) == 9 and runs.missing.empty
    got = dict(zip(zip(runs.cells["arm"], runs.cells["seed"]), runs.cells["metrics.val.acc"]))
    want = {(a, s): ALPHA_VAL[a][i] for a in ALPHA_ARMS for i, s in enumerate(ALPHA_SEEDS)}
    assert got == pytest.approx(want)  # the 0.99 of the older generation is not used
    assert 0.99 not in runs.cells["metrics.val.acc"].tolist()
    assert (runs.children["status"] == "FAILED").sum() == 1  # the failed first attempt of depth=4 seed 2
    hist = runs.history[(runs.history["key"] == "epoch.val_acc") & (runs.history["arm"] == "depth=4")]
    assert sorted(hist["step"].unique()) == list(range(1, EPOCHS + 1)) and len(hist) == 3 * EPOCHS
    last = hist[hist["step"] == EPOCHS]["value"].mean()
    assert last == pytest.approx(np.mean(ALPHA_VAL["depth=4"]))


def test_summary_paired_and_holm_against_hand_values(store):
    a = analyse(load_study("alpha", store.uri))
    s = a.summary.set_index(["arm", "metric"])
    for arm in ALPHA_ARMS:
        for metric, table in (("val.acc", ALPHA_VAL), ("test.acc", ALPHA_TEST)):
            assert s.loc[(arm, metric), ["mean", "lo", "hi"]].tolist() == pytest.approx(t_ci(table[arm]))
        assert s.loc[(arm, "n_params"), "mean"] == ALPHA_PARAMS[arm]
    p = a.paired["val.acc"].set_index("arm")
    raw = {arm: paired_p(ALPHA_VAL[arm], ALPHA_VAL["depth=2"]) for arm in ("depth=4", "depth=6")}
    lo_arm, hi_arm = sorted(raw, key=raw.get)
    holm = {lo_arm: min(1, 2 * raw[lo_arm]), hi_arm: min(1, max(2 * raw[lo_arm], raw[hi_arm]))}
    for arm in raw:
        d = np.subtract(ALPHA_VAL[arm], ALPHA_VAL["depth=2"])
        assert p.loc[arm, ["mean_diff", "lo", "hi"]].tolist() == pytest.approx(t_ci(d))
        assert p.loc[arm, "p"] == pytest.approx(raw[arm])
        assert p.loc[arm, "p_holm"] == pytest.approx(holm[arm])
    assert p.loc["depth=4", "distinguishable"] and not p.loc["depth=6", "distinguishable"]
    assert a.ceilings["val.acc"] == pytest.approx(CEILING_VAL)
    assert a.recall.loc["depth=4", "iy"] == pytest.approx(np.mean(ALPHA_RECALL["depth=4"]["iy"]))
    assert list(a.recall.columns) == sorted(PHONES)
    top = a.changes[a.changes["arm"] == "depth=4"].iloc[0]
    assert top["phone"] == "iy"
    assert top["mean_diff"] == pytest.approx(np.mean(np.subtract(ALPHA_RECALL["depth=4"]["iy"], ALPHA_RECALL["depth=2"]["iy"])))


def test_markdown_prints_the_hand_computed_numbers(alpha):
    _, _, md = alpha
    for arm in ALPHA_ARMS:
        mean, lo, hi = t_ci(ALPHA_VAL[arm])
        assert f"{mean:.4f} [{lo:.4f}, {hi:.4f}]" in md
        assert f"{mean / CEILING_VAL:.1%}" in md
    d = np.subtract(ALPHA_VAL["depth=4"], ALPHA_VAL["depth=2"])
    mean, lo, hi = t_ci(d)
    raw4, raw6 = (paired_p(ALPHA_VAL[a], ALPHA_VAL["depth=2"]) for a in ("depth=4", "depth=6"))
    holm4 = min(1, 2 * min(raw4, raw6)) if raw4 < raw6 else min(1, max(2 * raw6, raw4))
    paired = md.split("## Paired differences", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in paired.splitlines() if line.startswith("| `depth=4` ") and "| better " in line)
    assert f"{mean:+.4f}" in row and f"[{lo:+.4f}, {hi:+.4f}]" in row
    assert f"{raw4:.4f}" in row and f"{holm4:.4f}" in row and "1.00 (3/3)" in row
    verdict = md.split("## Verdict", 1)[1].split("\n\n")[1]
    assert verdict == (
        f"**`depth=4` is best on val accuracy ({np.mean(ALPHA_VAL['depth=4']):.4f}) and better than the baseline "
        f"at 3 seeds: {mean:+.4f} (95% CI {lo:+.4f} to {hi:+.4f}; ahead on 3 of 3 paired seeds). This holds at a "
        f"{EPOCHS}-epoch budget: some arms were still improving (see Fairness).**"  # the fixture's curves rise to the end
    )
    six = np.subtract(ALPHA_VAL["depth=6"], ALPHA_VAL["depth=2"])
    assert (f"Against the baseline, at a smallest effect of interest of ±0.005: better: `depth=4` ({mean:+.4f}); "
            f"undecided: `depth=6` ({six.mean():+.4f}).") in md
    # the undecided arm: TOST p and seeds needed by hand (the rule on simulated normal differences, alpha / 2 arms)
    n, se = 3, six.std(ddof=1) / math.sqrt(3)
    tost = max(st.t.sf((six.mean() + 0.005) / se, n - 1), st.t.cdf((six.mean() - 0.005) / se, n - 1))

    def powers(k, sd=six.std(ddof=1), m=0.005, alpha=0.025, sims=40_000):
        """P(better | +m), P(equivalent | 0) at k seeds: equivalence (TOST) tested first, then the t-test."""
        out = []
        for true in (m, 0.0):
            x = np.random.default_rng(k).normal(true, sd, size=(sims, k))
            mean, se = x.mean(1), x.std(1, ddof=1) / math.sqrt(k)
            equiv = (st.t.sf((mean + m) / se, k - 1) < alpha) & (st.t.cdf((mean - m) / se, k - 1) < alpha)
            better = ~equiv & (mean > 0) & (2 * st.t.sf(np.abs(mean) / se, k - 1) < alpha)
            out.append((better if true else equiv).mean())
        return min(out)

    head, row6 = (next(line for line in paired.splitlines() if line.startswith(start)) for start in ("| arm ", "| `depth=6` "))
    cols = dict(zip(*([c.strip() for c in line.split("|")[1:-1]] for line in (head, row6))))
    needed = int(cols["seeds needed"])  # the fewest seeds with both chances at 80% (to Monte-Carlo error)
    assert cols["decision"] == "undecided" and cols["p (TOST ±0.005)"] == f"{tost:.4f}" and needed > 3
    assert powers(needed) >= 0.8 - 0.01 and powers(needed - 1) < 0.8 + 0.01
    assert "9 / 9 cells done" in md and "TOST" in md and "Holm-corrected over the 2 arms" in md
    assert "| 1: 0.7120, 2: 0.7190, 3: 0.7160 |" in md.replace("  ", " ").replace("  ", " ")  # every seed's value
    assert "Fairness violation" not in md
    assert "python -m ablation run alpha" in md and "`0123abc`" in md and "`model.depth`: 2, 4, 6" in md


def test_arm_ceilings_gap_decomposition_and_per_seed_sizes(alpha):
    _, _, md = alpha
    # train acc: the last epoch's running mean, val + 0.05 in the fixture's history
    for arm in ALPHA_ARMS:
        val, train, own = np.mean(ALPHA_VAL[arm]), np.mean(ALPHA_VAL[arm]) + 0.05, ARM_CEILING_VAL[arm]
        per_arm = next(line for line in md.split("## Results per arm")[1].splitlines() if line.startswith(f"| `{arm}`"))
        assert f"| {own:.4f} " in per_arm and f"{val / own:.1%}" in per_arm
        gaps = md.split("## Where the accuracy goes")[1].split("\n## ")[0]
        row = [c.strip() for c in next(line for line in gaps.splitlines() if line.startswith(f"| `{arm}`")).split("|")[1:-1]]
        assert row[1:] == ["11-frame window", f"{CEILING_VAL:.4f}", f"{own:.4f}", f"{train:.4f}", f"{val:.4f}",
                           f"{CEILING_VAL - own:+.4f}", f"{own - train:+.4f}", f"{train - val:+.4f}"]
    data = next(line for line in md.splitlines() if line.startswith("| data"))
    for seed, sizes in SEED_SIZES.items():
        assert f"seed {seed}: train: {sizes['train']['frames']:,} frames; val: {sizes['val']['frames']:,} frames" in data


def test_figures_exist_as_png_and_are_linked(alpha):
    out, _, md = alpha
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(
        f"alpha/{n}.png" for n in ("metric_by_arm", "learning_curves", "recall_heatmap", "recall_changes")
    )
    for rel in links:
        data = (out / rel).read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_report_is_deterministic_and_indexed(store, alpha, tmp_path):
    out, path, md = alpha
    assert build_report("alpha", store.uri, out).read_text() == md
    meta = read_marker(path)
    index = (out / "README.md").read_text()
    assert "[alpha](alpha.md)" in index and meta["verdict"] in index and meta["question"] in index
    assert meta["decisions"] == {"depth=4": "better", "depth=6": "undecided"} and meta["min_effect"] == 0.005
    assert "**Decisions** (vs the baseline, smallest effect of interest ±0.005): `depth=4` better, `depth=6` undecided" in index
    assert f"**{meta['verdict']}**" in md


def test_fairness_violation_flagged_before_verdict(store, tmp_path):
    md = build_report("unfair", store.uri, tmp_path).read_text()
    top = md.split("## Verdict", 1)[0]
    assert "**Fairness violation.**" in top
    assert "**parameter count**" in top and "`w=b` seed 1: 120,000 (+20.0%)" in top
    assert "**same data**" in top and "`fp99`" in top
    table = md.split("## Fairness", 1)[1].split("##", 1)[0]
    assert re.search(r"\| parameter count\s+\| VIOLATED", table) and re.search(r"\| same data\s+\| VIOLATED", table)
    assert re.search(r"\| same seeds\s+\| ok", table)
    assert "**Fairness violation: see the report.**" in (tmp_path / "README.md").read_text()


def test_missing_cells_listed_with_reasons(store, tmp_path):
    md = build_report("holes", store.uri, tmp_path).read_text()
    assert "3 / 6 cells done" in md
    missing = md.split("### Missing cells", 1)[1].split("##", 1)[0]
    assert re.search(r"`lr=0.001`\s+\|\s+2\s+\|\s+not run", missing)
    assert re.search(r"`lr=0.01`\s+\|\s+3\s+\|\s+failed: DivergedError: diverged: loss is nan at epoch 2", missing)
    assert re.search(r"`lr=0.01`\s+\|\s+2\s+\|\s+finished run \w+ has no finite val.acc", missing)
    assert "0.5100 [" in md and "0.5500 [n/a (1 seed)]" in md  # means over the seeds each arm has
    assert "0.4800 [n/a (1 seed)]" in md  # test.acc: seed 3 lacks it, so it is left out, and said so
    assert "- test accuracy: `lr=0.001` seed 3" in md


def test_a_partial_report_says_k_of_n_names_every_hole_and_its_verdict_says_partial(store, alpha, tmp_path):
    md = build_report("holes", store.uri, tmp_path).read_text()
    meta = read_marker(tmp_path / "holes.md")
    assert meta["cells"] == "3/6" and "3 / 6 cells done" in md and "From 3 of 6 cells" in md
    holes = md.split("### Missing cells", 1)[1].split("##", 1)[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in holes.splitlines() if line.startswith("| `")]
    assert sorted(r[:2] for r in rows) == [["`lr=0.001`", "2"], ["`lr=0.01`", "2"], ["`lr=0.01`", "3"]]
    assert all(r[2] for r in rows)  # each with its reason
    partial = " Partial: from 3 of 6 cells; the 3 missing or failed (listed in the report) could change it."
    verdict = md.split("## Verdict", 1)[1].split("\n\n", 2)[1]
    assert verdict.startswith("**") and partial in verdict and partial in meta["verdict"]
    line = next(x for x in (tmp_path / "README.md").read_text().splitlines() if x.startswith("**Verdict:**"))
    assert line.startswith(f"**Verdict:** {meta['verdict']}") and line.endswith("(3/6 cells)")
    _, path, complete = alpha  # a complete study's verdict is what it was
    assert "Partial" not in complete and "Partial" not in read_marker(path)["verdict"]


def test_one_seed_says_na(store, tmp_path):
    md = build_report("single", store.uri, tmp_path).read_text()
    assert "0.6000 [n/a (1 seed)]" in md and "0.6400 [n/a (1 seed)]" in md
    assert "undecided (a test needs 2 paired seeds): +0.0400 at 1 paired seed (no interval)" in md


def test_cli_report_and_all(store, tmp_path, capsys):
    assert main(["report", "alpha", "--tracking-uri", store.uri, "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "alpha.md")
    assert main(["report", "--all", "--tracking-uri", store.uri, "--out", str(tmp_path / "all")]) == 0
    names = sorted(p.name for p in (tmp_path / "all").glob("*.md"))
    assert names == ["README.md", "alpha.md", "holes.md", "single.md", "unfair.md"]


def test_cli_unknown_study_exits_2_with_one_line(store, tmp_path, capsys):
    assert main(["report", "nope", "--tracking-uri", store.uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no study 'nope'" in err and "alpha" in err
    assert main(["report", "--tracking-uri", store.uri]) == 2
    assert not list(tmp_path.iterdir())
    with pytest.raises(ReportError, match="did you mean 'alpha'"):
        load_study("alpah", store.uri)


def test_unreachable_store_raises_tracking_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(TrackingError, match="cannot be reached"):
        load_study("alpha", "http://127.0.0.1:9")


def _children(rows):
    import pandas as pd

    cols = ["run_id", "arm", "seed", "status", "start_time", "error", "pruned", "fingerprint", "metrics.val.acc",
            "metrics.n_params", "params.train.epochs"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows], columns=cols)


def test_select_cells_and_fairness_without_mlflow():
    from dataclasses import replace

    from ablation.report.fairness import check_fairness
    from ablation.report.load import select_cells

    kids = _children([
        ("r1", "a", 1, "FINISHED", 1, "", False, "fp", 0.50, 1000, "4"),
        ("r2", "a", 1, "FINISHED", 2, "", False, "fp", 0.52, 1000, "4"),  # newest finished wins
        ("r3", "b", 1, "FINISHED", 3, "", True, "fp", 0.60, 1000, "6"),  # pruned, other epoch budget
        ("r4", "a", 2, "FINISHED", 4, "", False, "fp", 0.51, 1000, "4"),
        ("r5", "b", 2, "KILLED", 5, "interrupted by the user", False, "fp", float("nan"), 1000, "6"),
    ])
    cells, missing = select_cells(kids, ["a", "b"], [1, 2], "val.acc")
    assert cells["run_id"].tolist() == ["r2", "r4", "r3"]  # declared arm order, then seed
    assert missing.to_dict("records") == [{"arm": "b", "seed": 2, "reason": "killed: interrupted by the user"}]
    info = replace(_info(), arms=["a", "b"], seeds=[1, 2], param_budget=None)
    checks = {c.name: c for c in check_fairness(info, cells, kids)}
    assert checks["no pruning"].ok is False and "`b` seed 1" in checks["no pruning"].detail
    assert checks["same epoch budget"].ok is False and "`a`: 4; `b`: 6" in checks["same epoch budget"].detail
    assert checks["same seeds"].ok is False and "`b` lacks 2" in checks["same seeds"].detail
    assert checks["parameter count"].ok is None and checks["same data"].ok is True
    tpe = {c.name: c for c in check_fairness(replace(info, sampler="tpe"), cells, kids)}
    assert tpe["no pruning"].ok is None  # pruning is allowed in a tuning study


def _info():
    from ablation.report.load import StudyInfo

    return StudyInfo(
        name="s", parent_run_id="p", started="", question="q", base="b", factors=["model.depth"], arms=[],
        arm_levels={}, baseline="a", metric="val.acc", direction="maximize", seeds=[], scale="quick",
        sampler="grid", param_budget=None, budget_tolerance=0.01, command="", hash="", data_source="",
        data_fingerprint="fp", data_sizes={}, git_commit="",
    )


def test_simulation_reads_the_paired_spread_from_a_report(alpha):
    from ablation.simulate import measured_spreads

    out, _, _ = alpha
    base = np.asarray(ALPHA_VAL["depth=2"])
    variances = [np.var(np.subtract(ALPHA_VAL[a], base), ddof=1) for a in ("depth=4", "depth=6")]
    assert measured_spreads(out) == {"alpha": pytest.approx(math.sqrt(np.mean(variances)))}


def test_the_ceilings_say_what_of_the_speaker_they_know(alpha):
    from ablation.report.markdown import _speaker_known

    _, _, md = alpha
    gaps = md.split("## Where the accuracy goes")[1].split("\n## ")[0]
    assert "the true speaker offset and rate, which no model sees" in gaps  # the fixture's data: version 1
    assert _speaker_known("synthphone:small") == "offset and rate"
    assert _speaker_known("synthphone:small-v2") == "offset, rate and mixing of the cepstra"
    assert _speaker_known("synthphone:no-such") == _speaker_known(None) == "offset and rate"
