"""NumPyro's examples/holt_winters.py (Holt-Winters exponential smoothing with `scan`), numpyro
renamed to ppl: the example's imports and code as it writes them (numpyro 0.22, Apache-2.0,
Copyright Contributors to the Pyro project), then a harness part; see compat_harness for the
comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import time
import numpy as np
import jax
from jax import random
import jax.numpy as jnp
import ppl
from ppl.contrib.control_flow import scan
from ppl.diagnostics import hpdi
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS, Predictive

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
N_POINTS_PER_UNIT = 10  # number of points to plot for each unit interval


def holt_winters(y, n_seasons, future=0):
    T = y.shape[0]
    level_smoothing = ppl.sample("level_smoothing", dist.Beta(1, 1))
    trend_smoothing = ppl.sample("trend_smoothing", dist.Beta(1, 1))
    seasonality_smoothing = ppl.sample("seasonality_smoothing", dist.Beta(1, 1))
    adj_seasonality_smoothing = seasonality_smoothing * (1 - level_smoothing)
    noise = ppl.sample("noise", dist.HalfNormal(1))
    level_init = ppl.sample("level_init", dist.Normal(0, 1))
    trend_init = ppl.sample("trend_init", dist.Normal(0, 1))
    with ppl.plate("n_seasons", n_seasons):
        seasonality_init = ppl.sample("seasonality_init", dist.Normal(0, 1))

    def transition_fn(carry, t):
        previous_level, previous_trend, previous_seasonality = carry
        level = jnp.where(
            t < T,
            level_smoothing * (y[t] - previous_seasonality[0])
            + (1 - level_smoothing) * (previous_level + previous_trend),
            previous_level,
        )
        trend = jnp.where(
            t < T,
            trend_smoothing * (level - previous_level)
            + (1 - trend_smoothing) * previous_trend,
            previous_trend,
        )
        new_season = jnp.where(
            t < T,
            adj_seasonality_smoothing * (y[t] - (previous_level + previous_trend))
            + (1 - adj_seasonality_smoothing) * previous_seasonality[0],
            previous_seasonality[0],
        )
        step = jnp.where(t < T, 1, t - T + 1)
        mu = previous_level + step * previous_trend + previous_seasonality[0]
        pred = ppl.sample("pred", dist.Normal(mu, noise))

        seasonality = jnp.concatenate(
            [previous_seasonality[1:], new_season[None]], axis=0
        )
        return (level, trend, seasonality), pred

    with ppl.handlers.condition(data={"pred": y}):
        _, preds = scan(
            transition_fn,
            (level_init, trend_init, seasonality_init),
            jnp.arange(T + future),
        )

    if future > 0:
        ppl.deterministic("y_forecast", preds[-future:])


def run_inference(model, args, rng_key, y, n_seasons):
    start = time.time()
    sampler = NUTS(model)
    mcmc = MCMC(
        sampler,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key, y=y, n_seasons=n_seasons)
    mcmc.print_summary()
    print("\nMCMC elapsed time:", time.time() - start)
    return mcmc.get_samples()


def predict(model, args, samples, rng_key, y, n_seasons):
    predictive = Predictive(model, samples, return_sites=["y_forecast"])
    return predictive(
        rng_key, y=y, n_seasons=n_seasons, future=args.future * N_POINTS_PER_UNIT
    )["y_forecast"]


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(T=6, future=1, num_samples=400, num_warmup=400, num_chains=2)


def run(args, rng_key):
    # the example's artificial data set
    data_key, _ = random.split(random.key(0))
    T = args.T
    t = jnp.linspace(0, T + args.future, (T + args.future) * N_POINTS_PER_UNIT)
    y = jnp.sin(2 * np.pi * t) + 0.3 * t + jax.random.normal(data_key, t.shape) * 0.1
    n_seasons = N_POINTS_PER_UNIT
    y_train = y[: -args.future * N_POINTS_PER_UNIT]
    samples = run_inference(holt_winters, args, rng_key, y_train, n_seasons)
    forecast = predict(holt_winters, args, samples, random.key(3), y_train, n_seasons)
    return {**samples, "y_forecast": forecast}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_holt_winters_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
