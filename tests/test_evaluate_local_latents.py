"""ppl.evaluate on models with local (per data point) and global latents.

marginal_log_likelihood(plate=...) splits log p(x) into per-element estimates, which is right
only when every latent is inside the plate: a global latent outside it must be refused, also
with the prior as proposal (whose latent densities cancel and were never checked).
held_out_log_likelihood reuses the result's draws for new data, which is right only for global
latents: a latent inside a plate of the held-out observed sites must be refused, also when
the held-out set has the training set's size (where no shape tells them apart).

Tolerances are >= 4 Monte Carlo standard errors, computed in each test's comment."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import ppl
from ppl import dist

Y = jnp.array([0.3, 1.2, -0.4, 2.1, 0.9, 1.5, 0.2, 0.8, 1.1, 0.6])


def global_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


def global_mean_guide(y):
    ppl.sample("mu", dist.Normal(jnp.sum(y) / (1 + y.shape[0]), 1 / math.sqrt(1 + y.shape[0])))


def true_log_evidence_global_mean(y):
    y = np.asarray(y, np.float64)
    return stats.multivariate_normal(np.zeros(len(y)), np.eye(len(y)) + 1.0).logpdf(y)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("proposal", ["prior", global_mean_guide])
def test_marginal_log_likelihood_refuses_a_latent_outside_the_plate(proposal):
    with pytest.raises(ValueError, match=r"latent site 'mu' is outside plate 'n'.*Drop plate="):
        ppl.evaluate.marginal_log_likelihood(global_mean, Y, proposal=proposal, num_particles=2000, plate="n")


@pytest.mark.timeout(300)
def test_marginal_log_likelihood_names_a_missing_plate():
    with pytest.raises(ValueError, match=r"no plate 'data' \(its plates: 'n'\)"):
        ppl.evaluate.marginal_log_likelihood(global_mean, Y, num_particles=10, plate="data")


@pytest.mark.timeout(300)
def test_marginal_log_likelihood_of_a_global_latent_without_plate_is_right():
    # The prior as proposal: p(y | mu) / p(y) has relative variance about 2.2 here, so with
    # 20 000 particles the standard error of the log-mean-exp is about sqrt(2.2 / 2e4) ~ 0.011.
    got = ppl.evaluate.marginal_log_likelihood(global_mean, Y, num_particles=20_000, key=0)
    assert abs(got - true_log_evidence_global_mean(Y)) < 0.05


def per_point(x):
    with ppl.plate("data", x.shape[0]):
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.observe("x", dist.Normal(z, 1.0), x)


@pytest.mark.timeout(300)
def test_marginal_log_likelihood_plated_equals_unplated_when_every_latent_is_inside():
    x = jnp.array([-1.0, -0.3, 0.2, 0.8, 1.5])
    truth = stats.norm(0, math.sqrt(2)).logpdf(np.asarray(x, np.float64)).sum()
    # Prior proposal, weight N(x_i; z, 1): relative variance per element (2/sqrt(3)) exp(x_i^2/6) - 1,
    # 0.16..0.68 here. Plated, 20 000 particles each: se sqrt(sum / 2e4) ~ 0.009. Unplated, the
    # product's relative variance is prod(...) - 1 ~ 3: se sqrt(3 / 2e4) ~ 0.012.
    plated = ppl.evaluate.marginal_log_likelihood(per_point, x, num_particles=20_000, plate="data", key=1)
    joint = ppl.evaluate.marginal_log_likelihood(per_point, x, num_particles=20_000, key=2)
    assert abs(plated - truth) < 0.05
    assert abs(joint - truth) < 0.06
    assert abs(plated - joint) < 0.08


# -- held_out_log_likelihood -----------------------------------------------------------------
Y_TRAIN = jnp.array([0.1, 2.3, 1.9, -0.5])
Y_NEW = jnp.array([0.0, 2.0, 1.0, 3.0])  # the training set's size: no shape check can catch it


def mixture(y=None, n=4):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", n):
        z = ppl.sample("z", dist.Bernoulli(0.4))
        ppl.observe("y", dist.Normal(mu + 2.0 * z, 1.0), y)


def mixture_summed(y=None, n=4):
    """`mixture` with z summed out: the held-out model the refusal advises."""
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", n):
        ppl.observe("y", dist.MixtureSameFamily(dist.Categorical(probs=jnp.array([0.6, 0.4])),
                                                dist.Normal(mu + jnp.array([0.0, 2.0]), 1.0)), y)


@pytest.fixture(scope="module")
def mixture_result():
    # NUTS sums z out and redraws it after the run: the result holds draws of z for the training points.
    return ppl.infer(mixture, y=Y_TRAIN, method=ppl.NUTS(num_warmup=300, num_samples=500, num_chains=2), key=0)


@pytest.mark.timeout(300)
def test_held_out_refuses_a_redrawn_discrete_local_latent(mixture_result):
    assert mixture_result.samples["z"].shape[-1] == 4
    with pytest.raises(ValueError, match=r"latent site 'z' is inside plate 'n'.*marginal_log_likelihood"):
        ppl.evaluate.held_out_log_likelihood(mixture, mixture_result, y=Y_NEW)
    with pytest.raises(ValueError, match=r"latent site 'z'"):
        ppl.evaluate.held_out_log_likelihood(mixture, mixture_result, y=Y_NEW, pointwise=True)


@pytest.mark.timeout(300)
def test_held_out_refuses_a_local_latent_without_draws(mixture_result):
    # A result that kept only the global draws (z summed out and not drawn): the error names z,
    # not just the missing draws.
    only_mu = ppl.Result(method=None, samples={"mu": np.asarray(mixture_result.samples["mu"])})
    with pytest.raises(ValueError, match=r"latent site 'z' is inside plate 'n'"):
        ppl.evaluate.held_out_log_likelihood(mixture, only_mu, y=Y_NEW)


@pytest.mark.timeout(300)
def test_held_out_with_the_local_latent_summed_out_matches_a_hand_computation(mixture_result):
    # Same draws of mu, so the only error is float32 rounding.
    mu = np.asarray(mixture_result.samples["mu"], np.float64).ravel()
    y = np.asarray(Y_NEW, np.float64)
    per_point = np.log(0.6 * stats.norm.pdf(y[None], mu[:, None], 1) + 0.4 * stats.norm.pdf(y[None], mu[:, None] + 2, 1))
    want = logsumexp(per_point.sum(1)) - math.log(len(mu))
    got = ppl.evaluate.held_out_log_likelihood(mixture_summed, mixture_result, y=Y_NEW)
    assert abs(got - want) < 1e-3


def continuous_local(y=None, n=4):
    tau = ppl.sample("tau", dist.HalfNormal(1.0))
    with ppl.plate("n", n):
        theta = ppl.sample("theta", dist.Normal(0.0, tau))
        ppl.observe("y", dist.Normal(theta, 1.0), y)


@pytest.mark.timeout(300)
def test_held_out_refuses_a_continuous_local_latent_of_the_same_size():
    rng = np.random.default_rng(0)
    fake = ppl.Result(method=None, samples={"tau": np.abs(rng.normal(size=(1, 50))).astype(np.float32),
                                            "theta": rng.normal(size=(1, 50, 4)).astype(np.float32)})
    with pytest.raises(ValueError, match=r"latent site 'theta' is inside plate 'n'"):
        ppl.evaluate.held_out_log_likelihood(continuous_local, fake, y=Y_NEW)


# A regression with global latents only: coefficients in a plate over features (not over the
# data), noise known, so the posterior and the posterior predictive are Gaussian in closed form.
SIGMA = 0.5
RNG = np.random.default_rng(4)
X_TRAIN = RNG.normal(size=(8, 2))
W_TRUE = np.array([1.0, -0.5])
Y_REG = X_TRAIN @ W_TRUE + SIGMA * RNG.normal(size=8)


def regression(x, y=None):
    with ppl.plate("features", x.shape[1]):
        w = ppl.sample("w", dist.Normal(0.0, 1.0))
    with ppl.plate("data", x.shape[0]):
        ppl.observe("y", dist.Normal(x @ w, SIGMA), y)


def regression_posterior():
    prec = np.eye(2) + X_TRAIN.T @ X_TRAIN / SIGMA**2
    cov = np.linalg.inv(prec)
    return cov @ X_TRAIN.T @ Y_REG / SIGMA**2, cov


@pytest.mark.timeout(300)
@pytest.mark.parametrize("n_new", [3, 8])  # another size, and the training set's size
def test_held_out_with_global_latents_matches_the_closed_form(n_new):
    mean, cov = regression_posterior()
    S = 8000
    w = np.random.default_rng(1).multivariate_normal(mean, cov, size=S).astype(np.float32)
    exact = ppl.Result(method=None, samples={"w": w[None]})
    x_new = np.random.default_rng(10 + n_new).normal(size=(n_new, 2))
    y_new = x_new @ W_TRUE + SIGMA * np.random.default_rng(20 + n_new).normal(size=n_new)
    # Exact draws; p(y_new | w) has relative variance 0.3 (3 points) and 1.8 (8 points) over the
    # posterior, so the se of the log-mean-exp is at most sqrt(1.8 / 8000) ~ 0.015 (one point's:
    # below 0.01).
    joint = stats.multivariate_normal(x_new @ mean, x_new @ cov @ x_new.T + SIGMA**2 * np.eye(n_new)).logpdf(y_new)
    got = ppl.evaluate.held_out_log_likelihood(regression, exact, jnp.asarray(x_new, jnp.float32),
                                               y=jnp.asarray(y_new, jnp.float32))
    assert abs(got - joint) < 0.07
    pointwise = ppl.evaluate.held_out_log_likelihood(regression, exact, jnp.asarray(x_new, jnp.float32),
                                                     y=jnp.asarray(y_new, jnp.float32), pointwise=True)
    sd = np.sqrt(np.einsum("ij,jk,ik->i", x_new, cov, x_new) + SIGMA**2)
    np.testing.assert_allclose(pointwise["y"], stats.norm(x_new @ mean, sd).logpdf(y_new), atol=0.05)
