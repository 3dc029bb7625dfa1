"""Convergence diagnostics per scalar: rank-normalised split R-hat, bulk and tail ESS.

Vectorised over all scalars at once with NumPyro's `gelman_rubin` and
`effective_sample_size` on chains split in halves, following Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat", Bayesian Analysis 16(2).
"""
from __future__ import annotations

import numpy as np
from numpyro.diagnostics import effective_sample_size, gelman_rubin
from scipy.special import ndtri


def _split(x):
    """(C, S, K) -> (2C, S // 2, K): each chain halved, as split R-hat and ESS need."""
    c, s = x.shape[:2]
    half = s // 2
    return np.concatenate([x[:, :half], x[:, s - half:]], axis=0)


def _average_ranks(a):
    """Ranks (1-based) of each column of ``a`` (n, K), ties given their average rank, and a
    column holding a NaN all NaN (scipy.stats.rankdata(a, axis=0), without importing
    scipy.stats: 0.4 s of every ``import ppl``). Sorted row by row of the transpose (a
    column sort of a row-major array is strided: 4x slower, measured on 128k x 8 draws)."""
    t = np.ascontiguousarray(np.asarray(a).T)  # (K, n)
    k, n = t.shape
    order = np.argsort(t, axis=1)
    ordered = np.take_along_axis(t, order, axis=1)
    ties = ordered[:, 1:] == ordered[:, :-1]
    value = np.broadcast_to(np.arange(1.0, n + 1.0), t.shape)  # the rank of each sorted place
    if ties.any():  # a run of equal values shares the mean of its places' ranks
        starts = np.ones(t.shape, bool)
        starts[:, 1:] = ~ties
        ends = np.ones(t.shape, bool)
        ends[:, :-1] = ~ties
        position = np.broadcast_to(np.arange(n), t.shape)
        first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
        value = (first + last) / 2.0 + 1.0
    ranks = np.empty(t.shape, float)
    np.put_along_axis(ranks, order, value, axis=1)
    ranks[np.isnan(t).any(axis=1)] = np.nan
    return ranks.T


def _rank_normalise(x):
    c, s = x.shape[:2]
    flat = x.reshape(c * s, -1)
    ranks = _average_ranks(flat)
    return ndtri((ranks - 0.375) / (c * s + 0.25)).reshape(x.shape)


def _ess(x):
    """ESS of draws ``x`` (chains, draws, K), as Stan and ArviZ compute it.

    NumPyro's estimate is n / tau with the integrated autocorrelation time tau unbounded
    below: antithetic chains (negative lag-1 autocorrelation, as HMC with a fixed number of
    steps can give) make tau tiny or negative, hence an ESS huge or negative. Stan bounds tau
    below by 1 / log10(n), so such chains get n log10(n).
    """
    n = x.shape[0] * x.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.asarray(effective_sample_size(x), float)
    cap = n * np.log10(n)
    return np.where(np.isnan(ess), np.nan, np.where((ess > 0) & (ess < cap), ess, cap))


def _rhat(x):
    """R-hat of chains ``x`` already split in halves (NumPyro's `split_gelman_rubin` would
    halve them again)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(gelman_rubin(x), float)


def _rank_normalised_r_hat(xs):
    """The rank-normalised draws of split chains ``xs`` and their R-hat: the larger of the bulk's
    and the folded draws' (Vehtari et al. 2021)."""
    bulk = _rank_normalise(xs)
    folded = _rank_normalise(np.abs(xs - np.median(xs, axis=(0, 1))))
    return bulk, np.maximum(_rhat(bulk), _rhat(folded))


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
    bulk, r_hat = _rank_normalised_r_hat(xs)
    ess_bulk = _ess(bulk)
    q05, q95 = np.quantile(xs, [0.05, 0.95], axis=(0, 1))
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


def r_hat_warning(r_hat: dict, samples: dict, num_chains: int, advice: str) -> str | None:
    """The warning for scalars whose R-hat exceeds ``R_HAT_FLAG`` (None if none, or one chain):
    the five worst sites, then ``advice``, unless one chain alone disagrees with the others
    (:func:`outlier_chain`): then that chain is named, for the advice to run longer would
    mislead where a chain sits in another mode."""
    worst = {k: float(np.nanmax(v)) for k, v in r_hat.items() if np.size(v) and np.isfinite(v).any()}
    high = sorted((k for k, v in worst.items() if v > R_HAT_FLAG), key=lambda k: -worst[k])
    if not high or num_chains < 2:
        return None
    head = f"r_hat > {R_HAT_FLAG} for {', '.join(f'{k} ({worst[k]:.3f})' for k in high[:5])}"
    odd = outlier_chain(samples, {k: r_hat[k] for k in high})
    if odd is None:
        return f"{head}: {advice}"
    chain, rest = odd
    return (f"{head}: chain {chain} disagrees with the others (without it, r_hat is at most {rest:.3f} "
            f"there). It sits in another region of the posterior (a second mode, or one it has not left), "
            f"so estimates that pool the chains are biased and running longer may not help. Compare "
            f"result.samples[site][{chain}] with the other chains' draws; run more chains, start them "
            f"nearer the posterior (init=), or reparameterise a multimodal model")


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
