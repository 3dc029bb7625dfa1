"""NumPyro's examples/stochastic_volatility.py (a stochastic volatility model driven by NumPyro's
functional interface: initialize_model, hmc, fori_collect), numpyro renamed to ppl: the example's
imports and code as it writes it (numpyro 0.22, Apache-2.0, Copyright Contributors to the Pyro
project), then a harness part; see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import jax.numpy as jnp
import jax.random as random
import ppl
import ppl.distributions as dist
from ppl.infer.hmc import hmc
from ppl.infer.util import initialize_model
from ppl.util import fori_collect

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


def main_inference(args, returns, dates, rng_key):
    """The example's `main(args)` from its key split to `print_results`, line for line; its
    SP500 download is `simulate()` here, `random.key(args.rng_seed)` the harness's key, and
    its plot is left out."""
    init_rng_key, sample_rng_key = random.split(rng_key)
    model_info = initialize_model(init_rng_key, model, model_args=(returns,))
    init_kernel, sample_kernel = hmc(model_info.potential_fn, algo="NUTS")
    hmc_state = init_kernel(
        model_info.param_info, args.num_warmup, rng_key=sample_rng_key
    )
    hmc_states = fori_collect(
        args.num_warmup,
        args.num_warmup + args.num_samples,
        sample_kernel,
        hmc_state,
        transform=lambda hmc_state: model_info.postprocess_fn(hmc_state.z),
        progbar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    print_results(hmc_states, dates)
    return hmc_states


# -- harness -------------------------------------------------------------------------------
# The example runs one chain (its driver has no chains); 1000 draws give each side some
# 100+ effective draws of the slowest scalar (sigma).
ARGS = argparse.Namespace(num_samples=1000, num_warmup=500, num_chains=1)


def simulate(T=200):
    """Returns from the model's own process (in place of the example's SP500 download)."""
    rng = np.random.default_rng(0)
    s = np.cumsum(rng.normal(0.0, 0.02, T)) - 4.0
    return jnp.asarray(rng.standard_t(8.0, T) * np.exp(s))


def run(args, rng_key):
    returns = simulate(getattr(args, "T", 200))
    return main_inference(args, returns, [str(d) for d in range(returns.shape[0])], rng_key)


def test_stochastic_volatility_runs_unchanged():
    """The example's driver code (initialize_model, hmc, fori_collect) runs under ppl as it is
    written, at tiny settings (default suite: a few seconds); the draws are finite and keep
    sigma and nu positive."""
    draws = run(argparse.Namespace(num_samples=60, num_warmup=60, num_chains=1, T=40), random.PRNGKey(0))
    assert set(draws) == {"sigma", "s", "nu"}
    assert draws["s"].shape == (60, 40) and draws["sigma"].shape == (60,)
    assert np.all(np.isfinite(np.asarray(draws["s"])))
    assert np.all(np.asarray(draws["sigma"]) > 0) and np.all(np.asarray(draws["nu"]) > 0)
    assert np.unique(np.asarray(draws["sigma"])).size > 10  # the chain moves


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_stochastic_volatility_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
