"""The README's table of synthphone presets, measured: sizes, cost, ceilings, and statistics against libriphone's.

``python -m ablation data presets`` generates each preset in a fresh process
(so its time and peak memory are its own), then tabulates what it made; with
``--write`` it replaces the block between the README's preset markers, so
none of these figures is typed by hand.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from ablation.calibration import REAL

START, END = "<!-- synthphone:presets -->", "<!-- /synthphone:presets -->"
# libriphone's training set (the data's own files; see the README's data notes), with the calibration's figures
LIBRIPHONE = {**{k: REAL[k] for k in ("class 0 share", "label-run mean", "label-run median", "runs under 11 frames")},
              "utterance length min": 139, "utterance length mean": REAL["utterance length mean"],
              "utterance length max": 998, "rarest class frames": 1344,
              "utterances per speaker": (4286 + 1078) / 251}  # fmt: skip


def measure(name: str) -> dict:
    """Generate preset ``name`` in this process (call it in a fresh one) and measure what it made."""
    import resource

    from ablation.data import synthphone
    from ablation.data.info import label_stats

    cfg = synthphone.resolve(name)
    t0 = time.perf_counter()
    ds = synthphone.generate(cfg)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    pool, test = ds.pool, ds.test
    n_utts = pool.n_utts + (test.n_utts if test is not None else 0)
    return {
        "preset": name, "version": cfg.version, "speakers": cfg.n_speakers,
        "utterances": (pool.n_utts, test.n_utts if test is not None else 0),
        "frames": (pool.n_frames, test.n_frames if test is not None else 0),
        "seconds": seconds, "peak bytes": peak,
        "ceiling": (pool.ceiling(), test.ceiling() if test is not None else None),
        "stats": {**label_stats(ds), "utterances per speaker": n_utts / cfg.n_speakers},
    }  # fmt: skip


def measure_all(names) -> list[dict]:
    """``measure`` of each preset, each in a fresh process, one at a time (the timings do not contend)."""
    import sys

    out = []
    for name in names:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
            out.append(ex.submit(measure, name).result())
        print(f"generated {name} in {out[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    return out


def _k(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e4 else f"{n / 1e3:.1f} k"


def _stat(key: str, v: float) -> str:
    if key in ("class 0 share", "runs under 11 frames"):
        return f"{v:.1%}"
    return f"{v:,.0f}" if float(v).is_integer() and key != "label-run mean" else f"{v:.1f}"


def render(rows: list[dict], command: str) -> str:
    from ablation.report.common import table

    def ceil(c):
        return " / ".join("n/a" if v is None else f"{v:.3f}" for v in c)

    out = [f"Measured by `{command}` (each preset generated in a fresh process on this machine):", ""]
    out.append(table([{
        "preset": f"`{r['preset']}`", "version": r["version"],
        "utterances (labelled + test)": " + ".join(f"{n:,}" for n in r["utterances"]), "speakers": r["speakers"],
        "frames (labelled + test)": " + ".join(_k(n) for n in r["frames"]),
        "generated in": f"{r['seconds']:.1f} s", "peak memory": f"{r['peak bytes'] / 2**30:.2f} GB",
        "ceiling (labelled / test)": ceil(r["ceiling"]),
    } for r in rows]))  # fmt: skip
    shown = [r for r in rows if r["utterances"][0] >= 100] or rows  # the tests' tiny presets say little
    out += ["", "Label and utterance statistics of the labelled split against libriphone's training set:", ""]
    out.append(table([{"statistic": k, "libriphone": _stat(k, real),
                       **{f"`{r['preset']}`": _stat(k, r["stats"][k]) for r in shown}}
                      for k, real in LIBRIPHONE.items()]))  # fmt: skip
    return "\n".join(out)
