"""Importance sampling against conjugate closed forms, the DESIGN.md eight-schools example,
and float64 end to end. (MLE = least squares and MAP = ridge are in test_conformance.py.)

Tolerances are Monte Carlo errors, at a fixed key: a self-normalised posterior mean has
standard error ~ sd / sqrt(ESS) with ESS the weights' effective sample size; resampling adds
at most sd / sqrt(N); `log_evidence` has the delta-method standard error
`diagnostics["log_evidence_se"]`. We allow 4 standard errors (plus float32 rounding).
"""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import betaln
from scipy.stats import multivariate_normal

import ppl
from ppl import dist

N = 20_000


def weighted_mean(r, site):
    w = np.exp(r.log_weights - np.max(r.log_weights))
    w /= w.sum()
    return float(np.sum(w * np.asarray(r.particles[site])))


def check_importance(r, site, mean, sd, log_z):
    ess = r.diagnostics["ess_weights"]
    assert ess > 100, ess
    se = sd / np.sqrt(ess)
    assert abs(weighted_mean(r, site) - mean) < 4 * se, (weighted_mean(r, site), mean, se)
    resampled = float(np.mean(r.samples[site]))
    assert abs(resampled - mean) < 4 * sd * np.sqrt(1 / ess + 1 / N), (resampled, mean)
    se_log_z = r.diagnostics["log_evidence_se"]
    assert 0 < se_log_z < 0.1
    assert abs(r.log_evidence - log_z) < 4 * se_log_z + 1e-3, (r.log_evidence, log_z, se_log_z)


def beta_bernoulli(y):
    p = ppl.sample("p", dist.Beta(2.0, 2.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Bernoulli(p), y)


def test_importance_beta_bernoulli():
    y = jnp.array([1, 0, 1, 1, 1, 0, 1, 1, 0, 1], jnp.float32)
    a, b = 2.0 + float(y.sum()), 2.0 + float(len(y) - y.sum())
    mean = a / (a + b)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    log_z = betaln(a, b) - betaln(2.0, 2.0)
    r = ppl.infer(beta_bernoulli, y, method=ppl.Importance(num_particles=N), key=0)
    assert r.samples["p"].shape == (1, N) and r.particles["p"].shape == (N,) and r.log_weights.shape == (N,)
    check_importance(r, "p", mean, sd, log_z)


def normal_normal(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


def test_importance_normal_normal():
    y = np.array([0.8, 1.9, 1.2, 0.4, 1.6])
    n, prior_var = len(y), 4.0
    post_var = 1.0 / (1.0 / prior_var + n)
    mean, sd = post_var * y.sum(), np.sqrt(post_var)
    # marginally y ~ N(0, I + prior_var * 11^T)
    log_z = multivariate_normal(np.zeros(n), np.eye(n) + prior_var * np.ones((n, n))).logpdf(y)
    r = ppl.infer(normal_normal, jnp.asarray(y, jnp.float32), method=ppl.Importance(num_particles=N), key=0)
    check_importance(r, "mu", mean, sd, log_z)


def test_importance_with_the_exact_posterior_as_guide_has_constant_weights():
    y = np.array([0.8, 1.9, 1.2, 0.4, 1.6])
    post_var = 1.0 / (1.0 / 4.0 + len(y))
    mean, sd = post_var * y.sum(), np.sqrt(post_var)
    log_z = multivariate_normal(np.zeros(5), np.eye(5) + 4.0 * np.ones((5, 5))).logpdf(y)

    def guide(y):
        ppl.sample("mu", dist.Normal(mean, sd))

    r = ppl.infer(normal_normal, jnp.asarray(y, jnp.float32), method=ppl.Importance(num_particles=200, proposal=guide), key=0)
    # log p(mu, y) - log q(mu) = log p(y) for every particle, up to float32 rounding
    np.testing.assert_allclose(r.log_weights, log_z, atol=1e-4)
    np.testing.assert_allclose(r.log_evidence, log_z, atol=1e-4)
    assert r.diagnostics["ess_weights"] > 199.9


def gaussian_params(y):
    loc = ppl.param("loc", 0.0)
    scale = ppl.param("scale", 1.0, constraint=dist.constraints.positive)
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(loc, scale), y)


def test_mle_learns_params_sample_mean_and_sd():
    y = np.array([0.8, 1.9, 1.2, 0.4, 1.6, 2.5])
    r = ppl.infer(gaussian_params, jnp.asarray(y, jnp.float32), method="mle", key=0)
    np.testing.assert_allclose(r.params["loc"], y.mean(), rtol=1e-4)
    np.testing.assert_allclose(r.params["scale"], y.std(), rtol=1e-4)  # MLE: ddof = 0
    assert r.samples == {}


def test_point_estimates_far_from_the_start_do_not_stop_early():
    """Data in natural units around 1e7: the loss at the start is ~1e10, so a stopping rule
    relative to the loss would stop at once. MLE is the sample mean; MAP the conjugate mode."""
    y = np.array([1.0e7 - 50.0, 1.0e7, 1.0e7 + 80.0])

    def model(y):
        mu = ppl.sample("mu", dist.Normal(1.0e7, 1.0e4))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, 100.0), y)

    precision = 1 / 1e4 ** 2 + 3 / 100.0 ** 2
    mode = (1e7 / 1e4 ** 2 + y.sum() / 100.0 ** 2) / precision
    for method, truth in (("mle", y.mean()), ("map", mode)):
        r = ppl.infer(model, jnp.asarray(y, jnp.float32), method=method, key=0)
        assert r.diagnostics["converged"] and r.diagnostics["num_steps"] > 1
        assert abs(float(r.params["mu"]) - truth) < 2.0  # float32 spacing at 1e7 is 1


# --- DESIGN.md section 1, as written there ------------------------------------------------


def eight_schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta_raw = ppl.sample("theta_raw", dist.Normal(0.0, 1.0))
        theta = ppl.deterministic("theta", mu + tau * theta_raw)
        ppl.observe("y", dist.Normal(theta, sigma), y)


SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
Y8 = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])


@pytest.mark.parametrize("name", ["map", "importance"])
def test_eight_schools_as_in_the_design(name):
    r = ppl.infer(eight_schools, SIGMA, y=Y8, method=name, key=0)
    c, d = r.num_chains, r.num_draws
    assert (c, d) == ((1, 1) if name == "map" else (1, 10_000))
    assert r.samples["mu"].shape == (c, d)
    assert r.samples["theta"].shape == (c, d, 8)
    np.testing.assert_allclose(
        r.samples["theta"], r.samples["mu"][..., None] + r.samples["tau"][..., None] * r.samples["theta_raw"],
        rtol=1e-5, atol=1e-5,
    )
    s = r.summary()
    assert "theta[7]" in s.index and list(s.columns)[:2] == ["mean", "sd"]
    assert "mean" in str(r)
    if name == "importance":
        # the well-known posterior: mu around 4.4 (sd ~3.3), tau > 0
        assert 2.0 < s.loc["mu", "mean"] < 7.0 and 2.0 < s.loc["mu", "sd"] < 5.0
        assert np.isfinite(r.log_evidence)
    # the simulator form: with y=None the same model draws y
    tr = ppl.handlers.trace(ppl.handlers.seed(eight_schools, 0)).get_trace(SIGMA)
    assert tr["y"].kind == "latent" and tr["y"].value.shape == (8,)


# --- float64 ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", [ppl.Importance(num_particles=1000), ppl.MAP()], ids=["importance", "map"])
def test_float64_end_to_end(x64, method):
    y = jnp.array([0.8, 1.9, 1.2, 0.4, 1.6])
    assert y.dtype == jnp.float64
    r = ppl.infer(normal_normal, y, method=method, key=0)
    assert r.samples["mu"].dtype == np.float64
    if r.log_weights is not None:
        assert r.log_weights.dtype == np.float64 and r.particles["mu"].dtype == np.float64
    if isinstance(method, ppl.MAP):
        post_var = 1.0 / (1.0 / 4.0 + 5)  # the mode of a normal posterior is its mean
        np.testing.assert_allclose(r.params["mu"], post_var * float(y.sum()), rtol=1e-10)
