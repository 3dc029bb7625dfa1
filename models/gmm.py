"""Gaussian mixture with explicit assignments (for Gibbs), and its hand-marginalised twin.

    weights ~ Dirichlet(1, ..., 1)
    mu ~ ordered vector with independent N(0, 10) densities (Stan's `ordered` idiom: the
         ordering removes label switching)
    sigma[k] ~ HalfNormal(2)
    z[n] ~ Categorical(weights),  x[n] ~ N(mu[z[n]], sigma[z[n]])

`marginal_model` sums z out (`MixtureSameFamily`), the model NUTS needs. Known answer: the
simulation truth `TRUE_MU`, `TRUE_SIGMA`, `TRUE_WEIGHTS`, and, with all parameters fixed,
the closed-form assignment probabilities `assignment_probs`.
"""
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

import ppl
from ppl import dist

NAME = "gmm"
TRUE_MU = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
TRUE_SIGMA = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
TRUE_WEIGHTS = np.full(5, 0.2)


def _parameters(k):
    weights = ppl.sample("weights", dist.Dirichlet(jnp.ones(k)))
    mu = ppl.sample("mu", dist.ImproperUniform(constraints.ordered_vector, (), (k,)))
    ppl.factor("mu_prior", dist.Normal(0.0, 10.0).log_prob(mu).sum())
    with ppl.plate("components", k):
        sigma = ppl.sample("sigma", dist.HalfNormal(2.0))
    return weights, mu, sigma


def model(x, k=5):
    """Explicit assignments `z` (one per point, in plate 'data')."""
    weights, mu, sigma = _parameters(k)
    with ppl.plate("data", x.shape[0]):
        z = ppl.sample("z", dist.Categorical(weights))
        ppl.observe("x", dist.Normal(mu[z], sigma[z]), x)


def marginal_model(x, k=5):
    """The same model with z summed out (for NUTS)."""
    weights, mu, sigma = _parameters(k)
    with ppl.plate("data", x.shape[0]):
        ppl.observe("x", dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(mu, sigma)), x)


def fixed_model(x, weights, mu, sigma):
    """Only the assignments are latent (parameters given): the posterior is closed form."""
    with ppl.plate("data", x.shape[0]):
        z = ppl.sample("z", dist.Categorical(weights))
        ppl.observe("x", dist.Normal(mu[z], sigma[z]), x)


def assignment_probs(x, weights, mu, sigma):
    """P(z[n] = k | x[n], weights, mu, sigma), shape (N, K)."""
    lp = np.log(weights) - 0.5 * ((x[:, None] - mu) / sigma) ** 2 - np.log(sigma)
    lp -= lp.max(1, keepdims=True)
    p = np.exp(lp)
    return p / p.sum(1, keepdims=True)


def simulate(seed=0, n=1000, mu=TRUE_MU, sigma=TRUE_SIGMA, weights=TRUE_WEIGHTS):
    """Data x of shape (n,) and the true assignments."""
    rng = np.random.default_rng(seed)
    z = rng.choice(len(weights), size=n, p=weights)
    return rng.normal(mu[z], sigma[z]).astype(np.float32), z


def init_values(x, k=5):
    """Starting values from the data's quantiles (the same for every method in a benchmark)."""
    q = np.quantile(np.asarray(x), (np.arange(k) + 0.5) / k)
    return {"mu": jnp.asarray(np.sort(q), jnp.float32), "sigma": jnp.ones(k), "weights": jnp.full(k, 1.0 / k)}


def load(n=1000, seed=0):
    """(args, kwargs) of `model` on simulated data."""
    x, _ = simulate(seed, n)
    return (jnp.asarray(x),), {}
