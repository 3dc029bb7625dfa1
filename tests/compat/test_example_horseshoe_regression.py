"""NumPyro's examples/horseshoe_regression.py (horseshoe priors, normal and Bernoulli
likelihoods), numpyro renamed to ppl: the example's imports and code as it writes them (numpyro
0.22, Apache-2.0, Copyright Contributors to the Pyro project), then a harness part; see
compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import time
import numpy as np
from scipy.special import expit
import jax.numpy as jnp
import jax.random as random
import ppl
from ppl.diagnostics import summary
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def model_normal_likelihood(X, Y):
    D_X = X.shape[1]

    # sample from horseshoe prior
    lambdas = ppl.sample("lambdas", dist.HalfCauchy(jnp.ones(D_X)))
    tau = ppl.sample("tau", dist.HalfCauchy(jnp.ones(1)))

    # note that in practice for a normal likelihood we would probably want to
    # integrate out the coefficients (as is done for example in sparse_regression.py).
    # however, this trick wouldn't be applicable to other likelihoods
    # (e.g. bernoulli, see below) so we don't make use of it here.
    unscaled_betas = ppl.sample("unscaled_betas", dist.Normal(0.0, jnp.ones(D_X)))
    scaled_betas = ppl.deterministic("betas", tau * lambdas * unscaled_betas)

    # compute mean function using linear coefficients
    mean_function = jnp.dot(X, scaled_betas)

    prec_obs = ppl.sample("prec_obs", dist.Gamma(3.0, 1.0))
    sigma_obs = 1.0 / jnp.sqrt(prec_obs)

    # observe data
    ppl.sample("Y", dist.Normal(mean_function, sigma_obs), obs=Y)


def model_bernoulli_likelihood(X, Y):
    D_X = X.shape[1]

    # sample from horseshoe prior
    lambdas = ppl.sample("lambdas", dist.HalfCauchy(jnp.ones(D_X)))
    tau = ppl.sample("tau", dist.HalfCauchy(jnp.ones(1)))

    # note that this reparameterization (i.e. coordinate transformation) improves
    # posterior geometry and makes NUTS sampling more efficient
    unscaled_betas = ppl.sample("unscaled_betas", dist.Normal(0.0, jnp.ones(D_X)))
    scaled_betas = ppl.deterministic("betas", tau * lambdas * unscaled_betas)

    # compute mean function using linear coefficients
    mean_function = jnp.dot(X, scaled_betas)

    # observe data
    ppl.sample("Y", dist.Bernoulli(logits=mean_function), obs=Y)


def run_inference(model, args, rng_key, X, Y):
    start = time.time()
    kernel = NUTS(model)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )

    mcmc.run(rng_key, X, Y)
    mcmc.print_summary(exclude_deterministic=False)

    samples = mcmc.get_samples()
    summary_dict = summary(samples, group_by_chain=False)

    print("\nMCMC elapsed time:", time.time() - start)

    return summary_dict


def get_data(N=50, D_X=3, sigma_obs=0.05, response="continuous"):
    assert response in ["continuous", "binary"]
    assert D_X >= 3

    np.random.seed(0)
    X = np.random.randn(N, D_X)

    # the response only depends on X_0, X_1, and X_2
    W = np.array([2.0, -1.0, 0.50])
    Y = jnp.dot(X[:, :3], W)
    Y -= jnp.mean(Y)

    if response == "continuous":
        Y += sigma_obs * np.random.randn(N)
    elif response == "binary":
        Y = np.random.binomial(1, expit(Y))

    assert X.shape == (N, D_X)
    assert Y.shape == (N,)

    return X, Y


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_data=50, num_samples=400, num_warmup=400, num_chains=2)


def run(args, rng_key, response="continuous"):
    this = sys.modules[__name__]
    X, Y = get_data(N=args.num_data, D_X=8, response=response)
    model = model_normal_likelihood if response == "continuous" else model_bernoulli_likelihood
    return compat_harness.last_mcmc(this, run_inference, model, args, rng_key, X, Y).get_samples()


def run_bernoulli(args, rng_key):
    return run(args, rng_key, response="binary")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_horseshoe_normal_likelihood_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_horseshoe_bernoulli_likelihood_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS, entry="run_bernoulli")
