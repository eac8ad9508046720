"""`ablation train`: one MLflow run per call; user mistakes are one line on
stderr, exit 2 and no run; a failure after the start leaves a FAILED run
that says why."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from ablation import cli, paths, train

SAMPLE = str(paths.PROJECT_DIR / "experiments" / "mlp_sample.toml")
TINY = ["--data", "synthphone:tiny", "--no-progress"]


def runs_of(uri: str) -> list:
    c = MlflowClient(tracking_uri=uri)
    return [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]


def experiments_of(uri: str) -> list[str]:
    return sorted(e.name for e in MlflowClient(tracking_uri=uri).search_experiments())


def one_line(err: str, prefix: str = "ablation train: ") -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(prefix) and "Traceback" not in err
    return err[len(prefix) : -1]


@pytest.fixture(scope="module")
def timit_dir(tmp_path_factory):
    """A 2021-layout folder: pre-windowed rows, string labels, no utterance boundaries."""
    root = tmp_path_factory.mktemp("timit")
    folder = root / "timit_11"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "train_11.npy", rng.normal(size=(60, 429)).astype(np.float32))
    np.save(folder / "train_label_11.npy", rng.integers(0, 39, 60).astype(str))
    np.save(folder / "test_11.npy", rng.normal(size=(20, 429)).astype(np.float32))
    return root


# ---- mistakes refused before any run starts ---------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory, isolated_store):
    """One store for the refusals: each must leave it as it found it."""
    with pytest.MonkeyPatch.context() as mp:
        uri = isolated_store(tmp_path_factory.mktemp("refusals"), mp)
        assert runs_of(uri) == [] and experiments_of(uri) == ["Default"]
        yield uri

BEFORE_START = {
    "unknown model": (
        [SAMPLE, "--set", "model.name=transformer"],
        f"The 'model.name' parameter must be one of 'mlp', 'mlp_layers', 'rnn'. Got 'transformer' instead. ({SAMPLE})",
    ),
    "width 0": (
        [SAMPLE, "--set", "model.width=0"],
        f"The 'model.width' parameter must be an int in the range [1, 65536]. Got 0 instead. ({SAMPLE})",
    ),
    "even window": (
        [SAMPLE, "--set", "features.n_concat=4"],
        f"The 'features.n_concat' parameter must be an odd int in the range [1, 201]. Got 4 instead. ({SAMPLE})",
    ),
    "unknown key": (
        [SAMPLE, "--set", "model.dept=2"],
        "unknown key 'model.dept' (--set) (did you mean 'model.depth'?)",
    ),
    "type change": (
        [SAMPLE, "--set", "train.epochs=2.5"],
        f"The 'train.epochs' parameter must be an int in the range [1, 1000]. Got 2.5 instead. ({SAMPLE})",
    ),
    "not key=value": ([SAMPLE, "--set", "model.depth"], None),
    "unknown experiment": (["mlp_sampel"], None),
    "unknown data scheme": ([SAMPLE, "--data", "libriphon:/x"], None),
    "missing data folder": ([SAMPLE, "--data", "libriphone:/nonexistent/libriphone"], None),
    "budget too small": ([SAMPLE, "--set", "model.param_budget=10"], None),
}


@pytest.mark.parametrize("case", list(BEFORE_START))
def test_a_mistake_is_one_line_and_no_run(case, store, capsys):
    args, message = BEFORE_START[case]
    argv = ["train", *args, "--tracking-uri", store]
    if "--data" not in args:
        argv += ["--data", "synthphone:tiny"]
    assert cli.main(argv + ["--no-progress"]) == 2
    out, err = capsys.readouterr()
    text = one_line(err)
    assert out == ""
    if message is not None:
        assert text == message
    expected_words = {
        "not key=value": "is not of the form key=value",
        "unknown experiment": "unknown experiment 'mlp_sampel' (did you mean 'mlp_sample'?)",
        "unknown data scheme": "unknown data spec 'libriphon:/x' (did you mean 'libriphone'?)",
        "missing data folder": "libriphone folder /nonexistent/libriphone does not exist",
        "budget too small": "The parameter budget 10 is too small",
    }
    if case in expected_words:
        assert expected_words[case] in text
    assert runs_of(store) == []
    assert experiments_of(store) == ["Default"]


@pytest.mark.parametrize(
    "sets, words",
    [
        (
            ["model.name=rnn", "model.mode=sequence", "model.hidden=8"],
            "has no utterance boundaries, so sequence models cannot use it",
        ),
        (
            ["features.n_concat=15"],
            "holds fixed 11-frame windows with no utterance boundaries; features.n_concat = 15 needs more",
        ),
    ],
    ids=["sequence-model", "wide-window"],
)
def test_data_that_cannot_serve_the_model_is_refused_before_the_run(timit_dir, store, capsys, sets, words):
    argv = ["train", SAMPLE, "--data", f"timit11:{timit_dir}", "--tracking-uri", store, "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    assert cli.main(argv) == 2
    assert words in one_line(capsys.readouterr().err)
    assert runs_of(store) == [] and experiments_of(store) == ["Default"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_device_is_refused_before_the_run(timit_dir, store, capsys):
    argv = ["train", SAMPLE, "--data", f"timit11:{timit_dir}", "--set", "train.device=cuda",
            "--tracking-uri", store, "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "'train.device' parameter is 'cuda' but no CUDA device is available" in one_line(capsys.readouterr().err)
    assert runs_of(store) == [] and experiments_of(store) == ["Default"]


def test_a_window_model_trains_on_timit11_sized_for_its_39_classes(timit_dir, tracking_uri):
    # depth 1, width w, 11 x 39 inputs, 39 classes: 430 w + 39 (w + 1) = 469 w + 39; w = 200 meets 93,839
    # exactly (sized as if for 41 classes it would pick w = 199)
    argv = ["train", SAMPLE, "--data", f"timit11:{timit_dir}", "--set", "features.n_concat=11",
            "--set", "train.epochs=1", "--set", "model.depth=1", "--set", "model.param_budget=93839",
            "--tracking-uri", tracking_uri,
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    (run,) = runs_of(tracking_uri)
    m = run.data.metrics
    assert run.info.status == "FINISHED"
    assert m["n_params"] == 93839
    assert '"width": 200' in run.data.tags["ablation.model.kwargs"]
    from ablation.data.sources import TIMIT_CLASSES

    assert all(f"precision.{p}" in m for p in TIMIT_CLASSES)
    assert "test.acc" not in m  # the test rows are unlabelled
    assert "ceiling.val_acc" not in m  # real data: no known ceiling


# ---- a normal run -------------------------------------------------------------------------------


def test_a_run_prints_its_summary(tracking_uri, capsys):
    argv = ["train", "mlp_sample", *TINY, "--set", "train.epochs=1", "--tracking-uri", tracking_uri]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    (run,) = runs_of(tracking_uri)
    m = run.data.metrics
    lines = out.splitlines()
    assert lines[0] == "mlp_sample on synthphone:tiny"
    assert lines[-1] == f"store: {tracking_uri}"
    rows = {line[:22].strip(): line[22:].strip() for line in lines[1:-1] if not line.startswith("-")}
    assert rows["val accuracy"] == f"{m['val.acc']:.4f}"
    assert rows["test accuracy"] == f"{m['test.acc']:.4f}"
    assert rows["val ceiling (Bayes)"] == f"{m['ceiling.val_acc']:.4f} (whole utterance)"
    assert rows["val ceiling of input"] == f"{m['ceiling.arm.val_acc']:.4f} (1-frame window; an upper bound)"
    assert m["ceiling.arm.val_acc"] < m["ceiling.val_acc"]
    assert rows["parameters"] == f"{int(m['n_params']):,}" == "86,569"  # the course's 39-256-256-41
    assert rows["epochs (best)"] == "1 (1)"
    assert rows["MLflow run"] == run.info.run_id
    # a second call is a second run of the same experiment
    assert cli.main(argv) == 0
    assert len(runs_of(tracking_uri)) == 2
    assert experiments_of(tracking_uri) == ["Default", "train/mlp_sample"]


# ---- failures after the start -------------------------------------------------------------------


def _steps_per_epoch() -> int:
    from ablation import experiment
    from ablation.config import load_experiment

    _, splits = experiment.prepare(load_experiment(SAMPLE, ['data.source="synthphone:tiny"']))
    return math.ceil(splits.train.n_frames / 512)


def test_divergence_marks_the_run_failed_with_the_reason(tracking_uri, monkeypatch, capsys, poison_forward):
    spe = _steps_per_epoch()
    poison_forward(monkeypatch, spe + 2, lambda out: out * float("nan"))  # epoch 2, step 2
    argv = ["train", SAMPLE, *TINY, "--set", "train.epochs=3", "--tracking-uri", tracking_uri]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    reason = "diverged: loss is nan at epoch 2, step 2; lower optim.lr, set optim.grad_clip, or check the inputs"
    assert one_line(err) == reason
    assert out == ""
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["ablation.error"] == "DivergedError: " + reason
    assert run.data.params["train.epochs"] == "3"  # it had started: the config is there
    c = MlflowClient(tracking_uri=tracking_uri)
    assert [m.step for m in c.get_metric_history(run.info.run_id, "epoch.val_acc")] == [1]
    assert "val.acc" not in run.data.metrics
    assert c.list_artifacts(run.info.run_id) == []


def test_a_crashing_model_marks_the_run_failed(tracking_uri, monkeypatch, poison_forward):
    def crash(out):
        raise RuntimeError("CUDA out of memory (simulated)")

    poison_forward(monkeypatch, 1, crash)
    argv = ["train", SAMPLE, *TINY, "--tracking-uri", tracking_uri]
    with pytest.raises(RuntimeError, match="simulated"):  # a bug, not a user mistake: it keeps its traceback
        cli.main(argv)
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["ablation.error"] == "RuntimeError: CUDA out of memory (simulated)"


def test_ctrl_c_marks_the_run_killed_and_exits_130(tracking_uri, monkeypatch, capsys, poison_forward):
    def interrupt(out):
        raise KeyboardInterrupt

    poison_forward(monkeypatch, 2, interrupt)
    assert cli.main(["train", SAMPLE, *TINY, "--tracking-uri", tracking_uri]) == 130
    assert one_line(capsys.readouterr().err) == "interrupted"
    (run,) = runs_of(tracking_uri)
    assert run.info.status == "KILLED"
    assert run.data.tags["ablation.error"] == "interrupted by the user"
