"""Convergence diagnostics per scalar: rank-normalised split R-hat, bulk and tail ESS.

Vectorised over all scalars at once, on chains split in halves, following Vehtari, Gelman,
Simpson, Carpenter and Bürkner (2021), "Rank-normalization, folding, and localization: an
improved R-hat", Bayesian Analysis 16(2): NumPyro's `gelman_rubin`, and the ESS of NumPyro's
`effective_sample_size` computed here with fewer transforms. Thousands of chains make millions
of draws per scalar: the ranks come from one sort of 64-bit keys, and the quantiles and the
median from the same sorted draws. Measured (4096 chains x 500 draws x 10 scalars, 2-core AMD
EPYC): `per_site` 16.1 s -> 9.7 s.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
from numpyro.diagnostics import gelman_rubin
from scipy.fft import next_fast_len
from scipy.special import ndtri


def _split(x):
    """(C, S, K) -> (2C, S // 2, K): each chain halved, as split R-hat and ESS need."""
    c, s = x.shape[:2]
    half = s // 2
    return np.concatenate([x[:, :half], x[:, s - half:]], axis=0)


def _sorted(t):
    """Each row of ``t`` (K, n) sorted: ``(order, ordered)``, the argsort and the sorted
    values. One sort of 64-bit keys, a value's order-preserving bits above its index's: 4x
    faster than ``np.argsort`` (10 rows of 2M draws: 0.6 s against 2.6 s), exact for
    values apart by more than the dropped low bits (float32 draws always); where float64
    draws within ~1e-9 of one another come out of order, their row is sorted again."""
    n = t.shape[1]
    bits = max(1, (n - 1).bit_length())
    if bits > 40:
        order = np.argsort(t, axis=1)
        return order, np.take_along_axis(t, order, axis=1)
    u = (t + 0.0).view(np.uint64)  # (+ 0.0: -0.0 and 0.0 are one value)
    # Order-preserving: a negative value's bits all flipped, a positive one's sign bit.
    key = u ^ ((u.view(np.int64) >> 63).view(np.uint64) | np.uint64(1 << 63))
    key &= ~np.uint64((1 << bits) - 1)
    key |= np.arange(n, dtype=np.uint64)
    key.sort(axis=1)
    key &= np.uint64((1 << bits) - 1)
    order = key.astype(np.intp)
    ordered = np.take_along_axis(t, order, axis=1)
    for r in np.flatnonzero((ordered[:, 1:] < ordered[:, :-1]).any(axis=1)):
        # Nearly sorted (only values with equal keys can be out of order): a merge sort's
        # runs make this pass about linear.
        again = np.argsort(ordered[r], kind="stable")
        order[r], ordered[r] = order[r][again], ordered[r][again]
    return order, ordered


def _tied_places(ordered):
    """Where ``ordered`` (K, n, each row sorted) has ties: ``(rows, places, ranks)``, the
    sorted places in a run of equal values and the run's average (1-based) rank, which
    replaces the place's own rank ``place + 1``."""
    n = ordered.shape[1]
    rows, i = np.nonzero(ordered[:, 1:] == ordered[:, :-1])  # place i ties with i + 1
    if not rows.size:
        return rows, i, np.zeros(0)
    # Runs of consecutive tied pairs: a run of pairs i .. j covers places i .. j + 1.
    key = rows.astype(np.int64) * n + i
    new_run = np.ones(key.size, bool)
    new_run[1:] = np.diff(key) != 1
    first = i[new_run]
    last = i[np.append(new_run[1:], True)] + 1  # after each run's last pair
    rank = (first + last) / 2.0 + 1.0  # per run
    counts = last - first + 1
    run_rows = rows[new_run]
    places = np.repeat(first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    return np.repeat(run_rows, counts), places, np.repeat(rank, counts)


def _unsorted(order, values, shape):
    """``values`` (one row, or one per row) put back at the places ``order`` took them from."""
    out = np.empty(shape, float)
    np.put_along_axis(out, order, np.broadcast_to(values, shape), axis=1)
    return out


def _places(ordered, f=lambda rank: rank):
    """``f`` of the (1-based) rank of each sorted place of ``ordered`` (K, n, rows sorted),
    ties given their average rank: one row of ``f(1 .. n)`` where nothing ties (``f`` is
    then evaluated n times, not K n)."""
    n = ordered.shape[1]
    base = f(np.arange(1.0, n + 1.0))
    rows, places, ranks = _tied_places(ordered)
    if not rows.size:
        return base
    out = np.broadcast_to(base, ordered.shape).copy()
    out[rows, places] = f(ranks)
    return out


def _ranked(t, f=lambda rank: rank):
    """``f`` of each value's (1-based) rank in its row of ``t`` (K, n), ties given their
    average rank, a row holding a NaN all NaN; and the rows sorted."""
    order, ordered = _sorted(t)
    out = _unsorted(order, _places(ordered, f), t.shape)
    out[np.isnan(t).any(axis=1)] = np.nan
    return out, ordered


def _average_ranks(a):
    """Ranks (1-based) of each column of ``a`` (n, K), ties given their average rank, and a
    column holding a NaN all NaN (scipy.stats.rankdata(a, axis=0), without importing
    scipy.stats: 0.4 s of every ``import ppl``). Sorted row by row of the transpose (a
    column sort of a row-major array is strided: 4x slower, measured on 128k x 8 draws)."""
    return _ranked(np.ascontiguousarray(np.asarray(a, float).T))[0].T


def _rank_normalise(x):
    """The rank-normalised draws of ``x`` (chains, draws, K) and each scalar's sorted draws
    (K, chains x draws): the normal scores of the ranks (`_ranked` of the transpose)."""
    c, s = x.shape[:2]
    n = c * s
    z, ordered = _ranked(np.ascontiguousarray(x.reshape(n, -1).T), lambda rank: ndtri((rank - 0.375) / (n + 0.25)))
    return z.T.reshape(x.shape), ordered


def _quantiles(ordered, q):
    """``np.quantile``'s default (linear) quantiles ``q`` of each row of sorted ``ordered``,
    (len(q), K)."""
    n = ordered.shape[1]
    h = (n - 1) * np.asarray(q, float)
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    a, b = ordered[:, lo], ordered[:, hi]
    out = a + (h - lo) * (b - a)
    out[np.isnan(ordered).any(axis=1)] = np.nan
    return out.T


def _mean_autocovariance(x):
    """The chains' mean of each chain's biased autocovariance of ``x`` (C, N, K) at lags
    0 .. N - 1, (N, K): by FFT, the chains' power spectra averaged before the one inverse
    transform per scalar (it is linear); the same numbers as NumPyro's ``autocovariance``
    averaged over chains, with a C-th of its inverse transforms."""
    n = x.shape[1]
    m = 2 * next_fast_len(n)
    centred = np.ascontiguousarray(np.moveaxis(x - x.mean(axis=1, keepdims=True), 1, -1))  # (C, K, N)
    f = np.fft.rfft(centred, n=m, axis=-1)
    power = (f.real ** 2 + f.imag ** 2).mean(axis=0)
    return np.fft.irfft(power, n=m, axis=-1)[:, :n].T / n


def _ess(x):
    """ESS of draws ``x`` (chains, draws, K), as Stan and ArviZ compute it (Geyer's initial
    monotone sequence over the chains' combined autocorrelation; Stan Reference Manual,
    "Effective sample size"; the formula of NumPyro's ``effective_sample_size``).

    NumPyro's estimate is n / tau with the integrated autocorrelation time tau unbounded
    below: antithetic chains (negative lag-1 autocorrelation, as HMC with a fixed number of
    steps can give) make tau tiny or negative, hence an ESS huge or negative. Stan bounds tau
    below by 1 / log10(n), so such chains get n log10(n).
    """
    c, s = x.shape[:2]
    n = c * s
    with np.errstate(invalid="ignore", divide="ignore"):
        chain_var = x.var(axis=1, ddof=1)
        var_within = chain_var.mean(axis=0)
        var_estimator = var_within * (s - 1) / s
        if c > 1:
            var_estimator = var_estimator + x.mean(axis=1).var(axis=0, ddof=1)
        else:
            var_within = var_estimator
        rho = 1.0 - (var_within - _mean_autocovariance(x)) / var_estimator
        rho[0] = 1.0
        pairs = rho[:-1:2] + rho[1::2]
        pairs = np.concatenate([pairs[:1], np.minimum.accumulate(np.clip(pairs[1:], 0, None), axis=0)], axis=0)
        tau = -1.0 + 2.0 * pairs.sum(axis=0)
        ess = np.asarray(n / tau, float)
    cap = n * np.log10(n)
    return np.where(np.isnan(ess), np.nan, np.where((ess > 0) & (ess < cap), ess, cap))


def _rhat(x):
    """R-hat of chains ``x`` already split in halves (NumPyro's `split_gelman_rubin` would
    halve them again)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(gelman_rubin(x), float)


def _rank_normalised_r_hat(xs):
    """The rank-normalised draws of split chains ``xs``, their R-hat (the larger of the
    bulk's and the folded draws', Vehtari et al. 2021) and each scalar's sorted draws."""
    bulk, ordered = _rank_normalise(xs)
    folded, _ = _rank_normalise(np.abs(xs - _quantiles(ordered, [0.5])[0]))
    return bulk, np.maximum(_rhat(bulk), _rhat(folded)), ordered


def scalar_diagnostics(x) -> dict:
    """R-hat, bulk ESS and tail ESS of draws `x` of shape (chains, draws, K).

    Returns a dict of arrays of shape (K,); NaN where undefined (fewer than 4 draws per
    chain, or constant draws).
    """
    x = np.asarray(x, float)
    k = x.shape[2]
    nan = np.full(k, np.nan)
    if x.shape[1] < 4:
        return {"r_hat": nan, "ess_bulk": nan, "ess_tail": nan}
    xs = _split(x)
    constant = np.all(xs == xs[:1, :1], axis=(0, 1))
    bulk, r_hat, ordered = _rank_normalised_r_hat(xs)
    ess_bulk = _ess(bulk)
    q05, q95 = _quantiles(ordered, [0.05, 0.95])
    ess_tail = np.minimum(_ess((xs <= q05).astype(float)), _ess((xs <= q95).astype(float)))
    for a in (r_hat, ess_bulk, ess_tail):
        a[constant] = np.nan
    return {"r_hat": r_hat, "ess_bulk": ess_bulk, "ess_tail": ess_tail}


# Scalars handled at once: a site of many scalars and many draws is never converted (or, on
# disk as a `ppl.runtime.store.LazyArray`, read) whole; the diagnostics make several copies.
BLOCK_BYTES = 64 << 20


def flatten_sites(samples: dict):
    """Yield (labels, name, array (C, S, K)) per site, or per block of a large site (at most
    `BLOCK_BYTES` of float64 at once; draws on disk are read block by block), with Stan-style
    scalar labels `theta[0]`, `L[1,2]` (0-based)."""
    for name, v in samples.items():
        shape = tuple(v.shape[2:])
        c, s = v.shape[:2]
        labels = [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)] if shape else [name]
        size = int(np.prod(shape, dtype=np.int64))  # (not -1: a run interrupted in warmup has no draws)
        if not shape or c * s * size * 8 <= BLOCK_BYTES:
            yield labels, name, np.asarray(v).reshape(c, s, size).astype(float)
            continue
        per_row = int(np.prod(shape[1:], dtype=np.int64)) * c * s * 8
        rows = max(1, BLOCK_BYTES // max(per_row, 1))
        width = int(np.prod(shape[1:], dtype=np.int64))
        for lo in range(0, shape[0], rows):
            hi = min(shape[0], lo + rows)
            block = np.asarray(v[:, :, lo:hi]).reshape(c, s, (hi - lo) * width).astype(float)
            yield labels[lo * width: hi * width], name, block


def per_site(samples: dict) -> dict:
    """Per site: {"r_hat": array(site_shape), "ess_bulk": ..., "ess_tail": ...}."""
    parts: dict = {}
    for _, name, flat in flatten_sites(samples):
        parts.setdefault(name, []).append(scalar_diagnostics(flat))
    out = {}
    for name, blocks in parts.items():
        shape = tuple(samples[name].shape[2:])
        out[name] = {k: np.concatenate([b[k] for b in blocks]).reshape(shape) for k in blocks[0]}
    return out


R_HAT_FLAG = 1.01
# A chain is named as the one that disagrees only among 3 to this many chains (each candidate
# costs one R-hat of the flagged scalars without it), and only if without it every flagged
# scalar's R-hat is at most OUTLIER_R_HAT (looser than R_HAT_FLAG: measured, three chains of
# 200 draws in one mode of a two-mode mixture gave 1.012) and at most a quarter as far above 1
# as with it.
OUTLIER_MAX_CHAINS = 64
OUTLIER_R_HAT = 1.05


def outlier_chain(samples: dict, r_hat: dict) -> tuple | None:
    """The one chain without which the scalars whose R-hat (``r_hat``, per site) exceeds
    ``R_HAT_FLAG`` agree (see ``OUTLIER_R_HAT``): ``(chain, largest R-hat without it)``, or
    None (fewer than 3 or more than ``OUTLIER_MAX_CHAINS`` chains, or no single chain explains
    the disagreement: then the chains have not mixed in general, or several sit apart). A site
    larger than ``BLOCK_BYTES`` (as float64) is left out rather than read whole."""
    small = [k for k, v in r_hat.items()
             if k in samples and np.size(v) and np.prod(np.shape(samples[k]), dtype=np.int64) * 8 <= BLOCK_BYTES]
    columns = [np.asarray(samples[k]).reshape(*np.shape(samples[k])[:2], -1)[:, :, np.ravel(r_hat[k]) > R_HAT_FLAG]
               for k in small]
    columns = [x for x in columns if x.shape[2]]
    if not columns or not 3 <= columns[0].shape[0] <= OUTLIER_MAX_CHAINS or columns[0].shape[1] < 4:
        return None
    x = np.concatenate(columns, axis=2).astype(float)
    full = np.nanmax(_rank_normalised_r_hat(_split(x))[1])
    without = [np.nanmax(_rank_normalised_r_hat(_split(np.delete(x, c, axis=0)))[1]) for c in range(x.shape[0])]
    chain = int(np.nanargmin(without)) if np.isfinite(without).any() else None
    if chain is None or not without[chain] <= min(OUTLIER_R_HAT, 1 + 0.25 * (full - 1)):
        return None
    return chain, float(without[chain])


class Mixing(NamedTuple):
    """What R-hat says of a run's chains (:func:`mixing`): ``warning``, the message for
    scalars whose R-hat exceeds ``R_HAT_FLAG`` (None when there are none, or one chain), and
    ``outlier_chain``, the one chain without which they agree (:func:`outlier_chain`; None
    when no single chain explains the disagreement, or there is none)."""

    warning: Optional[str]
    outlier_chain: Optional[int]


def mixing(r_hat: dict, samples: dict, num_chains: int, advice: str) -> Mixing:
    """The :class:`Mixing` of a run: its warning lists the five worst sites, then
    ``advice``, unless one chain alone disagrees with the others: then that chain is named,
    for the advice to run longer would mislead where a chain sits in another mode."""
    worst = {k: float(np.nanmax(v)) for k, v in r_hat.items() if np.size(v) and np.isfinite(v).any()}
    high = sorted((k for k, v in worst.items() if v > R_HAT_FLAG), key=lambda k: -worst[k])
    if not high or num_chains < 2:
        return Mixing(None, None)
    head = f"r_hat > {R_HAT_FLAG} for {', '.join(f'{k} ({worst[k]:.3f})' for k in high[:5])}"
    odd = outlier_chain(samples, {k: r_hat[k] for k in high})
    if odd is None:
        return Mixing(f"{head}: {advice}", None)
    chain, rest = odd
    return Mixing(f"{head}: chain {chain} disagrees with the others (without it, r_hat is at most {rest:.3f} "
                  f"there). It sits in another region of the posterior (a second mode, or one it has not left), "
                  f"so estimates that pool the chains are biased and running longer may not help. Compare "
                  f"result.samples[site][{chain}] with the other chains' draws (diagnostics['outlier_chain'] "
                  f"is {chain}); run more chains, start them nearer the posterior (init=), or reparameterise a "
                  f"multimodal model", chain)


def r_hat_warning(r_hat: dict, samples: dict, num_chains: int, advice: str) -> str | None:
    """:func:`mixing`'s warning alone."""
    return mixing(r_hat, samples, num_chains, advice).warning


# A chain whose draws of a scalar spread less than this fraction of the typical chain's
# (the median over chains) has stopped moving in it: e.g. warmup that ended with a step size
# many orders of magnitude too small, so that every transition moves below rounding.
STUCK_SPREAD = 1e-3
STUCK_MIN_DRAWS = 10


def stuck_chains(samples: dict) -> dict:
    """The chains that have stopped moving in continuous sites: {chain index: [site names]}.

    A chain is stuck in a site when, over its draws, some scalar of the site spreads (sd) at
    most ``STUCK_SPREAD`` times as much as in the typical chain (the median sd over the
    chains, when that is above zero), or when none of the site's scalars changes at all (a
    moving chain's continuous draws never repeat exactly for long; a site's structurally
    fixed scalars, as a Cholesky factor's zeros, are constant in every chain and count only
    with the rest). Needs ``STUCK_MIN_DRAWS`` draws per chain; large sites are read in blocks.
    Give only continuous sites: a discrete site may rightly stay put.
    """
    ratio: dict = {}
    constant: dict = {}
    for _, name, flat in flatten_sites(samples):
        c, s = flat.shape[:2]
        if s < STUCK_MIN_DRAWS:
            continue
        sd = flat.std(axis=1)  # (chains, scalars)
        typical = np.median(sd, axis=0)
        hit = np.any((typical > 0) & (sd <= STUCK_SPREAD * typical), axis=1)
        still = np.all((flat == flat[:, :1]) & np.isfinite(flat), axis=(1, 2))
        ratio[name] = ratio.get(name, np.zeros(c, bool)) | hit
        constant[name] = constant.get(name, np.ones(c, bool)) & still
    found: dict = {}
    for name in ratio:
        for chain in np.flatnonzero(ratio[name] | constant[name]):
            found.setdefault(int(chain), []).append(name)
    return dict(sorted(found.items()))


def flag_stuck_chains(d: dict, method: str, samples: dict, ld, step_size=None) -> None:
    """Set ``d["stuck_chains"]`` ({chain: [sites]}, see :func:`stuck_chains`) for the model's
    continuous latent sites and flag each stuck chain by name, with its step size beside the typical
    chain's when ``step_size`` (one per chain) is given."""
    from ppl.method.flags import flag

    stuck = stuck_chains({lat.name: samples[lat.name] for lat in ld.spec.continuous if lat.name in samples})
    d["stuck_chains"] = stuck
    if not stuck:
        return
    steps = np.ravel(np.asarray(step_size, float)) if step_size is not None else None
    for chain, sites in stuck.items():
        step = ""
        if steps is not None and steps.size > chain:
            step = (f"; its step size is {steps[chain]:.3g} against a median of {np.median(steps):.3g} "
                    f"over the chains, so its warmup collapsed")
        flag(d, method,
             f"chain {chain} has stopped moving in {', '.join(sites[:5])}: its draws there spread less "
             f"than {STUCK_SPREAD:g} of the typical chain's, or never change{step}. Its draws are not "
             f"from the posterior and bias every estimate that pools the chains. Rerun with another key "
             f"or more num_warmup, start nearer the posterior (init=), use float64, or drop the chain "
             f"(result.samples[site][other chains])", stacklevel=5)
