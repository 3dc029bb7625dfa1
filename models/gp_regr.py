"""posteriordb `gp_pois_regr-gp_regr`: Gaussian-process regression, latent function integrated out.

rho ~ Gamma(25, rate 4), alpha ~ Half-N(0, 2), sigma ~ Half-N(0, 1),
y ~ MVN(0, K + sigma I) with K[i, j] = alpha^2 exp(-(x[i] - x[j])^2 / (2 rho^2)).
Quirk kept from the reference: sigma is added to the diagonal as a VARIANCE (nugget), not sigma^2.
"""
from __future__ import annotations

import jax.numpy as jnp

import ppl
from models import _reference as ref
from ppl import dist

NAME = "gp_regr"
REFERENCE = "gp_pois_regr-gp_regr"


def model(x, y=None):
    rho = ppl.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = ppl.sample("alpha", dist.HalfNormal(2.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
    d2 = (x[:, None] - x[None, :]) ** 2
    cov = alpha**2 * jnp.exp(-d2 / (2.0 * rho**2)) + sigma * jnp.eye(x.shape[0])
    ppl.observe("y", dist.MultivariateNormal(jnp.zeros(x.shape[0]), covariance_matrix=cov), y)


def load():
    data = ref.load_data(REFERENCE)
    return (data["x"],), {"y": data["y"]}


def to_reference(samples: dict) -> dict:
    """-> `rho`, `alpha`, `sigma`."""
    return ref.to_labels(samples, {"rho": "rho", "alpha": "alpha", "sigma": "sigma"})
