"""`ablation simulate`: calibrate the decisions on simulated studies whose
seed-to-seed spread is the one measured in the committed reports."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="check the decisions' error rates and power on simulated studies",
        description="Decide many simulated 2-arm studies with known true differences (0, min_effect/2, "
                    "2 x min_effect) at the paired spread measured in the reports, and print how often each "
                    "decision is reached.",
    )
    p.add_argument("--studies", type=int, default=2000, metavar="N", help="simulated studies per case (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-effect", type=float, default=0.005, metavar="M", help="smallest effect of interest (0.005)")
    p.add_argument("--seeds-min", type=int, default=3, metavar="N", help="adaptive design's first look (3)")
    p.add_argument("--seeds-max", type=int, default=10, metavar="N", help="adaptive design's last look (10)")
    p.add_argument("--spending", choices=("obf", "pocock"), default="obf",
                   help="adaptive design's Lan-DeMets spending function: O'Brien-Fleming-type (default) or Pocock-type")
    p.add_argument("--sd", type=float, default=None, metavar="S",
                   help="paired spread to simulate (default: the median and the largest measured in reports/)")
    p.add_argument("--reports", type=Path, default=None, help="where the measured reports are (default reports/)")
    p.add_argument("--readme", action="store_true", help="write the figures into the README's statistics section")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ablation import paths
    from ablation.decision import ALPHA, MAX_SEEDS, SeedDesign
    from ablation.errors import AblationError
    from ablation.simulate import calibrate, measured_spreads, table, write_block

    if args.studies < 100:
        raise AblationError(f"--studies must be at least 100 for rates worth reading, got {args.studies}")
    if args.min_effect <= 0 or (args.sd is not None and args.sd <= 0):
        raise AblationError("--min-effect and --sd must be positive")
    if not 2 <= args.seeds_min <= args.seeds_max <= MAX_SEEDS:
        raise AblationError(f"need 2 <= --seeds-min <= --seeds-max <= {MAX_SEEDS}, got {args.seeds_min} and {args.seeds_max}")
    reports = args.reports or paths.reports_dir()
    spreads = {}
    if args.sd is not None:
        spreads[f"{args.sd:.4f} (given)"] = args.sd
        source = "given with --sd"
    else:
        measured = measured_spreads(reports)
        if not measured:
            raise AblationError(f"no report in {reports} has a runs table to measure the spread from; pass --sd")
        median, worst = float(np.median(list(measured.values()))), max(measured, key=measured.get)
        spreads[f"{median:.4f} (median)"] = median
        spreads[f"{measured[worst]:.4f} (largest: {worst})"] = measured[worst]
        source = (f"pooled sd of the paired differences of val accuracy in {len(measured)} committed reports "
                  f"(from {min(measured.values()):.4f} to {max(measured.values()):.4f}; median {median:.4f})")
    adaptive = SeedDesign(args.seeds_min, args.seeds_max, adaptive=True, spending=args.spending)
    flags = f" --studies {args.studies} --seed {args.seed}" + (f" --spending {args.spending}" * (args.spending != "obf"))
    flags += "".join(f" --{k.replace('_', '-')} {getattr(args, k):g}" for k, default in
                     (("min_effect", 0.005), ("seeds_min", 3), ("seeds_max", 10)) if getattr(args, k) != default)
    flags += f" --sd {args.sd:g}" if args.sd is not None else ""
    lines = [f"Simulated with `python -m ablation simulate{flags}` "
             f"(alpha {ALPHA}, smallest effect of interest {args.min_effect:g}); spread: {source}. "
             f"{args.studies} simulated 2-arm studies per row; a rate's Monte-Carlo standard error is at most "
             f"{0.5 / np.sqrt(args.studies):.3f}. Method: {adaptive.describe(1)}.", ""]
    designs = [(adaptive, f"Adaptive seeds {{ min = {adaptive.min}, max = {adaptive.max} }}, {args.spending} spending")]
    designs += [(SeedDesign.fixed(n), f"Fixed {n} seeds (for comparison)") for n in (adaptive.min, adaptive.max)]
    for design, title in designs:
        results = {label: calibrate(sd, args.min_effect, design, args.studies, args.seed)
                   for label, sd in spreads.items()}
        lines += [f"{title}:", "", *table(results, args.min_effect), ""]
    text = "\n".join(lines).rstrip()
    print(text)
    if args.readme:
        readme = paths.project_dir() / "README.md"
        try:
            write_block(readme, text.splitlines())
        except ValueError as e:
            raise AblationError(str(e)) from None
        print(f"written into {readme}")
    return 0
