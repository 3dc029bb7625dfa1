"""NumPyro's examples/bnn.py (a Bayesian neural network), numpyro renamed to ppl: the example's
imports and code as it writes them (numpyro 0.22, Apache-2.0, Copyright Contributors to the
Pyro project), then a harness part; see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import time
import numpy as np
from jax import vmap
import jax.numpy as jnp
import jax.random as random
import ppl
from ppl import handlers
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def nonlin(x):
    return jnp.tanh(x)


def model(X, Y, D_H, D_Y=1):
    N, D_X = X.shape

    # sample first layer (we put unit normal priors on all weights)
    w1 = ppl.sample("w1", dist.Normal(jnp.zeros((D_X, D_H)), jnp.ones((D_X, D_H))))
    assert w1.shape == (D_X, D_H)
    z1 = nonlin(jnp.matmul(X, w1))  # <= first layer of activations
    assert z1.shape == (N, D_H)

    # sample second layer
    w2 = ppl.sample("w2", dist.Normal(jnp.zeros((D_H, D_H)), jnp.ones((D_H, D_H))))
    assert w2.shape == (D_H, D_H)
    z2 = nonlin(jnp.matmul(z1, w2))  # <= second layer of activations
    assert z2.shape == (N, D_H)

    # sample final layer of weights and neural network output
    w3 = ppl.sample("w3", dist.Normal(jnp.zeros((D_H, D_Y)), jnp.ones((D_H, D_Y))))
    assert w3.shape == (D_H, D_Y)
    z3 = jnp.matmul(z2, w3)  # <= output of the neural network
    assert z3.shape == (N, D_Y)

    if Y is not None:
        assert z3.shape == Y.shape

    # we put a prior on the observation noise
    prec_obs = ppl.sample("prec_obs", dist.Gamma(3.0, 1.0))
    sigma_obs = 1.0 / jnp.sqrt(prec_obs)

    # observe data
    with ppl.plate("data", N):
        # note we use to_event(1) because each observation has shape (1,)
        ppl.sample("Y", dist.Normal(z3, sigma_obs).to_event(1), obs=Y)


def run_inference(model, args, rng_key, X, Y, D_H):
    start = time.time()
    kernel = NUTS(model)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key, X, Y, D_H)
    mcmc.print_summary()
    print("\nMCMC elapsed time:", time.time() - start)
    return mcmc.get_samples()


def predict(model, rng_key, samples, X, D_H):
    model = handlers.substitute(handlers.seed(model, rng_key), samples)
    # note that Y will be sampled in the model because we pass Y=None here
    model_trace = handlers.trace(model).get_trace(X=X, Y=None, D_H=D_H)
    return model_trace["Y"]["value"]


def get_data(N=50, D_X=3, sigma_obs=0.05, N_test=500):
    D_Y = 1  # create 1d outputs
    np.random.seed(0)
    X = jnp.linspace(-1, 1, N)
    X = jnp.power(X[:, np.newaxis], jnp.arange(D_X))
    W = 0.5 * np.random.randn(D_X)
    Y = jnp.dot(X, W) + 0.5 * jnp.power(0.5 + X[:, 1], 2.0) * jnp.sin(4.0 * X[:, 1])
    Y += sigma_obs * np.random.randn(N)
    Y = Y[:, np.newaxis]
    Y -= jnp.mean(Y)
    Y /= jnp.std(Y)

    assert X.shape == (N, D_X)
    assert Y.shape == (N, D_Y)

    X_test = jnp.linspace(-1.3, 1.3, N_test)
    X_test = jnp.power(X_test[:, np.newaxis], jnp.arange(D_X))

    return X, Y, X_test


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=500, num_warmup=500, num_chains=2, num_data=50, num_hidden=5)


def run(args, rng_key):
    N, D_X, D_H = args.num_data, 3, args.num_hidden
    X, Y, X_test = get_data(N=N, D_X=D_X)
    samples = run_inference(model, args, rng_key, X, Y, D_H)
    X_test = X_test[::50]
    vmap_args = (samples, random.split(random.key(9), args.num_samples * args.num_chains))
    predictions = vmap(lambda samples, rng_key: predict(model, rng_key, samples, X_test, D_H))(*vmap_args)
    # The weights are identified only up to permutations and signs of the hidden units, so
    # only the noise precision and the predictions are compared.
    return {"prec_obs": samples["prec_obs"], "predictions": predictions[..., 0]}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bnn_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
