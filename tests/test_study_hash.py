"""The shipped converged studies' hashes on the default corpus
(synthphone:small-v2): a study whose hash changes is a new study (its runs
must be re-run), so a change to the hash payload or to a default that reaches
a cell's config must not touch these studies by accident. Change a pin only
together with the study (and its runs) on purpose."""

from __future__ import annotations

import pytest

PINNED = {  # name: (quick, full), on the default corpus synthphone:small-v2
    "activation": ("d00d0abd98b09a12", "3d4cf9877e23beea"),
    "architecture": ("353501d6342f7869", "d092a07bae655795"),
    "batchnorm": ("12b1e5031b2c39e8", "934914596530a346"),
    "dropout": ("63ad8195129dade6", "9f24ec7a5410f442"),
    "label_smoothing": ("0c0c3880ec0c0343", "bcbf08207e776745"),
    "lr_batch": ("e7595d224e5f0970", "b7060e31e9966a5d"),
    "n_concat": ("ad859a07a515f1d1", "a4f342bcea0c3fef"),
    "weighted_loss": ("6848cb64ad1c5899", "64f0d877543b8b54"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_converged_study_hashes_are_unchanged(name, monkeypatch):
    from ablation.study import load_study

    monkeypatch.delenv("ABLATION_HOME", raising=False)  # the shipped studies
    quick, full = PINNED[name]
    assert load_study(name).hash == quick
    assert load_study(name, scale="full").hash == full
