"""The shipped converged studies' hashes, as computed before the report
learnt about budget notes and identical-arm groups: a study whose hash changes
is a new study (its runs must be re-run), so a change to the hash payload or
to a default that reaches a cell's config must not touch these studies by
accident. Change a pin only together with the study (and its runs) on purpose."""

from __future__ import annotations

import pytest

PINNED = {  # name: (quick, full)
    "activation": ("305a8e87a68ead0f", "ac311737356ddec1"),
    "architecture": ("deee68c456fc29e9", "03ec70bfae5ca10f"),
    "batchnorm": ("71fa48e4c1860b1b", "71a1170b33515840"),
    "dropout": ("aa20a57465e84ec7", "1702a9b221b38bbe"),
    "label_smoothing": ("a021d3c74fcac93d", "8351446b1b8eda12"),
    "lr_batch": ("572ca5f2b116f896", "3c6581501ce0e84b"),
    "n_concat": ("e651812eb2cd88df", "37dde218bc6a687b"),
    "weighted_loss": ("e7833acd797899dc", "d93d0d21655a426c"),  # since it declared its budget_note
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_converged_study_hashes_are_unchanged(name, monkeypatch):
    from ablation.study import load_study

    monkeypatch.delenv("ABLATION_HOME", raising=False)  # the shipped studies
    quick, full = PINNED[name]
    assert load_study(name).hash == quick
    assert load_study(name, scale="full").hash == full
