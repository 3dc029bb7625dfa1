"""The same models written twice, in ppl and in NumPyro, for side-by-side benchmarks."""
from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as nd

import ppl
from benchmarks._common import logistic_data
from models._reference import load_data
from ppl import dist


def eight_schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta_raw = ppl.sample("theta_raw", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(mu + tau * theta_raw, sigma), y)


def eight_schools_np(sigma, y=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
    with numpyro.plate("school", sigma.shape[0]):
        theta_raw = numpyro.sample("theta_raw", nd.Normal(0.0, 1.0))
        numpyro.sample("y", nd.Normal(mu + tau * theta_raw, sigma), obs=y)


def logreg(X, y=None):
    w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    b = ppl.sample("b", dist.Normal(0.0, 1.0))
    with ppl.plate("N", X.shape[0]):
        ppl.observe("y", dist.Bernoulli(logits=X @ w + b), y)


def logreg_np(X, y=None):
    w = numpyro.sample("w", nd.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    b = numpyro.sample("b", nd.Normal(0.0, 1.0))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", nd.Bernoulli(logits=X @ w + b), obs=y)


def kidiq(mom_iq, kid_score=None):
    beta = ppl.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (2,)))
    sigma = ppl.sample("sigma", dist.HalfCauchy(2.5))
    with ppl.plate("N", mom_iq.shape[0]):
        ppl.observe("kid_score", dist.Normal(beta[0] + beta[1] * mom_iq, sigma), kid_score)


def kidiq_np(mom_iq, kid_score=None):
    beta = numpyro.sample("beta", nd.ImproperUniform(nd.constraints.real, (), (2,)))
    sigma = numpyro.sample("sigma", nd.HalfCauchy(2.5))
    with numpyro.plate("N", mom_iq.shape[0]):
        numpyro.sample("kid_score", nd.Normal(beta[0] + beta[1] * mom_iq, sigma), obs=kid_score)


def cases(names=None):
    """name -> (ppl model, NumPyro model, args, kwargs)."""
    sigma = jnp.array([15.0, 10, 16, 11, 9, 11, 10, 18])
    ys = jnp.array([28.0, 8, -3, 7, -1, 1, 18, 12])
    X, y = logistic_data(5000, 25)
    out = {
        "eight_schools": (eight_schools, eight_schools_np, (sigma,), {"y": ys}),
        "logreg_5000x25": (logreg, logreg_np, (X,), {"y": y}),
    }
    try:
        d = load_data("kidiq-kidscore_momiq")
    except (FileNotFoundError, OSError):  # no reference folder on this machine: skip kidiq
        d = None
    if d is not None:
        out["kidiq"] = (kidiq, kidiq_np, (jnp.asarray(d["mom_iq"], jnp.float32),),
                        {"kid_score": jnp.asarray(d["kid_score"], jnp.float32)})
    return {k: v for k, v in out.items() if names is None or k in names}
