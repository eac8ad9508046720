"""Bad input refused before torch and MLflow load: the same refusal the slow path gives, sooner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ablation import tracking
from ablation.commands import precheck
from ablation.errors import AblationError


@pytest.fixture
def store(tracking_uri):
    """A store holding one study (a parent run tagged as one) and one plain run; their ids."""
    c = tracking.client(tracking_uri)
    study = tracking.get_or_create_experiment(c, "dropout")
    with tracking.start_run(c, study, run_name="parent", tags={tracking.TAG + "kind": "study"}):
        pass
    other = tracking.get_or_create_experiment(c, "train/mlp_strong")
    with tracking.start_run(c, other, run_name="single", tags={tracking.TAG + "kind": "single"}) as run:
        pass
    return tracking_uri, run.run_id


def _message(call) -> str:
    with pytest.raises(AblationError) as e:
        call()
    return str(e.value)


def test_an_unknown_study_is_refused_with_the_report_s_own_message(store):
    from ablation.report.load import load_study

    uri, _ = store
    assert precheck.study_names(uri) == ["dropout"]  # a study's experiment; a plain run's is none
    precheck.check_study("dropout", uri)
    for name in ("dropuot", "train/mlp_strong"):
        fast = _message(lambda: precheck.check_study(name, uri))
        assert fast == _message(lambda: load_study(name, uri))
    assert "(did you mean 'dropout'?)" in fast or "known studies: dropout" in fast


def test_an_unknown_run_is_refused_with_predict_s_own_message(store):
    from ablation.predict import load_run_model

    uri, run_id = store
    precheck.check_run(run_id, uri)
    assert _message(lambda: precheck.check_run("f" * 32, uri)) == _message(lambda: load_run_model("f" * 32, uri))


def test_a_store_not_created_yet_holds_nothing_and_other_stores_are_left_to_mlflow(tmp_path):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert precheck.study_names(missing) == []
    assert "known studies: none" in _message(lambda: precheck.check_study("dropout", missing))
    assert not (tmp_path / "none.db").exists()  # read-only: nothing created
    for uri in ("http://127.0.0.1:5000", "postgresql://u@h/db"):
        assert precheck.study_names(uri) is None
        precheck.check_study("dropout", uri)
        precheck.check_run("0" * 32, uri)
    (tmp_path / "junk.db").write_text("not a database")
    assert precheck.study_names(f"sqlite:///{tmp_path / 'junk.db'}") is None  # unknown: the slow path decides


@pytest.mark.parametrize("spec, words", [("synthphone:nope", "unknown synthphone preset 'nope'"),
                                         ("libriphone:/no/such/dir", "libriphone folder /no/such/dir does not exist"),
                                         ("timit11:/no/such/dir", "timit11 folder /no/such/dir does not exist")])
def test_a_bad_data_spec_is_refused_as_sources_refuses_it(spec, words):
    from ablation.data.sources import load_dataset

    fast = _message(lambda: precheck.check_data(spec))
    assert words in fast and fast == _message(lambda: load_dataset(spec))


def test_refusals_import_neither_torch_nor_mlflow(tmp_path, home):
    """Each bad input, in one fresh interpreter: exit 2, and torch and MLflow still not imported."""
    cases = [["train", "no/such.toml"], ["train", "mlp_strong", "--data", "libriphone:/no/such"],
             ["report", "no_such_study"], ["predict", "0" * 32, "--data", "synthphone:tiny"],
             ["data", "info", "--data", "timit11:/no/such"], ["data", "ceiling", "--n", "4"]]
    code = ("import json, sys; from ablation.cli import main; out = []\n"
            f"for argv in {cases!r}:\n"
            "    out.append([main(argv), 'torch' in sys.modules, 'mlflow' in sys.modules])\n"
            "print(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert json.loads(proc.stdout) == [[2, False, False]] * len(cases)
    assert len(proc.stderr.strip().splitlines()) == len(cases)  # one line each
