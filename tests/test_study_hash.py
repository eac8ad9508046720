"""The shipped converged studies' hashes on the default corpus
(synthphone:small-v2): a study whose hash changes is a new study (its runs
must be re-run), so a change to the hash payload or to a default that reaches
a cell's config must not touch these studies by accident. Change a pin only
together with the study (and its runs) on purpose."""

from __future__ import annotations

import pytest

PINNED = {  # name: (quick, full), on the default corpus synthphone:small-v2
    "activation": ("a088303a650ca434", "a79678d59b89d2fc"),
    "architecture": ("5133767a04eacd0e", "085dc5d9fc9ab3a2"),
    "batchnorm": ("9c08fed9f92acb7e", "f43a6a91fbac3b7c"),
    "dropout": ("87e78c8a8ef1aabe", "e628370d5a4ccd48"),
    "label_smoothing": ("b0309142c4b5d9d7", "b9f47aa010bff495"),
    "lr_batch": ("0c50b6aae1bf7851", "7e250e9ea2ec14fd"),
    "n_concat": ("7a0c27f2f560270a", "917d01f9d6a0804c"),
    "weighted_loss": ("fc6252fc2ec63f7d", "5cf00afd5297bbf4"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_converged_study_hashes_are_unchanged(name, monkeypatch):
    from ablation.study import load_study

    monkeypatch.delenv("ABLATION_HOME", raising=False)  # the shipped studies
    quick, full = PINNED[name]
    assert load_study(name).hash == quick
    assert load_study(name, scale="full").hash == full
