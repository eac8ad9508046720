"""`ablation train EXPERIMENT`: fit one experiment and log it as one MLflow run."""

from __future__ import annotations

import argparse


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set model.depth=4 (repeatable)")
    p.add_argument("--data", metavar="SPEC",
                   help="data source: synthphone:tiny|small|libri (or tiny-v2|small-v2|libri-v2), libriphone:PATH or timit11:PATH")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: sqlite under mlruns/)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train one experiment and log it to MLflow",
                       description="Train one experiment (experiments/NAME.toml or a path) and log one MLflow run.")
    p.add_argument("experiment", help="experiment name (experiments/NAME.toml) or path to a .toml file")
    add_common(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_config(args):
    from ablation.config import load_experiment

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.source={args.data!r}".replace("'", '"'))
    return load_experiment(args.experiment, overrides)


def run(args) -> int:
    from ablation.commands import precheck

    # the data spec, the file and its fields are refused before torch and MLflow load (a model family's
    # fields load torch: a --data given here is checked first)
    if args.data:
        precheck.check_data(args.data)
    cfg = load_config(args)
    precheck.check_data(cfg.data.source)
    from ablation import experiment, tracking
    from ablation.train import model_kwargs, resolve_device

    tracking.check_writable(args.tracking_uri)
    model_kwargs(cfg)  # refuse impossible models before loading any data
    prepared = experiment.prepare(cfg)
    # and, sized for this data's classes, before anything is logged
    model_kwargs(cfg, prepared[1].train.n_classes, prepared[1].train.frame_dim)
    resolve_device(cfg.train.device)
    c = tracking.client(args.tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, f"train/{cfg.name}")
    tags = {tracking.TAG + "kind": "single"}
    with tracking.start_run(c, exp_id, run_name=f"{cfg.name} seed={cfg.train.seed}", tags=tags) as mlrun:
        result = experiment.execute(cfg, mlrun, progress=not args.no_progress, prepared=prepared)
    print(summary(cfg, prepared[1], result, mlrun.run_id, c.tracking_uri))
    return 0


def summary(cfg, splits, result, run_id: str, uri: str) -> str:
    from tabulate import tabulate

    from ablation.experiment import split_text

    rows = [["split", split_text(cfg)],
            ["train / val", f"{splits.train.n_utts:,} / {splits.val.n_utts:,} utterances, "
                            f"{splits.train.n_frames:,} / {splits.val.n_frames:,} frames"],
            ["val accuracy", f"{result.val.acc:.4f}"], ["val macro-F1", f"{result.val.macro_f1:.4f}"]]
    if result.test is not None:
        rows += [["test accuracy", f"{result.test.acc:.4f}"], ["test macro-F1", f"{result.test.macro_f1:.4f}"]]
    if splits.val.ceiling() is not None:
        from ablation.data.ceiling import info_ceilings, view_of

        view = view_of(cfg)
        rows.append(["val ceiling (Bayes)", f"{splits.val.ceiling():.4f} (whole utterance)"])
        for v, acc in info_ceilings(splits.val, [view]).items():
            rows.append(["val ceiling of input", f"{acc:.4f} ({v.label}; an upper bound)"])
    rows += [
        ["parameters", f"{result.n_params:,}"],
        ["multiply-adds / frame", f"{result.macs_per_frame:,}"],
        ["epochs (best)", f"{result.epochs_run} ({result.best_epoch})"],
        ["training time", f"{result.train_time_s:.1f} s ({result.frames_per_s:,.0f} frames/s)"],
        ["MLflow run", run_id],
    ]
    return f"{cfg.name} on {cfg.data.source}\n" + tabulate(rows, tablefmt="simple") + f"\nstore: {uri}"
