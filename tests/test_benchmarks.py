"""The benchmark suite: its pieces against hand computations, then every
benchmark once at the tiny size, checked for sane numbers (this part runs
child processes and a real study, a few minutes on 2 cores: marked slow, so
`pytest -q` leaves it to `pytest -m slow` and CI)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from ablation.commands.run import default_jobs
from ablation.data.sequences import SequenceBatches
from ablation.data.sources import load_dataset
from ablation.data.windows import Windows
from ablation.experiment import prepare
from benchmarks import experiment_config
from benchmarks.bench_rnn import NaiveBatches
from benchmarks.bench_study import idle_spans, timeline
from benchmarks.recipe import concat_feat, materialise, recipe_loader
from benchmarks.report import (
    HEADLINE_END,
    HEADLINE_START,
    README,
    RESULTS,
    BenchResult,
    Entry,
    Figure,
    Goal,
    carried_sections,
    fmt,
    merge,
    render,
    store_path,
    with_headline,
)


# ---- pieces ---------------------------------------------------------------------
def test_concat_feat_replicates_the_edges():
    x = torch.arange(4.0)[:, None].repeat(1, 2)  # frame t holds (t, t)
    out = concat_feat(x, 5)  # rows: frames t-2 .. t+2, clamped to 0..3
    expected = [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]
    assert out.shape == (4, 10)
    assert out[:, ::2].tolist() == expected and out[:, 1::2].tolist() == expected
    assert torch.equal(concat_feat(x, 1), x)


@pytest.mark.parametrize("n", [1, 7])
def test_recipe_windows_equal_ours(n):
    corpus = load_dataset("synthphone:tiny").pool
    X, y = materialise(corpus, n)
    ours = Windows(corpus, n)(torch.arange(corpus.n_frames), flat=True)
    assert X.shape == (corpus.n_frames, 39 * n)
    assert torch.equal(X, ours)
    assert y.tolist() == corpus.labels.tolist()
    loader = recipe_loader(X, y, batch_size=512, seed=0)
    sizes = [len(b[0]) for b in loader]
    assert sum(sizes) == corpus.n_frames and max(sizes) == 512


def test_naive_batches_pad_to_the_longest_of_random_groups():
    corpus = load_dataset("synthphone:tiny").pool
    naive = NaiveBatches(corpus, per_batch=5, seed=0, n=1)
    plan = naive.plan()
    assert sorted(np.concatenate(plan).tolist()) == list(range(corpus.n_utts)) and len(naive) == len(plan)
    cells = sum(len(g) * corpus.lengths[g].max() for g in plan)
    assert naive.padding_fraction == pytest.approx(1 - corpus.n_frames / cells)
    frames = sum(int((y >= 0).sum()) for _, y, lengths in naive if lengths is None)
    assert frames == corpus.n_frames


def test_timeline_splits_the_worker_seconds():
    cells = [  # worker a: two cells; worker b: one cell, done 8 s before a's last; worker c never ran one
        {"start": 10.0, "end": 20.0, "train": 6.0, "eval": 1.0, "worker": "a"},
        {"start": 21.0, "end": 30.0, "train": 7.0, "eval": 0.5, "worker": "a"},
        {"start": 12.0, "end": 22.0, "train": 9.0, "eval": 0.25, "worker": "b"},
    ]
    parts = timeline(cells, t0=0.0, t1=35.0, jobs=3)
    assert parts["wall"] == 35.0 and parts["worker-seconds"] == 105.0
    assert parts["training steps"] == 22.0 and parts["between cells"] == 1.0
    assert parts["before the first cell"] == 10.0 + 12.0
    assert parts["evaluation"] == 1.75
    assert parts["in cells, the rest"] == (10 - 6) + (9 - 7) + (10 - 9) - 1.75
    assert parts["waiting for the last cell"] == 8.0 + 30.0  # b after its cell, c from the start
    assert parts["report"] == 3 * 5.0
    assert sum(v for k, v in parts.items() if k not in ("wall", "worker-seconds")) == 105.0
    with pytest.raises(ValueError, match="more than the 1 started"):
        timeline(cells, t0=0.0, t1=35.0, jobs=1)


def test_idle_spans_name_the_longest_gap_and_the_cells_that_ran_alone_at_the_end():
    cells = [  # a: a 3 s gap before its second cell; b ends at 22, so a's second cell runs alone 8 s
        {"start": 10.0, "end": 20.0, "worker": "a", "name": "x seed=0"},
        {"start": 23.0, "end": 30.0, "worker": "a", "name": "x seed=1"},
        {"start": 12.0, "end": 21.0, "worker": "b", "name": "y seed=0"},
        {"start": 21.5, "end": 22.0, "worker": "b", "name": "y seed=1"},
    ]
    assert idle_spans(cells) == ("longest gap between a worker's cells 3.0 s (before `x seed=1`); "
                                 "the last 8.0 s ran `x seed=1` alone")
    one = [{"start": 0.0, "end": 5.0, "worker": "a", "name": "z"}]
    assert idle_spans(one) == "no worker ran two cells; the last 0.0 s ran nothing alone"


def _entry(key: str, headline: str = "", date: str = "2026-01-02T03:04:05+00:00", size: str = "full") -> Entry:
    info = {"date": date, "cpu": "CPU X", "cores": "2 logical", "load average at start": "0.1 / 0.2 / 0.3 (1 / 5 / 15 min)"}
    result = BenchResult(key, key.upper(), headline=headline, seconds=3.0)
    result.add("g", "x", "s", [1.0, 2.0, 4.0])
    result.goals.append(Goal(f"{key} is fast", True, "2 s"))
    return Entry(result, info, size, 3)


OLD_RESULTS = """# Benchmark results

## Machine

- date: 2026-11-21T13:42:49+00:00

## Headline

- A line.

## Goals

- **1. Pipeline**: met: fast (measured: 2x)
- **2. Memory**: NOT met: small (measured: 3 GB)
- **3. Study**: met: quick (measured: 1 s)

## 1. Pipeline

| a | b |
|---|---|
| 1 | 2 |

## 2. Memory

memory table

## 3. Study

old study table
"""


def test_an_older_results_file_keeps_the_sections_and_goals_the_store_lacks():
    entries = [_entry("study")]
    goals, sections = carried_sections(OLD_RESULTS, entries, ["pipeline", "memory", "study"])
    assert goals == ["- **1. Pipeline**: met: fast (measured: 2x)", "- **2. Memory**: NOT met: small (measured: 3 GB)"]
    text = "\n".join(sections)
    assert "## 3. Study" not in text and "old study table" not in text  # re-measured: the store's entry wins
    assert text.count("(not re-measured since the file of 2026-11-21") == 2
    assert "| 1 | 2 |" in text and "memory table" in text
    rendered = render(entries, "python -m benchmarks", (goals, sections))
    assert rendered.index("## STUDY") < rendered.index("## 1. Pipeline") < rendered.index("## 2. Memory")
    assert "- **1. Pipeline**: met: fast" in rendered.split("## Goals")[1].split("## STUDY")[0]
    # a second run carries the carried sections again, under one note, not two
    goals2, sections2 = carried_sections(rendered, entries, ["pipeline", "memory", "study"])
    assert goals2 == goals and "\n".join(sections2).count("(not re-measured since") == 2
    assert carried_sections("no machine section here", entries, ["pipeline"]) == ([], [])


def test_headline_replaces_only_the_marked_block():
    entries = [_entry("a", "A is 2x."), _entry("b"), _entry("c", "C.", date="2026-01-05T00:00:00+00:00")]
    text = f"# T\n\nbefore\n{HEADLINE_START}\nold line\n{HEADLINE_END}\nafter\n"
    new = with_headline(text, entries, ["a", "b", "c"])
    assert new == (f"# T\n\nbefore\n{HEADLINE_START}\n"
                   "Headline figures of the full-size benchmarks (CPU X, 2 logical), each with the date it was measured:\n\n"
                   "- A is 2x (measured 2026-01-02). <!-- bench:a -->\n"
                   f"- C (measured 2026-01-05). <!-- bench:c -->\n{HEADLINE_END}\nafter\n")
    assert with_headline(new, entries, ["a", "b", "c"]) == new  # idempotent
    # --only a: its line is rewritten, c's is kept with its own date, in the benchmarks' order
    again = with_headline(new, [_entry("a", "A is 3x.", date="2026-02-01T00:00:00+00:00")], ["c", "a"])
    assert again.split(HEADLINE_START)[1].split(HEADLINE_END)[0].splitlines()[3:] == [
        "- C (measured 2026-01-05). <!-- bench:c -->", "- A is 3x (measured 2026-02-01). <!-- bench:a -->"]
    assert with_headline("# no markers\n", entries) is None
    readme = README.read_text()
    assert HEADLINE_START in readme and HEADLINE_END in readme
    block = readme.split(HEADLINE_START)[1].split(HEADLINE_END)[0]
    assert {"pipeline", "memory", "floor", "rnn", "study"} <= set(re.findall(r"<!-- bench:(\w+) -->", block))


def test_a_partial_run_replaces_its_own_sections_and_keeps_the_others(tmp_path):
    store = store_path(tmp_path / "RESULTS.md")
    assert store == tmp_path / "results.json"
    merge(store, [_entry("a", "A old."), _entry("b", "B old.")], ["a", "b", "c"])
    newer = _entry("a", "A new.", date="2026-02-01T00:00:00+00:00")
    entries = merge(store, [newer], ["a", "b", "c"])
    assert [(e.result.key, e.result.headline) for e in entries] == [("a", "A new."), ("b", "B old.")]
    assert Entry.from_dict(newer.to_dict()).to_dict() == newer.to_dict()  # what the store keeps round-trips
    assert entries[0].result.get("g", "x").samples == [1.0, 2.0, 4.0]
    text = render(entries, "python -m benchmarks --size full")
    assert text.count("## A") == 1 and text.count("## B") == 1
    assert "measured between 2026-01-02 and 2026-02-01" in text
    assert "(3 s; measured 2026-02-01T00:00:00+00:00, load average at start 0.1 / 0.2 / 0.3 (1 / 5 / 15 min), --repeats 3)" in text
    assert "- A new.\n- B old.\n" in text and "- **A**: met: a is fast (measured: 2 s)" in text
    # a run at another size starts the file afresh: one file reports one size
    assert [e.result.key for e in merge(store, [_entry("c", size="tiny")], ["a", "b", "c"])] == ["c"]


def test_figure_statistics_and_format():
    f = Figure("g", "x", "s", [3.0, 1.0, 2.0])
    assert (f.median, f.lo, f.hi) == (2.0, 1.0, 3.0) and f.cell() == "2 (1-3)"
    assert fmt(1234567.0) == "1,234,567" and fmt(0.01234) == "0.0123" and fmt(12.345) == "12.3"


# ---- the suite at the tiny size -------------------------------------------------------
@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from benchmarks.__main__ import run

    def stamps():
        return [f.stat().st_mtime_ns if f.exists() else None for f in (RESULTS, README)]

    before = stamps()
    out = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    results, path = run(["--size", "tiny", "--repeats", "1", "--out", str(out)])
    return {r.key: r for r in results}, path, before == stamps()


@pytest.mark.slow
def test_suite_writes_results_to_the_given_path_only(suite):
    results, path, repo_untouched = suite
    assert repo_untouched
    text = path.read_text()
    assert "## Machine" in text and "- torch: " in text and "- cpu: " in text
    for r in results.values():
        assert not r.error, r.error
        assert f"## {r.title}" in text
        assert r.headline and f"- {r.headline}" in text
        assert r.goals and all(g.measured for g in r.goals)


@pytest.mark.slow
def test_every_figure_is_finite_and_times_positive(suite):
    results, _, _ = suite
    for r in results.values():
        assert r.figures
        for f in r.figures:
            assert all(math.isfinite(s) for s in f.samples), (r.key, f.group, f.name)
            # timeline parts a study can lack: no gap when a worker runs one cell, no wait when they end together
            can_be_zero = f.group in ("between cells", "waiting for the last cell")
            if f.unit in ("s", "ms", "GB", "x", "frames/s", "real frames/s") and f.name != "elementwise":
                assert f.lo > 0 or (can_be_zero and f.lo >= 0), (r.key, f.group, f.name, f.samples)


@pytest.mark.slow
def test_pipeline_both_ways_see_every_frame_of_the_train_split(suite):
    results, _, _ = suite
    r = results["pipeline"]
    train = prepare(experiment_config("mlp_sample", **{"data.source": "synthphone:tiny"}))[1].train
    groups = {f.group for f in r.figures}
    assert groups == {f"{m} n={n}" for m in ("sample", "strong") for n in (1, 11, 21)}
    for g in groups:
        assert r.get(g, "ours frames/epoch").samples == r.get(g, "recipe frames/epoch").samples == [train.n_frames]
        ratio = r.get(g, "recipe epoch").median / r.get(g, "ours epoch").median
        assert r.get(g, "speed-up").median == pytest.approx(ratio)


@pytest.mark.slow
def test_memory_figures(suite):
    results, _, _ = suite
    r = results["memory"]
    ours1, ours61 = r.get("ours n=1", "peak (ru_maxrss)").median, r.get("ours n=61", "peak (ru_maxrss)").median
    assert 0.05 < ours1 < 20 and 0.05 < ours61 < 20
    assert r.get("ours n=61 / ours n=1", "peak ratio").median == pytest.approx(ours61 / ours1)
    buffers = r.get("recipe n=61 (computed)", "window buffers").median
    assert buffers == pytest.approx(load_dataset("synthphone:tiny").pool.n_frames * 39 * 61 * 4 / 1e9)


@pytest.mark.slow
def test_floor_and_rnn_and_study_figures(suite):
    results, _, _ = suite
    floor = results["floor"]
    assert floor.get("batch 256", "step").median > floor.get("batch 256", "gather").median
    assert floor.get("batch 256", "step / floor").median == pytest.approx(
        floor.get("batch 256", "step").median / floor.get("batch 256", "matmul floor").median, rel=1e-6)
    rnn = results["rnn"]
    cfg = experiment_config("bilstm_utt", **{"data.source": "synthphone:tiny", "optim.max_frames": 1000})
    train = prepare(cfg)[1].train
    expected = SequenceBatches(train, 1000, n=cfg.features.n_concat).padding_fraction
    assert rnn.get("ours", "padding").median == pytest.approx(100 * expected)
    assert rnn.get("ours, packed call", "padding").median == rnn.get("ours", "padding").median  # same batches
    assert 0 <= rnn.get("naive", "padding").median < 100
    study = results["study"]
    shares = [f.median for f in study.figures if f.name == "share of worker-seconds"]
    assert sum(shares) == pytest.approx(100.0, abs=0.01)
    capacity = study.get("worker-seconds", "seconds").median
    assert capacity == pytest.approx(default_jobs() * study.get("wall", "seconds").median)
    assert 0 < study.get("training steps", "seconds").median < capacity
