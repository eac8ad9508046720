"""Exact inference in the hidden Markov models behind the generated corpus.

Two forward-backward implementations give the same posteriors:

- ``forward_backward``: any HMM, one sequence, log space. Small and obviously
  right; the tests check it against enumeration of every state path.
- ``chain_forward_backward``: the phone-loop topology of ``synthphone`` (chains
  of left-to-right sub-states whose last state enters the first state of
  another chain), batched over padded utterances, scaled in probability space.
  The structure makes a step cost O(S + C^2) instead of O(S^2), which is what
  makes the exact ceiling of a 3.3M-frame corpus take seconds.

First-order autoregressive noise (``x_t = mu[s_t] + e_t``, ``e_t = rho e_{t-1} +
w_t``) keeps the model exact: ``ar1_log_factors`` splits the density of the
innovations ``y_t = x_t - rho x_{t-1}`` into a per-frame factor per state and a
fixed ``S x S`` term that is folded into the transition matrix.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.special import logsumexp


def _transposed(cross):
    """``cross.T`` ready for products: CSR for a sparse ``cross`` (a word lexicon's), else contiguous."""
    return cross.T.tocsr() if sparse.issparse(cross) else np.ascontiguousarray(cross.T)


def forward_backward(
    log_emit: np.ndarray, log_trans: np.ndarray, log_init: np.ndarray, log_final: np.ndarray | None = None
) -> np.ndarray:
    """Posterior state marginals ``[T, S]`` of one sequence.

    ``log_emit[t, s]`` is log p(x_t | s) up to a per-frame constant,
    ``log_trans[i, j]`` log p(s_{t+1} = j | s_t = i), ``log_init[s]`` log p(s_0 = s)
    and ``log_final[s]`` (optional) the log weight of ending in ``s`` after the
    last frame (e.g. the exit probability of a model whose length is observed).
    """
    log_emit = np.asarray(log_emit, dtype=np.float64)
    log_trans = np.asarray(log_trans, dtype=np.float64)
    n_frames, n_states = log_emit.shape
    alpha = np.empty((n_frames, n_states))
    beta = np.zeros((n_frames, n_states))
    alpha[0] = np.asarray(log_init, dtype=np.float64) + log_emit[0]
    for t in range(1, n_frames):
        alpha[t] = log_emit[t] + logsumexp(alpha[t - 1][:, None] + log_trans, axis=0)
    if log_final is not None:
        beta[-1] = log_final
    for t in range(n_frames - 2, -1, -1):
        beta[t] = logsumexp(log_trans + (log_emit[t + 1] + beta[t + 1])[None, :], axis=1)
    gamma = alpha + beta
    gamma -= logsumexp(gamma, axis=1, keepdims=True)
    return np.exp(gamma)


def ar1_log_factors(
    x: np.ndarray, means: np.ndarray, sd, rho: float, lengths: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split the AR(1) Gaussian likelihood into per-frame and pairwise terms.

    Model: ``x_t = means[s_t] + e_t`` with ``e_0 ~ N(0, sd^2)`` (the stationary
    variance) and ``e_t = rho e_{t-1} + w_t``, ``w_t ~ N(0, sd^2 (1 - rho^2))``,
    independent over dimensions. Returns ``(log_emit, log_pair)`` with

        log p(x | s) = sum_t log_emit[t, s_t] + sum_{t>=1} log_pair[s_{t-1}, s_t] + const(x)

    so ``log_trans + log_pair`` and ``log_emit`` define an ordinary HMM with the
    same posteriors. ``x`` is ``[T, D]`` or padded ``[B, T, D]`` with ``lengths``
    (frames past a length get 0). ``log_pair`` is 0 when ``rho == 0``.
    """
    # the model is translation invariant; centring keeps the split terms small
    centre = np.asarray(means, dtype=np.float64).mean(axis=0)
    x = np.asarray(x, dtype=np.float64) - centre
    means = np.asarray(means, dtype=np.float64) - centre
    single = x.ndim == 2
    if single:
        x = x[None]
    n_batch, n_frames, _ = x.shape
    lengths = np.full(n_batch, n_frames) if lengths is None else np.asarray(lengths)
    sd = np.broadcast_to(np.asarray(sd, dtype=np.float64), (means.shape[1],))
    sd_w = sd * np.sqrt(1.0 - rho**2)

    mw_t = np.ascontiguousarray((means / sd_w**2).T)  # [D, S]
    q = np.sum(means**2 / sd_w**2, axis=1)  # ||mu_s||^2 in innovation units
    has_next = np.arange(n_frames)[None, :] < lengths[:, None] - 1  # [B, T]
    y = x.copy()
    y[:, 1:] -= rho * x[:, :-1]  # innovations y_t = x_t - rho x_{t-1}
    # Frame t is the arriving state j of the pair (t-1, t): -|y_t - mu_j|^2 / 2 + rho q_j / 2 (the
    # per-frame |y_t|^2 dropped), and the leaving state i of (t, t+1): -rho y_{t+1}.mu_i + (rho - rho^2) q_i / 2.
    # Both are projections on mu, so one product with z_t = y_t - rho y_{t+1} gives them.
    z = y
    if rho != 0.0:
        z = y.copy()
        z[:, :-1] -= rho * np.where(has_next[:, :-1, None], y[:, 1:], 0.0)
    log_emit = (z.reshape(-1, z.shape[-1]) @ mw_t).reshape(n_batch, n_frames, -1)
    log_emit += (0.5 * rho - 0.5) * q
    if rho != 0.0:
        log_emit += 0.5 * (rho - rho**2) * q
        for b, n in enumerate(lengths):  # the last real frame has no successor
            log_emit[b, n - 1] -= 0.5 * (rho - rho**2) * q
    # the first frame has no predecessor: a stationary Gaussian on x_0 itself
    m0 = means / sd**2
    log_emit[:, 0] = x[:, 0] @ m0.T - 0.5 * np.sum(means * m0, axis=1)
    if rho != 0.0 and n_frames > 1:
        log_emit[:, 0] += np.where(has_next[:, :1], (-rho * y[:, 1]) @ mw_t + 0.5 * (rho - rho**2) * q, 0.0)
    for b, n in enumerate(lengths):
        log_emit[b, n:] = 0.0
    return (log_emit[0] if single else log_emit), ar1_log_pair(means, sd, rho)


def ar1_log_pair(means: np.ndarray, sd, rho: float) -> np.ndarray:
    """The fixed ``[S, S]`` term of ``ar1_log_factors``: ``-rho |mu_i - mu_j|^2 / (2 sd_w^2)`` (<= 0)."""
    means = np.asarray(means, dtype=np.float64)
    sd_w = np.broadcast_to(np.asarray(sd, dtype=np.float64), (means.shape[1],)) * np.sqrt(1.0 - rho**2)
    scaled = (means - means.mean(axis=0)) / sd_w
    d2 = np.sum(scaled**2, axis=1)
    return -0.5 * rho * np.maximum(d2[:, None] + d2[None, :] - 2.0 * scaled @ scaled.T, 0.0)


def ar1_scaled_is_safe(means: np.ndarray, sd, rho: float, limit: float = 100.0) -> bool:
    """Whether ``chain_forward_backward`` (probability space) can take ``ar1_log_factors`` exactly.

    With ``rho > 0`` the split terms are of size ``rho |mu|^2 / sd_w^2`` and only
    their sum is a likelihood; when they are large (almost no noise), their
    exponentials under- or overflow and only log space (``forward_backward``) is exact.
    """
    if rho == 0.0:
        return True
    means = np.asarray(means, dtype=np.float64)
    sd_w = np.broadcast_to(np.asarray(sd, dtype=np.float64), (means.shape[1],)) * np.sqrt(1.0 - rho**2)
    q = np.sum(((means - means.mean(axis=0)) / sd_w) ** 2, axis=1)
    return bool(rho * q.max() <= limit)


# ---- the phone-loop topology ---------------------------------------------
def chain_transition_matrix(stay: np.ndarray, cross: np.ndarray, advance: np.ndarray | None = None) -> np.ndarray:
    """Dense ``[S, S]`` transition matrix of the chain topology (for checks).

    ``S = C * n_sub``; state ``c * n_sub + k`` is sub-state ``k`` of chain ``c``.
    A state stays with ``stay[s]``; otherwise sub-state ``k`` moves to ``k + 1``
    (times ``advance[s]``), and the last sub-state of chain ``c`` enters the
    first sub-state of chain ``q`` with weight ``cross[c, q]``.
    """
    stay = np.asarray(stay, dtype=np.float64)
    n_chains = cross.shape[0]
    n_states = stay.shape[0]
    n_sub = n_states // n_chains
    advance = np.ones(n_states) if advance is None else advance
    leave = 1.0 - stay
    trans = np.diag(stay)
    for c in range(n_chains):
        for k in range(n_sub - 1):
            s = c * n_sub + k
            trans[s, s + 1] = leave[s] * advance[s]
        last = c * n_sub + n_sub - 1
        trans[last, np.arange(n_chains) * n_sub] = leave[last] * cross[c]
    return trans


class _ChainSteps:
    """Products with the chain transition matrix of a batch, factors computed once."""

    def __init__(self, stay: np.ndarray, cross: np.ndarray, advance: np.ndarray | None = None):
        n_batch, n_states = stay.shape
        self.shape = (n_batch, cross.shape[0], n_states // cross.shape[0])
        advance = np.ones(n_states) if advance is None else np.asarray(advance, dtype=np.float64)
        leave = ((1.0 - stay) * advance).reshape(self.shape)
        self.stay, self.cross, self.cross_t = stay, cross, _transposed(cross)
        # ``dense @ sparse`` is computed by scipy as ``(sparse.T @ dense.T).T``, building ``sparse.T`` at every
        # call (a step per frame): the transposes are made here once and the same product is taken
        self.cross_right = cross.transpose() if sparse.issparse(cross) else None
        self.cross_t_right = self.cross_t.transpose() if sparse.issparse(cross) else None
        self.advance = leave[:, :, :-1]  # k -> k + 1 within a chain
        self.exit = np.ascontiguousarray((1.0 - stay).reshape(self.shape)[:, :, -1])  # last -> other chains

    def forward(self, a: np.ndarray) -> np.ndarray:
        """``a @ trans`` per sequence."""
        a3 = a.reshape(self.shape)
        out = a * self.stay
        out3 = out.reshape(self.shape)
        out3[:, :, 1:] += a3[:, :, :-1] * self.advance
        out3[:, :, 0] += _times(a3[:, :, -1] * self.exit, self.cross, self.cross_right)
        return out

    def backward(self, v: np.ndarray) -> np.ndarray:
        """``trans @ v`` per sequence."""
        v3 = v.reshape(self.shape)
        out = v * self.stay
        out3 = out.reshape(self.shape)
        out3[:, :, :-1] += self.advance * v3[:, :, 1:]
        out3[:, :, -1] += self.exit * _times(v3[:, :, 0], self.cross_t, self.cross_t_right)
        return out


def _times(x: np.ndarray, m, m_t) -> np.ndarray:
    """``x @ m``; ``m_t``: ``m.transpose()`` made once when ``m`` is sparse (else None)."""
    return x @ m if m_t is None else (m_t @ x.transpose()).transpose()


def chain_forward_step(a: np.ndarray, stay: np.ndarray, cross: np.ndarray, advance: np.ndarray | None = None):
    """``a @ trans`` for a batch: ``a`` and ``stay`` are ``[B, S]``."""
    return _ChainSteps(stay, cross, advance).forward(a)


def chain_backward_step(v: np.ndarray, stay: np.ndarray, cross: np.ndarray, advance: np.ndarray | None = None):
    """``trans @ v`` for a batch: ``v`` and ``stay`` are ``[B, S]``."""
    return _ChainSteps(stay, cross, advance).backward(v)


def gauss_log_emit(x: np.ndarray, means: np.ndarray, state_class: np.ndarray, whiten: np.ndarray,
                   log_det: np.ndarray) -> np.ndarray:  # fmt: skip
    """``log N(x_t; means[s], Sigma_k)`` ``[..., S]`` for frames ``x`` ``[..., D]``, one covariance per class.

    State ``s`` has class ``k = state_class[s]``; ``whiten[k]`` is ``L_k^-1`` for
    ``Sigma_k = L_k L_k^T`` and ``log_det[k] = log |L_k|``. Frames are
    independent given the states (no pair term), constants common to all
    states dropped.
    """
    # log N = x' P_k mu_s - 0.5 mu_s' P_k mu_s - 0.5 x' P_k x - log|L_k|: one product with every state's
    # P_k mu_s, plus the quadratic term of each class gathered per state
    x = np.asarray(x, dtype=np.float64)
    state_class = np.asarray(state_class)
    prec = np.einsum("kji,kjl->kil", whiten, whiten)  # P_k = L_k^-T L_k^-1
    lin = np.einsum("sij,sj->si", prec[state_class], means)  # [S, D]
    const = -0.5 * np.sum(lin * means, axis=1) - log_det[state_class]
    n_class, dim = whiten.shape[:2]
    y = (x @ whiten.reshape(n_class * dim, -1).T).reshape(*x.shape[:-1], n_class, dim)  # L_k^-1 x per class
    quad = -0.5 * np.sum(y * y, axis=-1)  # [..., K]
    out = x @ lin.T
    out += const
    out += quad[..., state_class]
    return out


def chain_forward_backward(
    emit: np.ndarray,
    lengths: np.ndarray,
    stay: np.ndarray,
    cross: np.ndarray,
    init: np.ndarray,
    final: np.ndarray,
    advance: np.ndarray | None = None,
) -> np.ndarray:
    """Posterior state marginals ``[B, T, S]`` of a padded batch (0 past each length).

    ``emit`` ``[B, T, S]``: emission likelihoods, each frame scaled by any
    positive constant (e.g. ``exp(log_emit - max)``); ``stay`` ``[B, S]``: the
    self-loop probability of every state, per sequence (speaking rate);
    ``cross``, ``advance``: see ``chain_transition_matrix``; ``init`` ``[S]``:
    initial probabilities; ``final`` ``[B, S]``: the weight of stopping after
    the last frame in each state.
    """
    n_batch, n_frames, n_states = emit.shape
    lengths = np.asarray(lengths)
    steps = _ChainSteps(stay, cross, advance)
    ends_at = {int(t) - 1: np.flatnonzero(lengths == t) for t in np.unique(lengths)}
    post = np.empty((n_frames, n_batch, n_states))  # time-major: post[t] is contiguous

    # frames past a sequence's end hold junk (even NaN) in that row only; they are zeroed at the end
    with np.errstate(invalid="ignore", divide="ignore"):
        a = init[None, :] * emit[:, 0]
        a /= a.sum(axis=1, keepdims=True)
        post[0] = a
        for t in range(1, n_frames):
            a = steps.forward(a)
            a *= emit[:, t]
            a /= a.sum(axis=1, keepdims=True)
            post[t] = a

        b = np.ones((n_batch, n_states))
        for t in range(n_frames - 1, -1, -1):
            if t < n_frames - 1:
                b = steps.backward(b * emit[:, t + 1])
            if t in ends_at:
                b[ends_at[t]] = final[ends_at[t]]
            b /= b.sum(axis=1, keepdims=True)
            post[t] *= b
        post /= post.sum(axis=2, keepdims=True)
    post = post.transpose(1, 0, 2)
    for i, n in enumerate(lengths):
        post[i, n:] = 0.0
    return post


def chain_centre_posteriors(
    emit: np.ndarray,
    lengths: np.ndarray,
    centre: np.ndarray,
    stay: np.ndarray,
    cross: np.ndarray,
    init: np.ndarray,
    final: np.ndarray,
    advance: np.ndarray | None = None,
    state_major: bool = False,
) -> np.ndarray:
    """Posterior state marginal ``[B, S]`` of one frame of each short sequence (a window).

    Like ``chain_forward_backward`` but every sequence has its own ``init``
    ``[B, S]`` (e.g. the prior state marginal inside an utterance, or the start
    state at its first frame) and only frame ``centre[b]`` is returned, so a
    batch of windows costs one sweep over their width. Works state-major
    (``[C, n_sub, B]``): every operation then runs along contiguous rows.
    ``state_major``: ``emit`` is already ``[S, T, B]`` (what ``ceiling.window_posteriors`` gathers), and is
    read frame by frame in place instead of being transposed first; the values computed are the same.
    """
    if state_major:
        n_states, n_frames, n_batch = emit.shape
    else:
        n_batch, n_frames, n_states = emit.shape
    n_chains = cross.shape[0]
    shape = (n_chains, n_states // n_chains, n_batch)
    lengths, centre = np.asarray(lengths), np.asarray(centre)
    advance = np.ones(n_states) if advance is None else np.asarray(advance, dtype=np.float64)
    st = np.ascontiguousarray(stay.T).reshape(shape)
    adv = (np.ascontiguousarray(((1.0 - stay) * advance).T).reshape(shape))[:, :-1]
    ex = 1.0 - st[:, -1]  # [C, B]: last sub-state -> other chains
    cross_t = _transposed(cross)
    if state_major:
        em = [emit[:, t].reshape(shape) for t in range(n_frames)]  # views: each frame's rows are contiguous
    else:
        em = np.ascontiguousarray(emit.transpose(1, 2, 0)).reshape(n_frames, *shape)

    def forward(a):
        out = a * st
        out[:, 1:] += a[:, :-1] * adv
        out[:, 0] += cross_t @ (a[:, -1] * ex)
        return out

    def backward(v):
        out = v * st
        out[:, :-1] += adv * v[:, 1:]
        out[:, -1] += ex * (cross @ v[:, 0])
        return out

    def normalise(x):
        x /= x.sum(axis=(0, 1))
        return x

    fwd = np.empty(shape)
    bwd = np.empty(shape)
    # columns past their own length or centre hold junk (even NaN) that no stored value reads
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a = normalise(np.ascontiguousarray(init.T).reshape(shape) * em[0])
        for t in range(int(centre.max()) + 1):
            if t:
                a = normalise(forward(a) * em[t])
            cols = centre == t
            fwd[..., cols] = a[..., cols]
        b = np.ones(shape)
        fin = np.ascontiguousarray(final.T).reshape(shape)
        for t in range(int(lengths.max()) - 1, int(centre.min()) - 1, -1):
            if t < n_frames - 1:
                b = backward(b * em[t + 1])
            cols = lengths - 1 == t
            b[..., cols] = fin[..., cols]
            b = normalise(b)
            cols = centre == t
            bwd[..., cols] = b[..., cols]
        post = (fwd * bwd).reshape(n_states, n_batch).T
        post /= post.sum(axis=1, keepdims=True)
    return post
