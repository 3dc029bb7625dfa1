"""posteriordb `sblri-blr`: Bayesian linear regression, no intercept.

beta[d] ~ N(0, 10) (d = 1..5), sigma ~ Half-N(0, 10), y[n] ~ N(X[n] . beta, sigma).
"""
from __future__ import annotations

import ppl
from models import _reference as ref
from ppl import dist

NAME = "sblri_blr"
REFERENCE = "sblri-blr"


def model(X, y=None):
    """`X` (N, D) design (no intercept column); `y` length-N response."""
    n, d = X.shape
    beta = ppl.sample("beta", dist.Normal(0.0, 10.0).expand([d]).to_event(1))
    sigma = ppl.sample("sigma", dist.HalfNormal(10.0))
    with ppl.plate("data", n):
        ppl.observe("y", dist.Normal(X @ beta, sigma), y)


def load():
    data = ref.load_data(REFERENCE)
    return (data["X"],), {"y": data["y"]}


def to_reference(samples: dict) -> dict:
    """Site arrays (chains, draws, *shape) -> reference labels `beta[1]`..`beta[5]`, `sigma`."""
    return ref.to_labels(samples, {"beta": "beta", "sigma": "sigma"})
