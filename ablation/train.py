"""Fit and evaluate one experiment. No Optuna or MLflow in here: whoever calls
``fit`` passes callbacks that see each epoch's metrics (and may stop the run
by raising)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ablation.config import ExperimentConfig
from ablation.data.corpus import Corpus, Splits
from ablation.errors import ConfigError, DivergedError
from ablation.metrics import EvalResult, evaluate_predictions

EpochCallback = Callable[[int, dict], None]


@dataclass
class FitResult:
    model: torch.nn.Module
    model_kwargs: dict
    history: list[dict]
    best_epoch: int
    epochs_run: int
    train_time_s: float
    frames_per_s: float
    val: EvalResult
    test: EvalResult | None
    n_params: int
    macs_per_frame: int
    device: str
    eval_time_s: float = 0.0  # validation after every epoch, and the test split at the end
    steps_per_epoch: int = 0
    steps_total: int = 0  # optimizer steps taken over every epoch run

    def final_metrics(self) -> dict[str, float]:
        out = {
            **self.val.summary("val"),
            "n_params": self.n_params,
            "macs_per_frame": self.macs_per_frame,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "train_time_s": self.train_time_s,
            "eval_time_s": self.eval_time_s,
            "steps_per_epoch": self.steps_per_epoch,
            "steps_total": self.steps_total,
            "frames_per_s": self.frames_per_s,
        }
        if self.test is not None:
            out.update({"test.acc": self.test.acc, "test.macro_f1": self.test.macro_f1})
        return out


# ---- pieces ----------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("The 'train.device' parameter is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_kwargs(cfg: ExperimentConfig, n_classes: int = 41, frame_dim: int = 39) -> dict:
    """The model's own kwargs from the config, with the size solved when a
    parameter budget is set (for ``n_classes`` outputs of ``frame_dim``-wide
    frames: the head and the first layer count too)."""
    from ablation.models import model_fields, sizing_fields, solve_for_budget

    accepted = model_fields(cfg.model.name)  # raises ConfigError on an unknown model
    kwargs = {k: v for k, v in cfg.model.model_dump().items() if k in accepted}
    if cfg.model.param_budget > 0:
        kwargs.pop(sizing_fields(cfg.model.name)[0], None)
        kwargs, _ = solve_for_budget(
            cfg.model.name, cfg.model.param_budget, n_concat=cfg.features.n_concat, n_classes=n_classes,
            frame_dim=frame_dim, **kwargs
        )
    return kwargs


def build_model(cfg: ExperimentConfig, n_classes: int, frame_dim: int = 39) -> tuple[torch.nn.Module, dict]:
    from ablation.models import create_model

    kwargs = model_kwargs(cfg, n_classes, frame_dim)
    torch.manual_seed(cfg.train.seed)
    model = create_model(cfg.model.name, n_concat=cfg.features.n_concat, frame_dim=frame_dim,
                         n_classes=n_classes, **kwargs)
    return model, kwargs


def class_weights(labels: np.ndarray, n_classes: int, beta: float) -> torch.Tensor | None:
    """Weights proportional to frequency^-beta, scaled so the frame-weighted
    mean weight is 1 (the loss keeps its scale). beta = 0: no weighting."""
    if beta == 0.0:
        return None
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    freq = np.maximum(counts, 1.0) / max(counts.sum(), 1.0)
    w = freq ** (-beta)
    # real counts, not the floored ones: an absent class has no frames to average over
    w /= float(np.sum(counts * w) / max(counts.sum(), 1.0))
    return torch.tensor(w, dtype=torch.float32)


# schedules whose lr at a step does not depend on the epoch cap (warmup counts in epochs): under
# them the first epochs of a run at a longer cap are the same run (the budget check relies on it)
CAP_FREE_SCHEDULES = ("constant", "plateau")


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base lr at ``step`` (0-based): linear warmup, then
    constant or cosine decay to zero at ``total_steps``. ``plateau`` is
    constant here: its cuts follow the val metric (``Plateau``), not the step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule in CAP_FREE_SCHEDULES:
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class Plateau:
    """The ``plateau`` schedule's cuts: after every epoch that brings no new best
    of the early-stopping metric the lr is multiplied by ``factor``, down to
    ``floor`` of the base lr; a new best keeps it. The lr never anneals towards 0
    at the cap, so a run's best epoch is the net's, and with early stopping
    (patience p) a run gets p - 1 cuts before it ends. ``scale`` is 1 for every
    other schedule."""

    enabled: bool = False
    factor: float = 0.5
    floor: float = 0.125  # three halvings; above the 10% the still-improving rule calls annealed
    scale: float = 1.0
    best: float = -math.inf

    def observe(self, score: float) -> bool:
        """One epoch's score; True when it cut the lr."""
        if score > self.best:
            self.best = score
            return False
        cut = max(self.scale * self.factor, self.floor) if self.enabled else self.scale
        changed, self.scale = cut != self.scale, cut
        return changed


def make_optimizer(cfg: ExperimentConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, fused=fused)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def batches(cfg: ExperimentConfig, model: torch.nn.Module, corpus: Corpus, train: bool,
            device: torch.device | str = "cpu"):
    """The batch plan for ``corpus``: window batches for window models,
    utterance or chunk batches for sequence models. Windows are gathered on
    ``device`` (the corpus is copied there once)."""
    from ablation.data.sequences import SequenceBatches
    from ablation.data.windows import WindowBatches

    n = cfg.features.n_concat
    if getattr(model, "input_mode", "window") == "window":
        size = cfg.optim.batch_size if train else cfg.train.eval_batch_size
        return WindowBatches(corpus, n, size, shuffle=train, seed=cfg.train.seed, device=device)
    max_frames = cfg.optim.max_frames if train else max(cfg.optim.max_frames, cfg.train.eval_batch_size * 4)
    return SequenceBatches(corpus, max_frames, shuffle=train, seed=cfg.train.seed,
                           chunk_len=cfg.train.chunk_len or None, n=n, device=device)


def _indexed(plan):
    """``(batch, frame_idx)`` pairs in plan order; padding cells have index -1."""
    if hasattr(plan, "iter_indexed"):
        for x, y, lengths, idx in plan.iter_indexed():
            yield (x, y, lengths), idx
        return
    start = 0
    for x, y in plan:
        yield (x, y), torch.arange(start, start + x.shape[0])
        start += x.shape[0]


def _forward(model, batch, device):
    """(logits [M, C], targets [M] or None) for a window or a sequence batch."""
    if getattr(model, "input_mode", "window") == "window":
        x, y = batch
        y = None if y is None else y.to(device, non_blocking=True)
        return model(x.to(device, non_blocking=True)), y
    x, y, lengths = batch
    logits = model(x.to(device, non_blocking=True), lengths.cpu())
    y = None if y is None else y.reshape(-1).to(device, non_blocking=True)
    return logits.reshape(-1, logits.shape[-1]), y


@torch.no_grad()
def predict(model: torch.nn.Module, cfg: ExperimentConfig, corpus: Corpus, device: torch.device,
            loss_fn=None) -> tuple[np.ndarray, float]:
    """Predicted class per frame (in corpus frame order) and the mean loss
    (NaN when the corpus is unlabelled or no loss is given)."""
    model.eval()
    plan = batches(cfg, model, corpus, train=False, device=device)
    preds = np.empty(corpus.n_frames, dtype=np.int64)
    total_loss, total_n = 0.0, 0
    for batch, frame_idx in _indexed(plan):
        logits, y = _forward(model, batch, device)
        frame_idx = frame_idx.reshape(-1).to(logits.device)
        keep = frame_idx >= 0
        logits, frame_idx = logits[keep], frame_idx[keep]
        preds[frame_idx.cpu().numpy()] = logits.argmax(-1).cpu().numpy()
        if loss_fn is not None and y is not None:
            y = y[keep]
            total_loss += float(loss_fn(logits.float(), y)) * len(y)
            total_n += len(y)
    return preds, (total_loss / total_n if total_n else float("nan"))


def evaluate(model, cfg, corpus: Corpus, device, loss_fn=None) -> EvalResult:
    preds, loss = predict(model, cfg, corpus, device, loss_fn)
    return evaluate_predictions(corpus.labels, preds, corpus.n_classes, loss)


# ---- one training step ------------------------------------------------------


@dataclass
class Trainee:
    """A model and what trains it: what ``train_step`` needs, built by ``make_trainee``."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    grad_clip: float = 0.0
    device: torch.device = torch.device("cpu")
    amp: bool = False  # bfloat16 autocast (on CUDA)
    plateau: Plateau = field(default_factory=Plateau)

    def observe(self, score: float) -> None:
        """An epoch's early-stopping score: the plateau schedule may cut the lr, from the next step on."""
        if self.plateau.observe(score):
            for group, base, factor in zip(self.opt.param_groups, self.sched.base_lrs, self.sched.lr_lambdas):
                group["lr"] = base * factor(self.sched.last_epoch)


def make_trainee(cfg: ExperimentConfig, model: torch.nn.Module, steps_per_epoch: int,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 device: torch.device | str = "cpu",
                 optimizer: Callable[[ExperimentConfig, torch.nn.Module], torch.optim.Optimizer] = make_optimizer,
                 ) -> Trainee:
    """Optimizer and lr schedule of ``cfg`` for ``model`` (already on ``device``).
    The schedule spans ``train.epochs`` epochs of ``steps_per_epoch`` steps
    (with early stopping, the epoch cap). ``optimizer`` stands in for
    ``make_optimizer`` (the benchmarks time other optimizer settings)."""
    device = torch.device(device)
    opt = optimizer(cfg, model)
    total = steps_per_epoch * cfg.train.epochs
    warmup = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    plateau = Plateau(enabled=cfg.optim.schedule == "plateau")
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, cfg.optim.schedule) * plateau.scale)
    return Trainee(model, opt, sched, loss_fn, cfg.optim.grad_clip, device, device.type == "cuda", plateau)


def train_step(t: Trainee, batch: tuple, bookkeeping: bool = True,
               laps: list[float] | None = None) -> tuple[int, float, int]:
    """One optimizer step on ``batch`` as the plan yields it (window ``(x, y)``;
    sequence ``(x, y, lengths)``, or lengths ``None`` / left out to run every sequence to its
    padded end): forward, loss, finiteness check, backward, gradient clipping,
    optimizer and schedule step, running loss and accuracy.

    Returns ``(frames, loss * frames, correct)``; raises ``DivergedError``
    (epoch and step 0: the caller knows them) on a non-finite loss.
    ``bookkeeping=False`` leaves out the check and the running figures
    (returned as 0), so a benchmark can measure what they cost; ``laps``, when
    given, receives ``time.perf_counter()`` after the forward and loss, the
    backward, the optimizer and the bookkeeping (a benchmark's phase times)."""
    model, device = t.model, t.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp):
        if getattr(model, "input_mode", "window") == "window" or (len(batch) == 3 and batch[2] is not None):
            logits, y = _forward(model, batch, device)
        else:  # a sequence batch without lengths: every sequence runs to the padded end
            x, y = batch[0], batch[1]
            logits = model(x.to(device, non_blocking=True))
            logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1).to(device, non_blocking=True)
        loss = t.loss_fn(logits.float(), y)
    if laps is not None:
        laps.append(time.perf_counter())
    if bookkeeping and not torch.isfinite(loss):
        raise DivergedError(0, 0, float(loss.detach()))
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    if t.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
    if laps is not None:
        laps.append(time.perf_counter())
    t.opt.step()
    t.sched.step()
    if laps is not None:
        laps.append(time.perf_counter())
    if not bookkeeping:
        out = int(y.shape[0]), 0.0, 0
    else:
        with torch.no_grad():
            keep = y >= 0
            n = int(keep.sum())
            out = n, float(loss) * n, int((logits.argmax(-1)[keep] == y[keep]).sum())
    if laps is not None:
        laps.append(time.perf_counter())
    return out


# ---- the loop --------------------------------------------------------------


def fit(cfg: ExperimentConfig, splits: Splits, callbacks: Iterable[EpochCallback] = (),
        progress: bool = False) -> FitResult:
    """Train on ``splits.train`` for up to ``train.epochs`` epochs, stopping
    early once ``train.patience`` epochs in a row fail to improve
    ``train.early_stop_metric`` on the selection split (``selection_split``);
    restore the best epoch's weights and evaluate them on val and (when
    labelled) test. Each step is ``train_step``."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    train_c, val_c = splits.train, splits.val
    select_c = selection_split(val_c, cfg.train.select_fraction)
    n_classes = train_c.n_classes
    model, kwargs = build_model(cfg, n_classes, train_c.frame_dim)
    model.to(device)

    weights = class_weights(train_c.labels, n_classes, cfg.loss.class_weight_beta)
    eps = cfg.loss.label_smoothing
    w_dev = weights.to(device) if weights is not None else None

    def loss_fn(logits, y):
        return F.cross_entropy(logits, y, weight=w_dev, label_smoothing=eps, ignore_index=-100)

    def eval_loss(logits, y):  # plain CE, comparable across loss settings
        return F.cross_entropy(logits, y, ignore_index=-100)

    train_plan = batches(cfg, model, train_c, train=True, device=device)
    steps_per_epoch = len(train_plan)
    trainee = make_trainee(cfg, model, steps_per_epoch, loss_fn, device)

    best_score, best_state, best_epoch, bad_epochs = -math.inf, None, 0, 0
    history: list[dict] = []
    train_time = eval_time = 0.0
    train_frames = steps_total = 0
    bar = _progress(cfg.train.epochs, steps_per_epoch, progress)

    for epoch in range(1, cfg.train.epochs + 1):
        model.train()
        train_plan.set_epoch(epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        for step, batch in enumerate(train_plan, start=1):
            try:
                n, loss_n, right = train_step(trainee, batch)
            except DivergedError as e:
                raise DivergedError(epoch, step, e.loss) from None
            loss_sum, correct, seen = loss_sum + loss_n, correct + right, seen + n
            if bar is not None:
                bar.update(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time
        train_frames += seen
        steps_total += step

        t0 = time.perf_counter()
        val = evaluate(model, cfg, select_c, device, eval_loss)
        eval_time += time.perf_counter() - t0
        metrics = {
            "epoch.train_loss": loss_sum / max(seen, 1),
            "epoch.train_acc": correct / max(seen, 1),
            "epoch.val_loss": val.loss,
            "epoch.val_acc": val.acc,
            "epoch.val_macro_f1": val.macro_f1,
            "epoch.lr": trainee.opt.param_groups[0]["lr"],
            "epoch.steps": step,
            "epoch.frames_per_s": seen / max(epoch_time, 1e-9),
        }
        history.append({"epoch": epoch, **metrics})
        if bar is not None:
            bar.set_postfix(epoch=epoch, train_acc=f"{metrics['epoch.train_acc']:.3f}", val_acc=f"{val.acc:.3f}")
        for cb in callbacks:
            try:
                cb(epoch, metrics)
            except BaseException as e:  # a callback ending the run early (pruning, a stop) carries the time spent
                e.train_time_s, e.eval_time_s = train_time, eval_time
                raise

        score = {"val.acc": val.acc, "val.loss": -val.loss, "val.macro_f1": val.macro_f1}[cfg.train.early_stop_metric]
        trainee.observe(score)
        if score > best_score:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_state, best_val = copy.deepcopy(model.state_dict()), val
        else:
            bad_epochs += 1
            if cfg.train.patience and bad_epochs >= cfg.train.patience:
                break
    if bar is not None:
        bar.close()

    model.load_state_dict(best_state)
    if select_c is val_c:
        val = best_val  # the best epoch's own evaluation: same weights, eval mode, so the same predictions
    else:  # the epoch was picked on a subsample: the reported metric is on the whole split
        t0 = time.perf_counter()
        val = evaluate(model, cfg, val_c, device, eval_loss)
        eval_time += time.perf_counter() - t0
    test = None
    if splits.test is not None and splits.test.labels is not None:
        t0 = time.perf_counter()
        test = evaluate(model, cfg, splits.test, device, eval_loss)
        eval_time += time.perf_counter() - t0
    count = model.param_count()
    return FitResult(
        model=model,
        model_kwargs=kwargs,
        history=history,
        best_epoch=best_epoch,
        epochs_run=len(history),
        train_time_s=train_time,
        eval_time_s=eval_time,
        frames_per_s=train_frames / max(train_time, 1e-9),
        val=val,
        test=test,
        n_params=count,
        macs_per_frame=model.macs_per_frame(),
        device=str(device),
        steps_per_epoch=steps_per_epoch,
        steps_total=steps_total,
    )


def selection_split(val: Corpus, fraction: float) -> Corpus:
    """The val utterances that pick the best epoch: the first ``ceil(fraction * n)``
    of the split (which follows ``train.seed``, so every arm at a seed gets the
    same frames); the whole split when ``fraction`` is 1."""
    if fraction >= 1.0:
        return val
    keep = max(1, math.ceil(fraction * val.n_utts))
    return val.subset(np.arange(keep), name=f"{val.name}[select {keep}/{val.n_utts}]")


def _progress(epochs: int, steps: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs * steps, unit="step", leave=False, dynamic_ncols=True)
