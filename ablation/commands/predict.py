"""`ablation predict RUN_ID --data SPEC --out FILE`: a Kaggle submission from a logged run."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("predict", help="write a Kaggle submission (Id,Class) from a logged run",
                       description="Predict the test frames of --data with the model of an MLflow run.")
    p.add_argument("run_id", help="MLflow run id (see `ablation ui`)")
    p.add_argument("--data", required=True, metavar="SPEC", help="e.g. libriphone:~/data/libriphone")
    p.add_argument("--out", default="submission.csv", help="output CSV (default: submission.csv)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ablation import tracking
    from ablation.commands import precheck

    # refused before torch and MLflow are imported: an unknown run or data set costs no start-up
    precheck.check_run(args.run_id, tracking.resolve_tracking_uri(args.tracking_uri))
    precheck.check_data(args.data)
    from ablation.predict import write_submission

    n = write_submission(args.run_id, args.data, args.out, args.tracking_uri)
    split = tracking.client(args.tracking_uri).get_run(args.run_id).data.tags.get(tracking.TAG + "data.split")
    print(f"wrote {n:,} predictions to {args.out}" + (f" (model trained on split: {split})" if split else ""))
    return 0
