"""What a kind of study is: the small base every registered kind extends.

A kind owns its section of the study file (``section``: the keys only it may
set, and ``check``: their rules), what it adds to the study's hash, how its
cells are laid out (``expand``), how it prepares the Optuna side, which job a
worker runs next, what ``run`` and ``status`` print about it, and the protocol
settings its parent run records. The engine (``ablation.study.engine``) and
the commands only ever call these methods; nothing else tells kinds apart.
"""

from __future__ import annotations

from pathlib import Path

from ablation.errors import StudyError
from ablation.study.spec import Study, StudySpec


class Kind:
    name = ""
    # (study-file key, value) that selects this kind; None: the default kind
    selector: tuple[str, object] | None = None
    # study-file keys only this kind may set (another kind's study refuses them)
    section: tuple[str, ...] = ()
    # what ``run``'s summary line calls one unit of work
    unit = "cells"

    # ---- the study file -------------------------------------------------------

    def selects(self, spec: StudySpec) -> bool:
        return self.selector is not None and getattr(spec, self.selector[0]) == self.selector[1]

    def check(self, spec: StudySpec, path: Path, factor_paths: set[str], seeds: list[int]) -> None:
        """Refuse, in one line, what this kind cannot run (before anything is enqueued)."""

    def check_fields(self, spec: StudySpec, path: Path, families: list[str]) -> None:
        """Refuse settings this kind searches or tunes that the model families the cells use do not have."""

    def overrides(self, spec: StudySpec) -> dict:
        """Config fields this kind sets in every cell before ``[scale.*]``."""
        return {}

    def expand(self, spec: StudySpec, path: Path, data: dict, seeds: list[int]):
        """(arms, baseline or None, cells) of the study."""
        raise NotImplementedError

    def hash_payload(self, study: Study) -> dict:
        """What this kind adds to the study's hash. ``n_trials`` is a key every
        study has hashed since before kinds existed: None unless a kind uses it."""
        return {"n_trials": None}

    def n_cells(self, study: Study) -> int:
        return len(study.cells)

    def budget_cap(self, study: Study) -> int | None:
        """The epoch cap its cells stop under, which a budget check raises (``ablation.study.budget``):
        a kind that sets ``train.epochs`` from ``[stopping]`` has one; None: no budget check."""
        if "train.epochs" not in self.overrides(study.spec):
            return None
        return study.cells[0].config.train.epochs  # after [scale.*] and --set, as the cells run

    def protocol_settings(self, study: Study) -> dict:
        """What the report states about how the arms were trained."""
        cfg = study.cells[0].config.train
        return {"max_epochs": cfg.epochs, "patience": cfg.patience, "select_fraction": cfg.select_fraction}

    # ---- running ---------------------------------------------------------------

    def sampler(self, study: Study):
        from ablation.study import _optuna as O

        return O.grid_sampler()

    def pruner(self, study: Study):
        from ablation.study import _optuna as O

        return O.pruner("none")

    def open(self, session) -> None:
        """Open what a worker needs beside the study's own Optuna study (``session.state``)."""

    def prepare(self, session) -> None:
        """Enqueue what the study owes (called once per run, under the study lock)."""

    def next_job(self, session):
        """The next claimed ``cells.Job``, or None when nothing is claimable now."""
        raise NotImplementedError

    def requeue(self, session, retry_failed: bool) -> int:
        """Enqueue cells owed now (a dead worker's, a new adaptive seed); how many. Under the study lock."""
        return 0

    def optuna_studies(self, session) -> list:
        """Every Optuna study this study's trials live in (reaped and waited on)."""
        return [session.opt]

    def states(self, session) -> list:
        """``cells.CellState`` of every cell owed."""
        from ablation.study.cells import cell_states

        return cell_states(session.opt, session.study.n_cells)

    def todo(self, session) -> int:
        """Work to do beyond the cells in ``states`` (a tuned study's tuning trials)."""
        return 0

    def plan_lines(self, session, states: list) -> list[str]:
        """What ``run`` prints before it starts: the work, done and to do."""
        study = session.study
        todo = sum(s.state != "done" for s in states)
        return [f"{study.n_cells} {self.unit}, {study.n_cells - todo} done, {todo} to run"]

    def label(self, study: Study, state) -> str:
        """How ``run`` and ``status`` name one cell."""
        return study.cells[state.cell].run_name

    def why_missing(self, session) -> dict[str, str]:
        """Arm -> why its cells cannot run (``run`` prints it beside them)."""
        return {}

    def status_lines(self, session, states: list) -> list[str]:
        """What ``status`` prints about the study's progress."""
        return []


def refuse_foreign_sections(kind: Kind, spec: StudySpec, path: Path, kinds: list[Kind]) -> None:
    """A key another kind owns, in this kind's study file, is refused with the key that selects its kind."""
    for other in kinds:
        if other is kind:
            continue
        for key in other.section:
            if key in spec.model_fields_set and key not in kind.section:
                sel = f'{other.selector[0]} = "{other.selector[1]}"' if other.selector else "the default kind"
                raise StudyError(f"{path}: [{key}] needs {sel} (this study is a {kind.name} study)")
