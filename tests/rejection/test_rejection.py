"""Rejection sampling against closed forms, and its errors. Tolerances in Monte Carlo
standard errors (independent draws); fixed keys."""
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from models import beta_bernoulli as bb


def test_beta_bernoulli_posterior_and_evidence():
    args, kwargs = bb.load(n=40)
    r = ppl.infer(bb.model, *args, method=ppl.Rejection(num_samples=4000), key=0, **kwargs)
    p = r.samples["p"]
    assert p.shape == (1, 4000)
    exact = bb.exact_posterior(*args, kwargs["y"])["p"]
    se = exact.std() / np.sqrt(4000)
    assert abs(p.mean() - exact.mean()) < 4.5 * se
    assert abs(p.std() - exact.std()) < 4.5 * exact.std() / np.sqrt(2 * 4000)
    d = r.diagnostics
    assert d["max_log_likelihood"] <= d["log_bound"] and d["num_accepted"] >= 4000
    assert abs(r.log_evidence - bb.exact_log_evidence(*args, kwargs["y"])) < 4.5 * d["log_evidence_se"]
    assert d["acceptance_rate"] == pytest.approx(d["num_accepted"] / d["num_proposals"])


def test_given_bound_is_used_and_a_wrong_bound_is_reported():
    args, kwargs = bb.load(n=40)
    ld = ppl.compile(bb.model, *args, **kwargs)
    default = ppl.Rejection(num_samples=4000).run(0, ld).diagnostics
    max_ll = default["log_bound"] - 0.1  # the default margin is 0.1 nats
    r = ppl.Rejection(num_samples=4000, log_bound=max_ll + 1.0).run(1, ld)
    assert r.diagnostics["log_bound"] == pytest.approx(max_ll + 1.0)
    assert r.timing["compile_s"] < 0.05  # the bound is an argument: the compiled program is reused
    assert r.diagnostics["acceptance_rate"] < default["acceptance_rate"]
    with pytest.raises(ValueError, match="exceeds the bound .* the bound was wrong"):
        ppl.Rejection(num_samples=4000, log_bound=max_ll - 2.0).run(1, ld)


def test_exhausted_budget_reports_rate_and_suggests_alternatives():
    args, kwargs = bb.load(n=40)
    with pytest.raises(ValueError, match=r"acceptance rate 0\.\d+.*importance.*MCMC"):
        ppl.infer(bb.model, *args, method=ppl.Rejection(num_samples=1000, batch_size=64, max_proposals=128),
                  key=0, **kwargs)


def _unbounded(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
    ppl.observe("y", dist.Normal(mu, sigma), y)


def test_unbounded_likelihood_is_a_clear_error():
    with pytest.raises(ValueError, match=r"likelihood appears unbounded.*\['sigma'\]"):
        ppl.infer(_unbounded, jnp.asarray(0.3), method="rejection", key=0)


def test_improper_prior_names_the_site():
    def model(y):
        m = ppl.sample("m", dist.ImproperUniform(dist.constraints.real, (), ()))
        ppl.observe("y", dist.Normal(m, 1.0), y)

    with pytest.raises(ValueError, match="site 'm' has an improper"):
        ppl.infer(model, jnp.asarray(0.3), method="rejection", key=0)


def test_discrete_latents_need_a_given_bound():
    def model(y):
        k = ppl.sample("k", dist.Bernoulli(0.5))
        ppl.observe("y", dist.Normal(k, 1.0), y)

    with pytest.raises(ValueError, match="site 'k' is discrete; give log_bound"):
        ppl.infer(model, jnp.asarray(0.3), method="rejection", key=0)
    # With a bound (the likelihood is at most N(0 | 0, 1)), discrete latents are fine.
    r = ppl.infer(model, jnp.asarray(0.3), method=ppl.Rejection(num_samples=2000, log_bound=-0.9189), key=0)
    post1 = np.exp(-0.5 * 0.7**2) / (np.exp(-0.5 * 0.7**2) + np.exp(-0.5 * 0.3**2))
    assert abs(r.samples["k"].mean() - post1) < 4.5 * np.sqrt(post1 * (1 - post1) / 2000)
