"""NumPyro's examples/gp.py (a Gaussian process with hyperpriors and init_to_median), numpyro
renamed to ppl: the example's imports and code as it writes them (numpyro 0.22, Apache-2.0,
Copyright Contributors to the Pyro project), then a harness part; see compat_harness for the
comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import time
import numpy as np
import jax
from jax import vmap
import jax.numpy as jnp
import jax.random as random
import ppl
import ppl.distributions as dist
from ppl.infer import (
    MCMC,
    NUTS,
    init_to_feasible,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def kernel(X, Z, var, length, noise, jitter=1.0e-6, include_noise=True):
    deltaXsq = jnp.power((X[:, None] - Z) / length, 2.0)
    k = var * jnp.exp(-0.5 * deltaXsq)
    if include_noise:
        k += (noise + jitter) * jnp.eye(X.shape[0])
    return k


def model(X, Y):
    # set uninformative log-normal priors on our three kernel hyperparameters
    var = ppl.sample("kernel_var", dist.LogNormal(0.0, 10.0))
    noise = ppl.sample("kernel_noise", dist.LogNormal(0.0, 10.0))
    length = ppl.sample("kernel_length", dist.LogNormal(0.0, 10.0))

    # compute kernel
    k = kernel(X, X, var, length, noise)

    # sample Y according to the standard gaussian process formula
    ppl.sample(
        "Y",
        dist.MultivariateNormal(loc=jnp.zeros(X.shape[0]), covariance_matrix=k),
        obs=Y,
    )


def run_inference(model, args, rng_key, X, Y):
    start = time.time()
    # demonstrate how to use different HMC initialization strategies
    if args.init_strategy == "value":
        init_strategy = init_to_value(
            values={"kernel_var": 1.0, "kernel_noise": 0.05, "kernel_length": 0.5}
        )
    elif args.init_strategy == "median":
        init_strategy = init_to_median(num_samples=10)
    elif args.init_strategy == "feasible":
        init_strategy = init_to_feasible()
    elif args.init_strategy == "sample":
        init_strategy = init_to_sample()
    elif args.init_strategy == "uniform":
        init_strategy = init_to_uniform(radius=1)
    kernel = NUTS(model, init_strategy=init_strategy)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        thinning=args.thinning,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key, X, Y)
    mcmc.print_summary()
    print("\nMCMC elapsed time:", time.time() - start)
    return mcmc.get_samples()


def predict(rng_key, X, Y, X_test, var, length, noise, use_cholesky=True):
    # compute kernels between train and test data, etc.
    k_pp = kernel(X_test, X_test, var, length, noise, include_noise=True)
    k_pX = kernel(X_test, X, var, length, noise, include_noise=False)
    k_XX = kernel(X, X, var, length, noise, include_noise=True)

    # since K_xx is symmetric positive-definite, we can use the more efficient and
    # stable Cholesky decomposition instead of matrix inversion
    if use_cholesky:
        K_xx_cho = jax.scipy.linalg.cho_factor(k_XX)
        K = k_pp - jnp.matmul(k_pX, jax.scipy.linalg.cho_solve(K_xx_cho, k_pX.T))
        mean = jnp.matmul(k_pX, jax.scipy.linalg.cho_solve(K_xx_cho, Y))
    else:
        K_xx_inv = jnp.linalg.inv(k_XX)
        K = k_pp - jnp.matmul(k_pX, jnp.matmul(K_xx_inv, jnp.transpose(k_pX)))
        mean = jnp.matmul(k_pX, jnp.matmul(K_xx_inv, Y))

    sigma_noise = jnp.sqrt(jnp.clip(jnp.diag(K), 0.0)) * jax.random.normal(
        rng_key, X_test.shape[:1]
    )

    # we return both the mean function and a sample from the posterior predictive for the
    # given set of hyperparameters
    return mean, mean + sigma_noise


def get_data(N=30, sigma_obs=0.15, N_test=400):
    np.random.seed(0)
    X = jnp.linspace(-1, 1, N)
    Y = X + 0.2 * jnp.power(X, 3.0) + 0.5 * jnp.power(0.5 + X, 2.0) * jnp.sin(4.0 * X)
    Y += sigma_obs * np.random.randn(N)
    Y -= jnp.mean(Y)
    Y /= jnp.std(Y)

    assert X.shape == (N,)
    assert Y.shape == (N,)

    X_test = jnp.linspace(-1.3, 1.3, N_test)

    return X, Y, X_test


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=400, num_warmup=400, num_chains=2, thinning=2, num_data=25,
                          init_strategy="median", use_cholesky=True)


def run(args, rng_key):
    X, Y, X_test = get_data(N=args.num_data)
    samples = run_inference(model, args, rng_key, X, Y)
    # the example's prediction, at 20 test points
    X_test = X_test[::20]
    vmap_args = (random.split(random.key(5), samples["kernel_var"].shape[0]), samples["kernel_var"],
                 samples["kernel_length"], samples["kernel_noise"])
    means, _ = vmap(lambda rng_key, var, length, noise: predict(
        rng_key, X, Y, X_test, var, length, noise, use_cholesky=args.use_cholesky))(*vmap_args)
    return {**samples, "mean_prediction": means}


@pytest.mark.slow
def test_gp_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)


@pytest.mark.slow
@pytest.mark.parametrize("init_strategy", ["value", "feasible", "sample"])
def test_gp_init_strategies_agree_with_numpyro(init_strategy):
    compat_harness.check(sys.modules[__name__], argparse.Namespace(**{**vars(ARGS), "init_strategy": init_strategy}))
