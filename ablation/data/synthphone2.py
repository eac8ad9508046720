"""``synthphone`` version 2: words, coarticulation, speakers that survive CMVN, a noise covariance per class.

Same phones, durations, utterance lengths and features as version 1
(``synthphone``), with four changes to the generative model:

1. Words. A lexicon of ``n_words`` words, each a phone string drawn from the
   version-1 phone bigram (1 to 8 phones); utterances are word sequences under
   a Zipf unigram, a pause (class 0) after a word with ``word_pause_prob``.
   The HMM's chains are the lexicon's phone positions (3 sub-states each), so
   within a word the next phone is certain: long-range structure a sequence
   model can use and a short window cannot.
2. Coarticulation. Inside a word, a phone's first sub-state moves toward the
   previous phone's mean and its last toward the next one's, by the share
   ``coarticulation``: deltas and wider windows carry information.
3. Speakers. Each speaker's cepstra go through a linear mixing
   ``A = expm(speaker_warp * G)`` (``G`` Gaussian) after its offset. CMVN
   removes offsets and per-dimension scales but not a mixing of dimensions, so
   a speaker-disjoint split costs accuracy.
4. Noise. Frames are independent given the states (``rho = 0``); each broad
   class has its own covariance (a random correlation and scale).

The ceiling stays exact: given the speaker's (invertible) transform the clean
statics are known, and the model is an HMM with Gaussian emissions. Noise is
drawn per utterance, so the length batches (``plan_batches``) do not change
the sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import sparse
from scipy.linalg import expm

from ablation.data import hmm
from ablation.data import synthphone as v1
from ablation.data.corpus import Corpus, Dataset, frame_indices_of
from ablation.data.sequences import plan_batches

N_SUB, N_STATIC, N_CLASSES = v1.N_SUB, v1.N_STATIC, v1.N_CLASSES
FRAME_BUDGET = 20_000  # frames per batch: emissions of ~1,300 states stay a few hundred MB
SPEAKER_GROUP = 32  # speakers whose path sampling tables are held at once


@dataclass(frozen=True)
class Model:
    means: np.ndarray  # [S, 13]
    cross: sparse.csr_matrix  # [C, C]
    sub_frames: np.ndarray  # [S]
    chain_label: np.ndarray  # [C] the class of each chain
    state_class: np.ndarray  # [S] broad class (noise covariance) of each state
    chol: np.ndarray  # [K, 13, 13] noise covariance factors
    lead: int

    @property
    def whiten(self) -> np.ndarray:
        return np.linalg.inv(self.chol)

    @property
    def log_det(self) -> np.ndarray:
        return np.log(np.abs(np.diagonal(self.chol, axis1=1, axis2=2))).sum(axis=1)


def _lexicon(cfg, phone_cross: np.ndarray, rng) -> list[np.ndarray]:
    """Distinct phone strings drawn from the phone bigram (its start row, then row by row), most frequent first.

    Every phone is in some word, as every class is in libriphone: a phone the
    draw missed (a rare one, like ``zh``) starts a word that replaces one of
    the rarest, drawn from its own stream so the rest of the model is as drawn.
    """
    start = phone_cross[v1._LEAD, 1:N_CLASSES]
    nxt = phone_cross[1:N_CLASSES, 1:N_CLASSES]
    nxt = nxt / nxt.sum(axis=1, keepdims=True)

    def word(r, first=None):
        n = int(np.clip(1 + r.poisson(2.6), 1, 8))
        p = [int(r.choice(N_CLASSES - 1, p=start / start.sum())) if first is None else first]
        for _ in range(n - 1):
            p.append(int(r.choice(N_CLASSES - 1, p=nxt[p[-1]])))
        return tuple(p)

    words, seen = [], set()
    while len(words) < cfg.n_words:
        key = word(rng)
        if key not in seen:
            seen.add(key)
            words.append(key)
    rng_cover = np.random.default_rng(np.random.SeedSequence([cfg.model_seed, 3]))
    slot = len(words)
    while missing := sorted(set(range(N_CLASSES - 1)) - {q for w in words for q in w}):
        slot -= 1
        if slot < 0:
            break  # fewer words than phones: nothing left to replace
        others = {q for i, w in enumerate(words) if i != slot for q in w}
        if not set(words[slot]) <= others:
            continue  # the only word with one of its phones stays
        key = word(rng_cover, first=missing[0])
        while key in seen:
            key = word(rng_cover, first=missing[0])
        seen.add(key)
        words[slot] = key
    return [np.array(w) + 1 for w in words]  # class ids (0 is silence)


def build_model(cfg, rng) -> Model:
    base = v1._build_model(cfg, rng)  # phone sub-state means, durations and the bigram of version 1
    # the lexicon and the noise from streams of their own: a lexicon of another size keeps the same noise
    rng_words, rng_noise = (np.random.default_rng(int(s)) for s in rng.integers(0, 2**63, size=2))
    words = _lexicon(cfg, base.cross, rng_words)
    zipf = 1.0 / (np.arange(cfg.n_words) + 2.7) ** cfg.word_zipf
    unigram = zipf / zipf.sum()
    phones = np.concatenate(words)
    n_pos = len(phones)
    first = np.cumsum([0] + [len(w) for w in words[:-1]]) + 1  # chain of each word's first phone
    last = first + np.array([len(w) for w in words]) - 1
    pause, lead, trail = 0, n_pos + 1, n_pos + 2
    n_chains = n_pos + 3
    rows, cols, vals = [], [], []

    def link(src, dst, w):
        rows.extend(np.broadcast_to(src, np.shape(w)).ravel())
        cols.extend(np.broadcast_to(dst, np.shape(w)).ravel())
        vals.extend(np.ravel(w))

    inner = np.setdiff1d(np.arange(1, n_pos + 1), last)
    link(inner, inner + 1, np.ones(len(inner)))
    go_on = 1.0 - cfg.word_pause_prob - cfg.word_end_prob
    for src, share in ((np.array([pause]), 1.0), (np.array([lead]), 1.0), (last, go_on)):
        link(src[:, None], first[None, :], np.outer(np.full(len(src), share), unigram))
    link(last, np.full(len(last), pause), np.full(len(last), cfg.word_pause_prob))
    link(last, np.full(len(last), trail), np.full(len(last), cfg.word_end_prob))
    cross = sparse.csr_matrix((vals, (rows, cols)), shape=(n_chains, n_chains))

    # means per position: the phone's sub-states, the boundary ones pulled toward the word's neighbours
    sub = base.means[: N_CLASSES * N_SUB].reshape(N_CLASSES, N_SUB, N_STATIC)
    centre = sub.mean(axis=1)
    pos_means = sub[phones].copy()
    k = cfg.coarticulation
    has_prev = np.ones(n_pos, dtype=bool)
    has_prev[first - 1] = False
    has_next = np.ones(n_pos, dtype=bool)
    has_next[last - 1] = False
    prev_phone, next_phone = np.roll(phones, 1), np.roll(phones, -1)
    pos_means[has_prev, 0] += k * (centre[prev_phone[has_prev]] - pos_means[has_prev, 0])
    pos_means[has_next, -1] += k * (centre[next_phone[has_next]] - pos_means[has_next, -1])
    sil = sub[0]
    means = np.concatenate([sil[None], pos_means, sil[None], sil[None]]).reshape(-1, N_STATIC)
    chain_label = np.concatenate([[0], phones, [0, 0]])
    v1_frames = base.sub_frames.reshape(v1.N_CHAINS, N_SUB)
    sub_frames = np.concatenate([v1_frames[[0]], v1_frames[phones], v1_frames[[v1._LEAD, v1._TRAIL]]]).reshape(-1)

    # one noise covariance per broad class: a random correlation, a scale around noise_scale
    n_broad = len(v1._BROAD)
    chol = np.empty((n_broad, N_STATIC, N_STATIC))
    for c in range(n_broad):
        m = np.eye(N_STATIC) + 0.4 * rng_noise.normal(size=(N_STATIC, N_STATIC)) / np.sqrt(N_STATIC)
        cov = m @ m.T
        d = np.sqrt(np.diag(cov))
        scale = cfg.noise_scale * np.exp(cfg.class_noise_spread * rng_noise.normal())
        chol[c] = np.linalg.cholesky(scale**2 * cov / np.outer(d, d))
    state_class = np.repeat(v1._BROAD_OF[chain_label], N_SUB)
    return Model(means, cross, sub_frames, chain_label, state_class, chol, lead)


def _stay_probs(model: Model, rates: np.ndarray) -> np.ndarray:
    return 1.0 - 1.0 / np.maximum(model.sub_frames[None, :] * rates[:, None], 1.0)


@dataclass(frozen=True)
class Draw:
    model: Model
    spk_ids: np.ndarray
    utt_ids: tuple[str, ...]
    spk: np.ndarray
    lengths: np.ndarray
    offsets_spk: np.ndarray  # [n_speakers, 13]
    warp_spk: np.ndarray  # [n_speakers, 13, 13]
    stay_spk: np.ndarray
    paths: np.ndarray
    noise_seeds: list


def draw(cfg) -> Draw:
    rng_model = np.random.default_rng(np.random.SeedSequence([cfg.model_seed, 2]))
    seq = np.random.SeedSequence([cfg.seed, 2])
    rng_spk, rng_path = (np.random.default_rng(s) for s in seq.spawn(2))
    model = build_model(cfg, rng_model)
    spk_ids, utt_ids, spk, lengths = v1._utterances(cfg, rng_spk)
    rates = np.exp(rng_spk.normal(0.0, cfg.rate_sd, size=cfg.n_speakers))
    offsets_spk = rng_spk.normal(0.0, cfg.speaker_offset, size=(cfg.n_speakers, N_STATIC))
    g = rng_spk.normal(0.0, 1.0 / np.sqrt(N_STATIC), size=(cfg.n_speakers, N_STATIC, N_STATIC))
    warp_spk = np.stack([expm(cfg.speaker_warp * m) for m in g])
    stay_spk = _stay_probs(model, rates)
    paths = np.full((len(lengths), int(lengths.max())), -1, dtype=np.int16)
    for g0 in range(0, cfg.n_speakers, SPEAKER_GROUP):  # the sampling tables of a group of speakers at a time
        group = np.arange(g0, min(g0 + SPEAKER_GROUP, cfg.n_speakers))
        utts = np.flatnonzero(np.isin(spk, group))
        if len(utts):
            got = v1._sample_paths(model, stay_spk[group], spk[utts] - g0, lengths[utts], rng_path, lead=model.lead)
            paths[utts, : got.shape[1]] = got
    noise_seeds = seq.spawn(len(lengths) + 2)[2:]
    return Draw(model, spk_ids, utt_ids, spk, lengths, offsets_spk, warp_spk, stay_spk, paths, noise_seeds)


def clean_batches(d: Draw, which: np.ndarray | None = None):
    """``(utterance indices, states, clean statics)`` per length batch (``plan_batches``); noise per utterance."""
    idx_all = np.arange(len(d.lengths)) if which is None else np.asarray(which)
    for local in plan_batches(d.lengths[idx_all], FRAME_BUDGET):
        idx = idx_all[local]
        t_b = int(d.lengths[idx].max())
        states = d.paths[idx, :t_b].astype(np.int64)
        z = np.stack([np.random.default_rng(d.noise_seeds[u]).standard_normal((t_b, N_STATIC)) for u in idx])
        cls = d.model.state_class[np.maximum(states, 0)]
        noise = np.einsum("btij,btj->bti", d.model.chol[cls], z)
        yield idx, states, d.model.means[np.maximum(states, 0)] + noise


def chain_model(cfg, d: Draw):
    from ablation.data.ceiling import ChainModel

    n_states = len(d.model.means)
    states = d.paths[d.paths >= 0].astype(np.int64)
    prior = np.bincount(states, minlength=n_states) / len(states)
    start = np.eye(n_states)[d.model.lead * N_SUB]
    m = d.model
    return ChainModel(m.means, cfg.noise_scale, 0.0, m.cross, start, prior, m.state_class, m.whiten, m.log_det)


def phones(model: Model, post: np.ndarray) -> np.ndarray:
    """State posteriors ``[..., S]`` -> class posteriors ``[..., 41]``."""
    chain_post = post.reshape(*post.shape[:-1], -1, N_SUB).sum(axis=-1)
    onehot = np.eye(N_CLASSES)[model.chain_label]
    return chain_post @ onehot


def posteriors(m, clean, lengths, stay, init=None, final=None) -> np.ndarray:
    """Exact state posteriors ``[B, T, S]`` of whole utterances (from the start state, to the exit by default)."""
    log_emit = m.log_emit(clean, lengths)
    log_emit -= log_emit.max(axis=2, keepdims=True)
    emit = np.exp(log_emit, out=log_emit)
    init = m.start if init is None else init
    final = v1._exit_probs(stay) if final is None else final
    return hmm.chain_forward_backward(emit, lengths, stay, m.cross, init, final)


def observe(d: Draw, clean: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """What a speaker's cepstra look like: offset, then the speaker's mixing."""
    return np.einsum("bij,btj->bti", d.warp_spk[d.spk[idx]], clean + d.offsets_spk[d.spk[idx]][:, None, :])


def generate(cfg) -> Dataset:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return _generate(cfg)


def _generate(cfg) -> Dataset:
    d = draw(cfg)
    m = chain_model(cfg, d)
    offsets = np.concatenate([[0], np.cumsum(d.lengths)]).astype(np.int64)
    n_frames = int(offsets[-1])
    features = np.empty((n_frames, 3 * N_STATIC), dtype=np.float32)
    labels = np.empty(n_frames, dtype=np.int64)
    bayes_pred = np.empty(n_frames, dtype=np.int16)
    bayes_conf = np.empty(n_frames, dtype=np.float32)
    for idx, states, clean in clean_batches(d):
        n_len = d.lengths[idx]
        valid = states >= 0
        phone_post = phones(d.model, posteriors(m, clean, n_len, d.stay_spk[d.spk[idx]]))
        feats = v1._features(observe(d, clean, idx), n_len)
        dest = frame_indices_of(offsets[idx], offsets[idx + 1])
        features[dest] = feats[valid]
        labels[dest] = d.model.chain_label[states[valid] // N_SUB]
        bayes_pred[dest] = phone_post.argmax(axis=-1)[valid]
        bayes_conf[dest] = phone_post.max(axis=-1)[valid]
    speakers = tuple(str(d.spk_ids[k]) for k in d.spk)
    meta = {"synth_config": asdict(cfg), "config_hash": cfg.hash, "generator_version": cfg.version}

    def corpus(lo_u: int, hi_u: int, name: str) -> Corpus:
        lo, hi = offsets[lo_u], offsets[hi_u]
        pred, conf, lab = bayes_pred[lo:hi], bayes_conf[lo:hi], labels[lo:hi]
        stats = {"ceiling": float(np.mean(pred == lab)), "mean_bayes_conf": float(np.mean(conf))}
        return Corpus(
            name=name, features=features[lo:hi], labels=lab, utt_ids=d.utt_ids[lo_u:hi_u],
            offsets=offsets[lo_u : hi_u + 1] - lo, speakers=speakers[lo_u:hi_u], class_names=v1.CLASS_NAMES,
            bayes_pred=pred, bayes_conf=conf, meta={**meta, **stats},
        )  # fmt: skip

    n_pool = cfg.n_train_utts
    pool = corpus(0, n_pool, f"synthphone:{cfg.name}")
    test = corpus(n_pool, len(d.lengths), f"synthphone:{cfg.name}/test") if cfg.n_test_utts else None
    return Dataset(source=f"synthphone:{cfg.name}", pool=pool, test=test)


def information_hits(cfg, views, which=None) -> dict:
    """Frames whose phone each view (``ceiling.View``) gets right, per utterance: ``{view: int64 [n_utts]}`` in
    the draw's order (pool, then test); ``which``: only these utterance indices (the others count 0)."""
    from ablation.data.ceiling import DELTA_REACH, chunk_posteriors, window_posteriors

    d = draw(cfg)
    m = chain_model(cfg, d)
    wanted = np.arange(len(d.lengths)) if which is None else np.sort(np.asarray(which, dtype=np.int64))
    hits = {v: np.zeros(len(d.lengths), dtype=np.int64) for v in views}
    for idx, states, clean in clean_batches(d, wanted):
        n_len, stay = d.lengths[idx], d.stay_spk[d.spk[idx]]
        valid = states >= 0
        labels = d.model.chain_label[np.maximum(states, 0) // N_SUB]
        final = v1._exit_probs(stay)
        for v in views:
            half = v.n // 2 + DELTA_REACH
            if v.kind == "window":
                post = window_posteriors(m, clean, n_len, stay, final, half, max_cells=20_000)
            else:
                post = chunk_posteriors(m, clean, n_len, stay, final, v.chunk_len or int(n_len.max()), half)
            hits[v][idx] = np.sum((phones(d.model, post).argmax(axis=-1) == labels) & valid, axis=1)
    return hits
