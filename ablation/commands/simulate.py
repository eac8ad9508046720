"""`ablation simulate`: calibrate the decisions on simulated studies whose
seed-to-seed spread is the one measured in the committed reports."""

from __future__ import annotations

import math
from pathlib import Path

ARMS = (1, 4, 6)  # one arm, and the committed studies' usual counts


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="check the decisions' error rates and power on simulated studies",
        description="Decide many simulated studies of 1 or more arms against a shared baseline, one arm at a known "
                    "true difference (0, min_effect/2, min_effect, 2 x min_effect) and the others equal to the "
                    "baseline, at the paired spread measured in the reports, and print how often each decision is "
                    "reached and how often a study has a wrong call.",
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
    p.add_argument("--arms", default=",".join(map(str, ARMS)), metavar="K,K",
                   help="arms compared with the baseline in each simulated study (default 1,4,6)")
    p.add_argument("--rho", type=float, default=None, metavar="R",
                   help="correlation of two arms' paired differences (default 0.5: the shared baseline, equal variances)")
    p.add_argument("--reports", type=Path, default=None, help="where the measured reports are (default reports/)")
    p.add_argument("--readme", action="store_true", help="write the figures into the README's statistics section")
    p.set_defaults(func=run)


def _positive(flag: str, value: float | None, example: str) -> None:
    from ablation.errors import AblationError

    if value is not None and not (math.isfinite(value) and value > 0):
        raise AblationError(f"{flag} must be a positive finite number ({example}), got {value}")


def _arms(text: str) -> list[int]:
    from ablation.decision import MAX_ARMS
    from ablation.errors import AblationError

    try:
        arms = [int(x) for x in text.split(",")]
    except ValueError:
        arms = []
    if not arms or not all(1 <= k <= MAX_ARMS for k in arms):
        raise AblationError(f"--arms must be a comma-separated list of arm counts from 1 to {MAX_ARMS} "
                            f"(e.g. 1,4,6), got {text!r}")
    return list(dict.fromkeys(arms))


def validate(args) -> list[int]:
    """Every numeric option checked before any work: NaN and inf pass argparse's float()."""
    from ablation.decision import MAX_SEEDS
    from ablation.errors import AblationError
    from ablation.simulate import RHO

    if args.studies < 100:
        raise AblationError(f"--studies must be at least 100 for rates worth reading, got {args.studies}")
    _positive("--min-effect", args.min_effect, "the smallest effect of interest, e.g. 0.005")
    _positive("--sd", args.sd, "the paired spread, e.g. 0.002")
    if args.rho is not None and not (math.isfinite(args.rho) and 0 <= args.rho < 1):
        raise AblationError(f"--rho must be a correlation from 0 up to (not including) 1, e.g. {RHO}, got {args.rho}")
    if not 2 <= args.seeds_min <= args.seeds_max <= MAX_SEEDS:
        raise AblationError(f"need 2 <= --seeds-min <= --seeds-max <= {MAX_SEEDS}, got {args.seeds_min} and {args.seeds_max}")
    return _arms(args.arms)


def run(args) -> int:
    import numpy as np

    from ablation import paths
    from ablation.decision import SeedDesign
    from ablation.errors import AblationError
    from ablation.simulate import RHO, calibrate, measured_spreads, table, write_block

    arms = validate(args)
    rho = RHO if args.rho is None else args.rho
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
    lines = [_header(args, arms, rho, source, adaptive), ""]
    designs = [(adaptive, f"Adaptive seeds {{ min = {adaptive.min}, max = {adaptive.max} }}, {args.spending} spending")]
    designs += [(SeedDesign.fixed(n), f"Fixed {n} seeds, Holm over the arms") for n in (adaptive.min, adaptive.max)]
    for design, title in designs:
        results = [(label, calibrate(sd, args.min_effect, design, args.studies, args.seed, arms=k, rho=rho))
                   for label, sd in spreads.items() for k in arms]
        lines += [f"{title}:", "", *table(results), ""]
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


def _header(args, arms: list[int], rho: float, source: str, adaptive) -> str:
    """How the tables were made, from the options themselves."""
    import numpy as np

    from ablation.decision import ALPHA

    flags = f" --studies {args.studies} --seed {args.seed}" + (f" --spending {args.spending}" * (args.spending != "obf"))
    flags += "".join(f" --{k.replace('_', '-')} {getattr(args, k):g}" for k, default in
                     (("min_effect", 0.005), ("seeds_min", 3), ("seeds_max", 10)) if getattr(args, k) != default)
    flags += f" --sd {args.sd:g}" if args.sd is not None else ""
    flags += f" --arms {','.join(map(str, arms))}" if tuple(arms) != ARMS else ""
    flags += f" --rho {args.rho:g}" if args.rho is not None else ""
    looks = "; ".join(f"{k} arm{'s' * (k != 1)}: {lv[adaptive.min][0]:.2g} at the first look, "
                      f"{lv[adaptive.max][0]:.3g} at the last"
                      for k in arms if k > 1 and (lv := adaptive.levels(ALPHA / k)))
    return (f"Simulated with `python -m ablation simulate{flags}` (alpha {ALPHA}, smallest effect of interest "
            f"{args.min_effect:g}); spread: {source}. {args.studies} simulated studies per row, each of 1 or more "
            f"arms against one baseline whose seeds they share, so two arms' paired differences correlate "
            f"(rho = {rho:g}: equal variances). One arm is at the row's true difference and the others equal the "
            f"baseline; `better` to `undecided` are that arm's rates, the next two are study-wide: "
            f"*any false difference call* is the share of studies with a `better` or `worse` where the true "
            f"difference is 0 or of the other sign (the difference family's family-wise error), *any wrong call* "
            f"the share with that or an `equivalent` where the true difference is at least the margin (both "
            f"families together). A rate's Monte-Carlo standard error is at most {0.5 / np.sqrt(args.studies):.3f}. "
            f"Fixed seeds look once, Holm-corrected over the arms within each family. Method of the adaptive "
            f"design: {adaptive.describe(1)}" + (f"; with more arms each arm's looks spend alpha / arms (two-sided "
                                                   f"nominal level, {looks})" if looks else "") + ".")
