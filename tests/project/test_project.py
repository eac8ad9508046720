"""`ablation init`, finding the project as git does, and a study of a user's own
model family run from the project folder (no ABLATION_HOME)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from ablation import paths
from ablation.cli import main
from ablation.commands.init import TEMPLATE, create

REPO = Path(__file__).resolve().parents[2]

# a user's family in 30 lines: what a student writes around their own nn.Module
TINY_NET = '''"""A two-layer net with an optional linear path from the input."""
from torch import nn

from ablation.models import AblationModel, Boolean, Interval, Param, register_model

PARAMS = (
    Param("hidden", 16, Interval(int, 1, 4096), "units of the hidden layer"),
    Param("skip", False, Boolean(), "add a linear path from the input"),
)


@register_model("tiny_net", PARAMS, size_field="hidden", input="window")
class TinyNet(AblationModel):
    def __init__(self, *, n_concat, frame_dim, n_classes, hidden, skip):
        super().__init__()
        d = n_concat * frame_dim
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, n_classes))
        self.skip = nn.Linear(d, n_classes) if skip else None

    def forward(self, x):  # (B, n, frame_dim) -> (B, n_classes)
        x = x.flatten(1)
        out = self.body(x)
        return out if self.skip is None else out + self.skip(x)

    def macs_per_frame(self):
        return sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
'''
TINY_EXPERIMENT = '[features]\nn_concat = 3\n[model]\nname = "tiny_net"\nhidden = 8\n[train]\nepochs = 1\n'
TINY_STUDY = '''question = "Does the linear skip path help the tiny net?"
base = "tiny"
seeds = [0, 1]
[factors]
"model.skip" = [false, true]
'''


def test_init_writes_the_commented_project_and_refuses_a_used_folder(tmp_path, capsys):
    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == [".gitignore", "ablation.toml", "experiments/classifier.toml", "models/classifier.py",
                       "studies/classifier_depth.toml"]
    assert (root / "reports").is_dir() and (root / ".gitignore").read_text().splitlines()[-1] == "mlruns/"
    assert (root / "models" / "classifier.py").read_text() == (TEMPLATE / "models" / "classifier.py").read_text()
    assert capsys.readouterr().out.splitlines()[-1] == f"next: cd {root} && python -m ablation run classifier_depth"
    assert main(["init", str(root)]) == 2
    err = capsys.readouterr().err
    assert err == f"ablation init: {root} already exists and is not an empty folder; choose a new one for the project\n"
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # no temporary folder left


def test_the_project_is_found_from_below_and_built_in_names_stay_available(project, monkeypatch, capsys):
    sub = project / "models" / "deeper"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert paths.project_dir() == project and paths.mlruns_dir() == project / "mlruns"
    assert paths.find_study("classifier_depth") == project / "studies" / "classifier_depth.toml"
    assert paths.find_study("dropout") == REPO / "studies" / "dropout.toml"  # built-in, by name
    assert "classifier_depth" in paths.names("study") and "dropout" in paths.names("study")
    # a project's file of a built-in name wins; a plain copy silently, a changed one says so once
    mine = project / "studies" / "dropout.toml"
    mine.write_text((REPO / "studies" / "dropout.toml").read_text())
    assert paths.find_study("dropout") == mine and capsys.readouterr().out == ""
    mine.write_text((REPO / "studies" / "dropout.toml").read_text().replace("seeds = [0, 1, 2]", "seeds = [0]"))
    assert paths.find_study("dropout") == mine and paths.find_study("dropout") == mine
    assert capsys.readouterr().out == f"study 'dropout': this project's {mine} (not the built-in one of the same name)\n"
    with pytest.raises(Exception, match=r"unknown study 'classifier_dept' \(did you mean 'classifier_depth'\?\); "
                                        r"known: classifier_depth, dropout; built-in: activation, "):
        paths.find_study("classifier_dept")
    monkeypatch.chdir(project.parent)  # outside any project: the checkout
    assert paths.project_dir() == paths.PROJECT_DIR


def test_project_option_names_the_folder_and_refuses_a_non_project(project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # outside the project: only --project finds it
    assert main(["list", "--project", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"ablation list: --project {tmp_path}: {tmp_path} holds no ablation.toml, "
                                       f"so it is not a project; run `ablation init {tmp_path}` there first\n")
    assert main(["--project", str(project), "list"]) == 0
    assert "classifier_depth  0/6" in capsys.readouterr().out
    assert "ABLATION_HOME" not in os.environ  # for that command only


@pytest.mark.slow
def test_a_user_family_config_unpickles_in_a_process_outside_the_project(project, tmp_path):
    # a --jobs worker unpickles its cells before it takes its parent's environment
    from ablation.config import load_experiment

    cfg = load_experiment("classifier", ["model.hidden_layers=3"])
    blob = tmp_path / "cfg.pickle"
    blob.write_bytes(pickle.dumps(cfg))
    code = ("import pickle, sys; c = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "print(c.model.name, c.model.hidden_layers, c.model.hidden_dim)")
    env = {k: v for k, v in os.environ.items() if k != "ABLATION_HOME"}
    out = subprocess.run([sys.executable, "-c", code, str(blob)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout == "classifier 3 256\n", out.stderr


def test_the_tutorial_study_of_init_runs_and_reports(project, capsys):
    # the README's tutorial: init's files as written, on the tiny corpus for one epoch
    argv = ["run", "classifier_depth", "--data", "synthphone:tiny-v2", "--seeds", "2", "--set", "train.epochs=1",
            "--jobs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 cells (2 arms x 2 seeds), 0 done, 4 to run" in out
    report = project / "reports" / "classifier_depth.md"
    assert f"report: {report}" in out and report.is_file()
    c = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    cells = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])
             if r.data.tags.get("ablation.kind") == "cell"]
    assert len(cells) == 4
    counts = {r.data.params["model.hidden_layers"]: int(r.data.metrics["n_params"]) for r in cells}
    for layers, count in counts.items():  # each arm's hidden_dim solved for the budget: within 1% of it
        assert abs(count - 150_000) <= 1_500, (layers, count)
    for r in cells:  # the count is the one of the logged width, by hand
        h, k = int(r.data.params["model.hidden_dim"]), int(r.data.params["model.hidden_layers"])
        assert int(r.data.metrics["n_params"]) == (11 * 39 + 1) * h + k * (h + 1) * h + (h + 1) * 41


@pytest.mark.slow
def test_a_30_line_user_family_study_runs_from_its_folder(project):
    (project / "models" / "tiny_net.py").write_text(TINY_NET)
    assert len(TINY_NET.splitlines()) <= 30
    (project / "experiments" / "tiny.toml").write_text(TINY_EXPERIMENT)
    (project / "studies" / "tiny_skip.toml").write_text(TINY_STUDY)
    env = {k: v for k, v in os.environ.items() if k != "ABLATION_HOME"}
    proc = subprocess.run([sys.executable, "-m", "ablation", "run", "tiny_skip", "--data", "synthphone:tiny-v2",
                           "--jobs", "1"], cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = project / "reports" / "tiny_skip.md"
    assert f"report: {report}" in proc.stdout
    assert "Does the linear skip path help the tiny net?" in report.read_text()
    c = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    cells = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])
             if r.data.tags.get("ablation.kind") == "cell"]
    assert sorted((r.data.params["model.skip"], r.data.params["model.hidden"]) for r in cells) == [
        ("False", "8"), ("False", "8"), ("True", "8"), ("True", "8")]
    for r in cells:  # the model as built: 3 frames of 39, 8 hidden, 41 classes, the skip path on one arm
        d = 3 * 39
        skip = (d + 1) * 41 if r.data.params["model.skip"] == "True" else 0
        assert int(r.data.metrics["n_params"]) == (d + 1) * 8 + (8 + 1) * 41 + skip
        assert r.data.tags["ablation.data.frame_dim"] == "39" and r.data.tags["ablation.data.n_classes"] == "41"
        assert json.loads(r.data.tags["ablation.model.kwargs"]) == {"hidden": 8,
                                                                     "skip": r.data.params["model.skip"] == "True"}
    storage = f"sqlite:///{project / 'mlruns' / 'optuna.db'}"
    trials = optuna.load_study(study_name="tiny_skip", storage=storage).trials
    assert sorted((t.params["model.skip"], t.params["seed"]) for t in trials) == [
        (False, 0), (False, 1), (True, 0), (True, 1)]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("name", ["models/classifier.py", "studies/classifier_depth.toml"])
def test_the_readme_tutorial_shows_the_files_init_writes(name):
    assert (TEMPLATE / name).read_text().rstrip() in (REPO / "README.md").read_text()
