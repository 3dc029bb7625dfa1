"""Autoregressive AR(k) time series with a known truth, likelihood conditional on the first k
values (the posteriordb series with Stan's priors is `models.ark`).

    alpha ~ N(0, 10);  beta[j] ~ N(0, 10), j = 1..k;  sigma ~ HalfCauchy(2.5) (or given)
    y[t] ~ N(alpha + sum_j beta[j] y[t - j], sigma),  t = k+1..T

Known answers: the simulation truth (`TRUE_BETA`, `TRUE_SIGMA`); with `sigma` given, the
posterior of (alpha, beta) is Gaussian in closed form (`exact_posterior`: Bayesian linear
regression on the lagged values, Gelman et al., BDA3 §14.2).
"""
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

NAME = "ar"
TRUE_ALPHA = 0.1
TRUE_BETA = (0.6, -0.3)
TRUE_SIGMA = 0.5
PRIOR_SD = 10.0


def lagged(y, k):
    """(T - k, k) matrix whose column j holds y[t - j - 1] for t = k..T-1."""
    t = y.shape[0]
    return jnp.stack([y[k - j - 1: t - j - 1] for j in range(k)], axis=-1)


def model(y, k=2, sigma=None):
    """`y` the series (T,); `k` lags (static); `sigma` the noise sd, or None to infer it."""
    alpha = ppl.sample("alpha", dist.Normal(0.0, PRIOR_SD))
    beta = ppl.sample("beta", dist.Normal(0.0, PRIOR_SD).expand([k]).to_event(1))
    if sigma is None:
        sigma = ppl.sample("sigma", dist.HalfCauchy(2.5))
    with ppl.plate("time", y.shape[0] - k):
        ppl.observe("y", dist.Normal(alpha + lagged(y, k) @ beta, sigma), y[k:])


def simulate(seed=0, num_steps=200, alpha=TRUE_ALPHA, beta=TRUE_BETA, sigma=TRUE_SIGMA, burn_in=100):
    rng = np.random.default_rng(seed)
    beta = np.asarray(beta)
    k = len(beta)
    y = np.zeros(num_steps + burn_in)
    for t in range(k, len(y)):
        y[t] = alpha + beta @ y[t - k: t][::-1] + sigma * rng.normal()
    return y[burn_in:].astype(np.float32)


def exact_posterior(y, k=2, sigma=TRUE_SIGMA):
    """(mean, covariance) of (alpha, beta[0..k-1]) given `sigma` (Gaussian, conjugate)."""
    y = np.asarray(y, float)
    x = np.column_stack([np.ones(len(y) - k), np.asarray(lagged(jnp.asarray(y), k))])
    precision = x.T @ x / sigma**2 + np.eye(k + 1) / PRIOR_SD**2
    cov = np.linalg.inv(precision)
    return cov @ (x.T @ y[k:]) / sigma**2, cov


def load(num_steps=200, seed=0):
    """(args, kwargs): a simulated AR(2) series."""
    return (jnp.asarray(simulate(seed, num_steps)),), {"k": 2}
