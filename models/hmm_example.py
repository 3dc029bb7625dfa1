"""posteriordb `hmm_example`: two-state Gaussian hidden Markov model, states marginalised.

theta1, theta2 ~ uniform on the 2-simplex (rows of the transition matrix Theta[j, k] =
P(z[t] = k | z[t-1] = j)); mu ~ N((3, 10), 1) restricted to 0 < mu[1] < mu[2];
emission y[t] | z[t] = k ~ N(mu[k], 1). Forward algorithm (Rabiner 1989, eq. 19-20, in logs):
g[1, k] = log N(y[1] | mu[k], 1) (no initial-state term), g[t, k] = log N(y[t] | mu[k], 1)
+ logsumexp_j(g[t-1, j] + log Theta[j, k]); log-likelihood = logsumexp_k g[N, k].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import ppl
from models import _reference as ref
from models._dists import OrderedNormal
from ppl import dist

NAME = "hmm_example"
REFERENCE = "hmm_example-hmm_example"


def forward_log_likelihood(log_emission, log_theta):
    """log p(y) by the forward algorithm; `log_emission` (N, K), `log_theta` (K, K) from -> to."""

    def step(g, le):
        g = le + logsumexp(g[:, None] + log_theta, axis=0)
        return g, None

    g, _ = jax.lax.scan(step, log_emission[0], log_emission[1:])
    return logsumexp(g)


def model(y):
    # Dirichlet(1, 1) has density 1 on the simplex: exactly "no prior term".
    theta1 = ppl.sample("theta1", dist.Dirichlet(jnp.ones(2)))
    theta2 = ppl.sample("theta2", dist.Dirichlet(jnp.ones(2)))
    mu = ppl.sample("mu", OrderedNormal(jnp.array([3.0, 10.0]), 1.0, positive=True))
    log_emission = dist.Normal(mu, 1.0).log_prob(y[:, None])  # (N, K)
    log_theta = jnp.log(jnp.stack([theta1, theta2]))
    ppl.factor("y", forward_log_likelihood(log_emission, log_theta))


def load():
    data = ref.load_data(REFERENCE)
    if int(data["K"]) != 2:
        raise ValueError(f"hmm_example is written for K = 2 states, data.json has K = {data['K']}.")
    return (data["y"],), {}


def to_reference(samples: dict) -> dict:
    """-> `theta1[1]`, `theta1[2]`, `theta2[1]`, `theta2[2]`, `mu[1]`, `mu[2]`."""
    return ref.to_labels(samples, {"theta1": "theta1", "theta2": "theta2", "mu": "mu"})
