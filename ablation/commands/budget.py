"""`ablation budget NAME`: would a longer epoch cap change any of the study's decisions?

Trains what the check still needs (``ablation.study.budget``), prints the
comparison, rewrites the report and the parent run's tags. It takes the
options the study was run with, so it checks that very study.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("budget", help="would a longer epoch cap change a study's decisions?",
                       description="Train the baseline's and the best arm's runs that the epoch cap cut at FACTOR "
                                   "times the cap, recompute the decisions, and rewrite the report.")
    p.add_argument("study", help="study name (studies/NAME.toml) or path")
    p.add_argument("--factor", type=float, default=2.0, metavar="F", help="the longer cap, in caps (default: 2)")
    p.add_argument("--data", metavar="SPEC", help="data source the study was run with")
    p.add_argument("--scale", choices=("quick", "full"), default="quick", help="scale the study was run at (default: quick)")
    p.add_argument("--seeds", type=int, metavar="N", help="number of seeds the study was run with")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an override the study was run with (repeatable)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained at once, in processes (default: 1)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")
    p.add_argument("--no-report", action="store_true", help="do not rewrite the report")
    p.set_defaults(func=run)


def run(args) -> int:
    from types import SimpleNamespace

    from ablation import experiment, tracking
    from ablation.report import budget as B
    from ablation.study import budget, load_study, parent

    budget.check_factor(args.factor)
    if args.jobs < 1:
        from ablation.errors import StudyError

        raise StudyError(f"--jobs must be at least 1, got {args.jobs}")
    study = load_study(args.study, scale=args.scale, seeds=args.seeds, overrides=args.overrides, data=args.data)
    budget.check_has_cap(study)
    for source in dict.fromkeys(cell.config.data.source for cell in study.cells):  # as `run` refuses a bad source
        experiment.load_dataset_cached(source)
    tracking.check_writable(args.tracking_uri)
    b = budget.check_study(study, args.tracking_uri, args.factor, args.jobs)
    for line in budget.summary_lines(b, study.name):
        print(line)
    if not args.no_report:
        from ablation.report.build import build

        built = build(study.name, tracking_uri=args.tracking_uri)
        print(f"report: {built.path}")
        parent.finish(study, SimpleNamespace(parent=built.runs.info.parent_run_id), args.tracking_uri, built)
    return 1 if b.status == B.NOT_RUN else 0
