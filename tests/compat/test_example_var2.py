"""NumPyro's examples/var2.py (a VAR(2) process with `scan` and a per-step site name), numpyro
renamed to ppl: the example's imports and code as it writes them (numpyro 0.22, Apache-2.0,
Copyright Contributors to the Pyro project), then a harness part; see compat_harness for the
comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import time
import numpy as np
from jax import random
import jax.numpy as jnp
import ppl
from ppl.contrib.control_flow import scan
import ppl.distributions as dist

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def var2_scan(y):
    T, K = y.shape  # Number of time steps and number of variables

    # Priors for constants and coefficients
    c = ppl.sample("c", dist.Normal(0, 1).expand([K]))  # Constants vector of size K
    Phi1 = ppl.sample(
        "Phi1", dist.Normal(0, 1).expand([K, K]).to_event(2)
    )  # Coefficients for lag 1
    Phi2 = ppl.sample(
        "Phi2", dist.Normal(0, 1).expand([K, K]).to_event(2)
    )  # Coefficients for lag 2

    # Priors for error terms
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0).expand([K]).to_event(1))
    L_omega = ppl.sample(
        "L_omega", dist.LKJCholesky(dimension=K, concentration=1.0)
    )
    L_Sigma = (
        sigma[..., None] * L_omega
    )  # Alternative: jnp.einsum("...i,...ij->...ij", sigma, L_omega)

    def transition(carry, t):
        y_prev1, y_prev2, y_obs = carry  # Previous two observations and observed data
        m_t = c + jnp.dot(Phi1, y_prev1) + jnp.dot(Phi2, y_prev2)  # Mean prediction
        # Conditioned on observed y
        y_t = ppl.sample(
            f"y_{t}",
            dist.MultivariateNormal(loc=m_t, scale_tril=L_Sigma),
            obs=y_obs[t],
        )
        new_carry = (y_t, y_prev1, y_obs)
        return new_carry, m_t

    # Initial carry: observations at time steps 1 and 0
    init_carry = (y[1], y[0], y[2:])

    # Time indices starting from time step 2
    time_indices = jnp.arange(T - 2)

    # Run the scan
    _, mu = scan(transition, init_carry, time_indices)

    # Store the mean trajectory as a deterministic variable
    ppl.deterministic("mu", mu)


def generate_var2_data(T, K, c, Phi1, Phi2, sigma):
    """
    Generate time series data from a VAR(2) process.
    Args:
        T (int): Number of time steps.
        K (int): Number of variables in the time series.
        c (array): Constants (shape: (K,)).
        Phi1 (array): Coefficients for lag 1 (shape: (K, K)).
        Phi2 (array): Coefficients for lag 2 (shape: (K, K)).
        sigma (array): Covariance matrix for the noise (shape: (K, K)).
    Returns:
        np.ndarray: Generated time series data (shape: (T, K)).
    """
    # Initialize time series with random values
    y = np.zeros((T, K))
    y[:2] = np.random.multivariate_normal(mean=np.zeros(K), cov=sigma, size=2)

    # Generate the time series
    for t in range(2, T):
        y[t] = (
            c
            + Phi1 @ y[t - 1]
            + Phi2 @ y[t - 2]
            + np.random.multivariate_normal(mean=np.zeros(K), cov=sigma)
        )

    return y


def run_inference(model, args, rng_key, y):
    """
    Run MCMC inference for the given model.
    Args:
        model: The probabilistic model to infer.
        args: Command-line arguments.
        rng_key: PRNG key for randomness.
        y: Observed time series data.
    """
    start = time.time()
    sampler = ppl.infer.NUTS(model)
    mcmc = ppl.infer.MCMC(
        sampler,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key, y=y)
    mcmc.print_summary()
    print("\nMCMC elapsed time:", time.time() - start)
    return mcmc.get_samples()


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_data=60, num_samples=400, num_warmup=400, num_chains=2)


def run(args, rng_key):
    # the example's artificial data set (it seeds NumPy's global generator nowhere: we do)
    np.random.seed(0)
    T = args.num_data
    K = 2
    c_true = jnp.array([0.5, -0.3])
    Phi1_true = jnp.array([[0.7, 0.1], [0.2, 0.5]])
    Phi2_true = jnp.array([[0.2, -0.1], [-0.1, 0.2]])
    sigma_true = jnp.array([[0.1, 0.02], [0.02, 0.1]])
    y = generate_var2_data(T, K, c_true, Phi1_true, Phi2_true, sigma_true)
    return run_inference(var2_scan, args, rng_key, y)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_var2_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
