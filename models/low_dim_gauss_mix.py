"""posteriordb `low_dim_gauss_mix`: two-component 1-D normal mixture, ordered means.

mu ~ N(0, 2) iid restricted to mu[1] < mu[2], sigma[k] ~ Half-N(0, 2), theta ~ Beta(5, 5),
y[n] ~ theta N(mu[1], sigma[1]) + (1 - theta) N(mu[2], sigma[2]) (labels marginalised).
"""
from __future__ import annotations

import jax.numpy as jnp

import ppl
from models import _reference as ref
from models._dists import OrderedNormal
from ppl import dist

NAME = "low_dim_gauss_mix"
REFERENCE = "low_dim_gauss_mix-low_dim_gauss_mix"


def model(y):
    mu = ppl.sample("mu", OrderedNormal(jnp.zeros(2), 2.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = ppl.sample("theta", dist.Beta(5.0, 5.0))
    mix = dist.MixtureSameFamily(dist.Categorical(probs=jnp.stack([theta, 1.0 - theta])), dist.Normal(mu, sigma))
    with ppl.plate("data", y.shape[0]):
        ppl.observe("y", mix, y)


def load():
    return (ref.load_data(REFERENCE)["y"],), {}


def to_reference(samples: dict) -> dict:
    """-> `mu[1]`, `mu[2]`, `sigma[1]`, `sigma[2]`, `theta`."""
    return ref.to_labels(samples, {"mu": "mu", "sigma": "sigma", "theta": "theta"})
