"""Rebuild a logged run's model and predict a test set in Kaggle's format."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ablation import tracking
from ablation.errors import DataError, TrackingError


def load_run_model(run_id: str, tracking_uri: str | None = None):
    """(config, model) of a finished run, the weights loaded with weights_only."""
    import torch

    from ablation.config import build, read_toml
    from ablation.models import create_model

    c = tracking.client(tracking_uri)
    try:
        c.get_run(run_id)
    except Exception:
        raise TrackingError(
            f"run '{run_id}' is not in the tracking store {c.tracking_uri}; find run ids with `ablation ui`"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cfg_path = tracking.download_artifact(c, run_id, "config.toml", tmp)
            spec_path = tracking.download_artifact(c, run_id, "model.json", tmp)
            weights = tracking.download_artifact(c, run_id, "model.pt", tmp)
        except Exception:
            raise TrackingError(
                f"run '{run_id}' has no saved model (config.toml, model.json, model.pt); "
                "only finished training runs can predict"
            ) from None
        cfg = build(_own_fields(read_toml(cfg_path)), f" (run {run_id})")
        spec = json.loads(spec_path.read_text())
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad file; its reason stays whole, on one line
            raise TrackingError(f"the model of run '{run_id}' cannot be loaded ({' '.join(str(e).split())}); "
                                "re-train the run") from None
    # runs logged before the width was read from the data had 39-dim frames
    model = create_model(spec["name"], n_concat=spec["n_concat"], frame_dim=spec.get("frame_dim", 39),
                         n_classes=spec["n_classes"], **spec["kwargs"])
    model.load_state_dict(state)
    model.frame_dim = spec.get("frame_dim", 39)
    return cfg, model


def _own_fields(data: dict) -> dict:
    """Runs logged before each family owned its fields carry every family's
    [model] fields: keep the run's own family's."""
    from ablation.config import section_class
    from ablation.models import list_models

    model = data.get("model", {})
    if model.get("name", "mlp") in list_models():
        own = section_class(model.get("name", "mlp")).model_fields
        data = {**data, "model": {k: v for k, v in model.items() if k in own}}
    return data


def write_submission(run_id: str, data_spec: str, out: str | Path, tracking_uri: str | None = None) -> int:
    """Write ``Id,Class`` for every test frame (test_split order); returns the row count."""
    import pandas as pd
    import torch

    from ablation.data.sources import load_dataset
    from ablation.train import predict

    cfg, model = load_run_model(run_id, tracking_uri)
    ds = load_dataset(data_spec)
    if ds.test is None:
        raise DataError(f"{data_spec} has no test set to predict")
    if ds.test.frame_dim != model.frame_dim:
        raise DataError(f"{data_spec} has {ds.test.frame_dim}-dim frames but run '{run_id}' was trained on "
                        f"{model.frame_dim}-dim ones; predict with the features the run was trained on")
    preds, _ = predict(model, cfg, ds.test, torch.device("cpu"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".submission-", suffix=".csv", dir=out.parent)
    os.close(fd)
    try:
        pd.DataFrame({"Id": np.arange(len(preds)), "Class": preds}).to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(preds)
