"""``tuned`` (``protocol = "tuned"``): an equal tuning budget per arm, then
confirmation runs on the study's seeds; only those make the verdict::

    protocol = "tuned"
    [stopping]
    patience = 2
    max_epochs = 12
    [tuning]
    trials = 6
    seeds = [100, 101]
    pruner = "halving"
    [tuning.space]
    "optim.lr" = { low = 3e-4, high = 1e-2, log = true }

- Tuning: each arm has its own Optuna study (``<study>~<parent run>~tune~<arm
  label>``, its ``arm`` user attr the label too) with the same TPE seed and pruner, and exactly ``trials`` slots
  enqueued as WAITING trials (slot k trains on tuning seed ``seeds[k % len(seeds)]``).
  A worker claims a slot like a cell, one slot of an arm at a time; TPE samples
  the tuned values from that arm's finished slots, and the pruner compares a
  slot with the finished ones, so the tuning is the same on any number of
  workers or machines. A failed or killed slot is enqueued again, so a
  resumed study gives every arm exactly ``trials`` finished tuning trials.
- Confirmation: once an arm's slots are all finished, its cells are enqueued
  in the study's own Optuna study with the best trial's values (with adaptive
  seeds, as a grid study adds them).

In MLflow the confirmation cells are the children of the study's parent run,
tagged ``phase = confirm``; an arm's tuning trials (``phase = tuning``) are
the children of that arm's tuning run (``tags.TuningTags``: ``<arm> tuning``,
beside the parent run, which it names), so grouping the parent's children by
arm compares exactly what the report compares.
The tuned settings are checked against the fields of the model families the
study's cells use (an RNN study can tune ``model.hidden``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ablation import config as C
from ablation import tags as T
from ablation.errors import StudyError
from ablation.study import arms as A
from ablation.study.kinds.grid import Grid, arm_table, decisions_table
from ablation.study.kinds.registry import register_kind
from ablation.study.kinds.search import known_paths
from ablation.study.space import check_paths
from ablation.study.spec import SEED_PARAM, Arm, Cell, Study, StudySpec

SLOT = "slot"  # tuning trial user attr: its slot of the arm's budget
TUNED = "nuisance"  # confirmation trial user attr: the arm's best tuned values (JSON)


TUNING_RUN = "mlflow_tuning_run_id"  # tuning study user attr: the MLflow run its trials nest under
MAX_NAME = 512  # the longest study name an Optuna RDB storage holds (its study_name column)


def tuning_name(study: Study, arm: Arm, main) -> str:
    """An arm's tuning study, named for the arm it tunes (optuna-dashboard lists
    studies by name), of the study's current generation (``main``, the study's
    own Optuna study: ``--new`` starts a new parent run, so new tuning). A label
    too long for the storage is cut, the arm's index keeping the name unique."""
    base = f"{study.name}~{main.user_attrs['mlflow_parent_run_id']}~tune~"
    name = base + arm.label
    if len(name) <= MAX_NAME:
        return name
    head = f"{base}{arm.index}:"
    return head + arm.label[: MAX_NAME - len(head)]


def old_tuning_name(study: Study, arm: Arm, main) -> str:
    """The name an arm's tuning study had before studies were named for their
    arm (``...~tune~<arm index>``): a store begun then resumes under it."""
    return f"{study.name}~{main.user_attrs['mlflow_parent_run_id']}~tune~{arm.index}"


@register_kind
class Tuned(Grid):
    name = "tuned"
    selector = ("protocol", "tuned")
    section = ("tuning",)

    def check(self, spec: StudySpec, path: Path, factor_paths: set[str], seeds: list[int]) -> None:
        t = spec.tuning
        if t is None or not t.space:
            raise StudyError(f"{path}: protocol = \"tuned\" needs a [tuning.space] table of settings to tune "
                             "(e.g. \"optim.lr\" = {{ low = 3e-4, high = 1e-2, log = true }})")
        for key in t.space:
            if key in factor_paths:
                raise StudyError(f"'{key}' in {path} is both a factor and in [tuning.space]; a setting the study "
                                 "compares cannot also be tuned away: drop it from one")
            if key == "train.seed":
                raise StudyError(f"{path}: train.seed cannot be tuned; list tuning seeds in [tuning] seeds")
        overlap = sorted(set(t.seeds) & set(seeds))
        if overlap:
            raise StudyError(f"{path}: tuning seeds {overlap} are also study seeds; tuning must not see the seeds "
                             "that confirm it: pick [tuning] seeds outside " + str(sorted(seeds)))

    def check_fields(self, spec: StudySpec, path: Path, families: list[str]) -> None:
        check_paths(spec.tuning.space, known_paths(families, spec.tuning.space), f" in {path} [tuning.space]", "tuning")

    def overrides(self, spec: StudySpec) -> dict:
        if spec.stopping is None:
            return {}
        return {"train.patience": spec.stopping.patience, "train.epochs": spec.stopping.max_epochs}

    def expand(self, spec: StudySpec, path: Path, data: dict, seeds: list[int]):
        return A.cells(spec, path, data, seeds)

    def protocol_settings(self, study: Study) -> dict:
        return {**super().protocol_settings(study), "tuning": study.spec.tuning.model_dump()}

    # ---- the tuning studies ------------------------------------------------------

    def _sampler(self, study: Study, slot: int = 0):
        from ablation.study import _optuna as O

        # Seeded per slot, alike for every arm: the arms differ in what they are, not in the sampler's
        # luck, and two workers claiming slots at once do not draw the same values.
        return O.tpe_sampler(study.spec.tuning.seeds[0] + 7919 * slot, n_startup_trials=min(3, study.spec.tuning.trials))

    def _pruner(self, study: Study):
        from ablation.study import _optuna as O

        return O.pruner(study.spec.tuning.pruner, max_resource=study.cells[0].config.train.epochs)

    def tuner(self, session, arm: Arm, create: bool = False):
        """The arm's tuning study (created with ``create``), or None."""
        from ablation.study import _optuna as O

        study = session.study
        if not session.opt.user_attrs.get("mlflow_parent_run_id"):
            return None
        for name in (tuning_name(study, arm, session.opt), old_tuning_name(study, arm, session.opt)):
            opt = O.load(session.storage, name, self._sampler(study), self._pruner(study))
            if opt is not None:
                return opt
        if not create:
            return None
        return O.create(session.storage, tuning_name(study, arm, session.opt), study.spec.metric.direction,
                        study.spec.metric.name, {"hash": study.hash, "arm": arm.label, "study": study.name},
                        self._sampler(study), self._pruner(study))

    def tuning_run(self, session, arm: Arm, tuner) -> str:
        """The MLflow run the arm's tuning trials nest under (created, and
        recorded on its tuning study, when it has none or the tracking store
        lost it; call under the study lock, so one is created per arm)."""
        from ablation import tracking
        from ablation.study import parent as parent_run

        c = session.client
        run_id = tuner.user_attrs.get(TUNING_RUN)
        if run_id and parent_run.exists(c, run_id):
            return run_id
        study, t = session.study, session.study.spec.tuning
        tags = T.TuningTags(study=study.name, study_hash=study.hash, arm=arm.label,
                            parent_run=session.parent).to_tags()
        tags[tracking.NOTE_TAG] = (
            f"The tuning trials of arm {arm.label}: {t.trials} TPE trials over {', '.join(t.space)} on tuning seeds "
            f"{', '.join(map(str, t.seeds))}. Not evidence: the study's verdict is made from its confirmation runs, "
            "the children of its parent run.")
        exp_id = tracking.get_or_create_experiment(c, study.name)
        run_id = c.create_run(exp_id, run_name=f"{arm.label} tuning", tags=tags).info.run_id
        c.set_terminated(run_id, "FINISHED")  # a container: its end time is set as the study finishes
        tuner.set_user_attr(TUNING_RUN, run_id)
        return run_id

    def tuners(self, session) -> dict[int, object]:
        if "tuners" not in session.state:
            found = {arm.index: self.tuner(session, arm) for arm in session.study.arms}
            if any(t is None for t in found.values()):
                return {i: t for i, t in found.items() if t is not None}  # not prepared yet: look again later
            session.state["tuners"] = found
        return session.state["tuners"]

    def slot_states(self, opt, n_slots: int) -> list[str]:
        """done / running / waiting / failed / missing per slot (a finished trial wins)."""
        from ablation.study import _optuna as O

        rank = {"done": 4, "running": 3, "waiting": 2, "failed": 1, "missing": 0}
        out = ["missing"] * n_slots
        for t in O.trials(opt):
            k = t.user_attrs.get(SLOT)
            if k is None or k >= n_slots:
                continue
            s = O.STATE_WORDS[t.state]
            if rank[s] > rank[out[k]]:
                out[k] = s
        return out

    def _enqueue_slots(self, study: Study, opt, arm: Arm) -> int:
        n = 0
        seeds = study.spec.tuning.seeds
        for k, state in enumerate(self.slot_states(opt, study.spec.tuning.trials)):
            if state in ("missing", "failed"):
                seed = seeds[k % len(seeds)]
                opt.enqueue_trial({SEED_PARAM: seed}, user_attrs={SLOT: k, "arm": arm.label, "seed": seed})
                n += 1
        return n

    def best_trial(self, study: Study, opt):
        """An arm's best finished (not pruned) tuning trial, whose tuned values its cells confirm, once
        all its slots are done (else None); ties go to the earlier trial."""
        from ablation.study import _optuna as O

        if any(s != "done" for s in self.slot_states(opt, study.spec.tuning.trials)):
            return None
        done = [t for t in O.trials(opt, O.TrialState.COMPLETE) if SLOT in t.user_attrs]
        if not done:
            return None
        sign = -1.0 if study.spec.metric.direction == "maximize" else 1.0
        return min(done, key=lambda t: (sign * t.value, t.number))

    # ---- running ---------------------------------------------------------------

    def open(self, session) -> None:
        self.tuners(session)

    def optuna_studies(self, session) -> list:
        return [session.opt, *self.tuners(session).values()]

    def prepare(self, session) -> None:
        """Create each arm's tuning study and enqueue its missing or failed slots;
        confirmations are enqueued once each arm's tuning is done."""
        from ablation.study import _optuna as O

        session.state["tuners"] = {arm.index: self.tuner(session, arm, create=True) for arm in session.study.arms}
        for arm in session.study.arms:
            tuner = session.state["tuners"][arm.index]
            self.tuning_run(session, arm, tuner)
            O.reap_dead(session.storage, tuner)
            self._enqueue_slots(session.study, tuner, arm)
        self._enqueue_confirmations(session, retry_failed=True)

    def requeue(self, session, retry_failed: bool) -> int:
        n = sum(self._enqueue_slots(session.study, t, arm)
                for arm in session.study.arms if (t := self.tuners(session).get(arm.index)) is not None)
        return n + self._enqueue_confirmations(session, retry_failed)

    def _enqueue_confirmations(self, session, retry_failed: bool) -> int:
        """Enqueue the confirmation cells of every arm whose tuning is finished
        (call under the study lock); with adaptive seeds only those wanted."""
        from ablation.study import cells as K

        study, tuners = session.study, self.tuners(session)
        states = K.cell_states(session.opt, len(study.cells))
        wanted = self.wanted(session)
        n = 0
        for arm in study.arms:
            best = self.best_trial(study, tuners[arm.index]) if arm.index in tuners else None
            if best is None:
                continue
            values = {k: best.params[k] for k in study.spec.tuning.space}
            # a confirmation trains what the best trial trained, at another seed: its seconds are the estimate
            cost = best.duration.total_seconds() if best.duration is not None else None
            for cell in (c for c in study.cells if c.arm == arm):
                st = states[cell.index]
                if wanted is not None and cell.index not in wanted:
                    continue
                if st.state == "missing" or (st.state == "failed" and (retry_failed or K.died(st.error))):
                    K.enqueue(session.opt, cell, cost, K.gates_decisions(study, cell), **{TUNED: json.dumps(values)})
                    n += 1
        return n

    def next_job(self, session):
        """A tuning slot first (confirmations wait for their arm's budget to be spent), else a confirmation."""
        from ablation.study import _optuna as O
        from ablation.study import cells as K

        study = session.study
        tuners = self.tuners(session)
        for arm in study.arms:
            if arm.index not in tuners:
                continue
            # An arm's slots run one after another: TPE past its start-up points and the pruner decide
            # from the slots before, so an arm is tuned the same way by one worker or many.
            trial = O.claim(session.storage, tuners[arm.index], one_at_a_time=True)
            if trial is not None:
                cell = self._slot_cell(study, trial, arm)
                return K.Job(tuners[arm.index], trial, cell, phase=T.PHASE_TUNING, search=True,
                             may_prune=study.spec.tuning.pruner != "none",
                             run_name=f"{arm.label} tuning#{cell.index} seed={cell.seed}",
                             parent=tuners[arm.index].user_attrs.get(TUNING_RUN, ""))
        with O.study_lock(session.storage, study.name):
            self._enqueue_confirmations(session, retry_failed=False)
        got = K.claim_cell(study, session.storage, session.opt)
        if got is None:
            return None
        trial, cell = got
        values = json.loads(trial.user_attrs[TUNED])
        cfg = C.build(C.apply_overrides(cell.config.to_dict(), values), f" (arm {cell.arm.label}, confirmation)")
        return K.Job(session.opt, trial, replace(cell, config=cfg), phase=T.PHASE_CONFIRM)

    def _slot_cell(self, study: Study, trial, arm: Arm) -> Cell:
        """The config a claimed tuning slot trains: the arm's at the slot's seed, with sampled tuned values."""
        from ablation.study.space import suggest

        slot = int(trial.user_attrs[SLOT])
        trial.study.sampler = self._sampler(study, slot)  # the independent suggestions below draw from it
        seed = trial.suggest_categorical(SEED_PARAM, list(study.spec.tuning.seeds))  # the enqueued value
        values = suggest(trial, study.spec.tuning.space)
        base = next(c for c in study.cells if c.arm == arm)
        cfg = C.build(C.apply_overrides(base.config.to_dict(), {**values, "train.seed": seed}),
                      f" (arm {arm.label}, tuning slot {slot})")
        return Cell(slot, arm, seed, cfg)

    # ---- what run and status print ---------------------------------------------------

    def progress(self, session) -> list[dict]:
        """Per arm, how far its tuning is: slots done of ``trials`` (a pruned slot,
        a diverged one among them, is done), running, pruned, diverged, and the
        best value so far with its tuned values (None before a complete trial)."""
        from ablation.study import _optuna as O
        from ablation.study.cells import DIVERGED

        study = session.study
        k = study.spec.tuning.trials
        sign = -1.0 if study.spec.metric.direction == "maximize" else 1.0
        tuners = self.tuners(session)
        out = []
        for arm in study.arms:
            opt = tuners.get(arm.index)
            if opt is None:  # not prepared yet
                out.append({"arm": arm.label, "done": 0, "trials": k, "running": 0, "pruned": 0, "diverged": 0,
                            "best": None, "values": {}})
                continue
            states = self.slot_states(opt, k)
            slots = [t for t in O.trials(opt) if SLOT in t.user_attrs]
            pruned = [t for t in slots if t.state == O.TrialState.PRUNED]
            complete = [t for t in slots if t.state == O.TrialState.COMPLETE]
            best = min(complete, key=lambda t: (sign * t.value, t.number)) if complete else None
            out.append({"arm": arm.label, "done": states.count("done"), "trials": k,
                        "running": states.count("running"), "pruned": len(pruned),
                        "diverged": sum(DIVERGED in t.user_attrs for t in pruned),
                        "best": best.value if best else None,
                        "values": {key: best.params[key] for key in study.spec.tuning.space} if best else {}})
        return out

    def todo(self, session) -> int:
        k = session.study.spec.tuning.trials
        return sum(p["trials"] - p["done"] for p in self.progress(session)) if k else 0

    def plan_lines(self, session, states: list) -> list[str]:
        study, k = session.study, session.study.spec.tuning.trials
        return super().plan_lines(session, states) + [
            f"tuning first: {len(study.arms)} arms x {k} trials = {len(study.arms) * k}, {self.todo(session)} to run; "
            "the cells above then confirm each arm's best values"]

    def why_missing(self, session) -> dict[str, str]:
        """Arms whose every tuning trial was pruned: nothing to confirm."""
        return {p["arm"]: f"its {p['trials']} tuning trials were all pruned ({p['diverged']} diverged), "
                          "so it has no values to confirm"
                for p in self.progress(session) if p["done"] == p["trials"] and p["best"] is None}

    def status_lines(self, session, states: list) -> list[str]:
        return [self.tuning_table(session),
                "confirmation cells (each arm's best values on the study's seeds, once its tuning is done):",
                arm_table(session.study, states), decisions_table(session)]

    def tuning_table(self, session) -> str:
        """Each arm's tuning progress: trials done of its budget, and the best value so far."""
        from tabulate import tabulate

        t = session.study.spec.tuning
        rows = []
        for p in self.progress(session):
            pruned = f"{p['pruned']}" + (f" ({p['diverged']} diverged)" if p["diverged"] else "")
            best = "n/a" if p["best"] is None else f"{p['best']:.4f}"
            at = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p["values"].items())
            rows.append([p["arm"], f"{p['done']}/{p['trials']}", p["running"], pruned, best, at])
        head = (f"tuning: {t.trials} TPE trials per arm over {', '.join(t.space)} on tuning seeds "
                f"{', '.join(map(str, t.seeds))} ({session.study.spec.metric.name}, best so far of the complete trials):")
        return head + "\n" + tabulate(rows, headers=["arm", "trials", "running", "pruned", "best so far", "at"],
                                       tablefmt="simple")
