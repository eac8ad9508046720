"""One experiment, end to end: data -> splits -> fit -> everything logged to an
MLflow run. Used by ``ablation train`` and by every study cell."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ablation import tracking
from ablation.config import ExperimentConfig
from ablation.data.corpus import Dataset, Splits, make_splits
from ablation.train import EpochCallback, FitResult, fit


@functools.lru_cache(maxsize=4)
def load_dataset_cached(spec: str) -> Dataset:
    from ablation.data.sources import load_dataset

    return load_dataset(spec)


def prepare(cfg: ExperimentConfig) -> tuple[Dataset, Splits]:
    """The dataset and its split; the split order follows ``train.seed`` so
    paired arms of a study see the same split for the same seed."""
    ds = load_dataset_cached(cfg.data.source)
    check_compatible(cfg, ds)
    splits = make_splits(ds, cfg.data.val_ratio, seed=cfg.train.seed, by=cfg.data.split_by, split=cfg.data.split)
    return ds, splits


def check_compatible(cfg: ExperimentConfig, ds: Dataset) -> None:
    """Refuse, before any run starts, what this data cannot do."""
    from ablation.errors import DataError

    pool = ds.pool
    _check_user_model(cfg, ds)
    if not pool.has_boundaries:
        from ablation.models import family

        if (cfg.model.name == "rnn" and cfg.model.mode == "sequence") or family(cfg.model.name).input == "sequence":
            raise DataError(
                f"{ds.source} has no utterance boundaries, so sequence models cannot use it; "
                "use model.mode = 'window' or an mlp"
            )
        if cfg.features.n_concat > pool.prewindowed:
            raise DataError(
                f"{ds.source} holds fixed {pool.prewindowed}-frame windows with no utterance boundaries; "
                f"features.n_concat = {cfg.features.n_concat} needs more; use n_concat <= {pool.prewindowed}"
            )


def _check_user_model(cfg: ExperimentConfig, ds: Dataset) -> None:
    """A user's family is built once (shapes only) for this data's frame width and
    class count, so an error in its code is one line before anything is enqueued."""
    from ablation.models import count_params, family
    from ablation.train import model_kwargs

    if family(cfg.model.name).user:
        kwargs = model_kwargs(cfg, ds.pool.n_classes, ds.pool.frame_dim)
        count_params(cfg.model.name, n_concat=cfg.features.n_concat, frame_dim=ds.pool.frame_dim,
                     n_classes=ds.pool.n_classes, **kwargs)


def split_text(cfg: ExperimentConfig) -> str:
    """Which split this config uses, in words (train, predict and data info print it)."""
    from ablation.data.corpus import describe_split

    return describe_split(cfg.data.split, cfg.train.seed, cfg.data.val_ratio)


def data_sizes(splits: Splits) -> dict:
    out = {}
    for name in ("train", "val", "test"):
        c = getattr(splits, name)
        if c is not None:
            out[name] = {"utterances": c.n_utts, "frames": c.n_frames}
    return out


def ceilings(splits: Splits) -> dict[str, float]:
    out = {}
    for name in ("val", "test"):
        c = getattr(splits, name)
        if c is not None and c.ceiling() is not None:
            out[f"ceiling.{name}_acc"] = c.ceiling()
    return out


def arm_ceilings(cfg: ExperimentConfig, splits: Splits) -> dict[str, float]:
    """The information ceiling of this arm's input on val and test (``ceiling.arm.*``), when known.

    Computed once per (corpus, view, split) and cached, so only the first run of a view pays for it.
    """
    from ablation.data.ceiling import info_ceilings, view_of
    from ablation.errors import DataError

    view = view_of(cfg)
    out = {}
    for name in ("val", "test"):
        c = getattr(splits, name)
        if c is not None and c.has_ceiling:
            try:
                got = info_ceilings(c, [view])
            except DataError:  # e.g. a nearly noiseless custom corpus: the run stands, its input ceiling is unknown
                got = {}
            if view in got:
                out[f"ceiling.arm.{name}_acc"] = got[view]
    return out


def run_tags(cfg: ExperimentConfig, ds: Dataset, splits: Splits) -> dict[str, str]:
    from ablation.data.ceiling import view_of

    return {
        tracking.TAG + "ceiling.view": view_of(cfg).label,
        tracking.TAG + "experiment": cfg.name,
        tracking.TAG + "data.source": ds.source,
        tracking.TAG + "data.fingerprint": ds.fingerprint,
        tracking.TAG + "data.sizes": json.dumps(data_sizes(splits)),
        tracking.TAG + "data.split": split_text(cfg),
        # read from the data, not assumed: what every model of the run was built for
        tracking.TAG + "data.frame_dim": str(splits.train.frame_dim),
        tracking.TAG + "data.n_classes": str(splits.train.n_classes),
        tracking.TAG + "git.commit": tracking.git_commit(),
    }


def run_params(cfg: ExperimentConfig, built: dict) -> tuple[dict, dict]:
    """(params, asked): the config's flat values that apply to this run, with
    the model's fields as built (a width solved for a budget is
    ``model.width``), and what the experiment asked for where it differs
    (logged as a tag).

    A field the run's training never reads is left out, as ``[model]`` holds
    only its family's fields: ``optim.momentum`` outside SGD, the sequence
    batching (``optim.max_frames``, ``train.chunk_len``) of a window model and
    the window batch size (``optim.batch_size``) of a sequence model. Only
    what is logged changes: the config, its TOML artifact and every hash made
    from it keep every field."""
    from ablation.data.ceiling import view_of

    window = view_of(cfg).kind == "window"
    unused = {"optim.momentum"} if cfg.optim.name != "sgd" else set()
    unused |= {"optim.max_frames", "train.chunk_len"} if window else {"optim.batch_size"}
    params = {k: v for k, v in cfg.flat().items() if k not in unused}
    asked = {}
    for key, value in built.items():
        path = f"model.{key}"
        if params.get(path) != value:
            asked[path] = params.get(path)
        params[path] = value
    return params, asked


def execute(cfg: ExperimentConfig, run: tracking.Run | None = None, callbacks: Iterable[EpochCallback] = (),
            progress: bool = False, prepared: tuple[Dataset, Splits] | None = None) -> FitResult:
    """Fit ``cfg`` and log it to ``run`` (if given). Raises on failure; the
    caller's ``tracking.start_run`` marks the run FAILED with the reason."""
    ds, splits = prepared or prepare(cfg)
    cbs = list(callbacks)
    if run is not None:
        from ablation.train import model_kwargs

        params, asked = run_params(cfg, model_kwargs(cfg, splits.train.n_classes, splits.train.frame_dim))
        tags = run_tags(cfg, ds, splits)
        run.set_tags({**tags, tracking.TAG + "model.asked": json.dumps(asked, sort_keys=True),
                      tracking.GIT_COMMIT_TAG: tags[tracking.TAG + "git.commit"].removesuffix("-dirty")})
        run.log_params(params)
        cut = "course" if cfg.data.split == "course" else f"seed{cfg.train.seed}"
        run.log_datasets(ds.source, ds.fingerprint, data_sizes(splits), cut)
        cbs.insert(0, lambda epoch, metrics: run.log_metrics(metrics, step=epoch))
    result = fit(cfg, splits, callbacks=cbs, progress=progress)
    if run is not None:
        log_result(run, cfg, splits, result)
    return result


def log_result(run: tracking.Run, cfg: ExperimentConfig, splits: Splits, result: FitResult) -> None:
    import torch

    names = splits.train.class_names
    final = {**result.final_metrics(), **ceilings(splits), **arm_ceilings(cfg, splits)}
    for i, name in enumerate(names):
        final[f"recall.{name}"] = result.val.recall[i]
        final[f"precision.{name}"] = result.val.precision[i]
        if result.test is not None:
            final[f"test_recall.{name}"] = result.test.recall[i]
    run.log_metrics(final, step=result.epochs_run)
    # the model's arguments as built (the params say the same; this keeps them as one JSON), and the
    # intra-op threads it trained with: on a CPU a run's numbers depend on them (a sum's order changes),
    run.set_tags({tracking.TAG + "model.kwargs": json.dumps(result.model_kwargs, sort_keys=True),
                  tracking.TAG + "torch.threads": str(torch.get_num_threads()),
                  # the vectorised kernels torch used (``ablation.cli.cpu_kernels``): they round differently
                  tracking.TAG + "torch.cpu_kernels": torch.backends.cpu.get_cpu_capability()})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "config.toml").write_text(cfg.to_toml())
        spec = {"name": cfg.model.name, "n_concat": cfg.features.n_concat, "n_classes": len(names),
                "frame_dim": splits.train.frame_dim,
                "class_names": list(names), "kwargs": result.model_kwargs}
        (tmp / "model.json").write_text(json.dumps(spec, sort_keys=True))
        per_class_table(result, names).to_csv(tmp / "per_class.csv", index=False)
        np.savetxt(tmp / "confusion_val.csv", result.val.confusion, fmt="%d", delimiter=",",
                   header=",".join(names), comments="")
        confusion_png(result.val.confusion, names, tmp / "confusion_val.png")
        torch.save(result.model.state_dict(), tmp / "model.pt")
        for f in sorted(tmp.iterdir()):
            run.log_artifact(f)


def per_class_table(result: FitResult, names):
    import pandas as pd

    from ablation.metrics import per_class_table as table

    df = table(result.val, names).rename(columns=lambda c: c if c == "class" else f"val_{c}")
    if result.test is not None:
        t = table(result.test, names)
        df["test_support"], df["test_recall"], df["test_precision"] = t["support"], t["recall"], t["precision"]
    return pd.DataFrame(df)


def confusion_png(confusion: np.ndarray, names, path: Path) -> None:
    """The row-normalised confusion matrix as a PNG. Drawn on matplotlib's Agg canvas with fixed margins:
    no pyplot and no layout pass, which took most of a second of every cell."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = confusion.sum(axis=1, keepdims=True)
    norm = confusion / np.maximum(rows, 1)
    fig = Figure(figsize=(10, 9))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.9, bottom=0.08, top=0.95)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Validation confusion matrix (row-normalised: recall on the diagonal)")
    fig.colorbar(im, ax=ax, label="fraction of the true class's frames", fraction=0.04, pad=0.02)
    fig.savefig(path, dpi=80)
