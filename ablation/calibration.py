"""The README's calibration table, measured: the shipped experiments on a generated corpus.

``python -m ablation data calibrate --data synthphone:PRESET`` trains each
shipped experiment once (seed 0, no tracking), the strong MLP on utterance and
on speaker-disjoint splits over ten seeds each, and compares the corpus's
statistics with libriphone's. With ``--write`` it replaces the block between the README's
calibration markers, so the table is never typed by hand.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from ablation.errors import ConfigError

EXPERIMENTS = ("mlp_sample", "mlp_strong", "lstm_window", "bilstm_utt")
START, END = "<!-- calibration:table -->", "<!-- /calibration:table -->"
# libriphone train (see the README's data notes): what the generated statistics are held against
REAL = {"class 0 share": 0.174, "label-run mean": 9.6, "label-run median": 7.0, "runs under 11 frames": 0.73,
        "utterance length mean": 617.0}  # fmt: skip
TARGETS = "1-frame MLP ~0.45, window MLP ~0.70, BiLSTM over utterances >= best window MLP + 0.05 (real ladder)"


SPLIT_SEEDS = tuple(range(10))  # the strong MLP on both kinds of split: a split's own variance averages out


def _row(name: str, spec: str, overrides: list[str], split_by: str = "utterance", seed: int = 0,
         ceilings: bool = True) -> dict:  # fmt: skip
    from ablation import experiment
    from ablation.config import load_experiment
    from ablation.data.ceiling import info_ceilings, view_of
    from ablation.train import fit

    cfg = load_experiment(name, [f"data.source={spec}", f"train.seed={seed}", f"data.split_by={split_by}", *overrides])
    _, splits = experiment.prepare(cfg)
    t0 = time.perf_counter()
    result = fit(cfg, splits)
    seconds = time.perf_counter() - t0
    view = view_of(cfg)
    own = info_ceilings(splits.val, [view]).get(view) if ceilings else None
    return {"experiment": f"`{name}`", "input": view.label, "val acc": result.val.acc,
            "test acc": result.test.acc if result.test else None, "input ceiling (val)": own,
            "utterance ceiling (val)": splits.val.ceiling(), "seconds": seconds}  # fmt: skip


def corpus_stats(spec: str) -> dict:
    from ablation.data.info import label_stats
    from ablation.data.sources import load_dataset

    stats = label_stats(load_dataset(spec))
    return {k: stats[k] for k in REAL}


def measure(spec: str, overrides: list[str] = ()) -> tuple[list[dict], dict, dict]:
    """The ladder (each experiment at seed 0), the strong MLP's val accuracy per split kind and seed, the statistics.

    One seed cannot tell a speaker effect from the luck of which utterances a
    split puts in val (version 1, whose speakers CMVN removes, moves by a point
    or two either way), so the two kinds of split are compared over ``SPLIT_SEEDS``.
    """
    import sys

    rows = []
    for name in EXPERIMENTS:
        rows.append(_row(name, spec, list(overrides)))
        print(f"measured {rows[-1]['experiment']}: val acc {rows[-1]['val acc']:.4f}", file=sys.stderr, flush=True)
    by_split = {"utterance": [], "speaker": []}
    for split_by, accs in by_split.items():
        for seed in SPLIT_SEEDS:
            same = split_by == "utterance" and seed == 0
            accs.append(rows[1]["val acc"] if same else
                        _row("mlp_strong", spec, list(overrides), split_by, seed, ceilings=False)["val acc"])
        print(f"measured `mlp_strong` on {split_by} splits: {[float(a) for a in accs]}", file=sys.stderr, flush=True)
    return rows, by_split, corpus_stats(spec)


def split_effect(by_split: dict) -> tuple[float, float]:
    """Speaker-disjoint minus utterance split, mean over seeds, and Welch's two-sided p-value."""
    from scipy import stats

    spk, utt = np.asarray(by_split["speaker"]), np.asarray(by_split["utterance"])
    return float(spk.mean() - utt.mean()), float(stats.ttest_ind(spk, utt, equal_var=False).pvalue)


def render(specs: list[str], overrides, measured: list[tuple[list[dict], dict, dict]]) -> str:
    """The block: the command that measured it, then per corpus the ladder, the split effect and the statistics."""
    from ablation.report.common import table

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    seeds = f"{SPLIT_SEEDS[0]}-{SPLIT_SEEDS[-1]}"
    out = [f"Measured by `python -m ablation data calibrate --data {','.join(specs)}"
           + "".join(f" --set {o}" for o in overrides) + f" --write` (seed 0, one run each; the splits over "
           f"seeds {seeds})."]  # fmt: skip
    for spec, (rows, by_split, stats) in zip(specs, measured):
        out += ["", f"**`{spec}`**:", ""]
        out.append(table([{k: (f(v) if k not in ("experiment", "input", "seconds") else
                               (f"{v:.0f}" if k == "seconds" else v)) for k, v in r.items()} for r in rows]))
        window = max(r["val acc"] for r in rows[1:3])
        utt, spk = (np.asarray(by_split[k]) for k in ("utterance", "speaker"))
        diff, p = split_effect(by_split)
        out += ["", f"Targets: {TARGETS}. Measured: 1-frame {rows[0]['val acc']:.3f}, best window {window:.3f}, "
                f"BiLSTM lead {rows[3]['val acc'] - window:+.3f}. `mlp_strong` over seeds {seeds}: utterance "
                f"splits {utt.mean():.3f} (sd {utt.std(ddof=1):.3f}), speaker-disjoint splits {spk.mean():.3f} "
                f"(sd {spk.std(ddof=1):.3f}): {diff:+.3f}, Welch's p = {p:.2g}.", ""]
        out.append(table([{"statistic": k, "generated": f"{v:.3f}", "libriphone": f"{REAL[k]:g}",
                           "off by": f"{v / REAL[k] - 1:+.1%}"} for k, v in stats.items()]))  # fmt: skip
    return "\n".join(out)


def write_readme(path: Path, block: str, start: str = START, end: str = END, what: str = "calibration") -> None:
    """Replace the block between ``start`` and ``end`` in ``path`` (the markers stay)."""
    text = path.read_text()
    if start not in text or end not in text:
        raise ConfigError(f"{path} has no {what} markers ({start} ... {end}); add them where the table goes")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{start}\n{block}\n{end}", text, count=1))
