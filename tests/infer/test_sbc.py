"""`ppl.sbc` (simulation-based calibration) and its exact ECDF uniformity test.

Fast specifications; the release gate that calibrates every sampling method on several
models is tests/slow/test_sbc_release.py.
"""
import dataclasses
import math
import warnings
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints

import ppl
from ppl import dist
from ppl._uniformity import ecdf_band, ecdf_p_values, ecdf_statistic
from ppl.method.flags import PplWarning
from ppl.method.result import Result
from ppl.sbc import SBCResult, sbc

N_OBS, PRIOR_SD = 10, 2.0


def normal_normal(n, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, PRIOR_SD))
    with ppl.plate("data", n):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


def groups(y):
    """A vector latent, a discrete latent and a deterministic site."""
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("g", 3):
        theta = ppl.sample("theta", dist.Normal(mu, 1.0))
    flip = ppl.sample("flip", dist.Bernoulli(0.5))
    ppl.deterministic("spread", theta.max() - theta.min())
    with ppl.plate("data", y.shape[0]):
        ppl.observe("y", dist.Normal(theta + flip, 1.0), y)


def exact_posterior(y):
    """Mean and sd of mu | y in `normal_normal`."""
    prec = 1.0 / PRIOR_SD**2 + y.shape[0]
    return float(np.sum(y)) / prec, 1.0 / math.sqrt(prec)


@dataclasses.dataclass(frozen=True)
class Conjugate(ppl.Method):
    """A fake method for `normal_normal`: iid draws from the exact posterior with its mean
    shifted by `shift` sds and its sd scaled by `scale` (1, 0: exact). `fail_above` makes a
    run raise when the data's mean exceeds it; `warn` makes every run warn."""

    shift: float = 0.0
    scale: float = 1.0
    num_samples: int = 400
    fail_above: float = math.inf
    warn: bool = False
    name: ClassVar[str] = "conjugate"

    def run(self, key, ld):
        y = np.asarray(ld.run(jnp.zeros(ld.dim))["y"].value)  # the (simulated) data
        if y.mean() > self.fail_above:
            raise RuntimeError("the fake method refuses these data")
        if self.warn:
            warnings.warn("conjugate: a problem worth flagging", PplWarning)
        mean, sd = exact_posterior(y)
        z = np.asarray(jax.random.normal(key, (1, self.num_samples)))
        return Result(method=self, samples={"mu": mean + sd * (self.shift + self.scale * z)})


# ----------------------------------------------------------------------------- the test

def test_ecdf_p_values_are_uniform_under_the_null():
    """1000 sets of 100 uniform ranks in 0..20: P(p <= a) is a (the statistic is discrete, so
    at most a) within 3.5 binomial sds of 1000 sets, and the p-values' ECDF is within the
    0.1% Kolmogorov-Smirnov distance (1.95 / sqrt(1000)) of the uniform CDF."""
    ranks = np.random.default_rng(0).integers(0, 21, size=(100, 1000))
    p = ecdf_p_values(ranks, 20)
    assert p.shape == (1000,) and np.all((p >= 0) & (p <= 1))
    for a in (0.01, 0.05, 0.2, 0.5):
        tol = 3.5 * math.sqrt(a * (1 - a) / 1000)
        assert np.mean(p <= a) <= a + tol
    grid = np.linspace(0.01, 0.99, 99)
    assert np.max(np.abs((p[:, None] <= grid).mean(0) - grid)) < 1.95 / math.sqrt(1000)


@pytest.mark.parametrize("L,n,sets", [(15, 60, 20_000), (399, 400, 4000)])
def test_ecdf_p_value_is_exact(L, n, sets):
    """The exact p-value agrees with a Monte Carlo estimate of the null distribution of the
    statistic (`sets` uniform rank sets) within 4 Monte Carlo standard errors; with n = 400
    ranks and 400 thresholds the recursion's band and window logic is exercised near p = 1."""
    rng = np.random.default_rng(1)
    null = ecdf_statistic(rng.integers(0, L + 1, (n, sets)), L)
    observed = np.stack([rng.integers(0, L + 1, n), rng.integers(0, L // 2, n),
                         np.minimum(rng.integers(0, L + 1, n), rng.integers(0, L + 1, n)),
                         rng.integers(0, L + 1, n)], 1)
    p = ecdf_p_values(observed, L)
    t = ecdf_statistic(observed, L)
    for pi, ti in zip(p, t):
        mc = np.mean(null <= ti * (1 + 1e-9))
        assert abs(pi - mc) <= 4 * math.sqrt(max(mc * (1 - mc), 1e-4) / sets)
    assert p[1] < 1e-6  # ranks only in the lower half: clearly not uniform


def test_ecdf_band_holds_its_level():
    """Under uniformity, the whole ECDF stays inside the 95% band in 95% of 4000 rank sets
    (within 3.5 binomial sds; at least 95%, as the band is conservative)."""
    L, n = 30, 50
    p_t, lower, upper = ecdf_band(n, L, 0.95)
    ts = np.round(p_t * (L + 1)).astype(int)
    ranks = np.random.default_rng(2).integers(0, L + 1, (4000, n))
    ecdf = (ranks[:, :, None] < ts).mean(1)
    inside = np.all((ecdf >= lower - 1e-12) & (ecdf <= upper + 1e-12), axis=1).mean()
    assert inside >= 0.95 - 3.5 * math.sqrt(0.95 * 0.05 / 4000)


def test_ecdf_rejects_bad_ranks():
    with pytest.raises(ValueError, match="0..10"):
        ecdf_p_values(np.array([0, 11]), 10)


# ----------------------------------------------------------------------------- sbc

def test_ranks_shapes_range_and_reproducible():
    """Importance (vectorised path) on a model with a vector, a discrete and a deterministic
    site: ranks per site of shape (S, *site_shape) in 0..L; the same key gives the same result."""
    y = jnp.zeros(3)
    kw = dict(method=ppl.Importance(num_particles=2000), num_simulations=30, num_draws=20)
    a = sbc(groups, y, key=0, **kw)
    assert isinstance(a, SBCResult) and a.num_draws == 20 and a.num_simulations == 30
    assert set(a.ranks) == {"mu", "theta", "flip", "spread"}
    assert a.ranks["theta"].shape == (30, 3) and a.ranks["mu"].shape == (30,)
    assert a.p_values["theta"].shape == (3,) and np.ndim(a.p_values["mu"]) == 0
    assert not a.failed.any()
    for r in a.ranks.values():
        assert r.dtype.kind == "i" and r.min() >= 0 and r.max() <= 20
    flips = a.ranks["flip"]  # a discrete site: ties broken at random, not all at one end
    assert 0 < np.mean(flips == 0) < 1
    b = sbc(groups, y, key=0, **kw)
    for k in a.ranks:
        np.testing.assert_array_equal(a.ranks[k], b.ranks[k])
    c = sbc(groups, y, key=1, **kw)
    assert not np.array_equal(a.ranks["mu"], c.ranks["mu"])
    frame = a.summary()
    assert list(frame.index[:2]) == ["mu", "theta[0]"] and "p_value" in frame.columns


def test_exact_posterior_passes_and_wrong_ones_fail():
    """Python-loop path, 200 simulations. Draws from the exact posterior: p > 0.001 (the
    test's size; fixed key). Draws half as wide, or shifted by one sd: p < 1e-6."""
    y = jnp.zeros(N_OBS)
    run = lambda m: sbc(normal_normal, N_OBS, y=y, method=m, num_simulations=200, num_draws=50, key=3)
    good = run(Conjugate())
    assert good.p_values["mu"] > 1e-3 and not good.failed.any() and not good.flags
    narrow = run(Conjugate(scale=0.5))
    assert narrow.p_values["mu"] < 1e-6
    assert narrow.summary().loc["mu", "sd_rank"] > 0.35  # ranks pile up at both ends
    biased = run(Conjugate(shift=1.0))
    assert biased.p_values["mu"] < 1e-6


def test_detects_importance_weight_collapse():
    """Importance with 20 particles from the prior (sd 2) for a posterior of sd 0.3: the
    weights collapse onto a few particles, the ranks are far from uniform (p < 1e-6) and
    every simulation is flagged for its effective sample size."""
    y = jnp.zeros(N_OBS)
    with pytest.warns(PplWarning, match="flagged"):
        r = sbc(normal_normal, N_OBS, y=y, method=ppl.Importance(num_particles=20),
                num_simulations=200, num_draws=10, key=0)
    assert r.p_values["mu"] < 1e-6
    assert len(r.flags) > 190 and all("ess" in f[0] for f in r.flags.values())


def test_vectorised_matches_the_loop():
    """The vmapped program gives the ranks that running the method on each data set gives."""

    @dataclasses.dataclass(frozen=True)
    class Wrapped(ppl.Method):  # not recognised as importance: runs in the Python loop
        inner: ppl.Method = ppl.Importance(num_particles=1000)
        name: ClassVar[str] = "wrapped"

        def run(self, key, ld):
            return self.inner.run(key, ld)

    y = jnp.zeros(N_OBS)
    kw = dict(num_simulations=20, num_draws=50, key=4)
    vec = sbc(normal_normal, N_OBS, y=y, method=ppl.Importance(num_particles=1000), **kw)
    loop = sbc(normal_normal, N_OBS, y=y, method=Wrapped(), **kw)
    assert np.mean(vec.ranks["mu"] == loop.ranks["mu"]) >= 0.9
    np.testing.assert_allclose(vec.ess, loop.ess, rtol=1e-3)


def test_failures_and_flags_are_counted():
    """A run that raises is a failure (ranks -1, left out of the p-values, warned); a run
    that warns keeps its ranks and is flagged."""
    y = jnp.zeros(N_OBS)
    with pytest.warns(PplWarning, match="failed"):
        r = sbc(normal_normal, N_OBS, y=y, method=Conjugate(fail_above=1.0),
                num_simulations=40, num_draws=20, key=5)
    assert r.failed.any() and not r.failed.all()
    assert set(r.failures) == set(np.flatnonzero(r.failed))
    assert all("refuses" in why for why in r.failures.values())
    assert np.all(r.ranks["mu"][r.failed] == -1) and np.all(r.ranks["mu"][~r.failed] >= 0)
    assert r.summary().loc["mu", "n"] == 40 - r.failed.sum()
    assert any("failed" in w for w in r.warnings)
    with pytest.warns(PplWarning, match="flagged"):
        f = sbc(normal_normal, N_OBS, y=y, method=Conjugate(warn=True), num_simulations=10,
                num_draws=20, key=5)
    assert sorted(f.flags) == list(range(10)) and not f.failed.any()
    assert "a problem worth flagging" in f.flags[0][0]


@pytest.mark.parametrize("method", ["mle", "map", ppl.MAP(), ppl.VI(guide="delta")])
def test_refuses_methods_without_draws(method):
    with pytest.raises(ValueError, match=r"(point estimate|point mass).*(nuts|mean_field)"):
        sbc(normal_normal, N_OBS, y=jnp.zeros(N_OBS), method=method, num_simulations=10)


def test_refuses_models_it_cannot_simulate():
    def improper(y):
        mu = ppl.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
        ppl.observe("y", dist.Normal(mu, 1.0), y)

    def with_factor(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.factor("penalty", -mu**2)
        ppl.observe("y", dist.Normal(mu, 1.0), y)

    def with_param(y):
        mu = ppl.param("loc", jnp.zeros(()))
        ppl.observe("y", dist.Normal(mu, 1.0), y)

    y = jnp.zeros(())
    with pytest.raises(ValueError, match="'mu'.*improper"):
        sbc(improper, y, method="nuts", num_simulations=10)
    with pytest.raises(ValueError, match="'penalty' is a factor"):
        sbc(with_factor, y, method="nuts", num_simulations=10)
    with pytest.raises(ValueError, match="param 'loc'"):
        sbc(with_param, y, method="nuts", num_simulations=10)


def test_refuses_bad_options():
    y = jnp.zeros(N_OBS)
    with pytest.raises(ValueError, match="num_simulations"):
        sbc(normal_normal, N_OBS, y=y, method="importance", num_simulations=1)
    with pytest.raises(ValueError, match="gives 50 draws, fewer than num_draws=100"):
        sbc(normal_normal, N_OBS, y=y, method=ppl.Importance(num_particles=50), num_simulations=10)

    def counts(y=None):  # an infinite discrete support: NUTS cannot sum it out
        k = ppl.sample("k", dist.Poisson(3.0))
        ppl.observe("y", dist.Normal(1.0 * k, 1.0), y)

    with pytest.raises(ValueError, match="'nuts'.*'k' has a Poisson"):
        sbc(counts, method=ppl.NUTS(num_samples=50), num_simulations=10, num_draws=10)


def test_nuts_runs_vectorised():
    """NUTS's program vmapped over 16 simulated data sets: ranks in range, ESS recorded."""
    r = sbc(normal_normal, N_OBS, y=jnp.zeros(N_OBS), method=ppl.NUTS(num_warmup=100, num_samples=50),
            num_simulations=16, num_draws=20, key=6)
    assert r.ranks["mu"].shape == (16,) and not r.failed.any()
    assert r.ranks["mu"].min() >= 0 and r.ranks["mu"].max() <= 20
    assert np.all(r.ess > 0) and r.timing["compile_s"] > 0


def test_gibbs_runs_vectorised():
    """Gibbs's program (exact enumeration of a plate of discrete sites) vmapped over data sets;
    a typed key works too."""

    def coins(y):
        with ppl.plate("c", 2):
            flip = ppl.sample("flip", dist.Bernoulli(0.5))
        ppl.observe("y", dist.Normal(2.0 * flip, 1.0), y)

    r = sbc(coins, jnp.zeros(2), method=ppl.Gibbs(num_warmup=50, num_samples=50, num_chains=2),
            num_simulations=30, num_draws=20, key=jax.random.key(0))
    assert r.ranks["flip"].shape == (30, 2) and not r.failed.any()
    assert r.ranks["flip"].min() >= 0 and r.ranks["flip"].max() <= 20


def test_vi_runs_vectorised():
    """VI's program (all optimiser steps, then draws from the guide) vmapped over data sets:
    mean-field VI is exact for this Gaussian posterior, so no run is flagged, and the draws
    are independent (ESS = number of draws)."""
    r = sbc(normal_normal, N_OBS, y=jnp.zeros(N_OBS), method=ppl.VI(num_steps=300, num_draws=100),
            num_simulations=30, num_draws=20, key=7)
    assert r.ranks["mu"].shape == (30,) and not r.failed.any() and not r.flags
    np.testing.assert_array_equal(r.ess, 100.0)


def test_plot():
    import matplotlib

    matplotlib.use("Agg")
    r = sbc(groups, jnp.zeros(3), method=ppl.Importance(num_particles=500), num_simulations=20,
            num_draws=10, key=0)
    fig = r.plot(max_scalars=3)
    assert len(fig.axes) == 6
    assert "p =" in fig.axes[1].get_title()
