"""``synthphone``: a generated stand-in for libriphone with a known Bayes ceiling.

This module is generator version 1 (the default, ``SynthConfig.version = 1``);
``synthphone2`` is version 2 (words, coarticulation, speakers that survive
CMVN, per-class noise covariance), selected by ``version = 2`` or the
``*-v2`` presets. A version's arrays never change, so its presets stay
reproducible.

Generative model (a hidden Markov model; ``cfg.model_seed`` draws the language and
its acoustics, shared by all presets, and ``cfg.seed`` the sample drawn from it):

1. Phones. 41 classes: 0 ``sil``, the 39 ARPAbet phones, 40 ``spn`` (spoken
   noise). The phone sequence is a bigram Markov chain: consonant/vowel
   alternation times random phonotactic factors, its weights fitted so the
   segment frequencies follow English (``ah``, ``n``, ``t`` common; ``oy``,
   ``zh``, ``spn`` rare). Every utterance starts and ends with a long silence
   and has occasional short pauses (also class 0) between phones.
2. Durations. Each phone is a chain of 3 left-to-right sub-states with
   self-loops; sub-state mean durations are phone specific and scaled by the
   speaker's speaking rate. The utterance length ``T`` is drawn first (a Beta
   law on ``[min_frames, max_frames]``) and the state path is sampled exactly
   from the HMM conditioned on leaving the final silence after frame ``T``.
3. Acoustics. Each sub-state emits 13 static cepstra ``x_t = mu[s_t] + o + e_t``:
   means clustered by broad class (vowels near vowels, stops near stops, ...)
   with phone and sub-state offsets around them, a per-speaker offset ``o``,
   and noise that is AR(1) across frames (``e_t = rho e_{t-1} + w_t``,
   stationary standard deviation ``noise_scale``).
4. Features. Deltas and delta-deltas (regression over +-2 frames, edges
   replicated) give 39 dimensions; then per-utterance CMVN, as in the real data.

The ceiling: for every frame, the phone with the highest exact posterior
marginal, computed by forward-backward over the sub-state HMM with the true
parameters, speaker offset and rate, on the clean statics. The features are a
deterministic function of those statics, so no classifier can beat it in
expectation. ``Corpus.bayes_pred`` / ``bayes_conf`` hold it per frame.

Calibration. The duration and pause knobs reproduce libriphone's label
statistics (class 0 about 17% of frames, runs of mean about 9.4 and median 7
frames); the acoustic knobs (``noise_scale``, ``rho``, the ``*_sep`` spreads,
``phonotactic_shape``) set the difficulty, tuned on ``small`` so the course's
ladder appears below the ceiling. A bigram is the only long-range structure (no
words, no prosody), so the BiLSTM's lead over a window MLP is smaller than on
the real data, and CMVN removes the speakers; version 2 adds both. The README's
calibration block, measured by ``python -m ablation data calibrate``, has the
figures of both versions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from ablation.data import cache, hmm
from ablation.data.corpus import Corpus, Dataset, frame_indices_of
from ablation.errors import ConfigError, closest

GENERATOR_VERSION = 1  # the default version; a version's arrays never change (its presets stay reproducible)
VERSIONS = (1, 2)
N_STATIC = 13
N_SUB = 3

# name, broad class, segments per 1000 phones, mean duration in frames (at rate 1)
_PHONES = """
aa V 16 11  ae V 25 11  ah V 95 6   ao V 12 11  aw V 6 13   ay V 18 13  b S 20 6    ch A 5 10
d S 45 5    dh F 35 4   eh V 30 8   er V 25 9   ey V 17 11  f F 18 9    g S 10 6    hh F 20 6
ih V 60 6   iy V 35 9   jh A 6 8    k S 32 7    l L 40 6    m N 30 7    n N 70 6    ng N 10 8
ow V 13 11  oy V 1.5 14 p S 17 7    r L 50 6    s F 50 10   sh F 8 11   t S 70 6    th F 5 8
uh V 4 6    uw V 15 9   v F 20 5    w L 25 6    y L 10 6    z F 30 8    zh F 0.5 8  spn X 1.5 25
""".split()
_TABLE = [_PHONES[i : i + 4] for i in range(0, len(_PHONES), 4)]
CLASS_NAMES: tuple[str, ...] = ("sil",) + tuple(row[0] for row in _TABLE)
N_CLASSES = len(CLASS_NAMES)
_BROAD = "QVSAFNLX"  # silence, vowel, stop, affricate, fricative, nasal, liquid/glide, noise
_BROAD_OF = np.array([0] + [_BROAD.index(row[1]) for row in _TABLE])
_SEG_FREQ = np.array([float(row[2]) for row in _TABLE])
_DURATION = np.array([float(row[3]) for row in _TABLE])
_SUB_SHARE = np.array([0.3, 0.4, 0.3])  # of a phone's duration, per sub-state
# chains of the HMM: 0..40 the classes (0 = a pause), then the leading and the trailing silence
_LEAD, _TRAIL = N_CLASSES, N_CLASSES + 1
N_CHAINS = N_CLASSES + 2
CHAIN_LABEL = np.array(list(range(N_CLASSES)) + [0, 0])


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generative model. ``load`` caches by a hash of all fields."""

    name: str = "custom"
    n_train_utts: int = 400  # the labelled pool
    n_test_utts: int = 100
    n_speakers: int = 100
    seed: int = 0  # the sample: speakers, utterances, state paths, noise
    model_seed: int = 0  # the language and its acoustics: means, bigram (shared by all presets)
    # utterance lengths: min + (max - min) * Beta(a, b)
    min_frames: int = 139
    max_frames: int = 998
    length_beta: tuple[float, float] = (2.5, 2.0)
    # durations and sequence structure
    duration_scale: float = 1.15  # multiplies the table durations; 1.15 matches the real run lengths
    edge_sil_frames: float = 32.0  # mean of the leading and of the trailing silence
    pause_frames: float = 14.0  # mean of a pause between phones
    pause_prob: float = 0.05  # chance that a phone is followed by a pause
    end_prob: float = 0.01  # chance that a phone is followed by the trailing silence
    same_type_affinity: float = 0.35  # bigram weight of vowel->vowel and consonant->consonant (vs 1)
    phonotactic_shape: float = 0.2  # Gamma shape of random bigram factors; 0.2: bigram perplexity about 10
    rate_sd: float = 0.12  # per-speaker log speaking-rate spread
    # acoustics (13 static cepstra)
    broad_sep: float = 1.0  # spread of the broad-class centres
    phone_sep: float = 0.7  # spread of phones around their broad class
    substate_sep: float = 0.4  # spread of sub-states around their phone
    noise_scale: float = 2.3  # stationary standard deviation of the frame noise
    rho: float = 0.3  # AR(1) correlation of the noise across frames
    speaker_offset: float = 0.5  # spread of the per-speaker offset of all means
    # generator version: 1 phones only (above); 2 adds words, coarticulation, speakers that survive CMVN and a
    # noise covariance per broad class (``synthphone2``; its knobs below are ignored by version 1)
    version: int = 1
    n_words: int = 120  # lexicon size
    word_zipf: float = 1.0  # exponent of the words' Zipf unigram
    word_pause_prob: float = 0.18  # chance that a word is followed by a pause
    word_end_prob: float = 0.036  # chance that a word is followed by the trailing silence
    coarticulation: float = 0.35  # share by which a boundary sub-state moves toward the neighbouring phone
    speaker_warp: float = 0.25  # size of the per-speaker linear mixing of the cepstra
    class_noise_spread: float = 0.25  # log-sd of the per-class noise scales

    def __post_init__(self):
        def bad(field, value, rule):
            raise ConfigError(f"synthphone config '{self.name}': {field}={value!r} is invalid; it must be {rule}")

        for f in ("n_train_utts", "n_speakers"):
            if int(getattr(self, f)) < 1:
                bad(f, getattr(self, f), "an int >= 1")
        if self.n_test_utts < 0:
            bad("n_test_utts", self.n_test_utts, "an int >= 0")
        if not 20 <= self.min_frames <= self.max_frames:
            bad("min_frames", self.min_frames, f"an int in [20, max_frames={self.max_frames}]")
        if len(self.length_beta) != 2 or min(self.length_beta) <= 0:
            bad("length_beta", self.length_beta, "two positive numbers (a, b)")
        if not 0.0 <= self.rho < 1.0:
            bad("rho", self.rho, "in [0, 1)")
        if not 0.0 <= self.pause_prob + self.end_prob < 1.0 or min(self.pause_prob, self.end_prob) < 0:
            bad("pause_prob", self.pause_prob, "in [0, 1 - end_prob) with end_prob > 0")
        if self.end_prob <= 0:
            bad("end_prob", self.end_prob, "> 0 (utterances must be able to end)")
        for f in ("duration_scale", "edge_sil_frames", "pause_frames", "same_type_affinity",
                  "phonotactic_shape", "noise_scale"):  # fmt: skip
            if not getattr(self, f) > 0:
                bad(f, getattr(self, f), "> 0")
        for f in ("rate_sd", "broad_sep", "phone_sep", "substate_sep", "speaker_offset"):
            if not getattr(self, f) >= 0:
                bad(f, getattr(self, f), ">= 0")
        if self.version not in VERSIONS:
            bad("version", self.version, f"one of {', '.join(map(str, VERSIONS))} (the generator versions)")
        if self.version >= 2:
            if not 1 <= int(self.n_words) <= 5000:
                bad("n_words", self.n_words, "an int in [1, 5000]")
            if not 0 <= self.coarticulation <= 0.5:
                bad("coarticulation", self.coarticulation, "in [0, 0.5]")
            if not 0 <= self.speaker_warp <= 1.0:
                bad("speaker_warp", self.speaker_warp, "in [0, 1]")
            if not 0 <= self.class_noise_spread <= 1.0:
                bad("class_noise_spread", self.class_noise_spread, "in [0, 1]")
            if not self.word_zipf >= 0:
                bad("word_zipf", self.word_zipf, ">= 0")
            if not (self.word_pause_prob >= 0 and self.word_end_prob > 0 and self.word_pause_prob + self.word_end_prob < 1):
                bad("word_pause_prob", self.word_pause_prob, "in [0, 1 - word_end_prob) with word_end_prob > 0")
            if self.rho != 0.0:
                bad("rho", self.rho, "0 in version 2 (frames are independent given the states; each class has "
                    "its own covariance)")

    @property
    def hash(self) -> str:
        fields = asdict(self)
        if self.version == 1:  # version 1's hash as it always was: without the later knobs
            fields = {k: v for k, v in fields.items() if k in _V1_FIELDS}
        blob = json.dumps({"version": self.version, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_V1_FIELDS = ("name", "n_train_utts", "n_test_utts", "n_speakers", "seed", "model_seed", "min_frames", "max_frames",
              "length_beta", "duration_scale", "edge_sil_frames", "pause_frames", "pause_prob", "end_prob",
              "same_type_affinity", "phonotactic_shape", "rate_sd", "broad_sep", "phone_sep", "substate_sep",
              "noise_scale", "rho", "speaker_offset")  # fmt: skip
# version 2, calibrated on small-v2 against the course's ladder (README, "Calibration"): words make the phones
# run longer; the noise is independent across frames, so less of it gives the 1-frame MLP its real accuracy; a
# 60-word lexicon gives a BiLSTM over utterances the real lead over window models (120 words gave +0.044)
_V2 = {"version": 2, "rho": 0.0, "noise_scale": 2.05, "duration_scale": 1.08, "speaker_warp": 0.5, "n_words": 60}

PRESETS: dict[str, SynthConfig] = {
    # tests: short utterances with short edge silences, so class 0 stays near its real share
    "tiny": SynthConfig(name="tiny", n_train_utts=24, n_test_utts=8, n_speakers=6, seed=7,
                        min_frames=80, max_frames=240, edge_sil_frames=12.0),  # fmt: skip
    "small": SynthConfig(name="small", n_train_utts=400, n_test_utts=100, n_speakers=100, seed=1),
    "libri": SynthConfig(name="libri", n_train_utts=4286, n_test_utts=1078, n_speakers=251, seed=2022),
}
# about 20 utterances a speaker, as in libriphone (5,364 utterances of 251 speakers): a speaker-disjoint split
# then leaves speakers out that the training split would otherwise have seen many times
_V2_SPEAKERS = {"tiny": 6, "small": 25, "libri": 251}
PRESETS.update({f"{k}-v2": replace(v, name=f"{k}-v2", n_speakers=_V2_SPEAKERS[k], **_V2)
                for k, v in list(PRESETS.items())})  # fmt: skip


# ---- the model ------------------------------------------------------------
@dataclass(frozen=True)
class _Model:
    means: np.ndarray  # [S, 13] per state, speaker-independent
    cross: np.ndarray  # [C, C] next-chain probabilities on leaving a chain
    sub_frames: np.ndarray  # [S] mean sub-state duration at rate 1


def _fit_bigram(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """``cross[c, q]``: the chain entered after chain ``c``; phone frequencies fitted to the table."""
    is_vowel = _BROAD_OF == _BROAD.index("V")
    affinity = np.where(is_vowel[:, None] == is_vowel[None, :], cfg.same_type_affinity, 1.0)
    affinity[0, :] = affinity[:, 0] = 1.0  # silence has no type
    factors = rng.gamma(cfg.phonotactic_shape, 1.0 / cfg.phonotactic_shape, size=(N_CHAINS, N_CLASSES))
    base = np.zeros((N_CHAINS, N_CLASSES))
    base[:N_CLASSES] = affinity * factors[:N_CLASSES]
    base[_LEAD] = factors[_LEAD]
    base[_TRAIL] = 1.0  # unused: leaving the trailing silence ends the utterance
    base[:, 0] = 0.0  # pauses are added below
    base[np.arange(N_CLASSES), np.arange(N_CLASSES)] = 0.0  # a run is one phone
    target = _SEG_FREQ / _SEG_FREQ.sum()
    weight = target.copy()
    after_phone = 1.0 - cfg.pause_prob - cfg.end_prob
    for _ in range(200):
        rows = base[:, 1:] * weight
        rows /= rows.sum(axis=1, keepdims=True)
        # the pause/phone chain without its ends; its stationary law must match the table
        chain = np.zeros((N_CLASSES, N_CLASSES))
        chain[0, 1:] = rows[0]
        chain[1:, 1:] = rows[1:N_CLASSES] * after_phone
        chain[1:, 0] = cfg.pause_prob
        chain /= chain.sum(axis=1, keepdims=True)
        vals, vecs = np.linalg.eig(chain.T)
        pi = np.abs(np.real(vecs[:, np.argmin(np.abs(vals - 1.0))]))[1:]
        pi /= pi.sum()
        if np.max(np.abs(pi / target - 1.0)) < 1e-6:
            break
        weight *= target / pi
    cross = np.zeros((N_CHAINS, N_CHAINS))
    cross[1:N_CLASSES, 1:N_CLASSES] = rows[1:N_CLASSES] * after_phone
    cross[1:N_CLASSES, 0] = cfg.pause_prob
    cross[1:N_CLASSES, _TRAIL] = cfg.end_prob
    cross[0, 1:N_CLASSES] = rows[0]
    cross[_LEAD, 1:N_CLASSES] = rows[_LEAD]
    return cross  # the trailing silence's row stays 0: leaving it ends the utterance


def _build_model(cfg: SynthConfig, rng: np.random.Generator) -> _Model:
    centres = rng.normal(0.0, cfg.broad_sep, size=(len(_BROAD), N_STATIC))
    phone = centres[_BROAD_OF] + rng.normal(0.0, cfg.phone_sep, size=(N_CLASSES, N_STATIC))
    sub_spread = np.where(_BROAD_OF == 0, 0.3, 1.0)[:, None, None]  # silence is nearly stationary
    sub = phone[:, None, :] + sub_spread * rng.normal(0.0, cfg.substate_sep, size=(N_CLASSES, N_SUB, N_STATIC))
    means = np.concatenate([sub, sub[[0, 0]]]).reshape(N_CHAINS * N_SUB, N_STATIC)  # edge silences sound like sil
    durations = np.concatenate([[cfg.pause_frames], _DURATION * cfg.duration_scale, 2 * [cfg.edge_sil_frames]])
    sub_frames = (durations[:, None] * _SUB_SHARE[None, :]).reshape(-1)
    return _Model(means=means, cross=_fit_bigram(cfg, rng), sub_frames=sub_frames)


def _stay_probs(model: _Model, rates: np.ndarray) -> np.ndarray:
    """``[n_speakers, S]`` self-loop probabilities for each speaking rate (>= 1 frame per sub-state)."""
    mean_frames = np.maximum(model.sub_frames[None, :] * rates[:, None], 1.0)
    return 1.0 - 1.0 / mean_frames


def _exit_probs(stay: np.ndarray) -> np.ndarray:
    final = np.zeros_like(stay)
    final[:, -1] = 1.0 - stay[:, -1]  # the last state is the trailing silence's last sub-state
    return final


# ---- speakers, utterances, state paths --------------------------------------
def _utterances(cfg: SynthConfig, rng: np.random.Generator):
    """Speaker table, utterance ids, speaker per utterance, lengths; pool first, then test."""
    n_utts = cfg.n_train_utts + cfg.n_test_utts
    spk_ids = np.sort(rng.choice(np.arange(19, 9000), size=cfg.n_speakers, replace=False))
    n_chapters = 1 + rng.poisson(0.8, size=cfg.n_speakers).clip(max=3)
    chapters = rng.choice(np.arange(100, 200000), size=int(n_chapters.sum()), replace=False)
    chapter_of = np.split(chapters, np.cumsum(n_chapters)[:-1])
    spk = rng.integers(0, cfg.n_speakers, size=n_utts)
    spk[: min(n_utts, cfg.n_speakers)] = rng.permutation(cfg.n_speakers)[:n_utts]  # every speaker talks
    counters: dict[tuple[int, int], int] = {}
    keys = []
    for u in range(n_utts):
        chap = int(chapter_of[spk[u]][rng.integers(len(chapter_of[spk[u]]))])
        idx = counters.get((spk[u], chap), 0) + int(rng.integers(0, 3))
        counters[(spk[u], chap)] = idx + 1
        keys.append((int(spk_ids[spk[u]]), chap, idx, int(spk[u])))
    order = rng.permutation(n_utts)
    pool = sorted(keys[i] for i in order[: cfg.n_train_utts])
    test = sorted(keys[i] for i in order[cfg.n_train_utts :])
    keys = pool + test
    utt_ids = tuple(f"{s}-{c}-{i:04d}" for s, c, i, _ in keys)
    spk_of_utt = np.array([k[3] for k in keys], dtype=np.int64)
    a, b = cfg.length_beta
    lengths = cfg.min_frames + np.round((cfg.max_frames - cfg.min_frames) * rng.beta(a, b, size=n_utts))
    return spk_ids, utt_ids, spk_of_utt, lengths.astype(np.int64)


def _sample_paths(model: _Model, stay_spk: np.ndarray, spk: np.ndarray, lengths: np.ndarray, rng,
                  lead: int = _LEAD) -> np.ndarray:  # fmt: skip
    """State paths ``[U, Tmax]`` (int16, -1 past the end), exact draws from the HMM given the length.

    ``model.cross`` may be sparse (a word lexicon's chains); ``lead`` is the chain every utterance starts in.
    """
    n_spk, n_states = stay_spk.shape
    n_chains = model.cross.shape[0]
    t_max = int(lengths.max())
    # togo[k, r] ~ P(exit after exactly r more frames | state): the backward pass without emissions
    togo = np.empty((n_spk, t_max, n_states), dtype=np.float32)
    b = _exit_probs(stay_spk)
    for r in range(t_max):
        if r:
            b = hmm.chain_backward_step(b, stay_spk, model.cross)
        b /= b.sum(axis=1, keepdims=True)
        togo[:, r] = b
    first_states = np.arange(n_chains) * N_SUB
    paths = np.full((len(lengths), t_max), -1, dtype=np.int16)
    state = np.full(len(lengths), lead * N_SUB, dtype=np.int64)
    paths[:, 0] = state
    for t in range(t_max - 1):
        live = np.flatnonzero(t < lengths - 1)
        s, k_spk, rest = state[live], spk[live], lengths[live] - t - 2
        chain, sub = s // N_SUB, s % N_SUB
        stay = stay_spk[k_spk, s]
        last = sub == N_SUB - 1
        weights = np.empty((len(live), 2 + n_chains))
        weights[:, 0] = stay * togo[k_spk, rest, s]
        weights[:, 1] = np.where(last, 0.0, (1 - stay) * togo[k_spk, rest, np.where(last, s, s + 1)])
        to_first = togo[k_spk[:, None], rest[:, None], first_states[None, :]]
        rows = model.cross[chain]
        rows = rows.toarray() if hasattr(rows, "toarray") else rows
        weights[:, 2:] = np.where(last, 1 - stay, 0.0)[:, None] * rows * to_first
        cum = np.cumsum(weights, axis=1)
        pick = (cum <= rng.random(len(live))[:, None] * cum[:, -1:]).sum(axis=1)
        state[live] = np.where(pick == 0, s, np.where(pick == 1, s + 1, first_states[np.maximum(pick - 2, 0)]))
        paths[live, t + 1] = state[live]
    return paths


# ---- features -----------------------------------------------------------------
def regression_deltas(c: np.ndarray, width: int = 2) -> np.ndarray:
    """``d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)``, n = 1..width, edges replicated; ``c`` is ``[T, D]``."""
    return _padded_deltas(np.asarray(c, dtype=np.float64)[None], np.array([len(c)]), width)[0]


def _padded_deltas(c: np.ndarray, lengths: np.ndarray, width: int = 2) -> np.ndarray:
    """Deltas of a padded batch ``[B, T, D]``, each sequence replicating its own last frame."""
    n_frames = c.shape[1]
    clamp = np.minimum(np.arange(n_frames)[None, :], lengths[:, None] - 1)
    c = np.take_along_axis(c, clamp[..., None], axis=1)
    ext = np.pad(c, ((0, 0), (width, width), (0, 0)), mode="edge")
    out = np.zeros_like(c)
    for n in range(1, width + 1):
        out += n * (ext[:, width + n : width + n + n_frames] - ext[:, width - n : width - n + n_frames])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def _features(statics: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Statics ``[B, T, 13]`` -> 39-dim features with per-utterance CMVN over the real frames."""
    d1 = _padded_deltas(statics, lengths)
    d2 = _padded_deltas(d1, lengths)
    feats = np.concatenate([statics, d1, d2], axis=-1)
    valid = (np.arange(statics.shape[1])[None, :] < lengths[:, None])[..., None]
    n = lengths[:, None, None]
    mean = np.where(valid, feats, 0.0).sum(axis=1, keepdims=True) / n
    var = np.where(valid, (feats - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / n
    return (feats - mean) / np.sqrt(np.maximum(var, 1e-12))


# ---- generation ---------------------------------------------------------------
def _batches(lengths: np.ndarray, frame_budget: int = 80_000) -> list[np.ndarray]:
    """Utterances grouped by length so that padding wastes little and each batch stays in memory.

    Version 1 draws its noise batch by batch, so this layout is part of its sample and stays as it is;
    version 2 draws noise per utterance and plans its batches with ``sequences.plan_batches``.
    """
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop + 1 - start) * lengths[order[stop]] <= frame_budget:
            stop += 1
        batches.append(order[start:stop])
        start = stop
    return batches


def _ceiling_factors(model: _Model, cfg: SynthConfig):
    """The AR(1) pair term folded into the chain's advance and cross weights."""
    log_pair = hmm.ar1_log_pair(model.means, cfg.noise_scale, cfg.rho)
    states = np.arange(N_CHAINS * N_SUB)
    advance = np.exp(log_pair[states, np.minimum(states + 1, states[-1])])
    last, first = states[N_SUB - 1 :: N_SUB], states[::N_SUB]
    return advance, model.cross * np.exp(log_pair[np.ix_(last, first)])


def _phone_posteriors(model, cfg, clean, lengths, stay, advance, cross_ar) -> np.ndarray:
    """Exact phone posteriors ``[B, T, 41]`` of a padded batch of clean statics (speaker offset removed)."""
    log_emit, log_pair = hmm.ar1_log_factors(clean, model.means, cfg.noise_scale, cfg.rho, lengths)
    init = np.eye(N_CHAINS * N_SUB)[_LEAD * N_SUB]
    final = _exit_probs(stay)
    if hmm.ar1_scaled_is_safe(model.means, cfg.noise_scale, cfg.rho):
        log_emit -= log_emit.max(axis=2, keepdims=True)
        emit = np.exp(log_emit, out=log_emit)
        post = hmm.chain_forward_backward(emit, lengths, stay, cross_ar, init, final, advance)
    else:  # nearly noiseless AR(1): only log space holds the split terms (slow, dense)
        post = np.zeros_like(log_emit)
        with np.errstate(divide="ignore"):
            for b, n in enumerate(lengths):
                log_trans = np.log(hmm.chain_transition_matrix(stay[b], model.cross)) + log_pair
                post[b, :n] = hmm.forward_backward(log_emit[b, :n], log_trans, np.log(init), np.log(final[b]))
    chain_post = post.reshape(*post.shape[:2], N_CHAINS, N_SUB).sum(axis=-1)
    phone_post = chain_post[..., :N_CLASSES]
    phone_post[..., 0] += chain_post[..., _LEAD] + chain_post[..., _TRAIL]
    return phone_post


@dataclass(frozen=True)
class _Draw:
    """What ``generate`` samples before the features: the model, the speakers, the state paths."""

    model: _Model
    spk_ids: np.ndarray  # [n_speakers] the speakers' numeric ids
    utt_ids: tuple[str, ...]
    spk: np.ndarray  # [U] speaker index per utterance (pool first, then test)
    lengths: np.ndarray  # [U]
    offsets_spk: np.ndarray  # [n_speakers, 13]
    stay_spk: np.ndarray  # [n_speakers, S] self-loop probabilities at each speaker's rate
    paths: np.ndarray  # [U, Tmax] int16 states, -1 past the end


def _draw(cfg: SynthConfig) -> tuple[_Draw, np.random.Generator]:
    """The sample up to the noise, and the generator the noise is then drawn from."""
    rng_model = np.random.default_rng(np.random.SeedSequence([cfg.model_seed, 1]))
    rng_spk, rng_path, rng_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3))
    model = _build_model(cfg, rng_model)
    spk_ids, utt_ids, spk, lengths = _utterances(cfg, rng_spk)
    rates = np.exp(rng_spk.normal(0.0, cfg.rate_sd, size=cfg.n_speakers))
    offsets_spk = rng_spk.normal(0.0, cfg.speaker_offset, size=(cfg.n_speakers, N_STATIC))
    stay_spk = _stay_probs(model, rates)
    paths = _sample_paths(model, stay_spk, spk, lengths, rng_path)
    return _Draw(model, spk_ids, utt_ids, spk, lengths, offsets_spk, stay_spk, paths), rng_noise


def _clean_batches(cfg: SynthConfig, d: _Draw, rng_noise: np.random.Generator):
    """``(utterance indices, states [B, T], clean statics [B, T, 13])`` per length batch, in a fixed order."""
    sd_w = cfg.noise_scale * np.sqrt(1.0 - cfg.rho**2)
    for idx in _batches(d.lengths):
        t_b = int(d.lengths[idx].max())
        states = d.paths[idx, :t_b].astype(np.int64)
        # AR(1) noise; the first frame has the stationary variance
        innov = rng_noise.standard_normal((len(idx), t_b, N_STATIC))
        innov[:, 0] *= cfg.noise_scale
        innov[:, 1:] *= sd_w
        yield idx, states, d.model.means[np.maximum(states, 0)] + lfilter([1.0], [1.0, -cfg.rho], innov, axis=1)


def state_prior(d: _Draw) -> np.ndarray:
    """``[S]`` the share of frames in each state over every generated utterance: the prior state marginal."""
    states = d.paths[d.paths >= 0].astype(np.int64)
    return np.bincount(states, minlength=d.stay_spk.shape[1]) / len(states)


def generate(cfg: SynthConfig) -> Dataset:
    """The dataset of ``cfg``: pure, deterministic in ``cfg`` (no I/O)."""
    if cfg.version == 2:
        from ablation.data import synthphone2

        return synthphone2.generate(cfg)
    d, rng_noise = _draw(cfg)
    model, spk_ids, utt_ids, spk, lengths = d.model, d.spk_ids, d.utt_ids, d.spk, d.lengths
    offsets_spk, stay_spk = d.offsets_spk, d.stay_spk

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_frames = int(offsets[-1])
    features = np.empty((n_frames, 3 * N_STATIC), dtype=np.float32)
    labels = np.empty(n_frames, dtype=np.int64)
    bayes_pred = np.empty(n_frames, dtype=np.int16)
    bayes_conf = np.empty(n_frames, dtype=np.float32)
    advance, cross_ar = _ceiling_factors(model, cfg)
    for idx, states, clean in _clean_batches(cfg, d, rng_noise):
        n_len = lengths[idx]
        valid = states >= 0
        phone_post = _phone_posteriors(model, cfg, clean, n_len, stay_spk[spk[idx]], advance, cross_ar)
        feats = _features(clean + offsets_spk[spk[idx]][:, None, :], n_len)
        dest = frame_indices_of(offsets[idx], offsets[idx + 1])
        features[dest] = feats[valid]
        labels[dest] = CHAIN_LABEL[states[valid] // N_SUB]
        bayes_pred[dest] = phone_post.argmax(axis=-1)[valid]
        bayes_conf[dest] = phone_post.max(axis=-1)[valid]

    speakers = tuple(str(spk_ids[k]) for k in spk)
    n_pool = cfg.n_train_utts
    meta = {"synth_config": asdict(cfg), "config_hash": cfg.hash, "generator_version": GENERATOR_VERSION}

    def corpus(utts: slice, name: str) -> Corpus:
        lo, hi = offsets[utts.start], offsets[utts.stop]
        pred, conf, lab = bayes_pred[lo:hi], bayes_conf[lo:hi], labels[lo:hi]
        stats = {"ceiling": float(np.mean(pred == lab)), "mean_bayes_conf": float(np.mean(conf))}
        return Corpus(
            name=name, features=features[lo:hi], labels=lab, utt_ids=utt_ids[utts],
            offsets=offsets[utts.start : utts.stop + 1] - lo, speakers=speakers[utts], class_names=CLASS_NAMES,
            bayes_pred=pred, bayes_conf=conf, meta={**meta, **stats},
        )  # fmt: skip

    pool = corpus(slice(0, n_pool), f"synthphone:{cfg.name}")
    test = corpus(slice(n_pool, len(lengths)), f"synthphone:{cfg.name}/test") if cfg.n_test_utts else None
    return Dataset(source=f"synthphone:{cfg.name}", pool=pool, test=test)


# ---- the information ceiling of a view (see ``ceiling``) ----------------------------
def config_of(corpus: Corpus) -> SynthConfig | None:
    """The config a generated corpus (or a split of one) was made from; ``None`` for other corpora."""
    raw = corpus.meta.get("synth_config")
    if raw is None:
        return None
    return SynthConfig(**{**raw, "length_beta": tuple(raw["length_beta"])})


def chain_model(cfg: SynthConfig, d: _Draw):
    """The HMM the ceilings condition on: means without the speaker offset, the prior state marginal."""
    from ablation.data.ceiling import ChainModel

    start = np.eye(N_CHAINS * N_SUB)[_LEAD * N_SUB]
    return ChainModel(d.model.means, cfg.noise_scale, cfg.rho, d.model.cross, start, state_prior(d))


def information_accuracy(cfg: SynthConfig, utt_ids, views) -> dict:
    """Bayes accuracy of each view over the named utterances (regenerates the sample; no features)."""
    ids, lengths = utterances(cfg)
    where = {u: i for i, u in enumerate(ids)}
    wanted = np.array([where[u] for u in utt_ids], dtype=np.int64)
    hits = information_hits(cfg, views, wanted)
    n_frames = int(lengths[wanted].sum())
    return {v: int(h[wanted].sum()) / n_frames for v, h in hits.items()}


def information_hits(cfg: SynthConfig, views, which=None) -> dict:
    """Frames whose phone each view gets right, per utterance: ``{view: int64 [n_utts]}`` in the draw's order
    (pool, then test; ``utterance_ids``). ``which``: only these utterance indices (the others count 0)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # small products: threads only contend, on a shared machine badly
        if cfg.version == 2:
            from ablation.data import synthphone2

            return synthphone2.information_hits(cfg, views, which)
        return _information_hits(cfg, views, which)


def utterances(cfg: SynthConfig) -> tuple[tuple[str, ...], np.ndarray]:
    """Every utterance id of ``cfg``'s sample and its frame count, in the draw's order (the pool's, then the
    test's): what ``information_hits`` indexes."""
    # the first draws of the speakers' generator, as ``_draw`` and ``synthphone2.draw`` make them: no paths
    seq = np.random.SeedSequence([cfg.seed, 2]) if cfg.version == 2 else np.random.SeedSequence(cfg.seed)
    _, utt_ids, _, lengths = _utterances(cfg, np.random.default_rng(seq.spawn(1)[0]))
    return tuple(utt_ids), np.asarray(lengths, dtype=np.int64)


def _information_hits(cfg: SynthConfig, views, which) -> dict:
    from ablation.data.ceiling import DELTA_REACH, chunk_posteriors, window_posteriors

    d, rng_noise = _draw(cfg)
    wanted = np.ones(len(d.utt_ids), dtype=bool)
    if which is not None:
        wanted[:] = False
        wanted[np.asarray(which, dtype=np.int64)] = True
    m = chain_model(cfg, d)
    hits = {v: np.zeros(len(d.utt_ids), dtype=np.int64) for v in views}
    for idx, states, clean in _clean_batches(cfg, d, rng_noise):  # every batch: the noise is drawn in order
        keep = wanted[idx]
        if not keep.any():
            continue
        idx, states, clean = idx[keep], states[keep], clean[keep]
        n_len, stay = d.lengths[idx], d.stay_spk[d.spk[idx]]
        valid = states >= 0
        labels = CHAIN_LABEL[np.maximum(states, 0) // N_SUB]
        for v in views:
            half = v.n // 2 + DELTA_REACH
            if v.kind == "window":
                post = window_posteriors(m, clean, n_len, stay, _exit_probs(stay), half)
            else:
                whole = int(n_len.max())  # the utterance view: one chunk per utterance
                post = chunk_posteriors(m, clean, n_len, stay, _exit_probs(stay), v.chunk_len or whole, half)
            hits[v][idx] = np.sum((_phones(post).argmax(axis=-1) == labels) & valid, axis=1)
    return hits


def _phones(post: np.ndarray) -> np.ndarray:
    """State posteriors ``[..., S]`` -> phone posteriors ``[..., 41]`` (the edge silences are class 0)."""
    chain_post = post.reshape(*post.shape[:-1], N_CHAINS, N_SUB).sum(axis=-1)
    phone_post = chain_post[..., :N_CLASSES].copy()
    phone_post[..., 0] += chain_post[..., _LEAD] + chain_post[..., _TRAIL]
    return phone_post


# ---- presets, cache, load ------------------------------------------------------
def resolve(preset_or_config: str | SynthConfig, seed: int | None = None) -> SynthConfig:
    """The config a preset name (or a config) stands for, with ``seed`` replaced when given."""
    if isinstance(preset_or_config, SynthConfig):
        cfg = preset_or_config
    elif preset_or_config in PRESETS:
        cfg = PRESETS[preset_or_config]
    else:
        raise ConfigError(
            f"unknown synthphone preset '{preset_or_config}'{closest(preset_or_config, PRESETS)}; "
            f"use one of {', '.join(PRESETS)}"
        )
    return cfg if seed is None else replace(cfg, seed=int(seed))


def _restore_meta(meta: dict) -> None:
    meta["synth_config"]["length_beta"] = tuple(meta["synth_config"]["length_beta"])


def cache_folder(cfg: SynthConfig) -> Path:
    """Where ``load`` keeps the dataset of ``cfg`` (and ``ceiling`` its information ceilings)."""
    return cache.folder("synthphone", cfg.hash)


def load(preset_or_config: str | SynthConfig, seed: int | None = None) -> Dataset:
    """The dataset of a preset or config, from ``cache_dir()/synthphone/<hash>/`` or generated and cached."""
    cfg = resolve(preset_or_config, seed)
    folder = cache_folder(cfg)
    ds = cache.read_dataset(folder, CLASS_NAMES, expect={"synth_config": json.loads(json.dumps(asdict(cfg)))},
                            restore=_restore_meta)
    if ds is None:
        ds = generate(cfg)
        cache.write_dataset(ds, folder)
    return ds
