"""`ablation data info|generate|export|ceiling --data SPEC`: look at a corpus."""

from __future__ import annotations

import argparse

DEFAULT_SPEC = "synthphone:small-v2"
ACTIONS = ("info", "generate", "export", "ceiling", "calibrate", "presets")


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="summarise, generate, export a corpus or show its ceiling",
        description=(
            "info: sizes per split, classes, label runs, ceiling. generate: build and cache a synthphone corpus. "
            "export: write any corpus with utterance boundaries in the libriphone layout (--out). "
            "ceiling: Bayes-optimal accuracy per split and per class (generated corpora), and the information "
            "ceiling of each window length. calibrate: train the shipped experiments on the corpus and compare "
            "its statistics with libriphone's (--write puts the table in the README). presets: generate every synthphone "
            "preset (or --presets) and tabulate sizes, time, memory, ceilings and statistics (--write: the README's)."
        ),
    )
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--data", metavar="SPEC", default=DEFAULT_SPEC,
                   help=f"synthphone:tiny|small|libri (or tiny-v2|small-v2|libri-v2), libriphone:PATH or timit11:PATH (default "
                        f"{DEFAULT_SPEC}); calibrate: several, comma-separated, are measured one after the other")
    p.add_argument("--out", metavar="DIR", help="export: the folder to create")
    p.add_argument("--val-ratio", type=float, default=0.2, help="share of utterances in val (default 0.2)")
    p.add_argument("--split", default="seed", metavar="NAME",
                   help="seed: shuffled with --seed, as `train` does with train.seed (default); course: the "
                        "notebook's split (random.seed(1337), random.shuffle of train_split.txt, first 80%%)")
    p.add_argument("--seed", type=int, default=0,
                   help="split seed of --split seed (default 0, train.seed's default, so `train` splits alike)")
    p.add_argument("--n", metavar="N,N,...", default="1,11,21",
                   help="ceiling: the window lengths (odd) whose information ceiling to show (default 1,11,21)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="calibrate: an override for every experiment (e.g. train.epochs=2); repeatable")
    p.add_argument("--write", metavar="README", nargs="?", const="README.md",
                   help="calibrate, presets: replace that block of this README (default README.md)")
    p.add_argument("--presets", metavar="NAME,NAME,...",
                   help="presets: which synthphone presets to generate and tabulate (default: every preset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablation.errors import DataError

    if args.action == "export" and not args.out:
        raise DataError("data export needs a destination; add --out DIR")
    windows = _windows(args.n) if args.action == "ceiling" else []
    if args.action == "calibrate":
        return _calibrate(args)
    if args.action == "presets":
        return _presets(args)
    from ablation.commands import precheck

    precheck.check_data(args.data)  # before ``sources`` imports torch
    from ablation.data import sources

    ds = sources.load_dataset(args.data)
    if args.action == "info":
        from ablation.data.info import format_summary, summarize

        print(format_summary(summarize(ds, args.val_ratio, args.seed, args.split)))
    elif args.action == "generate":
        print(_generated(ds, args.data))
    elif args.action == "export":
        out = sources.export(ds, args.out)
        test = ds.test.n_utts if ds.test is not None else 0
        print(f"wrote {ds.pool.n_utts} train and {test} test utterances of {ds.source} to {out}")
    else:
        print(_ceiling(ds, args.val_ratio, args.seed))
        print(_information(ds, windows, args.val_ratio, args.seed, jobs=_jobs()))
    return 0


def _calibrate(args) -> int:
    from pathlib import Path

    from ablation import calibration
    from ablation.config import parse_override
    from ablation.data import sources
    from ablation.errors import DataError

    for o in args.overrides:
        parse_override(o)  # a bad override: one line before any training
    readme = _readme(args.write)
    specs = [s.strip() for s in args.data.split(",")]
    for spec in specs:  # a bad spec: one line before any training
        scheme, arg = sources.parse_spec(spec)
        if scheme == "synthphone":
            from ablation.data import synthphone

            synthphone.resolve(arg)
        elif not Path(arg).expanduser().exists():
            raise DataError(f"--data {spec}: {arg} does not exist; give the folder or file of the data set")
    measured = [calibration.measure(spec, args.overrides) for spec in specs]
    block = calibration.render(specs, args.overrides, measured)
    print(block)
    if readme is not None:
        calibration.write_readme(readme, block)
        print(f"\nwrote the calibration block of {readme}")
    return 0


def _presets(args) -> int:
    from ablation.calibration import write_readme
    from ablation.data import catalogue, synthphone

    names = [n.strip() for n in args.presets.split(",")] if args.presets else list(synthphone.PRESETS)
    for n in names:
        synthphone.resolve(n)  # an unknown name: one line before anything is generated
    readme = _readme(args.write)
    command = "python -m ablation data presets" + (f" --presets {','.join(names)}" if args.presets else "") + " --write"
    block = catalogue.render(catalogue.measure_all(names), command)
    print(block)
    if readme is not None:
        write_readme(readme, block, catalogue.START, catalogue.END, "presets")
        print(f"\nwrote the presets block of {readme}")
    return 0


def _readme(path):
    """``--write``'s README, checked before any work."""
    from pathlib import Path

    from ablation.errors import ConfigError

    if path is None:
        return None
    readme = Path(path)
    if not readme.is_file():
        raise ConfigError(f"--write {readme}: no such file; give the README to update")
    return readme


def _windows(text: str) -> list[int]:
    from ablation.data.ceiling import check_window
    from ablation.errors import DataError

    out = []
    for part in text.split(","):
        try:
            out.append(int(part))
        except ValueError:
            raise DataError(f"--n {text!r}: {part!r} is not an integer; give odd window lengths like 1,11,21") from None
    for n in out:
        try:
            check_window(n)
        except DataError as e:
            raise DataError(f"--n {text!r}: {e}") from None
    return out


def _generated(ds, spec: str) -> str:
    from ablation.data.sources import parse_spec

    sizes = f"{ds.pool.n_utts:,} utterances, {ds.pool.n_frames:,} frames"
    if ds.test is not None:
        sizes += f" (+ test: {ds.test.n_utts:,} utterances, {ds.test.n_frames:,} frames)"
    head = f"{spec}: {sizes}; fingerprint {ds.fingerprint}"
    scheme, arg = parse_spec(spec)
    if scheme != "synthphone":
        return f"{head}; read from its files (nothing to generate)"
    from ablation.data import synthphone

    folder = synthphone.cache_folder(synthphone.resolve(arg))
    return f"{head}; cached at {folder}" if folder.is_dir() else f"{head}; not cached ({folder.parent} is not writable)"


def _ceiling(ds, val_ratio: float, seed: int) -> str:
    from tabulate import tabulate

    from ablation.data.info import ceiling_per_split, ceiling_table
    from ablation.errors import DataError

    table = ceiling_table(ds, val_ratio, seed)
    if table is None:
        raise DataError(f"{ds.source} has no known ceiling (only generated corpora do); use a synthphone:PRESET spec")
    per_split = ceiling_per_split(ds, val_ratio, seed)
    head = "ceiling (Bayes-optimal frame accuracy): " + ", ".join(
        f"{k} {v:.4f}" for k, v in per_split.items() if v is not None
    )
    body = table.reset_index()
    fmt = {c: (lambda v: "-" if v != v else f"{v:.3f}") for c in body.columns[2:]}
    for col, f in fmt.items():
        body[col] = body[col].map(f)
    align = ("left",) + ("right",) * (body.shape[1] - 1)
    rows = tabulate(body, headers="keys", showindex=False, disable_numparse=True, colalign=align)
    return f"{ds.source}\n{head}\n\nrecall ceiling per class (frames: in the labelled pool)\n{rows}"


def _jobs() -> int:
    """Processes for a corpus's information ceilings: one per core, up to 4 (as ``run``'s workers)."""
    import os

    return max(1, min(os.cpu_count() or 1, 4))


def _information(ds, windows: list[int], val_ratio: float, seed: int, jobs: int = 1) -> str:
    """The information ceiling of each window length and of the whole utterance, on val and test."""
    from tabulate import tabulate

    from ablation.data.ceiling import CONDITIONS, View, info_ceilings
    from ablation.data.info import split_corpora

    views = [View("window", n) for n in windows] + [View("utterance")]
    parts = {k: c for k, c in split_corpora(ds, val_ratio, seed).items() if k != "train"}
    table = {k: info_ceilings(c, views, jobs) for k, c in parts.items()}
    rows = [[v.label] + [f"{table[k][v]:.4f}" for k in parts] for v in views]
    body = tabulate(rows, headers=["view", *parts], disable_numparse=True, colalign=("left",) + ("right",) * len(parts))
    return f"\ninformation ceiling: Bayes accuracy of a frame given what a model sees, conditioned on {CONDITIONS}\n{body}"
