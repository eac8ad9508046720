"""``search`` (``sampler = "tpe"``): ``n_trials`` TPE trials over ``[search]``,
one seed each; the only kind that prunes (``pruner = "median"``).

Trials are asked under the study lock, so parallel workers never start more
than ``n_trials``; failures count against a budget, and the same error
``SAME_ERROR_STOP`` times in a row stops the study with that error.
"""

from __future__ import annotations

from pathlib import Path

from ablation import config as C
from ablation.errors import StudyError
from ablation.study.kinds.base import Kind
from ablation.study.kinds.registry import register_kind
from ablation.study.space import check_paths
from ablation.study.spec import SEED_PARAM, Arm, Cell, SeedRange, Study, StudySpec

SAME_ERROR_STOP = 3  # this many failures in a row with one error stop the study


def known_paths(families: list[str], spec_space: dict) -> list[str]:
    """The settable paths of the families a study's cells use (and those a searched ``model.name`` offers)."""
    fams = list(families)
    dim = spec_space.get("model.name")
    if dim is not None and dim.choices:
        fams += [str(f) for f in dim.choices if f not in fams]
    out: list[str] = []
    for f in fams:
        out += [p for p in C.field_paths(f) if p not in out]
    return out


@register_kind
class Search(Kind):
    name = "search"
    selector = ("sampler", "tpe")
    section = ("search", "n_trials", "pruner")
    unit = "tuning trials"

    def check(self, spec: StudySpec, path: Path, factor_paths: set[str], seeds: list[int]) -> None:
        if spec.protocol != "fixed":
            raise StudyError(f"{path}: protocol = \"{spec.protocol}\" compares declared arms; it cannot be combined "
                             "with sampler = \"tpe\" (drop one)")
        if "stopping" in spec.model_fields_set:
            raise StudyError(f"{path}: [stopping] needs protocol = \"converged\" or \"tuned\"; a search trains every "
                             "trial for train.epochs (its pruner stops the poor ones)")
        if isinstance(spec.seeds, SeedRange):
            raise StudyError(f"{path}: adaptive seeds ({{ min, max }}) need a grid study; a tpe study runs one seed "
                             "per trial")
        if not spec.search:
            raise StudyError(f"{path}: sampler = 'tpe' needs a [search] table of dotted paths to tune")

    def check_fields(self, spec: StudySpec, path: Path, families: list[str]) -> None:
        check_paths(spec.search, known_paths(families, spec.search), f" in {path}", "search")

    def expand(self, spec: StudySpec, path: Path, data: dict, seeds: list[int]):
        arm = Arm("tuned", {}, 0)
        cfg = C.build(C.apply_overrides(data, {"train.seed": seeds[0]}), f" in {path}")
        return [arm], None, [Cell(0, arm, seeds[0], cfg)]

    def hash_payload(self, study: Study) -> dict:
        return {"n_trials": study.spec.n_trials}

    def n_cells(self, study: Study) -> int:
        return study.spec.n_trials

    # ---- running ---------------------------------------------------------------

    def sampler(self, study: Study):
        from ablation.study import _optuna as O

        return O.tpe_sampler(study.seeds[0])

    def pruner(self, study: Study):
        from ablation.study import _optuna as O

        return O.pruner(study.spec.pruner)

    def failure_budget(self, study: Study) -> int:
        """How many failed trials a search tolerates (beyond its n_trials finished)."""
        return max(SAME_ERROR_STOP, study.n_cells // 4)

    def next_job(self, session):
        """The next trial, or None when finished plus running trials reach ``n_trials``."""
        from ablation.study import _optuna as O
        from ablation.study import cells as K

        study, storage, opt = session.study, session.storage, session.opt
        with O.study_lock(storage, study.name):
            trials = K.live_trials(opt)
            by = {s: [t for t in trials if t.state == s] for s in O.TrialState}
            finished = len(by[O.TrialState.COMPLETE]) + len(by[O.TrialState.PRUNED])
            active = len(by[O.TrialState.RUNNING]) + len(by[O.TrialState.WAITING])
            if finished + active >= study.n_cells:
                return None
            over = [t for t in sorted(trials, key=lambda t: t.number) if t.state.is_finished()]
            last = [str(t.user_attrs.get(K.ERROR, "")) for t in over[-SAME_ERROR_STOP:] if t.state == O.TrialState.FAIL]
            if len(last) == SAME_ERROR_STOP and len(set(last)) == 1 and not K.not_its_fault(last[0]):
                raise StudyError(f"tuning study '{study.name}' stopped: its last {SAME_ERROR_STOP} trials failed "
                                 f"with the same error: {last[0]}; fix the cause and run again with --new")
            failed = [t for t in by[O.TrialState.FAIL] if not K.not_its_fault(str(t.user_attrs.get(K.ERROR, "")))]
            budget = self.failure_budget(study)
            if len(failed) >= budget:
                raise StudyError(f"tuning study '{study.name}' stopped: {len(failed)} trials failed (the budget is "
                                 f"{budget}; last: {failed[-1].user_attrs.get(K.ERROR, 'unknown')}); fix the cause "
                                 "and run again with --new")
            # the seed is a fixed param, as in a grid study's enqueued cells; TPE samples the rest
            seed = study.seeds[0]
            trial = O.ask_enqueued(storage, opt, {SEED_PARAM: seed}, {"seed": seed})
        return K.Job(opt, trial, self.trial_cell(study, trial), search=True,
                     may_prune=study.spec.pruner != "none")

    def trial_cell(self, study: Study, trial) -> Cell:
        """The config a search trial samples from the study's [search] space."""
        from ablation.study.space import suggest

        base = study.cells[0].config.to_dict()
        chosen = suggest(trial, study.spec.search)
        seed = trial.suggest_categorical(SEED_PARAM, list(study.seeds))  # the enqueued value
        cfg = C.build(C.apply_overrides(base, {**chosen, "train.seed": seed}), f" (tuning trial {trial.number})")
        return Cell(trial.number, Arm(f"trial {trial.number}", chosen, 0), cfg.train.seed, cfg)

    def states(self, session) -> list:
        """Trials are not cells: the finished ones count in order."""
        from ablation.study import _optuna as O
        from ablation.study import cells as K

        n = session.study.n_cells
        states = [K.CellState(i, "missing") for i in range(n)]
        finished = K.live_trials(session.opt, O.TrialState.COMPLETE, O.TrialState.PRUNED)
        for i, t in enumerate(finished[:n]):
            states[i] = K.CellState(i, "done", t.number, run_id=t.user_attrs.get(K.RUN_ID, ""))
        return states

    def label(self, study: Study, state) -> str:
        return f"trial {state.cell}"

    def status_lines(self, session, states: list) -> list[str]:
        done = sum(s.state == "done" for s in states)
        return [f"tuning trials: {done}/{session.study.n_cells} done"]
