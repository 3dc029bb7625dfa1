"""posteriordb `eight_schools-eight_schools_centered` (Rubin 1981; BDA3 §5.5), centred: a funnel.

mu ~ N(0, 5), tau ~ Half-Cauchy(0, 5), theta[j] ~ N(mu, tau), y[j] ~ N(theta[j], sigma[j]).
The reference draws are those of the non-centred model (same distribution over theta, mu, tau).
"""
from __future__ import annotations

import ppl
from models import _reference as ref
from ppl import dist

NAME = "eight_schools_centered"
REFERENCE = "eight_schools-eight_schools_centered"


def model(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.observe("y", dist.Normal(theta, sigma), y)


def load():
    data = ref.load_data(REFERENCE)
    return (data["sigma"],), {"y": data["y"]}


def to_reference(samples: dict) -> dict:
    """-> `theta[1..8]`, `mu`, `tau`."""
    return ref.to_labels(samples, {"theta": "theta", "mu": "mu", "tau": "tau"})
