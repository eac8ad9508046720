"""Every registered model, every flag: forward, backward, shapes, counts, errors."""

from __future__ import annotations

import pytest
import torch

from ablation.errors import ConfigError
from ablation.models import AblationModel, create_model, list_models, model_fields, register_model
from ablation.models import registry

torch.set_num_threads(1)

N_CLASSES = 41

# Tiny variants per model; every registered model must have some (see test below).
VARIANTS: dict[str, list[dict]] = {
    "mlp": [
        {},
        {"depth": 3, "width": 16, "batchnorm": True},
        {"depth": 2, "width": 16, "dropout": 0.3, "dropout_place": "after"},
        {"depth": 2, "width": 16, "dropout": 0.3, "dropout_place": "before", "batchnorm": True},
        {"depth": 2, "width": 16, "conv_channels": 6, "conv_kernel": 3},
        {"depth": 1, "width": 16, "activation": "sigmoid", "conv_channels": 4, "conv_kernel": 5},
        {"depth": 2, "width": 16, "activation": "gelu"},
        {"depth": 2, "width": 16, "activation": "leaky_relu"},
    ],
    "mlp_layers": [{}, {"widths": [16, 8], "activation": "relu"}, {"widths": [5]}],
    "rnn": [{"hidden": 8}]
    + [
        {"cell": cell, "bidirectional": bi, "mode": mode, "hidden": 8, "layers": 2, "dropout": 0.2}
        for cell in ("lstm", "gru")
        for bi in (False, True)
        for mode in ("window", "sequence")
    ]
    + [
        {"mode": mode, "hidden": 8, "layers": 1, "conv_channels": 5, "conv_kernel": 3, "input_norm": True}
        for mode in ("window", "sequence")
    ],
}

CASES = [(name, i) for name in list_models() for i in range(len(VARIANTS.get(name, [])))]


def make_batch(model: AblationModel, n_concat: int, batch: int = 3, steps: int = 6):
    """Random input for the model's input mode, and the expected output shape."""
    if model.input_mode == "window":
        return (torch.randn(batch, n_concat, 39),), (batch, N_CLASSES)
    lengths = torch.tensor([steps, steps - 2, 1][:batch])
    return (torch.randn(batch, steps, 39 * n_concat), lengths), (batch, steps, N_CLASSES)


def test_every_registered_model_has_test_variants():
    assert list_models() == ["mlp", "mlp_layers", "rnn"]
    assert set(VARIANTS) == set(list_models())


@pytest.mark.parametrize("name,variant", CASES)
@pytest.mark.parametrize("n_concat", [1, 5])
def test_forward_backward_shapes_and_counts(name, variant, n_concat):
    torch.manual_seed(0)
    model = create_model(name, n_concat=n_concat, **VARIANTS[name][variant])
    assert isinstance(model, AblationModel)
    inputs, shape = make_batch(model, n_concat)
    out = model(*inputs)
    assert tuple(out.shape) == shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    params = list(model.parameters())
    assert model.param_count() == sum(p.numel() for p in params)
    # Every parameter takes part in the forward pass.
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert isinstance(model.macs_per_frame(), int) and model.macs_per_frame() > 0


@pytest.mark.parametrize("name", list_models())
def test_creation_is_deterministic_after_seeding(name):
    torch.manual_seed(7)
    a = create_model(name, n_concat=3)
    torch.manual_seed(7)
    b = create_model(name, n_concat=3)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(pa, pb)


def test_model_fields_are_each_familys_declaration_with_defaults():
    fields = model_fields("mlp")
    assert list(fields) == [
        "depth", "width", "activation", "batchnorm", "dropout", "dropout_place",
        "conv_channels", "conv_kernel",
    ]
    assert {k: p.default for k, p in fields.items()} == {
        "depth": 2, "width": 256, "activation": "relu", "batchnorm": False, "dropout": 0.0,
        "dropout_place": "after", "conv_channels": 0, "conv_kernel": 3,
    }
    rnn = model_fields("rnn")
    assert list(rnn) == [
        "cell", "bidirectional", "layers", "hidden", "dropout", "mode", "input_norm",
        "conv_channels", "conv_kernel",
    ]
    # one default per field: the config section and the builder share them
    assert (rnn["hidden"].default, rnn["mode"].default) == (256, "sequence")


def test_unknown_model_lists_known_names_and_suggests():
    with pytest.raises(ConfigError) as err:
        create_model("mpl")
    assert str(err.value) == (
        "The 'model.name' parameter must be one of 'mlp', 'mlp_layers', 'rnn'. Got 'mpl' instead (did you mean 'mlp'?)."
    )
    with pytest.raises(ConfigError, match=r"Got 'transformer' instead\.$"):
        model_fields("transformer")


def test_unknown_kwarg_is_refused_with_suggestion():
    with pytest.raises(ConfigError) as err:
        create_model("mlp", widht=3)
    msg = str(err.value)
    assert "'model.widht'" in msg and "(did you mean 'width'?)" in msg and "\n" not in msg


BAD = [
    ("mlp", {"width": 0}, "The 'model.width' parameter must be an int in the range [1, 65536]. Got 0 instead."),
    ("mlp", {"depth": 0}, "The 'model.depth' parameter must be an int in the range [1, 64]. Got 0 instead."),
    ("mlp", {"width": 2.5}, "The 'model.width' parameter must be an int in the range [1, 65536]. Got 2.5 instead."),
    ("mlp", {"width": True}, "The 'model.width' parameter must be an int in the range [1, 65536]. Got True instead."),
    ("mlp", {"dropout": 1.0}, "The 'model.dropout' parameter must be a float in the range [0, 1). Got 1.0 instead."),
    ("mlp", {"dropout": -0.1}, "The 'model.dropout' parameter must be a float in the range [0, 1). Got -0.1 instead."),
    ("mlp", {"batchnorm": "yes"}, "The 'model.batchnorm' parameter must be a bool (true or false). Got 'yes' instead."),
    (
        "mlp", {"activation": "relu6"},
        "The 'model.activation' parameter must be one of 'relu', 'leaky_relu', 'gelu', 'sigmoid'. "
        "Got 'relu6' instead (did you mean 'relu'?).",
    ),
    (
        "mlp", {"dropout_place": "middle"},
        "The 'model.dropout_place' parameter must be one of 'after', 'before'. Got 'middle' instead.",
    ),
    ("mlp", {"conv_channels": -1}, "The 'model.conv_channels' parameter must be an int in the range [0, 4096]. Got -1 instead."),
    (
        "mlp", {"conv_channels": 4, "conv_kernel": 4},
        "The 'model.conv_kernel' parameter must be an odd int in the range [1, 31]. Got 4 instead.",
    ),
    ("rnn", {"hidden": 0}, "The 'model.hidden' parameter must be an int in the range [1, 8192]. Got 0 instead."),
    ("rnn", {"layers": 0}, "The 'model.layers' parameter must be an int in the range [1, 16]. Got 0 instead."),
    (
        "rnn", {"cell": "lstn"},
        "The 'model.cell' parameter must be one of 'lstm', 'gru'. Got 'lstn' instead (did you mean 'lstm'?).",
    ),
    (
        "rnn", {"mode": "utterance"},
        "The 'model.mode' parameter must be one of 'sequence', 'window'. Got 'utterance' instead.",
    ),
    ("rnn", {"dropout": 0.75, "input_norm": 1}, "The 'model.input_norm' parameter must be a bool (true or false). Got 1 instead."),
]


@pytest.mark.parametrize("name,kwargs,message", BAD)
def test_bad_values_give_one_line_naming_field_rule_and_value(name, kwargs, message):
    with pytest.raises(ConfigError) as err:
        create_model(name, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("n_concat", [0, -3, 4])
def test_bad_n_concat(n_concat):
    with pytest.raises(ConfigError, match=r"'features\.n_concat'.*Got " + str(n_concat) + r" instead\.$"):
        create_model("mlp", n_concat=n_concat)


def test_register_model_adds_a_family_and_refuses_duplicates(monkeypatch):
    from ablation.models.fields import Interval, Param

    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))

    class Linear(AblationModel):
        def __init__(self, *, n_concat, frame_dim, n_classes, scale):
            super().__init__()
            self.fc = torch.nn.Linear(n_concat * frame_dim, n_classes * scale)

        def forward(self, x):
            return self.fc(x.flatten(1))

        def macs_per_frame(self):
            return self.fc.in_features * self.fc.out_features

    register_model("linear", [Param("scale", 1, Interval(int, 1, 4))])(Linear)
    assert list_models() == ["linear", "mlp", "mlp_layers", "rnn"]
    assert list(model_fields("linear")) == ["scale"]
    assert create_model("linear", n_concat=3).param_count() == 117 * 41 + 41
    assert create_model("linear", n_concat=3, scale=2).param_count() == 117 * 82 + 82
    with pytest.raises(ConfigError, match=r"^The 'model.scale' parameter must be an int in the range \[1, 4\]\. Got 5"):
        create_model("linear", scale=5)
    with pytest.raises(ValueError, match="registered twice"):
        register_model("linear", [])(Linear)
    with pytest.raises(ValueError, match="sizing field 'width' is not one of its fields"):
        register_model("linear2", [], size_field="width")(Linear)
