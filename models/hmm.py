"""Two-state Gaussian hidden Markov model with explicit discrete states, and its twin with
the states summed out by the forward algorithm (posteriordb `hmm_example`).

    theta1, theta2 ~ Dirichlet(1, 1)          rows of the transition matrix
    mu ~ positive ordered, mu[0] ~ N(3, 1), mu[1] ~ N(10, 1)
    z_0 ~ Categorical(1/2, 1/2),  z_t | z_{t-1} ~ Categorical(Theta[z_{t-1}])
    y_t | z_t ~ N(mu[z_t], 1)

`model` samples every state z_t as its own site (Gibbs finds the chain and updates it by
forward filtering backward sampling); `forward_model` marginalises them with `lax.scan` (for
NUTS). Both have the same posterior over (theta1, theta2, mu): the uniform initial
distribution only adds a constant. Known answer: the posteriordb reference posterior
(`REFERENCE`, compared with `models._reference.compare(to_reference(samples), REFERENCE)`:
theta1[1] ~ 0.67, theta2[2] ~ 0.93, mu ~ (3.02, 8.83)).
"""
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

import ppl
from models import _reference as ref
from ppl import dist

NAME = "hmm"
REFERENCE = "hmm_example-hmm_example"
MU_PRIOR = (3.0, 10.0)


def _parameters():
    theta1 = ppl.sample("theta1", dist.Dirichlet(jnp.ones(2)))
    theta2 = ppl.sample("theta2", dist.Dirichlet(jnp.ones(2)))
    mu = ppl.sample("mu", dist.ImproperUniform(constraints.positive_ordered_vector, (), (2,)))
    ppl.factor("mu_prior", dist.Normal(jnp.asarray(MU_PRIOR), 1.0).log_prob(mu).sum())
    return jnp.stack([theta1, theta2]), mu


def model(y):
    """Explicit states: one Categorical site `z_t` per time step."""
    trans, mu = _parameters()
    z = ppl.sample("z_0", dist.Categorical(jnp.full(2, 0.5)))
    ppl.observe("y_0", dist.Normal(mu[z], 1.0), y[0])
    for t in range(1, y.shape[0]):
        z = ppl.sample(f"z_{t}", dist.Categorical(trans[z]))
        ppl.observe(f"y_{t}", dist.Normal(mu[z], 1.0), y[t])


def forward_log_likelihood(y, trans, mu):
    """log p(y | trans, mu) by the forward algorithm (uniform initial state)."""
    log_e = dist.Normal(mu, 1.0).log_prob(y[:, None])  # (T, K)
    log_trans = jnp.log(trans)

    def step(g, le):
        g = le + jax.nn.logsumexp(g[:, None] + log_trans, axis=0)
        return g, None

    g0 = jnp.log(0.5) + log_e[0]
    g, _ = jax.lax.scan(step, g0, log_e[1:])
    return jax.nn.logsumexp(g)


def forward_model(y):
    """The states summed out (for NUTS)."""
    trans, mu = _parameters()
    ppl.factor("y", forward_log_likelihood(y, trans, mu))


def load(num_steps=None):
    """(args, kwargs): the posteriordb series (its first `num_steps` points if given)."""
    y = np.asarray(ref.load_data(REFERENCE)["y"], np.float32)
    if num_steps is not None:
        y = y[:num_steps]
    return (jnp.asarray(y),), {}


def to_reference(samples):
    """Draws relabelled as the reference ({'theta1[1]': (chains, draws), ...}, 1-based)."""
    out = {}
    for name in ("theta1", "theta2", "mu"):
        v = np.asarray(samples[name])
        for i in range(2):
            out[f"{name}[{i + 1}]"] = v[..., i]
    return out


def simulate(seed=0, num_steps=100, trans=((0.7, 0.3), (0.1, 0.9)), mu=(3.0, 9.0)):
    """A series from the model with the given parameters; returns (y, states)."""
    rng = np.random.default_rng(seed)
    trans, mu = np.asarray(trans), np.asarray(mu)
    z = np.zeros(num_steps, int)
    z[0] = rng.integers(2)
    for t in range(1, num_steps):
        z[t] = rng.choice(2, p=trans[z[t - 1]])
    return rng.normal(mu[z], 1.0).astype(np.float32), z
