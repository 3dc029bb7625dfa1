"""posteriordb `kidiq-kidscore_momiq`: simple linear regression (Gelman & Hill 2006, ch. 3).

beta in R^2 flat (improper), sigma ~ Half-Cauchy(0, 2.5),
kid_score[n] ~ N(beta[1] + beta[2] * mom_iq[n], sigma). mom_iq is not centred.
"""
from __future__ import annotations

import ppl
from models import _reference as ref
from ppl import dist

NAME = "kidiq_kidscore_momiq"
REFERENCE = "kidiq-kidscore_momiq"


def model(mom_iq, kid_score=None):
    beta = ppl.sample("beta", dist.ImproperUniform(dist.constraints.real_vector, (), (2,)))
    sigma = ppl.sample("sigma", dist.HalfCauchy(2.5))
    with ppl.plate("data", mom_iq.shape[0]):
        ppl.observe("kid_score", dist.Normal(beta[0] + beta[1] * mom_iq, sigma), kid_score)


def load():
    data = ref.load_data(REFERENCE)
    return (data["mom_iq"],), {"kid_score": data["kid_score"]}


def to_reference(samples: dict) -> dict:
    """-> `beta[1]` (intercept), `beta[2]` (slope), `sigma`."""
    return ref.to_labels(samples, {"beta": "beta", "sigma": "sigma"})
