"""The verdict of a tuning study: the best finished trial, with the honest
caveat that the maximum of single-seed scores overstates the winner, and the
commands that re-run it over fresh seeds. Computed from the trial table,
never written by hand; the report and the index both print ``sentence``."""

from __future__ import annotations

import itertools
import json
import shlex
import tomllib
from dataclasses import dataclass, field

from ablation.report.load import StudyInfo
from ablation.report.stats import label

CONFIRM_SEEDS = 3  # three fresh seeds: the fewest that give a t-interval with some width to it


def fmt_value(v) -> str:
    """A sampled value for reading (4 significant digits for floats)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return v if isinstance(v, str) else json.dumps(v)


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
        if not self.commands:
            return ""
        used = f"not seed {self.seed}, on which the search selected it" if self.seed is not None else "not the search's"
        return f"Confirm it on {len(self.commands)} fresh seeds ({used}) and report their mean and 95% CI:"


def cli_value(v) -> str:
    """A value as ``--set`` reads it back (TOML), exactly: floats as their
    shortest round-trip repr, strings quoted only when TOML would read them
    as something else."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    text = str(v)
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text  # not TOML: --set keeps it as the string it is
    return json.dumps(text)


def _command_options(command: str) -> tuple[str | None, dict[str, object]]:
    """``--data`` and the ``--set`` overrides of a study's run command."""
    from ablation.config import parse_override

    try:
        words = shlex.split(command)
    except ValueError:
        return None, {}
    data, sets = None, {}
    for flag, value in zip(words, words[1:]):
        if flag == "--data":
            data = value
        elif flag == "--set" and "=" in value:
            key, v = parse_override(value)
            sets[key] = v
    return data, sets


def experiment_path(base: str) -> str:
    return base if base.endswith(".toml") else f"experiments/{base}.toml"


def confirm_commands(info: StudyInfo, study_file: dict, levels: dict, seed: int | None,
                     n: int = CONFIRM_SEEDS) -> list[str]:
    """``python -m ablation train`` of the winner, one per fresh seed. Every
    setting the study applied on top of the base experiment is repeated
    (budget, ``[set]``, the scale preset, the run's ``--set`` and ``--data``),
    then the sampled values, so only the seed differs from the trial."""
    data, cli = _command_options(info.command)
    overrides: dict[str, object] = {}
    budget = (study_file.get("constraints") or {}).get("param_budget")
    if budget:
        overrides["model.param_budget"] = budget
    overrides.update(study_file.get("set") or {})
    overrides.update((study_file.get("scale") or {}).get(info.scale) or {})
    overrides.update(cli)
    overrides.update(levels)
    overrides.pop("train.seed", None)
    used = set(info.seeds) | ({seed} if seed is not None else set())
    fresh = list(itertools.islice((s for s in itertools.count() if s not in used), n))
    head = ["python -m ablation train", shlex.quote(experiment_path(info.base or "BASE"))]
    head += [f"--set {shlex.quote(f'{k}={cli_value(v)}')}" for k, v in overrides.items()]
    if data:
        head += ["--data", shlex.quote(data)]
    return [" ".join(head + [f"--set train.seed={s}"]) for s in fresh]
