"""posteriordb `arK-arK`: AR(K = 5) time series, likelihood conditional on the first K values.

alpha ~ N(0, 10), beta[k] ~ N(0, 10), sigma ~ Half-Cauchy(0, 2.5),
y[t] ~ N(alpha + sum_k beta[k] y[t-k], sigma) for t = K+1..T; no stationarity constraint.
"""
from __future__ import annotations

import jax.numpy as jnp

import ppl
from models import _reference as ref
from ppl import dist

NAME = "ark"
REFERENCE = "arK-arK"


def model(K, y):
    """`K` number of lags (static int); `y` the series (T,); its first K values are conditioned on."""
    T = y.shape[0]
    alpha = ppl.sample("alpha", dist.Normal(0.0, 10.0))
    beta = ppl.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = ppl.sample("sigma", dist.HalfCauchy(2.5))
    lags = jnp.stack([y[K - k: T - k] for k in range(1, K + 1)], axis=-1)  # lags[t-K, k-1] = y[t-k]
    with ppl.plate("time", T - K):
        ppl.observe("y", dist.Normal(alpha + lags @ beta, sigma), y[K:])


def load():
    data = ref.load_data(REFERENCE)
    return (int(data["K"]), data["y"]), {}


def to_reference(samples: dict) -> dict:
    """-> `alpha`, `beta[1]`..`beta[5]`, `sigma`."""
    return ref.to_labels(samples, {"alpha": "alpha", "beta": "beta", "sigma": "sigma"})
