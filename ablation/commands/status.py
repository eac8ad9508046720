"""`ablation status NAME`: per-arm progress, each arm's decision so far
(with the seeds an undecided one needs), and failures with their reasons."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("status", help="per-arm progress of a study, failures with reasons")
    p.add_argument("study", help="study name")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


def run(args) -> int:
    from collections import Counter

    from tabulate import tabulate

    from ablation import runner
    from ablation.study import load_study

    study = load_study(args.study)
    storage = runner.open_storage(args.storage)
    opt = runner._load(storage, study.name)
    if opt is None:
        print(f"{study.name}: not started ({study.n_cells} cells); start it with: python -m ablation run {study.name}")
        return 0
    tuning = study.spec.sampler == "tpe"
    states = runner.cell_states(opt, study.n_cells, tuning)
    print(f"{study.name}: {study.spec.question}")
    if opt.user_attrs.get("hash") != study.hash:
        print("  note: the study file changed since these trials began (run with --new to start fresh)")
    if tuning:
        done = sum(s.state == "done" for s in states)
        print(f"tuning trials: {done}/{study.n_cells} done")
    else:
        if study.spec.protocol == "tuned":
            print(_tuning(study, storage, opt))
            print("confirmation cells (each arm's best values on the study's seeds, once its tuning is done):")
        rows = []
        for arm in study.arms:
            cells = [s for s in states if study.cells[s.cell].arm == arm]
            n = Counter(s.state for s in cells)
            rows.append([arm.label, f"{n['done']}/{len(cells)}", n["running"], n["waiting"], n["failed"]])
        print(tabulate(rows, headers=["arm", "done", "running", "waiting", "failed"], tablefmt="simple"))
        print(_decisions(study, opt))
    for s in states:
        if s.state == "failed":
            label = f"trial {s.trial}" if tuning else study.cells[s.cell].run_name
            print(f"failed: {label}: {s.error or 'no reason recorded'}")
    return 0


def _decisions(study, opt) -> str:
    """Each arm against the baseline from the finished trials' values, as the report decides it."""
    from tabulate import tabulate

    from ablation import adaptive
    from ablation.report.verdict import seeds_text

    values = adaptive.trial_values(study, opt.get_trials(deepcopy=False))
    rows = []
    for arm, c in adaptive.decisions(study, values).items():
        needed = seeds_text(c.seeds_needed) if c.decision == "undecided" and c.n >= 2 else ""
        rows.append([arm, c.decision, c.n, f"{c.mean_diff:+.4f}" if c.n else "n/a", needed])
    design = study.design
    how = f"adaptive seeds {design.min} to {design.max}" if design.adaptive else f"{len(study.seeds)} seeds"
    head = (f"decisions vs the baseline {study.baseline.label} ({study.spec.metric.name}, smallest effect of "
            f"interest +-{study.min_effect:g}, {how}; from finished cells):")
    return head + "\n" + tabulate(rows, headers=["arm", "decision", "pairs", "mean diff", "seeds needed"],
                                   tablefmt="simple")


def _tuning(study, storage, opt) -> str:
    """Each arm's tuning progress: trials done of its budget, and the best value so far."""
    from tabulate import tabulate

    from ablation import tuned

    t = study.spec.tuning
    rows = []
    for p in tuned.progress(study, storage, opt):
        pruned = f"{p['pruned']}" + (f" ({p['diverged']} diverged)" if p["diverged"] else "")
        best = "n/a" if p["best"] is None else f"{p['best']:.4f}"
        at = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p["values"].items())
        rows.append([p["arm"], f"{p['done']}/{p['trials']}", p["running"], pruned, best, at])
    head = (f"tuning: {t.trials} TPE trials per arm over {', '.join(t.space)} on tuning seeds "
            f"{', '.join(map(str, t.seeds))} ({study.spec.metric.name}, best so far of the complete trials):")
    return head + "\n" + tabulate(rows, headers=["arm", "trials", "running", "pruned", "best so far", "at"],
                                   tablefmt="simple")
