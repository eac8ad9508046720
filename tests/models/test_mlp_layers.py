"""The per-layer-width MLP and the 2021 course's TIMIT sample experiment built on it."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from ablation import cli
from ablation.config import load_experiment
from ablation.errors import ConfigError
from ablation.models import count_params, create_model
from ablation.train import build_model

RULE = "a list of 1 to 64 ints, each in the range [1, 65536]"


def linear(a: int, b: int) -> int:
    return a * b + b  # weights and biases


def test_the_2021_sample_experiment_is_429_1024_512_128_with_the_datas_classes():
    cfg = load_experiment("timit2021_sample")
    assert cfg.features.n_concat * 39 == 429
    assert (cfg.model.name, cfg.model.widths, cfg.model.activation) == ("mlp_layers", [1024, 512, 128], "sigmoid")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.batch_size) == ("adam", 1e-4, 0.0, 64)
    hidden = linear(429, 1024) + linear(1024, 512) + linear(512, 128)
    assert hidden == 1_030_784
    # on TIMIT-11 the head has its 39 classes; on synthphone, its 41
    assert build_model(cfg, n_classes=39)[0].param_count() == hidden + linear(128, 39) == 1_035_815
    assert build_model(cfg, n_classes=41)[0].param_count() == hidden + linear(128, 41) == 1_036_073
    model = build_model(cfg, n_classes=39)[0]
    assert [type(m).__name__ for m in model.blocks] == ["Linear", "Sigmoid"] * 3
    assert model.macs_per_frame() == 429 * 1024 + 1024 * 512 + 512 * 128 + 128 * 39


def test_widths_set_every_layer_in_order():
    assert count_params("mlp_layers", n_concat=3, widths=[7, 5]) == linear(117, 7) + linear(7, 5) + linear(5, 41)
    model = create_model("mlp_layers", n_concat=1, widths=[4])
    assert [(m.in_features, m.out_features) for m in model.modules() if hasattr(m, "in_features")] == [
        (39, 4), (4, 41)]


@pytest.mark.parametrize("bad", [[], [0], [512, 0], [64.0], [True], "1024", list(range(1, 66))])
def test_bad_widths_are_one_message(bad):
    expected = f"The 'model.widths' parameter must be {RULE}. Got {bad!r} instead."
    with pytest.raises(ConfigError) as from_builder:
        create_model("mlp_layers", widths=bad)
    assert str(from_builder.value) == expected
    with pytest.raises(ConfigError) as from_config:
        load_experiment("timit2021_sample", {"model.widths": bad})
    assert str(from_config.value).startswith(expected[:-1] + ". (")


def _argv(uri: str, *sets: str) -> list[str]:
    argv = ["train", "timit2021_sample", "--data", "synthphone:tiny", "--tracking-uri", uri, "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return argv


@pytest.mark.parametrize("sets, message", [
    (["model.widths=[1024, 0, 128]"],
     f"The 'model.widths' parameter must be {RULE}. Got [1024, 0, 128] instead."),
    (["model.widths=1024"], f"The 'model.widths' parameter must be {RULE}. Got 1024 instead."),
    (["model.width=64"], "unknown key 'model.width' for model 'mlp_layers' (--set)"),
    (["model.param_budget=100000"], "Model 'mlp_layers' declares no size field, so it cannot be sized to a budget."),
], ids=["zero", "not-a-list", "mlp-field", "budget"])
def test_bad_widths_on_the_command_line_are_one_line_exit_2_and_no_run(tracking_uri, capsys, sets, message):
    assert cli.main(_argv(tracking_uri, *sets)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ablation train: " + message)
    client = MlflowClient(tracking_uri=tracking_uri)
    assert [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])] == []


def test_it_trains_and_logs_its_widths(tracking_uri):
    assert cli.main(_argv(tracking_uri, "model.widths=[16, 8]", "train.epochs=1")) == 0
    client = MlflowClient(tracking_uri=tracking_uri)
    (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.widths"] == "[16, 8]"
    assert run.data.params["model.activation"] == "sigmoid"
    assert "model.width" not in run.data.params and "model.depth" not in run.data.params
    assert run.data.metrics["n_params"] == linear(429, 16) + linear(16, 8) + linear(8, 41)
