"""Families from an installed package's ``ablation.models`` entry point register
as a project's do, with their origin and the output check of a user's model."""

from __future__ import annotations

import pytest

from ablation.errors import ConfigError
from ablation.models import count_params, create_model, family, list_models, registry

MODULE = '''from torch import nn
from ablation.models import AblationModel, Interval, Param, register_model


@register_model("pkg_linear", (Param("scale", 1, Interval(int, 1, 4)),))
class PkgLinear(AblationModel):
    def __init__(self, *, n_concat, frame_dim, n_classes, scale):
        super().__init__()
        self.fc = nn.Linear(n_concat * frame_dim, n_classes * scale)

    def forward(self, x):
        return self.fc(x.flatten(1))

    def macs_per_frame(self):
        return self.fc.in_features * self.fc.out_features
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A package on sys.path whose metadata names its module in the ``ablation.models`` group."""
    site = tmp_path / "site"
    (site / "pkg_models-0.1.dist-info").mkdir(parents=True)
    (site / "pkg_models.py").write_text(MODULE)
    (site / "pkg_models-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg-models\nVersion: 0.1\n")
    (site / "pkg_models-0.1.dist-info" / "entry_points.txt").write_text("[ablation.models]\nlinear = pkg_models\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    monkeypatch.setattr(registry, "_loaded_project", None)
    monkeypatch.delitem(__import__("sys").modules, "pkg_models", raising=False)
    yield site / "pkg_models.py"
    monkeypatch.setattr(registry, "_loaded_project", None)


def test_an_entry_point_family_registers_with_its_origin(installed):
    assert "pkg_linear" in list_models()
    fam = family("pkg_linear")
    assert fam.user and fam.origin == f"{installed}:5" and fam.input == "window"
    assert create_model("pkg_linear", n_concat=3, frame_dim=80, n_classes=45).param_count() == 240 * 45 + 45
    assert count_params("pkg_linear", n_concat=1, frame_dim=39, n_classes=41) == 39 * 41 + 41


def test_an_entry_point_family_gets_the_output_check(installed):
    # scale=2 doubles the head: a wrong shape for a classifier of 41 classes
    with pytest.raises(ConfigError) as err:
        create_model("pkg_linear", scale=2)
    assert str(err.value) == (f"{installed}:11: the forward of model 'pkg_linear' returns (2, 82) for a window input "
                              "of shape (2, 1, 39); it must return (2, 41) (one score per class per window, 41 "
                              "classes in this data)")
