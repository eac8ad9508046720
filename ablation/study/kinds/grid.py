"""``grid``: every declared arm at every seed, each cell enqueued up front.

Seeds are fixed (``seeds = [0, 1, 2]``) or adaptive (``seeds = { min, max }``:
``ablation.study.seeds`` says which cells the decisions want so far). Arms are
trained alike (``protocol = "fixed"``) or each to its own best epoch
(``protocol = "converged"`` with ``[stopping]``: ``patience`` epochs without
a gain, at most ``max_epochs``; the best epoch's weights are restored).
"""

from __future__ import annotations

from pathlib import Path

from ablation import config as C
from ablation.errors import StudyError
from ablation.study import arms as A
from ablation.study.kinds.registry import register_kind
from ablation.study.kinds.base import Kind
from ablation.study.spec import StoppingSpec, Study, StudySpec

MAX_DEATHS = 3  # a cell whose worker died this often is not re-queued again in the same run


@register_kind
class Grid(Kind):
    name = "grid"

    def check(self, spec: StudySpec, path: Path, factor_paths: set[str], seeds: list[int]) -> None:
        if spec.protocol == "fixed" and "stopping" in spec.model_fields_set:
            raise StudyError(f"{path}: [stopping] needs protocol = \"converged\" or \"tuned\"; a fixed study "
                             "trains every arm for train.epochs")

    def overrides(self, spec: StudySpec) -> dict:
        if spec.protocol != "converged":
            return {}
        s = spec.stopping or StoppingSpec()
        return {"train.patience": s.patience, "train.epochs": s.max_epochs}

    def expand(self, spec: StudySpec, path: Path, data: dict, seeds: list[int]):
        arms, baseline, cells = A.cells(spec, path, data, seeds)
        for cell in cells:
            self.check_cell(spec, cell.config, f" in {path}, arm {cell.arm.label}")
        return arms, baseline, cells

    def check_cell(self, spec: StudySpec, cfg: C.ExperimentConfig, where: str) -> None:
        """A converged cell must stop by patience: a scale preset or --set cannot switch it off."""
        if spec.protocol == "converged" and cfg.train.patience < 1:
            raise StudyError(f"protocol = \"converged\"{where} needs train.patience to be a positive int, got "
                             f"{cfg.train.patience}; set [stopping] patience")

    # ---- running ---------------------------------------------------------------

    def prepare(self, session) -> None:
        self.requeue(session, retry_failed=True)

    def wanted(self, session) -> set[int] | None:
        """The cells owed now: all, or with adaptive seeds those the decisions want."""
        from ablation.study import seeds

        return seeds.wanted(session.study, session.opt)

    def requeue(self, session, retry_failed: bool) -> int:
        """Enqueue every cell that has no trial, and every failed one
        (``retry_failed``: a new run) or only those whose worker died fewer than
        ``MAX_DEATHS`` times (during a run). With adaptive seeds only the cells
        wanted: workers call this whenever they find nothing to claim, so a
        finished look adds the next paired seed of every arm still undecided."""
        from ablation.study import _optuna as O
        from ablation.study import cells as K

        deaths: dict[int, int] = {}
        for t in K.live_trials(session.opt, O.TrialState.FAIL):
            if K.died(str(t.user_attrs.get(K.ERROR, ""))):
                deaths[K.cell_of(t)] = deaths.get(K.cell_of(t), 0) + 1
        wanted = self.wanted(session)
        n, costs = 0, {}
        for st in K.cell_states(session.opt, len(session.study.cells)):
            if wanted is not None and st.cell not in wanted:
                continue
            died = K.died(st.error) and deaths.get(st.cell, 0) < MAX_DEATHS
            if st.state == "missing" or (st.state == "failed" and (retry_failed or died)):
                cell = session.study.cells[st.cell]
                if cell.arm.index not in costs:  # an arm's cells differ only in their seed
                    costs[cell.arm.index] = K.expected_cost(cell.config)
                self.enqueue(session, cell, costs[cell.arm.index], K.gates_decisions(session.study, cell))
                n += 1
        return n

    def enqueue(self, session, cell, cost: float | None = None, first: bool = False) -> None:
        """A WAITING trial for ``cell``; ``cost`` (``cells.expected_cost``): the costliest cells are
        claimed first, after those marked ``first``."""
        from ablation.study import cells as K

        K.enqueue(session.opt, cell, cost, first)

    def next_job(self, session):
        from ablation.study import cells as K

        got = K.claim_cell(session.study, session.storage, session.opt)
        if got is None:
            return None
        trial, cell = got
        return K.Job(session.opt, trial, cell)

    def states(self, session) -> list:
        from ablation.study import cells as K

        states = K.cell_states(session.opt, len(session.study.cells))
        wanted = self.wanted(session)
        return states if wanted is None else [s for s in states if s.cell in wanted]

    def plan_lines(self, session, states: list) -> list[str]:
        study = session.study
        todo = sum(s.state != "done" for s in states)
        if study.design.adaptive:
            return [f"adaptive seeds {study.design.min} to {study.design.max}: {len(states)} of up to {study.n_cells} "
                    f"cells wanted so far ({len(study.arms)} arms), {len(states) - todo} done, {todo} to run"]
        return [f"{study.n_cells} cells ({len(study.arms)} arms x {len(study.seeds)} seeds), "
                f"{study.n_cells - todo} done, {todo} to run"]

    def status_lines(self, session, states: list) -> list[str]:
        return [arm_table(session.study, states), decisions_table(session)]


def arm_table(study: Study, states: list) -> str:
    """Per arm: cells done of those owed, running, waiting, failed."""
    from collections import Counter

    from tabulate import tabulate

    rows = []
    for arm in study.arms:
        mine = [s for s in states if study.cells[s.cell].arm == arm]
        n = Counter(s.state for s in mine)
        rows.append([arm.label, f"{n['done']}/{len(mine)}", n["running"], n["waiting"], n["failed"]])
    return tabulate(rows, headers=["arm", "done", "running", "waiting", "failed"], tablefmt="simple")


def decisions_table(session) -> str:
    """Each arm against the baseline from the finished trials' values, as the report decides it."""
    from tabulate import tabulate

    from ablation.report.verdict import seeds_text
    from ablation.study import cells as K
    from ablation.study import seeds

    study = session.study
    values = seeds.trial_values(study, K.live_trials(session.opt))
    rows = []
    for arm, c in seeds.decisions(study, values).items():
        needed = seeds_text(c.seeds_needed) if c.decision == "undecided" and c.n >= 2 else ""
        rows.append([arm, c.decision, c.n, f"{c.mean_diff:+.4f}" if c.n else "n/a", needed])
    design = study.design
    how = f"adaptive seeds {design.min} to {design.max}" if design.adaptive else f"{len(study.seeds)} seeds"
    head = (f"decisions vs the baseline {study.baseline.label} ({study.spec.metric.name}, smallest effect of "
            f"interest +-{study.min_effect:g}, {how}; from finished cells):")
    return head + "\n" + tabulate(rows, headers=["arm", "decision", "pairs", "mean diff", "seeds needed"],
                                   tablefmt="simple")
