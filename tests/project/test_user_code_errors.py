"""What goes wrong in a user's model module is one line naming the user's file
and line, exit 2, nothing enqueued; --debug adds the traceback."""

from __future__ import annotations

import pytest

from ablation.cli import main

GOOD_BODY = '''
class Bad(AblationModel):
    def __init__(self, *, n_concat, frame_dim, n_classes, hidden):
        super().__init__()
        self.fc = nn.Linear(n_concat * frame_dim, hidden)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.head(self.fc(x.flatten(1)))

    def macs_per_frame(self):
        return 0
'''
HEADER = "from torch import nn\nfrom ablation.models import AblationModel, Interval, Param, register_model\n"
REGISTER = '@register_model("bad", (Param("hidden", 8, Interval(int, 1, 4096)),), size_field="hidden")'

CASES = {
    # name: (module text, budget, expected line number, expected words)
    "import fails": (HEADER + "import no_such_package_here\n" + REGISTER + GOOD_BODY, 0, 3,
                     "the model module cannot be imported (ModuleNotFoundError: No module named "
                     "'no_such_package_here')"),
    "field without a rule": (HEADER + REGISTER.replace("Interval(int, 1, 4096)", "None") + GOOD_BODY, 0, 3,
                             "model 'bad': field 'hidden' has no rule (got None)"),
    "wrong output shape": (HEADER + REGISTER + GOOD_BODY.replace("self.head(self.fc(x.flatten(1)))",
                                                                 "self.fc(x.flatten(1))"), 0, 10,
                           "the forward of model 'bad' returns (2, 8) for a window input of shape (2, 1, 39); "
                           "it must return (2, 41)"),
    "forward raises": (HEADER + REGISTER + GOOD_BODY.replace("return self.head(self.fc(x.flatten(1)))",
                                                             "return self.head(self.fc(x.flatten(1)[:, :5]))"), 0, 11,
                       "the forward of model 'bad' fails on a window input of shape (2, 1, 39) (RuntimeError: "),
    # hidden=1: (39 + 1) * 1 + (1 + 1) * 41 = 122 parameters
    "no size for the budget": (HEADER + REGISTER + GOOD_BODY, 10, 3,
                               "The parameter budget 10 is too small for model 'bad': its smallest size "
                               "(hidden=1) has 122 parameters"),
}


def _write(project, module: str, budget: int) -> None:
    (project / "models" / "bad.py").write_text(module)
    (project / "experiments" / "bad.toml").write_text('[model]\nname = "bad"\n[train]\nepochs = 1\n')
    constraints = f"[constraints]\nparam_budget = {budget}\n" if budget else ""
    (project / "studies" / "bad_study.toml").write_text(
        'question = "q"\nbase = "bad"\nseeds = [0]\n[factors]\n"optim.lr" = [0.001, 0.002]\n' + constraints)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_user_code_is_one_line_naming_its_file_and_line(project, capsys, case):
    module, budget, line, words = CASES[case]
    _write(project, module, budget)
    assert main(["run", "bad_study", "--data", "synthphone:tiny-v2", "--jobs", "1", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"ablation run: {project / 'models' / 'bad.py'}:{line}: "), err
    assert words in err, err
    assert not (project / "mlruns" / "optuna.db").exists()  # nothing enqueued
    assert not (project / "mlruns" / "mlflow.db").exists()


def test_debug_shows_the_traceback_as_well(project, capsys):
    module, budget, line, words = CASES["wrong output shape"]
    _write(project, module, budget)
    assert main(["run", "bad_study", "--data", "synthphone:tiny-v2", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ablation/models/user.py" in err
    assert err.splitlines()[-1].startswith(f"ablation run: {project / 'models' / 'bad.py'}:{line}: ")


def test_a_family_name_taken_by_a_built_in_one_is_refused_with_its_file(project, capsys):
    (project / "models" / "mine.py").write_text(HEADER + REGISTER.replace('"bad"', '"mlp"') + GOOD_BODY)
    assert main(["train", "classifier", "--data", "synthphone:tiny-v2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"ablation train: {project / 'models' / 'mine.py'}:3: the model module cannot be imported "
                          "(ValueError: model 'mlp' is registered twice (first at ")
