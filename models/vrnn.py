"""A variational recurrent neural network (VRNN) on simulated oscillating sequences.

Chung, Kastner, Dinh, Goel, Courville and Bengio (2015), "A recurrent latent variable
model for sequential data", eq. 5-9. With h_0 = 0 and t = 1..T:

    z_t ~ N(mu_prior(h_{t-1}), sigma_prior(h_{t-1}))              prior
    x_t ~ N(decoder(z_t, h_{t-1}), diag(obs_scale^2))             generation
    h_t = GRU([x_t, z_t], h_{t-1})                                recurrence
    q(z_t | x_<=t, z_<t) = N(mu_enc(x_t, h_{t-1}), sigma_enc(...)) inference

The guide recomputes h_t with the *same* GRU: `ppl.module("rnn", ...)` in model and guide
is one shared parameter, as in the paper. The data are 2-D noisy oscillations with random
frequency, phase and amplitude per sequence (`simulate`).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

import ppl
from ppl import dist


def simulate(n: int = 200, length: int = 20, seed: int = 0, noise: float = 0.1):
    """(n, length, 2) float32 sequences x_t = a (sin(w t + p), cos(w t + p)) + noise."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.3, 0.8, (n, 1))
    p = rng.uniform(0, 2 * np.pi, (n, 1))
    a = rng.uniform(0.5, 1.5, (n, 1))
    t = np.arange(length)[None]
    x = a[..., None] * np.stack([np.sin(w * t + p), np.cos(w * t + p)], -1)
    return jnp.asarray(x + noise * rng.normal(size=x.shape), jnp.float32)


def _gaussian(net, inputs):
    loc, raw = jnp.split(jax.vmap(net)(inputs), 2, axis=-1)
    return loc, jax.nn.softplus(raw) + 1e-3


def make(key=0, x_dim: int = 2, z_dim: int = 2, h_dim: int = 16, hidden: int = 32):
    """(model, guide), both called as f(x, batch_size=None) with x of shape (N, T, x_dim);
    `batch_size` subsamples sequences for minibatch training."""
    ks = jax.random.split(jax.random.PRNGKey(key) if isinstance(key, int) else key, 4)
    rnn = eqx.nn.GRUCell(x_dim + z_dim, h_dim, key=ks[0])
    prior = eqx.nn.MLP(h_dim, 2 * z_dim, hidden, 1, activation=jnp.tanh, key=ks[1])
    decoder = eqx.nn.MLP(z_dim + h_dim, x_dim, hidden, 1, activation=jnp.tanh, key=ks[2])
    encoder = eqx.nn.MLP(x_dim + h_dim, 2 * z_dim, hidden, 1, activation=jnp.tanh, key=ks[3])

    def model(x, batch_size=None):
        cell, pri, dec = ppl.module("rnn", rnn), ppl.module("prior", prior), ppl.module("decoder", decoder)
        obs_scale = ppl.param("obs_scale", 0.5 * jnp.ones(x_dim), constraint=constraints.positive)
        with ppl.plate("seq", x.shape[0], subsample_size=batch_size) as idx:
            xb = x[idx]
            h = jnp.zeros((xb.shape[0], h_dim))
            for t in range(x.shape[1]):
                z = ppl.sample(f"z_{t}", dist.Normal(*_gaussian(pri, h)).to_event(1))
                mean = jax.vmap(dec)(jnp.concatenate([z, h], -1))
                ppl.observe(f"x_{t}", dist.Normal(mean, obs_scale).to_event(1), xb[:, t])
                h = jax.vmap(cell)(jnp.concatenate([xb[:, t], z], -1), h)

    def guide(x, batch_size=None):
        cell, enc = ppl.module("rnn", rnn), ppl.module("encoder", encoder)
        with ppl.plate("seq", x.shape[0], subsample_size=batch_size) as idx:
            xb = x[idx]
            h = jnp.zeros((xb.shape[0], h_dim))
            for t in range(x.shape[1]):
                z = ppl.sample(f"z_{t}", dist.Normal(*_gaussian(enc, jnp.concatenate([xb[:, t], h], -1))).to_event(1))
                h = jax.vmap(cell)(jnp.concatenate([xb[:, t], z], -1), h)

    return model, guide
