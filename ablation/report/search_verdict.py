"""The verdict of a tuning study: the best finished trial, with the honest
caveat that the maximum of single-seed scores overstates the winner, and the
commands that re-run it over fresh seeds. Computed from the trial table,
never written by hand; the report and the index both print ``sentence``."""

from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass, field

from ablation.report.common import fmt_value
from ablation.report.load import StudyInfo
from ablation.report.stats import label

CONFIRM_SEEDS = 3  # three fresh seeds: the fewest that give a t-interval with some width to it


def config_text(levels: dict) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in levels.items())


@dataclass(frozen=True)
class TuningVerdict:
    metric: str
    maximize: bool
    planned: int | None  # the study's n_trials
    n_finished: int
    n_pruned: int
    n_unfinished: int  # failed, killed or still running
    best: str | None  # the winning trial's label, e.g. "trial 7"
    best_value: float
    levels: dict  # its full sampled configuration
    seed: int | None
    scores: dict[str, float]  # quality metrics of the winner that were logged
    ceilings: dict[str, float]  # metric -> Bayes ceiling of the winner's data
    runner_up: str | None
    runner_up_value: float
    commands: tuple[str, ...] = field(default=())
    config_path: str = ""  # where the winner's logged config.toml is written; "" when it was not logged

    @property
    def done(self) -> int:
        return self.n_finished + self.n_pruned

    def fraction(self, metric: str) -> float | None:
        """The winner's score as a fraction of the Bayes ceiling, when logged."""
        if metric not in self.ceilings or metric not in self.scores:
            return None
        return self.scores[metric] / self.ceilings[metric]

    def of_ceiling(self, metric: str) -> str:
        f = self.fraction(metric)
        return "" if f is None else f"{f:.1%} of the ceiling"

    @property
    def sentence(self) -> str:
        """The one-line answer."""
        planned = "?" if self.planned is None else str(self.planned)
        counts = f"{self.done}/{planned} trials done, {self.n_pruned} pruned"
        if self.best is None:
            return f"No trial finished with a finite {self.metric} ({counts}): no verdict."
        what = label(self.metric) + ("" if self.maximize else " (lower is better)")
        ceil = self.of_ceiling(self.metric)
        return (
            f"Best of {self.n_finished} finished trials ({counts}): `{self.best}` with {what} "
            f"{self.best_value:.4f}{f' ({ceil})' if ceil else ''} at {config_text(self.levels) or 'the base config'}; "
            f"a single-seed winner, to be confirmed over seeds."
        )

    @property
    def caveat(self) -> str:
        if self.best is None:
            return ""
        seed = f"seed {self.seed}" if self.seed is not None else "its one seed"
        text = (
            f"This is the best of {self.n_finished} single-seed scores, so it is biased in its favour: "
            f"picking the maximum also picks the trial that {seed} favoured most (the winner's curse)."
        )
        if self.runner_up is not None:
            gap = abs(self.best_value - self.runner_up_value)
            text += (f" The runner-up `{self.runner_up}` scored {self.runner_up_value:.4f}, {gap:.4f} behind; "
                     "one seed per trial cannot say whether that gap outlasts a change of seed.")
        test = "test." + self.metric.split(".", 1)[1] if self.metric.startswith("val.") else ""
        if test in self.scores:
            text += (f" Its {label(test)} ({self.scores[test]:.4f}) played no part in the choice, so it is the "
                     f"less biased of the two figures.")
        return text

    @property
    def confirm(self) -> str:
        if self.best is not None and not self.commands:
            return ("The winning run has no logged `config.toml`, so no command can re-run its exact config; "
                    "re-run the study with a current version of ablation.")
        if not self.commands:
            return ""
        used = f"not seed {self.seed}, on which the search selected it" if self.seed is not None else "not the search's"
        return (f"Confirm it on {len(self.commands)} fresh seeds ({used}) and report their mean and 95% CI; "
                f"`{self.config_path}` is the winner's config as its run logged it:")


def confirm_commands(info: StudyInfo, config_path: str, seed: int | None, n: int = CONFIRM_SEEDS) -> list[str]:
    """``python -m ablation train`` of the winner's own logged ``config.toml``
    (written beside the report as ``config_path``), one per fresh seed: the
    config is the one that ran, whole, so only the seed differs from the trial."""
    used = set(info.seeds) | ({seed} if seed is not None else set())
    fresh = list(itertools.islice((s for s in itertools.count() if s not in used), n))
    return [f"python -m ablation train {shlex.quote(config_path)} --set train.seed={s}" for s in fresh]
