"""`ablation status NAME`: per-arm progress and failures with their reasons."""

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
        rows = []
        for arm in study.arms:
            cells = [s for s in states if study.cells[s.cell].arm == arm]
            n = Counter(s.state for s in cells)
            rows.append([arm.label, f"{n['done']}/{len(cells)}", n["running"], n["waiting"], n["failed"]])
        print(tabulate(rows, headers=["arm", "done", "running", "waiting", "failed"], tablefmt="simple"))
    for s in states:
        if s.state == "failed":
            label = f"trial {s.trial}" if tuning else study.cells[s.cell].run_name
            print(f"failed: {label}: {s.error or 'no reason recorded'}")
    return 0
