"""posteriordb `eight_schools-eight_schools_noncentered` (Rubin 1981; BDA3 §5.5), non-centred.

theta_trans[j] ~ N(0, 1), mu ~ N(0, 5), tau ~ Half-Cauchy(0, 5),
theta[j] = mu + tau * theta_trans[j] (deterministic), y[j] ~ N(theta[j], sigma[j]), j = 1..8.
"""
from __future__ import annotations

import ppl
from models import _reference as ref
from ppl import dist

NAME = "eight_schools_noncentered"
REFERENCE = "eight_schools-eight_schools_noncentered"


def model(sigma, y=None):
    """`sigma` the known standard errors (J,); `y` the estimated effects (J,)."""
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta_trans = ppl.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = ppl.deterministic("theta", mu + tau * theta_trans)
        ppl.observe("y", dist.Normal(theta, sigma), y)


def load():
    data = ref.load_data(REFERENCE)
    return (data["sigma"],), {"y": data["y"]}


def to_reference(samples: dict) -> dict:
    """-> `theta[1..8]`, `mu`, `tau` and the derived `theta_trans[1..8]`."""
    return ref.to_labels(samples, {"theta": "theta", "mu": "mu", "tau": "tau", "theta_trans": "theta_trans"})
