"""The information ceiling of an arm: the Bayes accuracy given what its model receives.

The corpus's ceiling (``Corpus.ceiling``) conditions on a whole utterance. A
window model sees far less: ``n`` frames of features around the centre frame.
Each feature frame is computed from the clean statics of frames ``t-4..t+4``
(deltas reach +-2 frames, delta-deltas +-2 more), so an ``n``-frame window is a
function of the statics of ``n + 8`` frames, its *span*. The window ceiling is
the accuracy of the phone with the highest exact posterior given the clean
statics of that span:

- forward-backward inside the span, started from the prior state marginal
  (the share of frames in each state) where the span lies inside the
  utterance, and from the utterance's start state where it reaches past the
  first frame (edge replication tells the model it is there); likewise the
  exit weight where it reaches past the last frame;
- with the true speaker offset and speaking rate (and, in version 2, the
  speaker's mixing of the cepstra), like the utterance ceiling.

What it conditions on is a little more than the features (the offset and the
rate are known; the statics are not normalised), and the utterance-level
CMVN statistics are left out, so read it as an upper bound on the
features-only Bayes accuracy of that window. A sequence model over whole
utterances has the corpus's ceiling; over chunks, the same computation with the
chunk's span in place of the window.

Each view's hits are counted once per utterance of a generated sample and
kept beside the corpus's cache (``corpus_hits``); a split's ceiling sums its
utterances', so no split (no seed of a study) computes anything again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ``hmm`` (scipy) is imported where the inference runs: checking a window length or reading the
# cached hits (every cell, every `data ceiling --n` refusal) does not pay for it
from ablation.data import cache
from ablation.data.corpus import Corpus
from ablation.errors import DataError

DELTA_REACH = 4  # frames: a feature frame depends on the statics this far either side
CONDITIONS = (
    "the clean statics of the frames the input is computed from (n + 8 frames for an n-frame window: "
    "deltas reach 2 frames, delta-deltas 2 more), the true speaker offset, speaking rate and (version 2) the "
    "speaker's mixing of the cepstra; "
    "an upper bound on the Bayes accuracy of the features themselves"
)

UTTERANCE_CONDITIONS = (
    "the clean statics of the whole utterance, the true speaker offset, speaking rate and (version 2) the "
    "speaker's mixing of the cepstra; "
    "an upper bound on the Bayes accuracy of the features themselves"
)


@dataclass(frozen=True)
class View:
    """What one model sees of an utterance around a frame.

    ``kind``: ``window`` (``n`` frames around it), ``utterance`` (all of it) or
    ``chunk`` (the ``chunk_len``-frame chunk holding it, each step an
    ``n``-frame window).
    """

    kind: str
    n: int = 1
    chunk_len: int = 0

    @property
    def key(self) -> str:
        return {"window": f"window:{self.n}", "utterance": "utterance",
                "chunk": f"chunk:{self.chunk_len}:{self.n}"}[self.kind]  # fmt: skip

    @property
    def label(self) -> str:
        if self.kind == "window":
            return f"{self.n}-frame window"
        if self.kind == "utterance":
            return "whole utterance"
        return f"{self.chunk_len}-frame chunks of {self.n}-frame windows"


def check_window(n: int) -> int:
    """``n`` if it is an odd window length >= 1; else a one-line error."""
    if not isinstance(n, (int, np.integer)) or n < 1 or n % 2 == 0:
        raise DataError(f"window n={n} is invalid: a window needs an odd number of frames >= 1 (1, 3, 5, ...)")
    return int(n)


def view_of(cfg) -> View:
    """The view of an experiment config's model."""
    n = int(cfg.features.n_concat)
    if cfg.model.name == "rnn" and cfg.model.mode == "sequence":
        chunk = int(cfg.train.chunk_len or 0)
        return View("chunk", n, chunk) if chunk else View("utterance", n)
    return View("window", n)


# ---- inference on a chain HMM ---------------------------------------------------
@dataclass(frozen=True)
class ChainModel:
    """A phone-loop HMM with AR(1) Gaussian noise (see ``hmm``), as the generator samples it."""

    means: np.ndarray  # [S, D]
    sd: float
    rho: float
    cross: np.ndarray  # [C, C]
    start: np.ndarray  # [S] the state of an utterance's first frame
    prior: np.ndarray  # [S] the prior state marginal
    # a covariance per class (``hmm.gauss_log_emit``, frames independent: rho = 0); None: one sphere, AR(1)
    state_class: np.ndarray | None = None
    whiten: np.ndarray | None = None
    log_det: np.ndarray | None = None

    def log_emit(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Per-frame log emission terms ``[B, T, S]`` of padded statics (0 past each length)."""
        from ablation.data import hmm

        if self.whiten is None:
            return hmm.ar1_log_factors(x, self.means, self.sd, self.rho, lengths)[0]
        out = hmm.gauss_log_emit(x, self.means, self.state_class, self.whiten, self.log_det)
        out[np.arange(x.shape[1])[None, :] >= np.asarray(lengths)[:, None]] = 0.0
        return out

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The AR(1) pair term folded into the advance and cross weights (``hmm.ar1_log_factors``)."""
        from ablation.data import hmm

        if self.rho == 0.0:
            return np.ones(len(self.means)), self.cross
        log_pair = hmm.ar1_log_pair(self.means, self.sd, self.rho)
        n_states, n_sub = len(self.means), len(self.means) // len(self.cross)
        states = np.arange(n_states)
        advance = np.exp(log_pair[states, np.minimum(states + 1, n_states - 1)])
        last, first = states[n_sub - 1 :: n_sub], states[::n_sub]
        return advance, self.cross * np.exp(log_pair[np.ix_(last, first)])


def _emissions(m: ChainModel, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    from ablation.data import hmm

    if m.whiten is None and not hmm.ar1_scaled_is_safe(m.means, m.sd, m.rho):
        raise DataError("the information ceiling needs noise_scale large enough for scaled inference; raise it")
    log_emit = m.log_emit(x, lengths)
    log_emit -= log_emit.max(axis=2, keepdims=True)
    return np.exp(log_emit, out=log_emit)


def window_posteriors(m: ChainModel, clean: np.ndarray, lengths: np.ndarray, stay: np.ndarray,
                      final: np.ndarray, half: int, max_cells: int = 60_000) -> np.ndarray:  # fmt: skip
    """State posteriors ``[B, T, S]`` of every frame given the statics of frames ``t-half..t+half``.

    ``clean`` ``[B, T, D]`` padded utterances, ``stay`` ``[B, S]`` self-loops at
    each utterance's rate, ``final`` ``[B, S]`` exit weights after its last frame.
    """
    from ablation.data import hmm

    n_batch, n_frames, _ = clean.shape
    advance, cross = m.factors()
    out = np.zeros((n_batch, n_frames, len(m.means)))
    utt, t = np.nonzero(np.arange(n_frames)[None, :] < lengths[:, None])
    width = 2 * half + 1
    step = max(1, max_cells // width)
    # frames independent given the states: each frame's emission terms are the same in every window that
    # holds it, so they are computed, scaled and exponentiated once per frame (AR(1) noise gives a span's
    # first frame its own term), and kept state-major with the frames flat: a batch of windows' emissions
    # is then one gather along the frame axis, in the layout the forward-backward reads
    emit_all = None
    if m.whiten is not None:
        emit_all = m.log_emit(clean, lengths)
        emit_all -= emit_all.max(axis=2, keepdims=True)
        emit_all = np.exp(emit_all, out=emit_all)
        emit_all = np.ascontiguousarray(emit_all.reshape(n_batch * n_frames, -1).T)  # [S, B * T]
        inner = (t >= half) & (t + half <= lengths[utt] - 1)
        _inner_windows(m, emit_all, utt[inner] * n_frames + t[inner], n_frames, stay, half, out)
        utt, t = utt[~inner], t[~inner]
    for lo_i in range(0, len(utt), step):
        b, c_t = utt[lo_i : lo_i + step], t[lo_i : lo_i + step]
        last = lengths[b] - 1
        lo, hi = np.maximum(c_t - half, 0), np.minimum(c_t + half, last)
        span = hi - lo + 1
        cols = np.minimum(lo[:, None] + np.arange(width)[None, :], hi[:, None])
        init = np.where((c_t - half < 0)[:, None], m.start[None, :], m.prior[None, :])
        fin = np.where((c_t + half > last)[:, None], final[b], 1.0)
        if emit_all is None:
            emit = _emissions(m, clean[b[:, None], cols], span)
        else:
            emit = np.take(emit_all, (b[:, None] * n_frames + cols).T, axis=1)  # [S, width, windows]
        out[b, c_t] = hmm.chain_centre_posteriors(emit, span, c_t - lo, stay[b], cross, init, fin, advance,
                                                  state_major=emit_all is not None)  # fmt: skip
    return out


INNER_COLS = 128  # windows per sweep inside utterances: a sweep's [S, windows] arrays stay in the core's cache


def _inner_windows(m: ChainModel, emit_all: np.ndarray, centres: np.ndarray, n_frames: int, stay: np.ndarray,
                   half: int, out: np.ndarray) -> None:  # fmt: skip
    """``window_posteriors`` of the windows that lie inside their utterance (``centres``: flat frame indices
    ``utterance * n_frames + t``, ascending), written into ``out``.

    Such windows all start from the prior, end without an exit weight and hold the same ``2 * half + 1``
    frames around their centre, so a run of flat centres ``g0..g1`` reads its emissions as ``2 * half + 1``
    shifted slices of ``emit_all`` (a view, nothing gathered), and the backward sweep stops at the centre.
    Centres in the run that are not inside (an utterance's edges, padding) are computed too and dropped."""
    from numpy.lib.stride_tricks import sliding_window_view

    from ablation.data import hmm

    if not len(centres):
        return
    advance, cross = m.factors()
    width = 2 * half + 1
    n_states = emit_all.shape[0]
    step = INNER_COLS
    starts = np.arange(int(centres[0]), int(centres[-1]) + 1, step)
    for lo_i, hi_i in zip(np.searchsorted(centres, starts), np.searchsorted(centres, starts + step)):
        if lo_i == hi_i:
            continue
        g = centres[lo_i:hi_i]
        g0, n = int(g[0]), int(g[-1] - g[0]) + 1
        emit = sliding_window_view(emit_all[:, g0 - half : g0 + n + half], width, axis=1).transpose(0, 2, 1)
        rows = np.arange(g0, g0 + n) // n_frames
        post = hmm.chain_centre_posteriors(
            emit, np.full(n, width), np.full(n, half), stay[rows], cross,
            np.broadcast_to(m.prior, (n, n_states)), np.ones((n, n_states)), advance, state_major=True,
        )  # fmt: skip
        out[g // n_frames, g % n_frames] = post[g - g0]


def chunk_posteriors(m: ChainModel, clean: np.ndarray, lengths: np.ndarray, stay: np.ndarray,
                     final: np.ndarray, chunk_len: int, half: int) -> np.ndarray:  # fmt: skip
    """State posteriors ``[B, T, S]`` of every frame given the statics of its chunk widened by ``half``."""
    from ablation.data import hmm

    n_batch, n_frames, _ = clean.shape
    advance, cross = m.factors()
    out = np.zeros((n_batch, n_frames, len(m.means)))
    for b in range(n_batch):
        n = int(lengths[b])
        for c0 in range(0, n, chunk_len):
            c1 = min(c0 + chunk_len, n)
            lo, hi = max(c0 - half, 0), min(c1 - 1 + half, n - 1)
            emit = _emissions(m, clean[b : b + 1, lo : hi + 1], np.array([hi - lo + 1]))
            init = m.start if c0 - half < 0 else m.prior
            fin = final[b : b + 1] if c1 - 1 + half > n - 1 else np.ones_like(final[b : b + 1])
            post = hmm.chain_forward_backward(emit, np.array([hi - lo + 1]), stay[b : b + 1], cross, init, fin, advance)
            out[b, c0:c1] = post[0, c0 - lo : c1 - lo]
    return out


# ---- synthphone corpora ---------------------------------------------------------
HITS_FILE = "ceiling-hits.json"  # beside the corpus: {utt_ids, lengths, hits: {view key: per-utterance hits}}


def sees_whole(view: View, longest: int) -> bool:
    """Whether every frame's ``view`` holds the whole of each utterance up to ``longest`` frames, from its
    start state to its exit: then it is the utterance view, whatever the window or chunk length."""
    if view.kind == "chunk":  # one chunk spans each utterance: its first frame and its exit are in view
        return view.chunk_len >= longest
    # every frame's span reaches past both ends of its utterance
    return view.kind == "utterance" or view.n // 2 + DELTA_REACH >= longest


def info_ceilings(corpus: Corpus, views, jobs: int = 1) -> dict[View, float]:
    """The ceiling of each view on ``corpus`` (a generated corpus or a split of one); ``{}`` for real data.

    A frame's window (or chunk) ceiling does not depend on the split it lands in, so each view's hits are
    counted once per utterance of the whole sample (``corpus_hits``, cached beside the corpus) and a split
    sums its utterances': hits / frames, as one pass over the split's utterances counts them. A view that
    sees the whole of every utterance of the split is answered at once: it is the utterance ceiling.
    ``jobs``: processes for what is computed.
    """
    from ablation.data import synthphone

    cfg = synthphone.config_of(corpus)
    if cfg is None or corpus.labels is None:
        return {}
    views = list(dict.fromkeys(views))
    longest = int(corpus.lengths.max()) if corpus.n_utts else 0
    out = {v: corpus.ceiling() for v in views if v.kind == "utterance" or sees_whole(v, longest)}
    todo = [v for v in views if v not in out]
    if not todo:
        return out
    table = corpus_hits(cfg, todo, jobs)
    where = {u: i for i, u in enumerate(table["utt_ids"])}
    idx = np.array([where[u] for u in corpus.utt_ids], dtype=np.int64)
    n_frames = int(np.asarray(table["lengths"], dtype=np.int64)[idx].sum())
    out.update({v: int(np.asarray(table["hits"][v.key], dtype=np.int64)[idx].sum()) / n_frames for v in todo})
    return out


def corpus_hits(cfg, views, jobs: int = 1, stop=None) -> dict:
    """Each view's hits per utterance over every utterance of ``cfg``'s sample (pool and test).

    Read from ``HITS_FILE`` beside the corpus (its folder is keyed by the config's hash, which fixes the
    corpus's content and so its fingerprint); what is missing is computed in ``jobs`` processes under the
    file's lock, so a process that wants the same views meanwhile waits for them instead of computing them
    beside it, and stored with the entries already there. Returns ``{utt_ids, lengths, hits}``.
    ``stop``: a ``threading.Event`` another thread may set to end the processes at once (``HitsStopped``).
    """
    from ablation.data import synthphone

    path = synthphone.cache_folder(cfg) / HITS_FILE
    keys = [v.key for v in views]
    stored = cache.read_json(path)
    if all(k in stored.get("hits", {}) for k in keys):
        return stored
    with cache.lock(path.parent / f".{HITS_FILE}.lock"):
        stored = cache.read_json(path)
        missing = [v for v, k in zip(views, keys) if k not in stored.get("hits", {})]
        if missing:
            ids, lengths = synthphone.utterances(cfg)
            fresh = _hits_in_parallel(cfg, missing, len(ids), jobs, stop=stop)
            stored = {"utt_ids": list(ids), "lengths": lengths.tolist(),
                      "hits": {**stored.get("hits", {}), **{v.key: h.tolist() for v, h in fresh.items()}}}
            cache.write_json(path, stored)
    return stored


class HitsStopped(Exception):
    """The hits were being counted when a stop was asked for: nothing was stored."""


def _hits_in_parallel(cfg, views, n_utts: int, jobs: int, context: str = "spawn", stop=None) -> dict:
    """``synthphone.information_hits`` over every utterance, its utterances dealt to ``jobs`` processes
    (started by ``context``: spawned, so no parent holding torch's threads is forked). ``stop``: an event
    that, once set, kills the processes and raises ``HitsStopped`` (then even one job runs in a process)."""
    from ablation.data import synthphone

    jobs = max(1, min(int(jobs), n_utts))
    if jobs == 1 and stop is None:
        return synthphone.information_hits(cfg, views)
    import concurrent.futures
    import multiprocessing

    # every jobs-th utterance: each process gets a share of every length (their batches cost alike)
    parts = [np.arange(k, n_utts, jobs) for k in range(jobs)]
    ctx = multiprocessing.get_context(context)
    pids = ctx.SimpleQueue()  # each process's pid, sent as it starts: what a stop kills
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_send_pid,
                                                initargs=(pids,)) as pool:  # fmt: skip
        futures = [pool.submit(_hits_of, cfg, views, part) for part in parts]
        while stop is not None:
            done, pending = concurrent.futures.wait(futures, 0.2, concurrent.futures.FIRST_EXCEPTION)
            if not pending or any(f.exception() is not None for f in done):
                break
            if stop.is_set():
                _kill_pool(pids)
                raise HitsStopped("the ceiling hits were being counted when a stop was asked for")
        results = [f.result() for f in futures]
    return {v: np.sum([r[v] for r in results], axis=0) for v in views}


def _send_pid(pids) -> None:
    import os

    pids.put(os.getpid())


def _kill_pool(pids, wait_s: float = 30.0) -> None:
    """Kill a pool's processes now: one killed breaks the pool, and the pool then ends the others (leaving
    its ``with`` block joins them). A pool whose processes are still starting is waited for (up to
    ``wait_s``) until one has said its pid."""
    import contextlib
    import os
    import signal
    import time

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not pids.empty():
            with contextlib.suppress(ProcessLookupError):  # gone already: the pool is broken either way
                os.kill(pids.get(), signal.SIGKILL)
            return
        time.sleep(0.05)


def _hits_of(cfg, views, which) -> dict:
    """One process's share (a module-level function: what a process pool can send)."""
    from ablation.data import synthphone

    return synthphone.information_hits(cfg, views, which)
