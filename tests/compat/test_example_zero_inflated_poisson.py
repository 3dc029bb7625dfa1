"""NumPyro's examples/zero_inflated_poisson.py (a zero-inflated Poisson regression, its MCMC
part), numpyro renamed to ppl: the example's imports and code as it writes them (numpyro 0.22,
Apache-2.0, Copyright Contributors to the Pyro project), then a harness part; see
compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import random
import numpy as np
import pandas as pd
from sklearn.metrics import mean_squared_error
import jax.numpy as jnp
from jax.random import key
import jax.scipy as jsp
import ppl
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, autoguide

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def model(X, Y):
    D_X = X.shape[1]
    b1 = ppl.sample("b1", dist.Normal(0.0, 1.0).expand([D_X]).to_event(1))
    b2 = ppl.sample("b2", dist.Normal(0.0, 1.0).expand([D_X]).to_event(1))

    q = jsp.special.expit(jnp.dot(X, b1[:, None])).reshape(-1)
    lam = jnp.exp(jnp.dot(X, b2[:, None]).reshape(-1))

    with ppl.plate("obs", X.shape[0]):
        ppl.sample("Y", dist.ZeroInflatedPoisson(gate=q, rate=lam), obs=Y)


def run_mcmc(model, args, X, Y):
    kernel = NUTS(model)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(key(1), X, Y)
    mcmc.print_summary()
    return mcmc.get_samples()


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=400, num_warmup=400, num_chains=2)


def simulate(n=200):
    """Data shaped as the example's fish.dta (4 covariates and an intercept), drawn from the model."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(1, 5, n),
                         rng.integers(0, 4, n), np.ones(n)]).astype(np.float32)
    b1 = np.array([-0.5, 0.3, 0.2, 0.8, -1.0])
    b2 = np.array([0.6, 0.5, 0.4, -0.8, -0.5])
    gate = 1 / (1 + np.exp(-X @ b1))
    Y = np.where(rng.random(n) < gate, 0, rng.poisson(np.exp(X @ b2)))
    return jnp.asarray(X), jnp.asarray(Y)


def run(args, rng_key):
    X, Y = simulate()
    return run_mcmc(model, args, X, Y)  # the example seeds its MCMC itself (key(1))


@pytest.mark.slow
def test_zero_inflated_poisson_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
