"""The MLP: structure, exact counts, MACs and the Conv1d front-end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ablation.models import create_model
from ablation.models.mlp import MaskDropout

torch.set_num_threads(1)


def block_types(model) -> list[list[type]]:
    return [[type(m) for m in block] for block in model.blocks]


def test_course_sample_model():
    """The course's Classifier(hidden_layers=1): BasicBlock(39, 256), one more
    BasicBlock(256, 256), Linear(256, 41): 86,569 parameters at n = 1."""
    model = create_model("mlp")  # the family's defaults: depth 2, width 256, relu, n = 1
    assert block_types(model) == [[nn.Linear, nn.ReLU], [nn.Linear, nn.ReLU]]
    assert (model.blocks[0][0].in_features, model.blocks[0][0].out_features) == (39, 256)
    assert (model.blocks[1][0].in_features, model.blocks[1][0].out_features) == (256, 256)
    assert (model.head.in_features, model.head.out_features) == (256, 41)
    assert model.param_count() == 86_569 == (39 * 256 + 256) + (256 * 256 + 256) + (256 * 41 + 41)
    assert model.macs_per_frame() == 39 * 256 + 256 * 256 + 256 * 41


@pytest.mark.parametrize(
    "kwargs,params,macs",
    [
        # n = 3 -> 117 inputs; hidden 8, 8; 41 classes.
        ({}, (117 * 8 + 8) + (8 * 8 + 8) + (8 * 41 + 41), 117 * 8 + 8 * 8 + 8 * 41),
        # BatchNorm: gamma and beta per feature; one multiply-add per feature at inference.
        ({"batchnorm": True}, 1385 + 2 * (2 * 8), 1328 + 8 + 8),
        # Front-end: Conv1d 39 -> 4, kernel 3, at each of the 3 window steps; the MLP then sees 3 * 4.
        (
            {"conv_channels": 4, "conv_kernel": 3},
            (39 * 4 * 3 + 4) + (12 * 8 + 8) + (8 * 8 + 8) + (8 * 41 + 41),
            3 * (4 * 39 * 3) + 12 * 8 + 8 * 8 + 8 * 41,
        ),
        ({"dropout": 0.5, "activation": "sigmoid"}, 1385, 1328),
    ],
)
def test_counts_and_macs_by_hand(kwargs, params, macs):
    model = create_model("mlp", n_concat=3, depth=2, width=8, **kwargs)
    assert model.param_count() == params == sum(p.numel() for p in model.parameters())
    assert model.macs_per_frame() == macs


def test_dropout_placement_changes_module_order():
    after = create_model("mlp", depth=2, width=8, batchnorm=True, dropout=0.25, dropout_place="after")
    before = create_model("mlp", depth=2, width=8, batchnorm=True, dropout=0.25, dropout_place="before")
    assert block_types(after) == [[nn.Linear, nn.BatchNorm1d, nn.ReLU, MaskDropout]] * 2
    assert block_types(before) == [[nn.Linear, nn.BatchNorm1d, MaskDropout, nn.ReLU]] * 2
    assert after.blocks[0][3].p == 0.25
    # Without dropout the placement flag has nothing to place.
    assert block_types(create_model("mlp", depth=2, width=8, dropout_place="before")) == [[nn.Linear, nn.ReLU]] * 2


@pytest.mark.parametrize(
    "name,cls", [("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("gelu", nn.GELU), ("sigmoid", nn.Sigmoid)]
)
def test_activation_choice(name, cls):
    model = create_model("mlp", depth=3, width=4, activation=name, conv_channels=2)
    assert [type(b[1]) for b in model.blocks] == [cls] * 3
    assert type(model.front.act) is cls


def test_forward_matches_a_hand_computation():
    torch.manual_seed(0)
    model = create_model("mlp", n_concat=3, depth=2, width=8).eval()
    x = torch.randn(5, 3, 39)
    w1, b1 = model.blocks[0][0].weight, model.blocks[0][0].bias
    w2, b2 = model.blocks[1][0].weight, model.blocks[1][0].bias
    h = torch.relu(x.reshape(5, 117) @ w1.T + b1)  # frame-major flattening
    h = torch.relu(h @ w2.T + b2)
    expected = h @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected)
    # A pre-flattened window gives the same logits.
    torch.testing.assert_close(model(x.reshape(5, 117)), expected)


def test_conv_front_end_is_a_same_padded_convolution_over_window_frames():
    torch.manual_seed(0)
    n, k, c = 5, 3, 4
    model = create_model("mlp", n_concat=n, depth=1, width=8, conv_channels=c, conv_kernel=k).eval()
    x = torch.randn(2, n, 39)
    got = model.front(x).detach().numpy()  # (B, n, c)
    w = model.front.conv.weight.detach().numpy()  # (c, 39, k)
    b = model.front.conv.bias.detach().numpy()
    xp = np.pad(x.numpy(), ((0, 0), (k // 2, k // 2), (0, 0)))  # zeros beyond the window
    want = np.empty((2, n, c), dtype=np.float64)
    for t in range(n):
        want[:, t] = np.einsum("bkd,cdk->bc", xp[:, t : t + k], w) + b
    np.testing.assert_allclose(got, np.maximum(want, 0.0), rtol=1e-5, atol=1e-5)
    assert model.blocks[0][0].in_features == n * c


def test_batchnorm_normalises_in_training():
    torch.manual_seed(0)
    model = create_model("mlp", depth=1, width=8, batchnorm=True).train()
    h = model.blocks[0][1](model.blocks[0][0](torch.randn(64, 1, 39).flatten(1) * 5 + 3))
    np.testing.assert_allclose(h.mean(0).detach().numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(h.var(0, unbiased=False).detach().numpy(), 1.0, atol=1e-3)


def test_mask_dropout_keeps_the_rate_and_the_expectation():
    torch.manual_seed(0)
    drop = MaskDropout(0.25)
    out = drop(torch.ones(400, 1001))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005  # 400,400 draws: sd 0.0007
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))
    assert abs(out.mean().item() - 1.0) < 0.01
    drop.eval()
    x = torch.randn(3, 5)
    assert torch.equal(drop(x), x)
