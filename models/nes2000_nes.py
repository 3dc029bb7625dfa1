"""posteriordb `nes2000-nes`: multiple linear regression of party identification
(Gelman & Hill 2006, ch. 4), flat (improper) priors on beta in R^9 and sigma > 0.

partyid7[n] ~ N(beta[1] + beta[2] real_ideo + beta[3] race_adj + beta[4] [age == 2]
               + beta[5] [age == 3] + beta[6] [age == 4] + beta[7] educ1 + beta[8] gender
               + beta[9] income, sigma), all predictors used as stored in data.json.
"""
from __future__ import annotations

import jax.numpy as jnp

import ppl
from models import _reference as ref
from ppl import dist

NAME = "nes2000_nes"
REFERENCE = "nes2000-nes"


def model(real_ideo, race_adj, age_discrete, educ1, gender, income, partyid7=None):
    beta = ppl.sample("beta", dist.ImproperUniform(dist.constraints.real_vector, (), (9,)))
    sigma = ppl.sample("sigma", dist.ImproperUniform(dist.constraints.positive, (), ()))
    age30_44 = (age_discrete == 2).astype(real_ideo.dtype)
    age45_64 = (age_discrete == 3).astype(real_ideo.dtype)
    age65up = (age_discrete == 4).astype(real_ideo.dtype)
    X = jnp.stack([real_ideo, race_adj, age30_44, age45_64, age65up, educ1, gender, income], axis=-1)
    with ppl.plate("data", real_ideo.shape[0]):
        ppl.observe("partyid7", dist.Normal(beta[0] + X @ beta[1:], sigma), partyid7)


def load():
    d = ref.load_data(REFERENCE)
    args = tuple(d[k] for k in ("real_ideo", "race_adj", "age_discrete", "educ1", "gender", "income"))
    return args, {"partyid7": d["partyid7"]}


def to_reference(samples: dict) -> dict:
    """-> `beta[1]`..`beta[9]`, `sigma`."""
    return ref.to_labels(samples, {"beta": "beta", "sigma": "sigma"})
