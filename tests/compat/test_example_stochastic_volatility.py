"""NumPyro's examples/stochastic_volatility.py (a stochastic volatility model; the example drives
NumPyro's low-level hmc()/initialize_model/fori_collect, which ppl does not have, so the model
runs here under MCMC(NUTS(model))), numpyro renamed to ppl: the example's imports and code as
it writes them (numpyro 0.22, Apache-2.0, Copyright Contributors to the Pyro project), then a
harness part; see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import jax.numpy as jnp
import jax.random as random
import ppl
import ppl.distributions as dist

import sys

import numpy as np
import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def model(returns):
    step_size = ppl.sample("sigma", dist.Exponential(50.0))
    s = ppl.sample(
        "s", dist.GaussianRandomWalk(scale=step_size, num_steps=jnp.shape(returns)[0])
    )
    nu = ppl.sample("nu", dist.Exponential(0.1))
    return ppl.sample(
        "r", dist.StudentT(df=nu, loc=0.0, scale=jnp.exp(s)), obs=returns
    )


def print_results(posterior, dates):
    def _print_row(values, row_name=""):
        quantiles = jnp.array([0.2, 0.4, 0.5, 0.6, 0.8])
        row_name_fmt = "{:>8}"
        header_format = row_name_fmt + "{:>12}" * 5
        row_format = row_name_fmt + "{:>12.3f}" * 5
        columns = ["(p{})".format(int(q * 100)) for q in quantiles]
        q_values = jnp.quantile(values, quantiles, axis=0)
        print(header_format.format("", *columns))
        print(row_format.format(row_name, *q_values))
        print("\n")

    print("=" * 20, "sigma", "=" * 20)
    _print_row(posterior["sigma"])
    print("=" * 20, "nu", "=" * 20)
    _print_row(posterior["nu"])
    print("=" * 20, "volatility", "=" * 20)
    for i in range(0, len(dates), 180):
        _print_row(jnp.exp(posterior["s"][:, i]), dates[i])


# -- harness -------------------------------------------------------------------------------
from ppl.infer import MCMC, NUTS

ARGS = argparse.Namespace(num_samples=300, num_warmup=300, num_chains=2)


def simulate(T=200):
    """Returns from the model's own process (in place of the example's SP500 download)."""
    rng = np.random.default_rng(0)
    s = np.cumsum(rng.normal(0.0, 0.02, T)) - 4.0
    return jnp.asarray(rng.standard_t(8.0, T) * np.exp(s))


def run(args, rng_key):
    returns = simulate()
    mcmc = MCMC(NUTS(model), num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains,
                progress_bar=False)
    mcmc.run(rng_key, returns)
    samples = mcmc.get_samples()
    print_results(samples, [str(d) for d in range(returns.shape[0])])
    return samples


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_stochastic_volatility_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
