"""`ablation list`: every study, its question, and cells done / total.
It only reads: the studies of a read-only store can be listed."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("list", help="list the studies with their progress")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tabulate import tabulate

    from ablation.errors import AblationError
    from ablation.study import engine, list_studies, load_study

    storage = engine.open_storage(args.storage, read_only=True)
    rows = []
    for name in list_studies():
        try:
            study = load_study(name)
            total, question = study.n_cells, study.spec.question
        except AblationError as e:
            rows.append([name, "?", f"invalid: {e}"])
            continue
        session = engine.read_session(study, storage=storage)
        done = 0 if session is None else sum(s.state == "done" for s in engine.states(session))
        rows.append([name, f"{done}/{total}", question])
    print(tabulate(rows, headers=["study", "cells", "question"], tablefmt="simple", maxcolwidths=[None, None, 80]))
    return 0
