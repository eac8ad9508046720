"""`ablation status NAME`: per-arm progress, each arm's decision so far
(with the seeds an undecided one needs), and failures with their reasons.
It only reads: a study on a read-only store can be looked at."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("status", help="per-arm progress of a study, failures with reasons")
    p.add_argument("study", help="study name")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ablation.study import engine, load_study

    study = load_study(args.study)
    session = engine.read_session(study, args.storage)
    if session is None:
        print(f"{study.name}: not started ({study.n_cells} cells); start it with: python -m ablation run {study.name}")
        return 0
    states = engine.states(session)
    print(f"{study.name}: {study.spec.question}")
    if session.opt.user_attrs.get("hash") != study.hash:
        print("  note: the study file changed since these trials began (run with --new to start fresh)")
    for line in study.kind.status_lines(session, states):
        print(line)
    for s in states:
        if s.state == "failed":
            print(f"failed: {study.kind.label(study, s)}: {s.error or 'no reason recorded'}")
    return 0
