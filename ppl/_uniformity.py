"""An exact test of discrete uniformity for SBC ranks, from the ECDF of the ranks.

Under calibration, the rank of a prior draw among L posterior draws is uniform on
{0, ..., L} (Talts et al. 2018, theorem 1). With N ranks, the count of ranks below a
threshold t in {1, ..., L}, C_t = #{r < t}, is Binomial(N, t / (L + 1)), and the counts at
increasing thresholds form a Markov chain:

    C_t' - C_t | C_t  ~  Binomial(N - C_t, (p_t' - p_t) / (1 - p_t)),   p_t = t / (L + 1).

The test is the ECDF test of Säilynoja, Bürkner and Vehtari (2022), "Graphical test for
discrete uniformity and its applications in goodness-of-fit evaluation and multiple sample
comparison", Statistics and Computing 32:32, as used for SBC by Modrák et al. (2023),
"Simulation-based calibration checking for Bayesian computation: the choice of test
quantities shapes sensitivity", Bayesian Analysis. At each evaluation threshold t the
ECDF's two-sided binomial tail probability is

    tail_t(c) = min(1, 2 min(P(C_t <= c), P(C_t >= c))),

and the statistic is the smallest of them over the thresholds, T = min_t tail_t(C_t) (small
T: the ECDF leaves a simultaneous band somewhere). The p-value P(T <= T_observed) under
uniformity is computed EXACTLY, not simulated: the event T > T_observed is "every C_t lies in
the interval {c: tail_t(c) > T_observed}", whose probability is a forward recursion of the
Markov chain above over the thresholds (banded: O(K w d) for K thresholds, w live counts
and increments up to d; counts whose probability is below 1e-40 are dropped). The same
recursion gives the simultaneous band that :func:`ecdf_band` draws (Säilynoja et al. obtain
the band's adjusted level by simulation or numerical optimisation; here its coverage is
computed exactly).

Thresholds: every t in 1..L when L + 1 <= N, else N - 1 equally spaced ones (more thresholds
than ranks mostly add points that no rank separates, and cost time). The statistic is
discrete, so the p-value is exact and conservative: P(p <= a) <= a, with equality at the
values p can take.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.special import gammaln

CHUNK = 256  # scalars whose recursions run together
TINY = 1e-40  # probabilities below this are dropped from the recursion


def thresholds(num_draws: int, num_ranks: int) -> np.ndarray:
    """The thresholds t (1 <= t <= L) at which the ECDF of ranks in 0..L is evaluated."""
    edges = num_draws + 1
    k = min(edges, max(num_ranks, 2))
    return np.unique(np.round(np.arange(1, k) * edges / k).astype(int))


@functools.lru_cache(maxsize=16)
def _tails(n: int, num_draws: int, ts: tuple) -> np.ndarray:
    """tail_t(c) for each threshold t in `ts` and count c = 0..n: shape (K, n + 1)."""
    from scipy.stats import binom  # here, not at the top: it adds 0.4 s to `import ppl`

    p = np.asarray(ts) / (num_draws + 1.0)
    c = np.arange(n + 1)
    cdf = binom.cdf(c[None, :], n, p[:, None])
    sf = binom.sf(c[None, :] - 1, n, p[:, None])  # P(C >= c)
    return np.minimum(1.0, 2.0 * np.minimum(cdf, sf))


@functools.lru_cache(maxsize=16)
def _log_factorials(n: int) -> np.ndarray:
    return gammaln(np.arange(n + 1) + 1.0)


def _step(prob: np.ndarray, window: np.ndarray, n: int, q: float):
    """One step of the count chain: C' = C + Binomial(n - C, q), from `prob` (S, w) on the
    contiguous counts `window`. Increments whose probability is below TINY even from the
    smallest count (the most ranks left) are left out: the step is banded."""
    lf = _log_factorials(n)
    most = n - int(window[0])  # the largest number of ranks left to place
    d = np.arange(most + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q, log_1q = np.log(q), np.log1p(-q)
        widest = (lf[most] - lf[d] - lf[most - d] + np.where(d > 0, d * log_q, 0.0)
                  + np.where(most - d > 0, (most - d) * log_1q, 0.0))
    d_max = int(np.flatnonzero(widest > np.log(TINY)).max(initial=0))
    remaining = n - window
    out = np.zeros((prob.shape[0], window.size + d_max))
    for j in range(d_max + 1):
        r = np.maximum(remaining, j)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pmf = lf[r] - lf[j] - lf[r - j] + (j * log_q if j else 0.0) + np.where(r > j, (r - j) * log_1q, 0.0)
        pmf = np.where(remaining >= j, np.exp(log_pmf), 0.0)
        out[:, j: j + window.size] += prob * pmf
    return out, np.arange(window[0], window[0] + window.size + d_max)


def _probability_inside(lower: np.ndarray, upper: np.ndarray, n: int, p: np.ndarray) -> np.ndarray:
    """P(lower[s, k] <= C_k <= upper[s, k] at every threshold k), per row s, for the count
    chain of n uniform ranks at threshold probabilities `p` (increasing). Exact forward
    recursion on the union of the rows' intervals, with counts of probability below TINY
    (for every row) dropped: an absolute error below K (n + 1) TINY."""
    num = lower.shape[0]
    window = np.zeros(1, dtype=int)  # before the first threshold the count is 0
    prob = np.ones((num, 1))
    previous = 0.0
    for k in range(len(p)):
        q = (p[k] - previous) / (1.0 - previous)
        prob, counts = _step(prob, window, n, q)
        prob *= (counts[None, :] >= lower[:, k, None]) & (counts[None, :] <= upper[:, k, None])
        alive = np.flatnonzero(prob.max(axis=0) > TINY)
        if alive.size == 0:
            return np.zeros(num)
        prob = prob[:, alive[0]: alive[-1] + 1]
        window, previous = counts[alive[0]: alive[-1] + 1], p[k]
    return prob.sum(axis=1)


def _intervals(tails: np.ndarray, level: np.ndarray):
    """Per row of `level` (S,) and threshold: the smallest and largest count c with
    tail_t(c) > level (empty intervals have lower > upper)."""
    inside = tails[None, :, :] > level[:, None, None]  # (S, K, n + 1)
    c = np.arange(tails.shape[1])
    lower = np.where(inside, c, tails.shape[1]).min(axis=2)
    upper = np.where(inside, c, -1).max(axis=2)
    return lower, upper


def _counts(ranks: np.ndarray, num_draws: int, ts: np.ndarray) -> np.ndarray:
    """C_t = #{ranks < t} per column of `ranks` (n, S) in 0..L: shape (S, K)."""
    n, s = ranks.shape
    offsets = ranks + (num_draws + 1) * np.arange(s)[None, :]
    hist = np.bincount(offsets.ravel(), minlength=(num_draws + 1) * s).reshape(s, num_draws + 1)
    below = np.concatenate([np.zeros((s, 1), hist.dtype), np.cumsum(hist, axis=1)], axis=1)  # below[:, t]
    return below[:, ts]


def ecdf_statistic(ranks, num_draws: int) -> np.ndarray:
    """T = min over thresholds of the ECDF's two-sided binomial tail probability, per column
    of `ranks` (shape (n, S), values in 0..num_draws)."""
    ranks = _check(ranks, num_draws)
    n = ranks.shape[0]
    ts = thresholds(num_draws, n)
    tails = _tails(n, num_draws, tuple(ts))
    counts = _counts(ranks, num_draws, ts)
    return tails[np.arange(len(ts))[None, :], counts].min(axis=1)


def ecdf_p_values(ranks, num_draws: int) -> np.ndarray:
    """Exact p-values of the ECDF uniformity test, one per column of `ranks`.

    Args:
      ranks: integer array (n, S) of n ranks for each of S quantities, in 0..num_draws;
        a 1-d array is one quantity.
      num_draws: L, the number of posterior draws each rank was computed among.

    Returns:
      array (S,) (a float for 1-d input) of P(T <= T_observed) under uniformity; NaN where
      there are no ranks.

    Example:
      >>> ecdf_p_values(np.random.default_rng(0).integers(0, 101, (200, 3)), 100)
    """
    one = np.ndim(ranks) == 1
    ranks = _check(ranks, num_draws)
    n, s = ranks.shape
    if n == 0:
        out = np.full(s, np.nan)
        return out[0] if one else out
    ts = thresholds(num_draws, n)
    tails = _tails(n, num_draws, tuple(ts))
    t_obs = tails[np.arange(len(ts))[None, :], _counts(ranks, num_draws, ts)].min(axis=1)
    # Inside: tail strictly above T_observed (with a relative margin, so that values equal to
    # it up to rounding count as "as extreme", on the p-value's side).
    p = np.empty(s)
    for j in range(0, s, CHUNK):  # bounded memory for sites with many scalars
        lower, upper = _intervals(tails, t_obs[j: j + CHUNK] * (1.0 + 1e-9))
        p[j: j + CHUNK] = 1.0 - _probability_inside(lower, upper, n, ts / (num_draws + 1.0))
    p = np.clip(p, 0.0, 1.0)
    return p[0] if one else p


def ecdf_band(num_ranks: int, num_draws: int, level: float = 0.95):
    """The simultaneous `level` band of the ECDF of `num_ranks` uniform ranks in 0..L.

    Returns `(p, lower, upper)`: threshold probabilities p_t = t / (L + 1) and the band's
    bounds on the ECDF value C_t / n at each, such that under uniformity the whole ECDF lies
    within them with probability at least `level` (the largest band-probability gamma with
    P(all inside) >= level, found by bisection on the exact recursion).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"ecdf_band: level must lie in (0, 1), got {level!r}.")
    n = int(num_ranks)
    ts = thresholds(num_draws, n)
    tails = _tails(n, num_draws, tuple(ts))
    p = ts / (num_draws + 1.0)
    lo, hi = 0.0, 1.0  # P(inside | gamma) decreases in gamma; find the largest gamma >= level
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _probability_inside(*_intervals(tails, np.array([mid])), n, p)[0] >= level:
            lo = mid
        else:
            hi = mid
    lower, upper = _intervals(tails, np.array([lo]))
    return p, lower[0] / n, upper[0] / n


def _check(ranks, num_draws):
    if not isinstance(num_draws, (int, np.integer)) or isinstance(num_draws, bool) or num_draws < 1:
        raise ValueError(f"num_draws must be a positive int, got {num_draws!r}.")
    ranks = np.asarray(ranks)
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    if ranks.ndim != 2:
        raise ValueError(f"ranks must have shape (n,) or (n, S), got shape {ranks.shape}.")
    if ranks.size and (ranks.min() < 0 or ranks.max() > num_draws):
        raise ValueError(f"ranks must lie in 0..{num_draws} (num_draws), got values in "
                         f"{ranks.min()}..{ranks.max()}.")
    return ranks.astype(np.int64)
