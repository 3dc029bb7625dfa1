"""A variational autoencoder on scikit-learn's bundled 8x8 digits (no download).

    z_n ~ N(0, I_L),   x_n | z_n ~ Bernoulli(sigmoid(decoder(z_n)))   (64 binary pixels)
    q(z_n | x_n) = N(mu(x_n), diag sigma(x_n)^2)                       (amortised encoder)

Kingma and Welling (2014), "Auto-encoding variational Bayes"; trained with the ELBO or the
IWAE bound (Burda, Grosse and Salakhutdinov 2016), whose section 5 reports that
IWAE-trained models reach a better held-out log-likelihood, estimated there with k = 5000.
Decoder and encoder are Equinox MLPs registered with `ppl.module`; minibatches come from
`ppl.plate(..., subsample_size=batch_size)`, whose indices the guide shares with the model.
IWAE is per digit, as in the paper: `ppl.IWAE(k, plate="data")` gives each digit its own k
particles (without `plate` the k particles would be joint over the whole minibatch).

Example:
  >>> data = load()
  >>> model, guide = make(key=0)
  >>> r = ppl.infer(model, data.train, batch_size=100,
  ...               method=ppl.VI(guide=guide, objective=ppl.IWAE(k=5, plate="data"), optimizer=optax.adam(1e-3)))
  >>> held_out_log_likelihood(model, r, data.test, k=5000)
"""
from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

PIXELS = 64


class Digits(NamedTuple):
    train: jax.Array  # (1500, 64) binary float32
    test: jax.Array  # (297, 64)


def load(seed: int = 0, num_train: int = 1500) -> Digits:
    """The 1797 digits, binarised at half intensity (pixel > 8 of 16), split at random."""
    from sklearn.datasets import load_digits

    x = (load_digits().data > 8).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    x = x[perm]
    return Digits(jnp.asarray(x[:num_train]), jnp.asarray(x[num_train:]))


def make(key=0, latent_dim: int = 8, hidden: int = 128):
    """(model, guide) for `ppl.infer(model, x, batch_size=..., method=ppl.VI(guide=guide))`.

    `model(x, batch_size=None)` and `guide(x, batch_size=None)`; `batch_size` (a static int)
    subsamples the data plate for minibatch training; None uses every row (evaluation).
    """
    k_dec, k_enc = jax.random.split(jax.random.PRNGKey(key) if isinstance(key, int) else key)
    decoder = eqx.nn.MLP(latent_dim, PIXELS, hidden, 2, activation=jax.nn.softplus, key=k_dec)
    encoder = eqx.nn.MLP(PIXELS, 2 * latent_dim, hidden, 2, activation=jax.nn.softplus, key=k_enc)

    def model(x, batch_size=None):
        dec = ppl.module("decoder", decoder)
        with ppl.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            z = ppl.sample("z", dist.Normal(jnp.zeros(latent_dim), 1.0).to_event(1))
            ppl.observe("x", dist.Bernoulli(logits=jax.vmap(dec)(z)).to_event(1), x[idx])

    def guide(x, batch_size=None):
        enc = ppl.module("encoder", encoder)
        with ppl.plate("data", x.shape[0], subsample_size=batch_size) as idx:
            loc, scale = _encode(enc, x[idx])
            ppl.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


def _encode(encoder, x):
    h = jax.vmap(encoder)(x)
    loc, raw = jnp.split(h, 2, axis=-1)
    return loc, jax.nn.softplus(raw) + 1e-3


def reconstruct(result, x):
    """Pixel probabilities of decoder(encoder mean(x)) under the learned networks."""
    loc, _ = _encode(result.params["encoder"], x)
    return jax.nn.sigmoid(jax.vmap(result.params["decoder"])(loc))


def reconstruction_error(result, x, train):
    """(mean squared error of the reconstructions of x, that of the mean training image)."""
    rec = np.asarray(reconstruct(result, x))
    mean_image = np.asarray(train).mean(0)
    x = np.asarray(x)
    return float(((rec - x) ** 2).mean()), float(((mean_image - x) ** 2).mean())


def held_out_log_likelihood(model, result, x, k: int = 5000, key: int = 0, batch_size=None) -> float:
    """Average log p(x_n) over the rows of `x`, each by importance sampling with the fitted
    encoder and k particles (the IWAE-k bound; Burda et al. 2016, section 5)."""
    total = ppl.evaluate.marginal_log_likelihood(model, x, result=result, num_particles=k, plate="data",
                                                 key=key, batch_size=batch_size)
    return total / x.shape[0]
