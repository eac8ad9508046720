"""A small MLflow store holding four studies with known numbers, built once
per session the way the study runner logs them (parent run + cell children)."""

from __future__ import annotations

import json

import pytest

from ablation.tags import DATA_FINGERPRINT, ERROR, CellTags, StudyTags, key

PHONES = ("sil", "aa", "iy", "s")
T0 = 1_700_000_000_000  # ms; explicit start times make "newest" unambiguous

# study "alpha": 3 arms x 3 seeds, depth=4 clearly better than the baseline depth=2
ALPHA_ARMS = ["depth=2", "depth=4", "depth=6"]
ALPHA_SEEDS = [1, 2, 3]
ALPHA_VAL = {"depth=2": [0.700, 0.710, 0.705], "depth=4": [0.712, 0.719, 0.716], "depth=6": [0.706, 0.713, 0.703]}
ALPHA_TEST = {"depth=2": [0.690, 0.702, 0.698], "depth=4": [0.703, 0.711, 0.707], "depth=6": [0.699, 0.700, 0.694]}
ALPHA_F1 = {"depth=2": [0.61, 0.62, 0.615], "depth=4": [0.63, 0.64, 0.628], "depth=6": [0.62, 0.618, 0.611]}
ALPHA_PARAMS = {"depth=2": 100_200, "depth=4": 99_800, "depth=6": 100_500}
# recall[arm][phone][seed index]: 'iy' moves most for depth=4
ALPHA_RECALL = {
    "depth=2": {"sil": [0.95, 0.96, 0.955], "aa": [0.60, 0.62, 0.61], "iy": [0.50, 0.52, 0.49], "s": [0.80, 0.81, 0.79]},
    "depth=4": {"sil": [0.951, 0.962, 0.957], "aa": [0.63, 0.64, 0.62], "iy": [0.58, 0.61, 0.57], "s": [0.79, 0.80, 0.80]},
    "depth=6": {"sil": [0.949, 0.958, 0.95], "aa": [0.61, 0.60, 0.62], "iy": [0.52, 0.50, 0.53], "s": [0.82, 0.80, 0.81]},
}
CEILING_VAL, CEILING_TEST = 0.80, 0.79
# the information ceiling of each arm's input, and the split sizes each seed logged
ARM_CEILING_VAL = {"depth=2": 0.76, "depth=4": 0.77, "depth=6": 0.78}
SEED_SIZES = {1: {"train": {"frames": 990}, "val": {"frames": 210}}, 2: {"train": {"frames": 1010}, "val": {"frames": 190}},
              3: {"train": {"frames": 1000}, "val": {"frames": 200}}}
EPOCHS = 4


class Store:
    def __init__(self, root):
        from mlflow.tracking import MlflowClient

        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.c = MlflowClient(tracking_uri=self.uri)
        self.clock = 0

    def _now(self) -> int:
        self.clock += 1000
        return T0 + self.clock

    def experiment(self, name: str) -> str:
        return self.c.create_experiment(name, artifact_location=(self.root / "artifacts" / name).as_uri())

    def parent(self, exp: str, name: str, arms, seeds, levels, factors, budget="", sampler="grid", fingerprint="fp01",
               budget_note=""):
        tags = StudyTags(
            study=name, hash="h" + name, question=f"Does {factors[0]} matter for {name}?", base="mlp_base",
            factors=factors, arms=arms, arm_levels=levels, baseline_arm=arms[0], metric="val.acc",
            direction="maximize", seeds=seeds, scale="quick", sampler=sampler,
            param_budget=int(budget) if budget else None, budget_tolerance=0.01,
            command=f"python -m ablation run {name}", data_source="synthphone", data_fingerprint=fingerprint,
            data_sizes={"train": {"frames": 1000, "utts": 10}, "val": {"frames": 200, "utts": 2}},
            git_commit="0123abc", budget_note=budget_note,
        ).to_tags()
        run = self.c.create_run(exp, run_name=name, tags=tags, start_time=self._now())
        return run.info.run_id

    def cell(self, exp, parent, study, arm, seed, metrics=None, params=None, status="FINISHED", error=None,
             fingerprint="fp01", history=None, pruned=False, extra_tags=None):
        from mlflow.entities import Metric, Param

        tags = CellTags(study=study, arm=arm, seed=seed, trial=self.clock // 1000, pruned=pruned).to_tags()
        tags.update({"mlflow.parentRunId": parent, key(DATA_FINGERPRINT): fingerprint, **(extra_tags or {})})
        if error:
            tags[key(ERROR)] = error
        run = self.c.create_run(exp, run_name=f"{arm} seed={seed}", tags=tags, start_time=self._now())
        rid = run.info.run_id
        if params:
            self.c.log_batch(rid, params=[Param(k, str(v)) for k, v in params.items()])
        for step, values in enumerate(history or [], start=1):
            self.c.log_batch(rid, metrics=[Metric(k, float(v), T0, step) for k, v in values.items()])
        if metrics:
            self.c.log_batch(rid, metrics=[Metric(k, float(v), T0, 0) for k, v in metrics.items()])
        self.c.set_terminated(rid, status=status)
        return rid


def _history(val: float, train: float) -> list[dict]:
    return [{"epoch.val_acc": val - 0.02 * (EPOCHS - e), "epoch.train_acc": train - 0.03 * (EPOCHS - e)}
            for e in range(1, EPOCHS + 1)]


def _alpha(s: Store) -> None:
    exp = s.experiment("alpha")
    levels = {a: {"model.depth": int(a.split("=")[1])} for a in ALPHA_ARMS}
    old = s.parent(exp, "alpha", ALPHA_ARMS, ALPHA_SEEDS, levels, ["model.depth"], budget=100_000)
    # an earlier generation: its children must be ignored
    s.cell(exp, old, "alpha", "depth=2", 1, metrics={"val.acc": 0.99, "n_params": 100_000})
    parent = s.parent(exp, "alpha", ALPHA_ARMS, ALPHA_SEEDS, levels, ["model.depth"], budget=100_000)
    for arm in ALPHA_ARMS:
        for i, seed in enumerate(ALPHA_SEEDS):
            if (arm, seed) == ("depth=4", 2):  # failed once, then re-run
                s.cell(exp, parent, "alpha", arm, seed, status="FAILED", error="RuntimeError: out of memory")
            metrics = {
                "val.acc": ALPHA_VAL[arm][i], "test.acc": ALPHA_TEST[arm][i], "val.macro_f1": ALPHA_F1[arm][i],
                "test.macro_f1": ALPHA_F1[arm][i] - 0.01, "n_params": ALPHA_PARAMS[arm],
                "macs_per_frame": ALPHA_PARAMS[arm] - 100, "epochs_run": EPOCHS, "best_epoch": EPOCHS,
                "train_time_s": 10.0 + i, "frames_per_s": 50_000 + 1000 * i,
                "ceiling.val_acc": CEILING_VAL, "ceiling.test_acc": CEILING_TEST,
                "ceiling.arm.val_acc": ARM_CEILING_VAL[arm],
            }
            metrics.update({f"recall.{p}": ALPHA_RECALL[arm][p][i] for p in PHONES})
            metrics.update({f"test_recall.{p}": ALPHA_RECALL[arm][p][i] - 0.01 for p in PHONES})
            params = {"model.depth": levels[arm]["model.depth"], "train.epochs": EPOCHS, "train.seed": seed}
            sizes = {key("data.sizes"): json.dumps(SEED_SIZES[seed]), key("ceiling.view"): "11-frame window"}
            s.cell(exp, parent, "alpha", arm, seed, metrics=metrics, params=params, extra_tags=sizes,
                   history=_history(ALPHA_VAL[arm][i], ALPHA_VAL[arm][i] + 0.05))


def _simple(s: Store, name, arms, seeds, factor, values, budget="", n_params=None, prints=None, skip=(),
            failed=None, no_metric=(), test_acc=None) -> None:
    """A study whose cell (arm, seed) has val.acc values[arm][seed index]."""
    exp = s.experiment(name)
    levels = {a: {factor: a.split("=")[1]} for a in arms}
    parent = s.parent(exp, name, arms, seeds, levels, [factor], budget=budget)
    for arm in arms:
        for i, seed in enumerate(seeds):
            if (arm, seed) in skip:
                continue
            if failed and (arm, seed) == failed[0]:
                s.cell(exp, parent, name, arm, seed, status="FAILED", error=failed[1])
                continue
            metrics = {"n_params": (n_params or {}).get(arm, 5000), "epochs_run": 2}
            if (arm, seed) not in no_metric:
                metrics["val.acc"] = values[arm][i]
            if (arm, seed) in (test_acc or {}):
                metrics["test.acc"] = test_acc[(arm, seed)]
            fp = (prints or {}).get((arm, seed), "fp01")
            s.cell(exp, parent, name, arm, seed, metrics=metrics, params={"train.epochs": 2}, fingerprint=fp,
                   history=_history(values[arm][i], values[arm][i]))


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlstore")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATION_CACHE", str(root / "cache"))
        mp.setenv("ABLATION_HOME", str(root / "home"))
        s = Store(root)
        _alpha(s)
        _simple(s, "unfair", ["w=a", "w=b"], [1, 2], "model.width", {"w=a": [0.6, 0.61], "w=b": [0.65, 0.66]},
                budget=100_000, n_params={"w=a": 100_300, "w=b": 120_000}, prints={("w=b", 2): "fp99"})
        _simple(s, "holes", ["lr=0.001", "lr=0.01"], [1, 2, 3], "optim.lr",
                {"lr=0.001": [0.5, 0.51, 0.52], "lr=0.01": [0.55, 0.56, 0.57]},
                skip={("lr=0.001", 2)}, failed=(("lr=0.01", 3), "DivergedError: diverged: loss is nan at epoch 2"),
                no_metric={("lr=0.01", 2)}, test_acc={("lr=0.001", 1): 0.48, ("lr=0.01", 1): 0.53})
        _simple(s, "single", ["bn=false", "bn=true"], [7], "model.batchnorm", {"bn=false": [0.6], "bn=true": [0.64]})
    return s


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ABLATION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
