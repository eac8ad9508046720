"""The README's calibration table, measured: the shipped experiments on a generated corpus.

``python -m ablation data calibrate --data synthphone:PRESET`` trains each
shipped experiment once (seed 0, no tracking), the strong MLP again on a
speaker-disjoint split, and compares the corpus's statistics with
libriphone's. With ``--write`` it replaces the block between the README's
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


def _row(name: str, spec: str, overrides: list[str], split_by: str = "utterance") -> dict:
    from ablation import experiment
    from ablation.config import load_experiment
    from ablation.data.ceiling import info_ceilings, view_of
    from ablation.train import fit

    cfg = load_experiment(name, [f"data.source={spec}", "train.seed=0", f"data.split_by={split_by}", *overrides])
    _, splits = experiment.prepare(cfg)
    t0 = time.perf_counter()
    result = fit(cfg, splits)
    view = view_of(cfg)
    own = info_ceilings(splits.val, [view]).get(view)
    return {"experiment": f"`{name}`" + ("" if split_by == "utterance" else " (speaker-disjoint split)"),
            "input": view.label, "val acc": result.val.acc, "test acc": result.test.acc if result.test else None,
            "input ceiling (val)": own, "utterance ceiling (val)": splits.val.ceiling(),
            "seconds": time.perf_counter() - t0}  # fmt: skip


def corpus_stats(spec: str) -> dict:
    from ablation.data.info import segment_lengths
    from ablation.data.sources import load_dataset

    ds = load_dataset(spec)
    pool = ds.pool
    runs = segment_lengths(pool.labels, pool.offsets)
    lengths = np.concatenate([pool.lengths] + ([ds.test.lengths] if ds.test is not None else []))
    return {"class 0 share": float(np.mean(pool.labels == 0)), "label-run mean": float(runs.mean()),
            "label-run median": float(np.median(runs)), "runs under 11 frames": float(np.mean(runs < 11)),
            "utterance length mean": float(lengths.mean())}  # fmt: skip


def measure(spec: str, overrides: list[str] = ()) -> tuple[list[dict], dict]:
    import sys

    plan = [(name, "utterance") for name in EXPERIMENTS] + [("mlp_strong", "speaker")]
    rows = []
    for name, split_by in plan:
        rows.append(_row(name, spec, list(overrides), split_by))
        print(f"measured {rows[-1]['experiment']}: val acc {rows[-1]['val acc']:.4f}", file=sys.stderr, flush=True)
    return rows, corpus_stats(spec)


def render(specs: list[str], overrides, measured: list[tuple[list[dict], dict]]) -> str:
    """The block: the command that measured it, then per corpus the ladder and its statistics."""
    from ablation.report.common import table

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    out = [f"Measured by `python -m ablation data calibrate --data {','.join(specs)}"
           + "".join(f" --set {o}" for o in overrides) + " --write` (seed 0, one run each)."]
    for spec, (rows, stats) in zip(specs, measured):
        out += ["", f"**`{spec}`**:", ""]
        out.append(table([{k: (f(v) if k not in ("experiment", "input", "seconds") else
                               (f"{v:.0f}" if k == "seconds" else v)) for k, v in r.items()} for r in rows]))
        window = max(r["val acc"] for r in rows[1:3])
        utt, spk = rows[3]["val acc"], rows[4]["val acc"]
        out += ["", f"Targets: {TARGETS}. Measured: 1-frame {rows[0]['val acc']:.3f}, best window {window:.3f}, "
                f"BiLSTM lead {utt - window:+.3f}; speaker-disjoint split {spk - rows[1]['val acc']:+.3f} vs the "
                "utterance split.", ""]
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
