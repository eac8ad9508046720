"""A run logs the config fields that apply to it: its family's (the ``[model]``
section), its optimizer's and its input mode's; the config itself, and every
hash made from it, keeps them all."""

from __future__ import annotations

import pytest

from ablation.config import build
from ablation.experiment import run_params
from ablation.train import model_kwargs

SEQUENCE_ONLY = {"optim.max_frames", "train.chunk_len"}


def _logged(data: dict) -> tuple[set[str], dict]:
    cfg = build(data)
    params, _ = run_params(cfg, model_kwargs(cfg))
    return set(params), params


@pytest.mark.parametrize("optim", ["adamw", "adam"])
def test_a_window_mlp_logs_neither_momentum_nor_sequence_batching(optim):
    keys, params = _logged({"optim": {"name": optim, "batch_size": 64}})
    assert not ({"optim.momentum"} | SEQUENCE_ONLY) & keys
    assert params["optim.batch_size"] == 64 and params["optim.name"] == optim
    assert params["optim.weight_decay"] == 0.01  # every optimizer here takes it


def test_sgd_logs_its_momentum():
    keys, params = _logged({"optim": {"name": "sgd", "momentum": 0.5}})
    assert params["optim.momentum"] == 0.5
    assert not SEQUENCE_ONLY & keys


def test_a_sequence_rnn_logs_its_frame_budget_and_chunks_not_a_batch_size():
    keys, params = _logged({"model": {"name": "rnn", "mode": "sequence"},
                            "optim": {"max_frames": 2048}, "train": {"chunk_len": 100}})
    assert (params["optim.max_frames"], params["train.chunk_len"]) == (2048, 100)
    assert "optim.batch_size" not in keys and "optim.momentum" not in keys
    assert params["train.eval_batch_size"] == 4096  # sequence evaluation sizes its batches from it too


def test_a_window_rnn_is_batched_as_windows():
    keys, params = _logged({"model": {"name": "rnn", "mode": "window"}})
    assert not SEQUENCE_ONLY & keys and params["optim.batch_size"] == 512


def test_leaving_fields_out_of_the_log_leaves_the_config_whole():
    cfg = build({"optim": {"name": "adam"}})
    before = cfg.to_toml()
    params, _ = run_params(cfg, model_kwargs(cfg))
    assert cfg.to_toml() == before and "momentum = 0.9" in before
    # everything else is logged: the dropped fields are exactly the three that do not apply
    assert set(cfg.flat()) - set(params) == {"optim.momentum"} | SEQUENCE_ONLY
