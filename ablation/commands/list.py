"""`ablation list`: every study, its question, and cells done / total."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("list", help="list the studies with their progress")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tabulate import tabulate

    from ablation import runner
    from ablation.errors import AblationError
    from ablation.study import list_studies, load_study

    storage = runner.open_storage(args.storage)
    rows = []
    for name in list_studies():
        try:
            study = load_study(name)
            total, question = study.n_cells, study.spec.question
        except AblationError as e:
            rows.append([name, "?", f"invalid: {e}"])
            continue
        opt = runner._load(storage, name)
        done = 0
        if opt is not None:
            done = sum(s.state == "done" for s in runner.cell_states(opt, total, study.spec.sampler == "tpe"))
        rows.append([name, f"{done}/{total}", question])
    print(tabulate(rows, headers=["study", "cells", "question"], tablefmt="simple", maxcolwidths=[None, None, 80]))
    return 0
