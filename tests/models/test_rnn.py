"""The RNN: counts and MACs by hand, the centre step, padding invariance."""

from __future__ import annotations

import warnings

import pytest
import torch

from ablation.models import create_model
from ablation.models.rnn import _reverse_within

torch.set_num_threads(1)


def rnn_params(cell: str, in_dim: int, hidden: int, layers: int, bi: bool, classes: int = 41) -> int:
    """PyTorch's LSTM/GRU: per layer and direction gates * (in*h + h*h) weights and two gate biases."""
    gates, dirs = {"lstm": 4, "gru": 3}[cell], 2 if bi else 1
    total = 0
    for layer in range(layers):
        d = in_dim if layer == 0 else hidden * dirs
        total += dirs * gates * (d * hidden + hidden * hidden + 2 * hidden)
    return total + dirs * hidden * classes + classes


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("mode,n_concat,in_dim", [("sequence", 1, 39), ("sequence", 3, 117), ("window", 5, 39)])
def test_param_count_by_hand(cell, bi, layers, mode, n_concat, in_dim):
    model = create_model("rnn", n_concat=n_concat, cell=cell, bidirectional=bi, layers=layers, hidden=8, mode=mode)
    assert model.param_count() == rnn_params(cell, in_dim, 8, layers, bi)
    assert model.input_mode == mode


def test_macs_one_layer_lstm_by_hand():
    uni = create_model("rnn", cell="lstm", bidirectional=False, layers=1, hidden=8, mode="sequence")
    assert uni.macs_per_frame() == 4 * (39 * 8 + 8 * 8) + 8 * 41  # 1832
    bi = create_model("rnn", cell="lstm", bidirectional=True, layers=1, hidden=8, mode="sequence")
    assert bi.macs_per_frame() == 2 * 4 * (39 * 8 + 8 * 8) + 16 * 41  # 3664
    gru = create_model("rnn", cell="gru", bidirectional=False, layers=1, hidden=8, mode="sequence")
    assert gru.macs_per_frame() == 3 * (39 * 8 + 8 * 8) + 8 * 41
    # A window model runs all n steps of the window for every frame.
    win = create_model("rnn", n_concat=5, cell="lstm", bidirectional=False, layers=1, hidden=8, mode="window")
    assert win.macs_per_frame() == 5 * 4 * (39 * 8 + 8 * 8) + 8 * 41


def test_macs_deep_bidirectional_with_front_end_and_norm():
    model = create_model(
        "rnn", n_concat=3, cell="lstm", bidirectional=True, layers=2, hidden=8, mode="sequence",
        conv_channels=6, conv_kernel=5, input_norm=True,
    )
    step = 117 + 6 * 117 * 5 + 2 * 4 * (6 * 8 + 64) + 2 * 4 * (16 * 8 + 64)
    assert model.macs_per_frame() == step + 16 * 41


def test_dropout_between_layers_and_before_classifier_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = create_model("rnn", layers=1, hidden=4, dropout=0.5)
    assert one.rnn.dropout == 0.0 and one.drop.p == 0.5
    three = create_model("rnn", layers=3, hidden=4, dropout=0.5)
    assert three.rnn.dropout == 0.5 and three.drop.p == 0.5


@pytest.mark.parametrize("bi", [False, True])
def test_window_mode_classifies_the_centre_step(bi):
    """A forward-only RNN at the centre has seen frames 0..c and nothing after;
    a bidirectional one sees the whole window."""
    torch.manual_seed(0)
    n, c = 5, 2
    model = create_model("rnn", n_concat=n, mode="window", bidirectional=bi, layers=2, hidden=8).eval()
    x = torch.randn(4, n, 39)
    base = model(x)
    later, earlier = x.clone(), x.clone()
    later[:, c + 1 :] += 1.0
    earlier[:, :c] += 1.0
    assert not torch.allclose(model(earlier), base)
    assert torch.allclose(model(later), base) is (not bi)
    # Pre-flattened windows are accepted.
    torch.testing.assert_close(model(x.reshape(4, n * 39)), base)


SEQ_VARIANTS = [
    {"cell": "lstm", "bidirectional": True},
    {"cell": "gru", "bidirectional": True, "layers": 2},
    {"cell": "lstm", "bidirectional": False},
    {"cell": "lstm", "bidirectional": True, "conv_channels": 6, "conv_kernel": 5},
    {"cell": "gru", "bidirectional": True, "input_norm": True, "conv_channels": 4, "conv_kernel": 3},
]


@pytest.mark.parametrize("kwargs", SEQ_VARIANTS)
def test_sequence_padding_does_not_leak_into_real_frames(kwargs):
    torch.manual_seed(0)
    model = create_model("rnn", n_concat=3, mode="sequence", hidden=8, **kwargs).eval()
    long, short = torch.randn(1, 9, 117), torch.randn(1, 4, 117)
    x = torch.full((2, 9, 117), 123.0)  # padding with garbage, not zeros
    x[0], x[1, :4] = long[0], short[0]
    out = model(x, torch.tensor([9, 4]))
    assert out.shape == (2, 9, 41)
    torch.testing.assert_close(out[0], model(long, torch.tensor([9]))[0])
    torch.testing.assert_close(out[1, :4], model(short, torch.tensor([4]))[0])
    # Unsorted lengths give the same per-utterance outputs.
    swapped = model(x.flip(0), torch.tensor([4, 9]))
    torch.testing.assert_close(swapped[1], out[0])
    torch.testing.assert_close(swapped[0, :4], out[1, :4])


def test_sequence_without_lengths_uses_every_step():
    torch.manual_seed(0)
    model = create_model("rnn", mode="sequence", hidden=8).eval()
    x = torch.randn(2, 6, 39)
    torch.testing.assert_close(model(x), model(x, torch.tensor([6, 6])))


@pytest.mark.parametrize("kwargs", SEQ_VARIANTS)
def test_unpacked_path_equals_the_packed_call_with_its_gradients(kwargs):
    torch.manual_seed(0)
    model = create_model("rnn", n_concat=1, mode="sequence", hidden=8, **kwargs).eval()  # eval: no dropout draws
    lengths = torch.tensor([9, 4, 7])
    x = torch.randn(3, 9, 39)
    real = torch.arange(9)[None, :] < lengths[:, None]
    outs, grads = {}, {}
    for path in ("packed", "unpacked"):
        model.sequence_path = path
        model.zero_grad()
        out = model(x, lengths)
        out[real].square().sum().backward()
        outs[path] = out[real]
        grads[path] = {k: p.grad.clone() for k, p in model.named_parameters()}
    torch.testing.assert_close(outs["unpacked"], outs["packed"], atol=1e-5, rtol=1e-5)
    for k in grads["packed"]:
        torch.testing.assert_close(grads["unpacked"][k], grads["packed"][k], atol=1e-4, rtol=1e-4)
    model.sequence_path = "auto"  # on a CPU tensor: the unpacked path
    torch.testing.assert_close(model(x, lengths)[real], outs["unpacked"])
    model.sequence_path = "sideways"
    with pytest.raises(ValueError, match="sequence_path"):
        model(x, lengths)


def test_reverse_within_keeps_the_padding_in_place():
    x = torch.arange(9.0)[None, :, None].repeat(2, 1, 1)
    r = _reverse_within(x, torch.tensor([9, 7]))
    assert r[0, :, 0].tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert r[1, :, 0].tolist() == [6, 5, 4, 3, 2, 1, 0, 7, 8]
    assert torch.equal(_reverse_within(r, torch.tensor([9, 7])), x)  # its own inverse
