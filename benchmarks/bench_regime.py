"""Benchmark 6: where each arm of each shipped study reaches its val peak, and what that costs.

Every arm of a study (its quick scale, seed 0; a second seed where asked) is trained under a schedule
that does not anneal at the cap (``optim.schedule = "constant"``, the study's lr) with a generous epoch
cap, stopped ``STOP_PATIENCE`` epochs after its last new best. Recorded per epoch: val and train
accuracy (the study's metric too when it is not accuracy), the lr, wall and CPU seconds. Derived per arm:
the peak epoch, the metric at the peak, train - val ``AFTER`` epochs after the peak, and the patience
early stopping would have needed to reach the peak (the longest wait between two new bests). Derived
per study: the patience and cap at which patience, not the cap, ends every arm, and what the study's
quick scale would cost at that budget (cells x epochs x s/epoch / workers).

    python -m benchmarks.bench_regime                          # measure what is missing, write the JSON files
    python -m benchmarks.bench_regime --studies dropout --seeds 0 1 --minutes 30
    python -m benchmarks --only regime                          # measure what is missing, then the RESULTS.md section
    python -m benchmarks.bench_regime --minutes 0 --write       # the RESULTS.md section from the JSON files alone

The raw curves are kept per study in ``benchmarks/regime/<study>.json``; a run measures only the
(arm, seed) pairs those files lack (``--fresh`` re-measures), so a sweep can be stopped and resumed.
Epoch counts are the robust result; seconds are CPU seconds of one single-threaded process (what a
study worker spends) and wall seconds, both measured wherever the sweep ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.report import BenchResult, Goal

FOLDER = Path(__file__).resolve().parent / "regime"
ORDER = ["deep_vs_shallow", "dropout", "batchnorm", "weighted_loss", "label_smoothing", "activation",
         "n_concat", "lr_batch", "architecture", "tune"]
CAP = 40  # generous: the regularised arms of the strong MLP climb for 30 epochs and more
STOP_PATIENCE = 5  # epochs without a new best before a measuring run stops
AFTER = 3  # train - val this many epochs after the peak
WORKERS = 2  # the README's main command runs 2 workers on 2 cores
MIN_PATIENCE = 2  # the patience a proposal never goes below
MAIN_MINUTES = 5.0  # the README's main command's budget
PARAMS = {
    "tiny": {"data": "synthphone:tiny-v2", "cap": 3, "stop": 1, "studies": ["batchnorm"], "minutes": 5.0},
    "full": {"data": None, "cap": CAP, "stop": STOP_PATIENCE, "studies": ORDER, "minutes": 80.0},
}


# ---- the curve's facts (pure) ---------------------------------------------------------------------


def peak(values: list[float]) -> int:
    """1-based epoch of the first maximum (fit keeps the first of equal bests)."""
    return max(range(len(values)), key=lambda i: (values[i], -i)) + 1


def patience_needed(values: list[float]) -> int:
    """The smallest patience at which early stopping (a strict new best resets the count) reaches the
    curve's peak: the longest wait, in epochs, between two successive new bests up to the peak (1 when
    every epoch up to it is a new best)."""
    best, last_new, wait = -math.inf, 0, 1
    for epoch, v in enumerate(values[:peak(values)], start=1):
        if v > best:
            wait = max(wait, epoch - last_new) if last_new else wait
            best, last_new = v, epoch
    return wait


def early_stop(values: list[float], patience: int) -> tuple[int, int] | None:
    """``(stop epoch, best epoch)`` of fit's rule (a strict new best resets the count) on this curve;
    None when the curve ends before the rule stops it."""
    best, best_epoch, bad = -math.inf, 0, 0
    for epoch, v in enumerate(values, start=1):
        if v > best:
            best, best_epoch, bad = v, epoch, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch, best_epoch
    return None


def patience_within(values: list[float], tol: float, limit: int) -> int | None:
    """The smallest patience (up to ``limit``, the measuring run's own) at which early stopping ends this
    curve with a best within ``tol`` of its peak; None when none does (the curve ended first)."""
    top = max(values)
    for p in range(1, limit + 1):
        stopped = early_stop(values, p)
        if stopped and values[stopped[1] - 1] >= top - tol:
            return p
    return None


def gap_after(train: list[float], val: list[float], at: int, after: int = AFTER) -> float | None:
    """train - val accuracy ``after`` epochs after epoch ``at`` (1-based); None when the run ended sooner."""
    i = at - 1 + after
    return train[i] - val[i] if i < len(val) else None


def arm_facts(rec: dict, tol: float) -> dict:
    """What one measured run says: its peak (epoch, metric, val accuracy), the first epoch within ``tol``
    of it, the patience early stopping needs to reach the peak and to reach within ``tol`` of it,
    train - val after the peak, seconds per epoch."""
    curve = rec["metric"]
    at = peak(curve)
    n = len(curve)
    return {
        "curve": curve,
        "peak_epoch": at,
        "peak": curve[at - 1],
        "val_acc_at_peak": rec["val_acc"][at - 1],
        "first_within": next(e for e, v in enumerate(curve, start=1) if v >= curve[at - 1] - tol),
        "patience_needed": patience_needed(curve),
        "patience_within": patience_within(curve, tol, rec["stop_patience"]),
        "gap_after": gap_after(rec["train_acc"], rec["val_acc"], at),
        "epochs_run": n,
        "capped": n >= rec["cap"] and n - at < rec["stop_patience"],  # the cap, not the stop, ended it
        "cpu_s_per_epoch": per_epoch(rec["cpu_s"]),
        "wall_s_per_epoch": per_epoch(rec["wall_s"]),
    }


def per_epoch(clock: list[float]) -> float:
    """The median epoch's seconds from a clock read at each epoch's end (train and validation); the
    first epoch, which also carries the run's set-up, counts only when it is the only one."""
    steps = [b - a for a, b in zip(clock, clock[1:])]
    return statistics.median(steps) if steps else clock[0]


def proposal(facts: list[dict], cells_per_arm: int, min_patience: int = MIN_PATIENCE,
             workers: int = WORKERS) -> dict:
    """The patience at which early stopping ends every measured run within the study's smallest effect
    of its peak (at least ``min_patience``), the cap at which that patience, not the cap, ends each of
    them (the latest epoch one stops at), and the quick scale's cost at that budget: each arm's cells run
    to its slowest seed's stop, at its own CPU s/epoch, shared by ``workers``. A run that no patience
    ends within its curve (still climbing at the measuring cap) counts its whole curve: then the cap
    and the minutes are lower bounds (``capped``)."""
    capped = any(f["capped"] or f["patience_within"] is None for f in facts)
    patience = max([min_patience] + [f["patience_within"] for f in facts if f["patience_within"]])
    stops = [(early_stop(f["curve"], patience) or (len(f["curve"]), 0))[0] for f in facts]
    by_arm: dict[str, list[tuple[dict, int]]] = {}
    for f, stop in zip(facts, stops):
        by_arm.setdefault(f["arm"], []).append((f, stop))
    seconds = 0.0
    for runs in by_arm.values():
        per = sum(f["cpu_s_per_epoch"] for f, _ in runs) / len(runs)
        seconds += cells_per_arm * max(stop for _, stop in runs) * per
    return {"patience": patience, "cap": max(stops), "minutes": seconds / workers / 60.0, "capped": capped}


# ---- measuring ----------------------------------------------------------------------------------


def arm_configs(name: str, data: str | None) -> tuple[object, list[tuple[str, object]]]:
    """The study (quick scale) and one config per arm, at the study's first seed."""
    from ablation.study import load_study

    study = load_study(name, data=data)
    first = {}
    for cell in study.cells:
        first.setdefault(cell.arm.label, cell.config)
    return study, list(first.items())


def cells_per_arm(study) -> int:
    """Training runs an arm costs at the quick scale: its seeds (adaptive: the minimum), plus its tuning
    trials for a tuned study (an upper bound: the pruner cuts some short), or the trials of a search."""
    if study.spec.sampler == "tpe":
        return study.spec.n_trials
    seeds = study.design.min if study.design.adaptive else len(study.seeds)
    tuning = study.spec.tuning
    return seeds + (tuning.trials * len(tuning.seeds) if study.spec.protocol == "tuned" and tuning else 0)


def measuring_config(cfg, seed: int, cap: int, stop: int, metric: str, schedule: str = "constant",
                     sets: list[str] = ()):
    """``cfg`` with the ``--set`` overrides ``sets``, at ``seed`` under ``schedule`` (one that does not anneal
    at the cap), ``cap`` epochs at most, stopped ``stop`` epochs after its last new best of the study's
    ``metric``, on one CPU thread."""
    from ablation.config import apply_overrides, build, parse_override

    data = apply_overrides(cfg.to_dict(), dict(parse_override(o) for o in sets))
    data["optim"]["schedule"] = schedule
    data["train"].update(epochs=cap, patience=stop, seed=seed, threads=1, device="cpu", early_stop_metric=metric)
    return build(data, " (bench_regime)")


def config_key(cfg) -> str:
    """Two studies' arms with this key are one computation: measured once."""
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def measure(cfg) -> dict:
    """One run of a measuring config (``measuring_config``); its per-epoch curves."""
    from ablation.experiment import prepare
    from ablation.train import fit

    _, splits = prepare(cfg)
    key = {"val.acc": "epoch.val_acc", "val.macro_f1": "epoch.val_macro_f1",
           "val.loss": "epoch.val_loss"}[cfg.train.early_stop_metric]
    rec = {"metric_name": cfg.train.early_stop_metric, "metric": [], "val_acc": [], "train_acc": [],
           "val_macro_f1": [], "lr": [], "cpu_s": [], "wall_s": [], "cap": cfg.train.epochs,
           "stop_patience": cfg.train.patience, "seed": cfg.train.seed, "config_key": config_key(cfg)}
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def record(epoch: int, m: dict) -> None:
        sign = -1.0 if key == "epoch.val_loss" else 1.0  # a curve to maximise
        rec["metric"].append(sign * m[key])
        rec["val_acc"].append(m["epoch.val_acc"])
        rec["train_acc"].append(m["epoch.train_acc"])
        rec["val_macro_f1"].append(m["epoch.val_macro_f1"])
        rec["lr"].append(m["epoch.lr"])
        rec["cpu_s"].append(time.process_time() - cpu0)
        rec["wall_s"].append(time.perf_counter() - wall0)

    result = fit(cfg, splits, callbacks=[record])
    rec.update(n_params=result.n_params, source=cfg.data.source, lr0=cfg.optim.lr,
               measured=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return rec


def load_record(name: str, folder: Path = FOLDER) -> dict:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"study": name, "arms": {}}


def save_record(rec: dict, folder: Path = FOLDER) -> Path:
    """Write ``rec``, keeping the runs that another sweep of the same study wrote meanwhile."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rec['study']}.json"
    for arm, runs in (load_record(rec["study"], folder)["arms"] if path.exists() else {}).items():
        for seed, run in runs.items():
            rec["arms"].setdefault(arm, {}).setdefault(seed, run)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(path)  # a sweep stopped mid-write leaves the last complete file
    return path


def stored_run(key: str, folder: Path) -> dict | None:
    """A run of the same measuring config that any study's file in ``folder`` holds."""
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        for runs in json.loads(path.read_text()).get("arms", {}).values():
            for run in runs.values():
                if run.get("config_key") == key:
                    return run
    return None


def record_name(study: str, schedule: str = "constant", variant: str = "") -> str:
    """A study's file stem: its name, then the schedule when it is not the constant lr, then the name of a
    variant (``--set`` overrides) measured apart."""
    return ".".join([study] + ([schedule] if schedule != "constant" else []) + ([variant] if variant else []))


def study_meta(study, arms: list, schedule: str) -> dict:
    """What a record says about its study's quick scale, beside the curves."""
    first = arms[0][1]
    return {"measured_schedule": schedule, "cells_per_arm": cells_per_arm(study), "min_effect": study.min_effect,
            "n_arms": len(arms), "quick_seeds": list(study.seeds), "protocol": study.spec.protocol,
            "sampler": study.spec.sampler, "quick_cap": first.train.epochs, "quick_patience": first.train.patience,
            "schedule": first.optim.schedule}


def sweep(studies: list[str], seeds: list[int], cap: int, stop: int, minutes: float, data: str | None,
          folder: Path = FOLDER, fresh: bool = False, log=print, only: list[str] | None = None,
          schedule: str = "constant", sets: list[str] = (), variant: str = "") -> list[str]:
    """Measure every (arm, seed) of ``studies`` that ``folder`` lacks, in order (``only``: just these arm
    labels, in this order), until ``minutes`` of wall time are spent (a started run finishes); the studies
    left incomplete are returned."""
    torch.set_num_threads(1)
    deadline = time.perf_counter() + minutes * 60.0
    incomplete = []
    for name in studies:
        study, arms = arm_configs(name, data)
        metric = study.spec.metric.name if study.spec.metric.name in ("val.acc", "val.macro_f1", "val.loss") \
            else "val.acc"
        stem = record_name(name, schedule, variant)
        rec = {"study": stem, "arms": {}} if fresh else load_record(stem, folder)
        rec.update(study_meta(study, arms, schedule), **({"variant": list(sets)} if sets else {}))
        if only:
            arms = sorted((a for a in arms if a[0] in only), key=lambda a: only.index(a[0]))
        for label, cfg in arms:
            for seed in seeds:
                runs = rec["arms"].get(label, {})
                if str(seed) in runs and runs[str(seed)]["cap"] >= cap:
                    continue
                if time.perf_counter() > deadline:
                    incomplete.append(name)
                    break
                mcfg = measuring_config(cfg, seed, cap, stop, metric, schedule, sets)
                same = None if fresh else stored_run(config_key(mcfg), folder)
                runs = rec["arms"].setdefault(label, {})
                runs[str(seed)] = dict(same, shared=True) if same else measure(mcfg)
                f = arm_facts(runs[str(seed)], study.min_effect)
                log(f"{stem} / {label} seed {seed}{' (stored)' if same else ''}: peak {f['peak']:.4f} at epoch "
                    f"{f['peak_epoch']} of "
                    f"{f['epochs_run']}, {f['cpu_s_per_epoch']:.1f} CPU s/epoch")
                save_record(rec, folder)
        if rec["arms"]:  # a study nothing was measured of gets no file
            save_record(rec, folder)
    return sorted(set(incomplete))


# ---- the section ----------------------------------------------------------------------------------


def study_facts(rec: dict) -> list[dict]:
    return [{"arm": arm, "seed": int(seed), **arm_facts(run, rec["min_effect"])}
            for arm, runs in rec["arms"].items() for seed, run in sorted(runs.items())]


def result_from(records: list[dict], seconds: float = 0.0) -> BenchResult:
    """The benchmark's tables, goals and notes from the stored curves."""
    res = BenchResult("regime", "6. Each arm's val peak under a constant lr, and the budget that reaches it")
    lines = []
    for rec in records:
        facts = study_facts(rec)
        if not facts:
            continue
        variant = f", with {' '.join(rec['variant'])}" if rec.get("variant") else ""
        section = f"{rec['study']}{variant} (quick: {rec['n_arms']} arms x {rec['cells_per_arm']} runs, cap "
        section += f"{rec['quick_cap']}, patience {rec['quick_patience']}, {rec['schedule']})"
        for f in facts:
            group = f"{f['arm']} (seed {f['seed']})"
            res.add(group, "peak epoch", "", [f["peak_epoch"]], section)
            res.add(group, rec["arms"][f["arm"]][str(f["seed"])]["metric_name"] + " at peak", "", [f["peak"]],
                    section)
            res.add(group, f"first epoch within {rec['min_effect']:g}", "", [f["first_within"]], section)
            res.add(group, "patience to the peak", "", [f["patience_needed"]], section)
            if f["patience_within"] is not None:
                res.add(group, f"patience to within {rec['min_effect']:g}", "", [f["patience_within"]], section)
            if f["gap_after"] is not None:
                res.add(group, f"train - val {AFTER} epochs after", "", [f["gap_after"]], section)
            res.add(group, "epochs run", "", [f["epochs_run"]], section)
            res.add(group, "CPU s/epoch", "s", [f["cpu_s_per_epoch"]], section)
            res.add(group, "wall s/epoch", "s", [f["wall_s_per_epoch"]], section)
        p = proposal(facts, rec["cells_per_arm"])
        measured = len({f["arm"] for f in facts})
        schedule = rec.get("measured_schedule", "constant")
        lines.append(f"proposed quick budget of `{rec['study']}`{variant}: patience {p['patience']}, cap {p['cap']} "
                     f"({schedule} lr; "
                     f"today {rec['quick_patience']} and {rec['quick_cap']}, {rec['schedule']}): "
                     f"{p['minutes']:.1f} min on {WORKERS} workers for the quick scale's "
                     f"{rec['n_arms']} arms x {rec['cells_per_arm']} runs"
                     + (f" (from {measured} of {rec['n_arms']} arms measured)" if measured < rec["n_arms"] else "")
                     + ("; an arm was still climbing at the measuring cap, so this cap is a lower bound"
                        if p["capped"] else ""))
        capped = sorted({f["arm"] for f in facts if f["capped"]})
        res.goals.append(Goal(f"`{rec['study']}`: every measured arm peaks before the measuring cap "
                              f"({rec['arms'][facts[0]['arm']][str(facts[0]['seed'])]['cap']} epochs)", not capped,
                              "still climbing at the cap: " + ", ".join(f"`{a}`" for a in capped) if capped
                              else f"latest peak at epoch {max(f['peak_epoch'] for f in facts)}"))
        if rec["study"].split(".")[0] == "deep_vs_shallow":
            res.goals.append(Goal(f"the headline study's arms reach their peak (within its smallest effect; {schedule} "
                                  f"lr) in "
                                  f"about {MAIN_MINUTES:g} minutes of training on {WORKERS} workers",
                                  p["minutes"] <= MAIN_MINUTES,
                                  f"{p['minutes']:.1f} min at patience {p['patience']}, cap {p['cap']}"))
    runs = [run for rec in records for arm_runs in rec["arms"].values() for run in arm_runs.values()]
    dates = sorted(run["measured"] for run in runs)
    caps = ", ".join(sorted({f"at most {r['cap']} epochs, stopped {r['stop_patience']} epochs after its last new best"
                             for r in runs}))
    res.notes += [
        "The proposed quick budgets: the patience at which early stopping (fit's rule, replayed on each "
        "curve) ends every measured run within the study's smallest effect of its peak (at least "
        f"{MIN_PATIENCE}); the cap = the latest epoch such a run stops at, so patience ends every run; "
        "minutes = each arm's runs x its latest stop x its CPU s/epoch / "
        f"{WORKERS} workers (training and per-epoch validation; no tuning pruner, no study overhead).",
        *lines,
        f"Each run: the study's quick-scale config of the arm at the given seed, `optim.schedule = "
        f"\"constant\"` (a section named `<study>.plateau`: `\"plateau\"`) at the study's lr (a tuned study: "
        f"its base lr, not tuned), {caps}, one torch thread; "
        "raw curves in "
        "`benchmarks/regime/<study>.json`.",
        "Epoch counts are the robust result. CPU s/epoch is what one single-threaded study worker spends "
        "(process CPU time); wall s/epoch was measured on a machine shared with other jobs, so it is "
        "indicative only. Measured " + (f"between {dates[0]} and {dates[-1]}" if dates else "never") + ".",
    ]
    res.headline = ("Each arm at its val peak under a constant lr, " + lines[0]) if lines else ""
    res.seconds = seconds
    return res


def run(size: str = "full", repeats: int = 1) -> BenchResult:
    """The harness's entry: at the full size, measure what ``benchmarks/regime`` lacks (bounded in
    time) and report every stored curve; at the tiny size, a 2-arm study on the tiny corpus in a
    scratch folder."""
    import tempfile

    p = PARAMS[size]
    started = time.perf_counter()
    if size == "tiny":
        with tempfile.TemporaryDirectory() as tmp:
            sweep(p["studies"], [0], p["cap"], p["stop"], p["minutes"], p["data"], Path(tmp), log=_err)
            records = [load_record(s, Path(tmp)) for s in p["studies"]]
    else:
        sweep(p["studies"], [0], p["cap"], p["stop"], p["minutes"], p["data"], log=_err)
        stems = [record_name(s, schedule) for s in p["studies"] for schedule in ("constant", "plateau")]
        stems += sorted(f.stem for f in FOLDER.glob("*.json") if f.stem not in stems)  # variants measured apart
        records = [load_record(s) for s in stems if (FOLDER / f"{s}.json").exists()]
    return result_from(records, time.perf_counter() - started)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_regime", description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", nargs="+", default=ORDER, choices=ORDER, metavar="STUDY")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--cap", type=int, default=CAP)
    ap.add_argument("--stop", type=int, default=STOP_PATIENCE, help="epochs without a new best before a run stops")
    ap.add_argument("--minutes", type=float, default=PARAMS["full"]["minutes"], help="wall-time budget of the sweep")
    ap.add_argument("--data", default=None, help="corpus spec instead of the studies' own")
    ap.add_argument("--fresh", action="store_true", help="re-measure what is stored")
    ap.add_argument("--arms", nargs="+", metavar="LABEL", help="only these arms (by label), in this order")
    ap.add_argument("--schedule", choices=("constant", "plateau"), default="constant",
                    help="the measuring runs' schedule (plateau: kept apart, in <study>.plateau.json)")
    ap.add_argument("--write", action="store_true",
                    help="then write the RESULTS.md section from the stored curves (python -m benchmarks --only "
                         "regime, measuring nothing more)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override every arm (a variant, kept apart in <study>.<VARIANT>.json; needs --variant)")
    ap.add_argument("--variant", default="", help="the name of the --set variant")
    args = ap.parse_args(argv)
    if bool(args.sets) != bool(args.variant):
        ap.error("--set and --variant go together: a variant is measured apart, under its own name")
    if args.cap < 1 or args.stop < 1 or args.stop >= args.cap:
        ap.error("--cap and --stop must be at least 1, and --stop below --cap")
    left = sweep(args.studies, args.seeds, args.cap, args.stop, args.minutes, args.data, fresh=args.fresh, log=_err,
                 only=args.arms, schedule=args.schedule, sets=args.sets, variant=args.variant)
    if left:
        _err(f"time budget spent; not complete: {', '.join(left)} (run again to resume)")
    if args.write:
        from benchmarks import bench_regime as harness_module  # not this __main__: the module the harness imports
        from benchmarks.__main__ import main as bench

        harness_module.PARAMS["full"]["minutes"] = 0.0  # the harness's run: the section from what is stored
        return bench(["--only", "regime", "--repeats", "1"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
