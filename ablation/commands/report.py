"""`ablation report`: write reports/<study>.md (and its figures) from the study's MLflow runs."""

from __future__ import annotations

import sys
from pathlib import Path


def build_report(study_name: str, tracking_uri: str | None = None, out_dir: str | Path | None = None) -> Path:
    """The report of one study (the study runner calls this when a run ends)."""
    from ablation.report.build import build_report as _build  # heavy imports only when used

    return _build(study_name, tracking_uri=tracking_uri, out_dir=out_dir)


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write reports/NAME.md (verdict, statistics, fairness, figures) from a study's runs",
        description="Build the report of a study from the runs in MLflow, and refresh reports/README.md.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="study name (its MLflow experiment)")
    p.add_argument("--all", action="store_true", help="report every study in the tracking store")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or mlruns/mlflow.db)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/ in the project)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ablation import tracking
    from ablation.commands import precheck
    from ablation.errors import AblationError

    if bool(args.name) == bool(args.all):
        raise AblationError("give either a study NAME or --all, not both or neither; e.g. 'python -m ablation report deep_vs_shallow'")
    if args.name:  # an unknown study is refused before the report's imports (pandas, MLflow, matplotlib)
        precheck.check_study(args.name, tracking.resolve_tracking_uri(args.tracking_uri))
        print(build_report(args.name, tracking_uri=args.tracking_uri, out_dir=args.out))
        return 0
    from ablation.report.build import build_all

    written, errors = build_all(tracking_uri=args.tracking_uri, out_dir=args.out)
    for path in written:
        print(path)
    for line in errors:
        print(f"ablation report: {line}", file=sys.stderr)
    return 2 if errors else 0
