"""ppl.evaluate against closed forms. Results are built from exact posterior draws of the
linear-Gaussian model, so only Monte Carlo error enters; tolerances are >= 4 standard errors."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from models import linear_gaussian as lg
from ppl import dist

DATA = lg.simulate(seed=3, d=2, p=3, n=5)
CONST = (DATA["A"], DATA["b"], DATA["sigma"], DATA["s0"], DATA["x"])
MEAN, COV = lg.posterior(*CONST)
S = 4000


@pytest.fixture(scope="module")
def exact():
    z = np.random.default_rng(1).multivariate_normal(MEAN, COV, size=S).astype(np.float32)
    return ppl.Result(method=None, samples={"z": z[None]})


def lg_args(x=None, n=2):
    return (DATA["A"], DATA["b"], DATA["sigma"], DATA["s0"]), dict(x=x, n=n)


def test_predictive_matches_the_posterior_predictive(exact):
    args, kwargs = lg_args(None, n=2)
    out = ppl.predictive(lg.model, exact, *args, key=0, **kwargs)
    x = out["x"]
    assert x.shape == (1, S, 2, 3) and out["z"].shape == (1, S, 2)
    np.testing.assert_array_equal(out["z"], exact.samples["z"])  # latents are the result's draws
    A, b, sigma = (np.asarray(DATA[k], np.float64) for k in ("A", "b", "sigma"))
    cov = A @ COV @ A.T + sigma**2 * np.eye(3)
    se = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(x[0, :, 0].mean(0) - (A @ MEAN + b)) < 4 * se)
    assert np.all(np.abs(np.cov(x[0, :, 0].T) - cov) < 0.1 * np.sqrt(np.outer(np.diag(cov), np.diag(cov))))
    again = ppl.predictive(lg.model, exact, *args, key=0, **kwargs)
    np.testing.assert_array_equal(again["x"], x)


def test_held_out_log_likelihood_matches_the_closed_form(exact):
    A, b, sigma = (np.asarray(DATA[k], np.float64) for k in ("A", "b", "sigma"))
    x_new = A @ MEAN + b + np.array([[0.5, -1.0, 0.5], [-1.0, 0.0, 1.0]])  # typical held-out points
    args, kwargs = lg_args(jnp.asarray(x_new, jnp.float32))
    big = np.vstack([A, A])
    exact_joint = stats.multivariate_normal(np.tile(A @ MEAN + b, 2), big @ COV @ big.T + sigma**2 * np.eye(6)).logpdf(x_new.ravel())
    got = ppl.evaluate.held_out_log_likelihood(lg.model, exact, *args, **kwargs)
    assert abs(got - exact_joint) < 0.05
    pointwise = ppl.evaluate.held_out_log_likelihood(lg.model, exact, *args, pointwise=True, **kwargs)
    marginal = stats.multivariate_normal(A @ MEAN + b, A @ COV @ A.T + sigma**2 * np.eye(3))
    np.testing.assert_allclose(pointwise["x"], marginal.logpdf(x_new), atol=0.05)


def local(x):
    with ppl.plate("data", x.shape[0]):
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.observe("x", dist.Normal(z, 1.0), x)


def exact_local_guide(x):
    with ppl.plate("data", x.shape[0]):
        ppl.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))


def test_marginal_log_likelihood_per_plate_element():
    x = jnp.linspace(-2.0, 2.0, 20)
    truth = stats.norm(0, math.sqrt(2)).logpdf(np.asarray(x))
    # The exact posterior as proposal: every weight equals p(x), so the estimate is exact.
    est = ppl.evaluate.marginal_log_likelihood(local, x, proposal=exact_local_guide, num_particles=10, plate="data", pointwise=True)
    np.testing.assert_allclose(est, truth, atol=1e-4)
    joint = ppl.evaluate.marginal_log_likelihood(local, x, proposal=exact_local_guide, num_particles=10)
    assert abs(joint - truth.sum()) < 1e-3
    # The prior as proposal, 2000 particles per element: relative weight variance < 1, so the
    # log-mean-exp is within ~sqrt(1/2000) of the truth per element.
    prior = ppl.evaluate.marginal_log_likelihood(local, x, num_particles=2000, plate="data", key=1)
    assert abs(prior - truth.sum()) < 0.1


def test_perplexity():
    assert ppl.evaluate.perplexity(-10 * math.log(4.0), 10) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        ppl.evaluate.perplexity(-1.0, 0)


def test_information_closed_forms_and_monte_carlo():
    p, q = dist.Normal(0.0, 1.0), dist.Normal(1.0, 2.0)
    assert float(ppl.evaluate.kl_divergence(p, q)) == pytest.approx(math.log(2) + 2 / 8 - 0.5, abs=1e-5)
    h = 0.5 * math.log(2 * math.pi * math.e)
    assert float(ppl.evaluate.entropy(p)) == pytest.approx(h, abs=1e-5)
    assert float(ppl.evaluate.cross_entropy(p, q)) == pytest.approx(h + math.log(2) + 2 / 8 - 0.5, abs=1e-5)
    # No closed form in numpyro: Monte Carlo with 10 000 draws (se ~ 0.005-0.013).
    laplace = dist.Laplace(0.0, 1.0)
    cross = math.log(2) + math.sqrt(2 / math.pi)
    assert float(ppl.evaluate.kl_divergence(p, laplace)) == pytest.approx(cross - h, abs=0.03)
    assert float(ppl.evaluate.cross_entropy(p, laplace)) == pytest.approx(cross, abs=0.03)
    assert float(ppl.evaluate.entropy(dist.Gumbel(0.0, 1.0))) == pytest.approx(1 + np.euler_gamma, abs=0.05)
