"""The training engine on small hand-built corpora: class weights, the loss,
the lr schedule, determinism, early stopping, divergence, sequence models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ablation import train
from ablation.config import build
from ablation.data.corpus import Dataset, Splits, make_splits
from ablation.data.sources import from_utterances
from ablation.data.windows import WindowBatches
from ablation.errors import DivergedError
from ablation.metrics import evaluate_predictions
from ablation.train import class_weights, fit, lr_factor, predict

C = 5
NAMES = tuple(f"c{i}" for i in range(C))


def make_corpus(n_utts: int, seed: int, learnable: bool = True, name: str = "hand"):
    """Utterances of 20-40 frames: runs of 3-8 frames of one class, features
    the class mean plus noise (or pure noise with random labels)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).normal(0.0, 0.6, (C, 39))
    feats, labs, ids = [], [], []
    for u in range(n_utts):
        t = int(rng.integers(20, 41))
        if learnable:
            lab = np.concatenate([np.full(int(rng.integers(3, 9)), rng.integers(0, C)) for _ in range(t)])[:t]
            x = means[lab] + rng.normal(0.0, 1.0, (t, 39))
        else:
            lab, x = rng.integers(0, C, t), rng.normal(0.0, 1.0, (t, 39))
        feats.append(x.astype(np.float32))
        labs.append(lab)
        ids.append(f"s{u % 4}-1-{u}")
    return from_utterances(name, feats, labs, ids, NAMES)


def hand_splits(n_utts: int = 40, seed: int = 1, learnable: bool = True, test: bool = False) -> Splits:
    ds = Dataset("hand:x", make_corpus(n_utts, seed, learnable), make_corpus(8, 100 + seed, name="t") if test else None)
    return make_splits(ds, 0.25, seed=0)


def config_for(**over):
    data = {
        "model": {"name": "mlp", "depth": 1, "width": 16},
        "optim": {"batch_size": 64, "lr": 1e-2, "schedule": "constant"},
        "train": {"epochs": 2, "device": "cpu"},
    }
    if over.get("model__name", "mlp") != "mlp":
        data["model"] = {}  # another family: its own fields only
    for key, value in over.items():
        sec, field = key.split("__")
        data.setdefault(sec, {})[field] = value
    return build(data)


@pytest.fixture(scope="module")
def splits() -> Splits:
    return hand_splits(test=True)


# ---- class weights ----------------------------------------------------------


def test_class_weights_against_a_hand_computation():
    labels = np.array([0] * 6 + [1] * 3 + [2])
    w = class_weights(labels, 3, beta=1.0)
    # freq = (.6, .3, .1); w ~ 1/freq, scaled by sum(freq / freq) = 3
    assert w.tolist() == pytest.approx([1 / 1.8, 1 / 0.9, 1 / 0.3], rel=1e-6)
    half = class_weights(labels, 3, beta=0.5)
    raw = np.array([0.6, 0.3, 0.1]) ** -0.5
    assert half.tolist() == pytest.approx(list(raw / (0.6 * raw[0] + 0.3 * raw[1] + 0.1 * raw[2])), rel=1e-6)
    for weights in (w, half):
        assert weights.dtype == torch.float32
        assert float(weights[labels].mean()) == pytest.approx(1.0, rel=1e-6)  # the loss keeps its scale


def test_class_weights_keep_a_frame_mean_of_one_with_an_absent_class():
    labels = np.array([0] * 6 + [1] * 3 + [2])
    w = class_weights(labels, 4, beta=1.0)
    assert float(w[labels].mean()) == pytest.approx(1.0, rel=1e-6)
    assert w[:3].tolist() == pytest.approx([1 / 1.8, 1 / 0.9, 1 / 0.3], rel=1e-6)
    assert math.isfinite(float(w[3]))


def test_beta_zero_means_no_weights():
    assert class_weights(np.array([0, 0, 1]), 2, beta=0.0) is None


# ---- the loss -----------------------------------------------------------------


def hand_loss(logits: np.ndarray, y: np.ndarray, w: np.ndarray | None, eps: float) -> float:
    """PyTorch's weighted, label-smoothed cross-entropy (mean reduction):
    sum_i [(1 - eps) w[y_i] nll_i + eps / C * sum_c w[c] (-log p_ic)] / sum_i w[y_i].
    The smoothing term weighs each class by its own weight, not by the
    target's: it is NOT the target-weighted mean of CE against the smoothed
    target (1 - eps) one-hot + eps / C."""
    logits = logits.astype(np.float64)
    n, c = logits.shape
    w = np.ones(c) if w is None else w.astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    nll = -logp[np.arange(n), y]
    smooth = -(logp * w[None, :]).sum(1)
    return float(((1 - eps) * w[y] * nll + eps / c * smooth).sum() / w[y].sum())


def test_pytorch_weighted_smoothed_cross_entropy_semantics():
    rng = np.random.default_rng(3)
    logits, y = rng.normal(0, 2, (6, 4)), np.array([0, 1, 3, 3, 2, 0])
    w, eps = np.array([0.5, 1.0, 2.0, 3.0]), 0.2
    got = F.cross_entropy(torch.tensor(logits), torch.tensor(y), weight=torch.tensor(w), label_smoothing=eps)
    assert float(got) == pytest.approx(hand_loss(logits, y, w, eps), rel=1e-12)
    # the naive reading (target weight times CE against the smoothed target) differs
    q = (1 - eps) * np.eye(4)[y] + eps / 4
    logp = torch.log_softmax(torch.tensor(logits), -1).numpy()
    naive = (w[y] * -(q * logp).sum(1)).sum() / w[y].sum()
    assert abs(float(got) - naive) > 1e-3
    # without weights both readings agree
    plain = F.cross_entropy(torch.tensor(logits), torch.tensor(y), label_smoothing=eps)
    assert float(plain) == pytest.approx(float(np.mean(-(q * logp).sum(1))), rel=1e-12)


def test_training_uses_the_weighted_smoothed_loss(splits, monkeypatch):
    """Every training step's loss equals the hand formula with the weights of
    the training labels; the epoch's train_loss is their frame-weighted mean."""
    calls = []
    real = F.cross_entropy

    def spy(logits, y, *args, **kw):
        out = real(logits, y, *args, **kw)
        if kw.get("label_smoothing", 0.0) or kw.get("weight") is not None:
            record = (logits.detach().numpy().copy(), y.numpy().copy(), kw.get("weight"), kw["label_smoothing"])
            calls.append((*record, float(out.detach())))
        return out

    monkeypatch.setattr(F, "cross_entropy", spy)
    cfg = config_for(loss__class_weight_beta=0.7, loss__label_smoothing=0.1, train__epochs=1)
    result = fit(cfg, splits)
    expected_w = class_weights(splits.train.labels, C, 0.7).numpy()
    steps = len(WindowBatches(splits.train, 1, 64))
    assert len(calls) == steps == math.ceil(splits.train.n_frames / 64)
    for logits, y, w, eps, value in calls:
        assert eps == 0.1
        assert np.array_equal(w.numpy(), expected_w)
        assert value == pytest.approx(hand_loss(logits, y, expected_w, 0.1), rel=1e-5)
    sizes = np.array([len(c[1]) for c in calls])
    mean = float(np.sum(sizes * np.array([c[4] for c in calls])) / sizes.sum())
    assert result.history[0]["epoch.train_loss"] == pytest.approx(mean, rel=1e-9)


def test_validation_loss_is_plain_cross_entropy(splits):
    cfg = config_for(loss__class_weight_beta=1.0, loss__label_smoothing=0.3)
    result = fit(cfg, splits)
    with torch.no_grad():
        logits = result.model.eval()(torch.from_numpy(splits.val.features)[:, None, :])
    plain = hand_loss(logits.numpy(), splits.val.labels, None, 0.0)
    assert result.val.loss == pytest.approx(plain, rel=1e-5)


# ---- lr schedule ----------------------------------------------------------------


def test_lr_factor_values():
    # warmup of 4 steps, then cosine to zero at step 20
    assert [lr_factor(s, 20, 4, "cosine") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 20, 4, "cosine") == 1.0
    assert lr_factor(12, 20, 4, "cosine") == pytest.approx(0.5)
    assert lr_factor(8, 20, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(20, 20, 4, "cosine") == pytest.approx(0.0)
    assert lr_factor(25, 20, 4, "cosine") == pytest.approx(0.0)  # clamped past the end
    assert lr_factor(5, 10, 0, "cosine") == pytest.approx(0.5)
    assert [lr_factor(s, 20, 2, "constant") for s in (0, 1, 2, 19)] == [0.5, 1.0, 1.0, 1.0]
    assert lr_factor(7, 10, 0, "constant") == 1.0


@pytest.mark.parametrize("schedule, warmup", [("cosine", 0.0), ("cosine", 0.5), ("constant", 1.0)])
def test_logged_lr_follows_the_schedule(splits, schedule, warmup):
    cfg = config_for(optim__schedule=schedule, optim__warmup_epochs=warmup, optim__lr=0.02, train__epochs=3)
    result = fit(cfg, splits)
    spe = math.ceil(splits.train.n_frames / 64)
    warm = int(round(warmup * spe))
    got = [h["epoch.lr"] for h in result.history]
    # after epoch e the scheduler has stepped e * spe times
    assert got == pytest.approx([0.02 * lr_factor(e * spe, 3 * spe, warm, schedule) for e in (1, 2, 3)], abs=1e-12)
    if schedule == "cosine":
        assert got[-1] == pytest.approx(0.0, abs=1e-12)


# ---- determinism -------------------------------------------------------------------


def _history(result):
    return [{k: v for k, v in h.items() if k != "epoch.frames_per_s"} for h in result.history]


def test_same_seed_same_run_other_seed_other_run(splits):
    cfg = config_for(model__dropout=0.2, train__epochs=2, train__seed=5)
    a, b = fit(cfg, splits), fit(cfg, splits)
    assert _history(a) == _history(b)
    assert (a.val.acc, a.val.loss, a.test.acc) == (b.val.acc, b.val.loss, b.test.acc)
    assert np.array_equal(a.val.confusion, b.val.confusion)
    for (k, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), k
    c = fit(config_for(model__dropout=0.2, train__epochs=2, train__seed=6), splits)
    assert c.history[0]["epoch.train_loss"] != a.history[0]["epoch.train_loss"]
    assert not torch.equal(c.model.head.weight, a.model.head.weight)


# ---- early stopping -----------------------------------------------------------------


def test_early_stopping_stops_and_restores_the_best_epoch():
    """Random labels: val accuracy wanders, so patience ends the run; the
    restored model scores exactly what its epoch logged."""
    sp = hand_splits(learnable=False)
    result = fit(config_for(train__epochs=12, train__patience=2, train__seed=2), sp)
    accs = [h["epoch.val_acc"] for h in result.history]
    assert result.epochs_run == len(accs) < 12
    assert result.best_epoch == int(np.argmax(accs)) + 1  # the first of equal maxima
    assert result.epochs_run == result.best_epoch + 2
    assert result.val.acc == accs[result.best_epoch - 1]
    assert result.final_metrics()["best_epoch"] == result.best_epoch


def test_early_stopping_keeps_the_weights_of_the_best_epoch(splits, monkeypatch):
    """Scripted val scores 0.3, 0.5, 0.4, 0.45: with patience 2 the run stops
    after epoch 4 and the final model is the one evaluated after epoch 2."""
    script = iter([0.3, 0.5, 0.4, 0.45])
    snapshots = []
    real = train.evaluate

    def scripted(model, cfg, corpus, device, loss_fn=None):
        result = real(model, cfg, corpus, device, loss_fn)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        result.acc = next(script, result.acc)
        return result

    monkeypatch.setattr(train, "evaluate", scripted)
    result = fit(config_for(train__epochs=10, train__patience=2), splits)
    assert [h["epoch.val_acc"] for h in result.history] == [0.3, 0.5, 0.4, 0.45]
    assert (result.epochs_run, result.best_epoch) == (4, 2)
    # snapshots: after epochs 1-4, then the test evaluation; val is the best epoch's own
    assert len(snapshots) == 5 and result.val.acc == 0.5
    final = result.model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert all(torch.equal(snapshots[4][k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[3][k]) for k in final)


def test_patience_zero_runs_every_epoch():
    sp = hand_splits(learnable=False)
    result = fit(config_for(train__epochs=5, train__patience=0, train__seed=2), sp)
    assert result.epochs_run == 5 and [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]


def test_a_callback_that_ends_the_run_early_gets_the_time_spent_so_far(splits):
    class Stop(Exception):
        pass

    def stop_at_2(epoch, metrics):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop) as err:
        fit(config_for(train__epochs=4), splits, callbacks=[stop_at_2])
    assert err.value.train_time_s > 0 and err.value.eval_time_s > 0  # two epochs trained and validated


# ---- divergence ------------------------------------------------------------------------


@pytest.mark.parametrize("epoch, step", [(1, 3), (2, 2)])
def test_a_nan_loss_raises_diverged_naming_epoch_and_step(splits, monkeypatch, epoch, step, poison_forward):
    spe = math.ceil(splits.train.n_frames / 64)
    poison_forward(monkeypatch, (epoch - 1) * spe + step, lambda out: out * float("nan"))
    seen = []
    with pytest.raises(DivergedError) as err:
        fit(config_for(train__epochs=3), splits, callbacks=[lambda e, m: seen.append(e)])
    assert (err.value.epoch, err.value.step) == (epoch, step)
    assert math.isnan(err.value.loss)
    assert f"at epoch {epoch}, step {step};" in str(err.value)
    assert seen == list(range(1, epoch))  # callbacks saw only the finished epochs


def test_an_infinite_feature_diverges_at_its_batch(splits):
    feats = splits.train.features.copy()
    frame = 100
    feats[frame, 0] = np.inf
    from dataclasses import replace

    bad = Splits(replace(splits.train, features=feats, meta={}), splits.val, None)
    cfg = config_for(train__seed=3)
    plan = WindowBatches(bad.train, 1, 64, shuffle=True, seed=3)
    plan.set_epoch(1)
    position = int(torch.nonzero(plan.order() == frame)[0, 0])
    with pytest.raises(DivergedError) as err:
        fit(cfg, bad)
    assert (err.value.epoch, err.value.step) == (1, position // 64 + 1)


# ---- model kinds, predictions in corpus order ----------------------------------------------


def _alone(model, cfg, corpus):
    """Each utterance predicted on its own, concatenated."""
    return np.concatenate(
        [predict(model, cfg, corpus.subset([u]), torch.device("cpu"))[0] for u in range(corpus.n_utts)]
    )


@pytest.mark.parametrize(
    "over",
    [
        dict(model__name="rnn", model__mode="sequence", model__hidden=8, model__layers=1, features__n_concat=3,
             optim__max_frames=90, train__eval_batch_size=1),
        dict(model__name="rnn", model__mode="sequence", model__hidden=8, model__layers=2, model__cell="gru",
             optim__max_frames=90, train__chunk_len=16, train__eval_batch_size=1),
        dict(model__name="rnn", model__mode="window", model__hidden=8, model__layers=1, features__n_concat=5,
             train__eval_batch_size=37),
        dict(features__n_concat=7, model__batchnorm=True, train__eval_batch_size=50),
    ],
    ids=["lstm-sequence", "gru-chunks", "lstm-window", "mlp-window"],
)
def test_models_fit_and_predict_in_corpus_order(splits, over):
    cfg = config_for(train__epochs=1, **over)
    result = fit(cfg, splits)
    assert result.epochs_run == 1 and result.best_epoch == 1
    for corpus in (splits.val, splits.test):
        preds, _ = predict(result.model, cfg, corpus, torch.device("cpu"))
        assert preds.shape == (corpus.n_frames,)
        assert np.array_equal(preds, _alone(result.model, cfg, corpus))
    # the reported metrics are those of these predictions
    val_preds, _ = predict(result.model, cfg, splits.val, torch.device("cpu"))
    again = evaluate_predictions(splits.val.labels, val_preds, C)
    assert result.val.acc == again.acc and np.array_equal(result.val.confusion, again.confusion)
    assert result.history[0]["epoch.val_acc"] == result.val.acc


def test_the_mlp_learns_a_learnable_corpus(splits):
    result = fit(config_for(train__epochs=3, optim__lr=3e-3), splits)
    assert result.val.acc > 0.8  # chance is about 0.2
    assert result.history[-1]["epoch.train_acc"] > result.history[0]["epoch.train_acc"] - 0.05


# ---- the result -----------------------------------------------------------------------------


def test_fit_result_counts(splits):
    result = fit(config_for(train__epochs=1), splits)
    # 39 -> 16 -> 5 with biases, by hand
    assert result.n_params == 39 * 16 + 16 + 16 * 5 + 5 == 725
    assert result.n_params == sum(p.numel() for p in result.model.parameters())
    assert result.macs_per_frame == 39 * 16 + 16 * 5
    assert result.model_kwargs["width"] == 16 and result.model_kwargs["depth"] == 1
    assert result.device == "cpu"
    final = result.final_metrics()
    assert final["n_params"] == 725 and final["epochs_run"] == 1
    assert final["val.acc"] == result.val.acc and final["test.acc"] == result.test.acc
    preds, _ = predict(result.model, config_for(train__epochs=1), splits.test, torch.device("cpu"))
    assert result.test.acc == float(np.mean(preds == splits.test.labels))


def test_a_parameter_budget_solves_the_width(splits):
    # depth 2, width w: (39w + w) + (w^2 + w) + (5w + 5) = w^2 + 46w + 5; w = 20 gives 1,325
    result = fit(config_for(train__epochs=1, model__param_budget=1330, model__depth=2), splits)
    assert result.model_kwargs["width"] == 20
    assert result.n_params == 20 * 20 + 46 * 20 + 5 == 1325


# ---- the step function, step counts, the selection subsample ------------------------


def test_fit_takes_exactly_the_exposed_train_step(splits):
    """One epoch of fit and one hand-driven pass of train_step over the same
    plan end with the same weights: fit's step is that function."""
    cfg = config_for(train__epochs=1)
    result = fit(cfg, splits)
    model, _ = train.build_model(cfg, splits.train.n_classes)
    plan = train.batches(cfg, model, splits.train, train=True)
    t = train.make_trainee(cfg, model, len(plan), lambda lg, y: F.cross_entropy(lg, y, ignore_index=-100))
    model.train()
    plan.set_epoch(1)
    frames = sum(train.train_step(t, batch)[0] for batch in plan)
    assert frames == splits.train.n_frames
    mine, theirs = model.state_dict(), result.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_step_counts_follow_the_batch_size(splits):
    result = fit(config_for(train__epochs=3, optim__batch_size=50), splits)
    per_epoch = math.ceil(splits.train.n_frames / 50)
    final = result.final_metrics()
    assert final["steps_per_epoch"] == per_epoch and final["steps_total"] == 3 * per_epoch
    assert [h["epoch.steps"] for h in result.history] == [per_epoch] * 3


def test_a_selection_fraction_picks_on_a_subsample_and_reports_the_whole_split(splits, monkeypatch):
    seen = []
    real = train.evaluate

    def spy(model, cfg, corpus, device, loss_fn=None):
        seen.append(corpus.n_frames)
        return real(model, cfg, corpus, device, loss_fn)

    monkeypatch.setattr(train, "evaluate", spy)
    result = fit(config_for(train__epochs=2, train__select_fraction=0.5), splits)
    sub = train.selection_split(splits.val, 0.5)
    assert sub.n_utts == math.ceil(splits.val.n_utts / 2) and sub.utt_ids == splits.val.utt_ids[: sub.n_utts]
    # two epochs on the subsample, the restored best epoch on the whole val split, then test
    assert seen == [sub.n_frames, sub.n_frames, splits.val.n_frames, splits.test.n_frames]
    assert int(result.val.confusion.sum()) == splits.val.n_frames
    assert train.selection_split(splits.val, 1.0) is splits.val


# ---- a longer cap (the budget check relies on it) ------------------------------------


@pytest.mark.parametrize("schedule", ["constant", "plateau", "cosine"])
def test_under_a_cap_free_schedule_a_longer_cap_begins_as_the_same_run(splits, schedule):
    """The budget check keeps a run that patience ended under a constant or plateau schedule as the
    run a longer cap would train: its first epochs are the same bit for bit. A cosine schedule spans
    the cap, so a longer cap trains another run from the first step."""
    short = fit(config_for(optim__schedule=schedule, train__epochs=2, train__seed=3), splits)
    longer = fit(config_for(optim__schedule=schedule, train__epochs=4, train__seed=3), splits)
    assert len(longer.history) == 4
    same = _history(longer)[:2] == _history(short)
    assert same == (schedule in train.CAP_FREE_SCHEDULES)
