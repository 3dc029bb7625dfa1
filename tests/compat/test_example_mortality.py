"""NumPyro's examples/mortality.py (a hierarchical binomial mortality model with LocScaleReparam
as a decorator), numpyro renamed to ppl: the example's imports and code as it writes them
(numpyro 0.22, Apache-2.0, Copyright Contributors to the Pyro project), then a harness part;
see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import numpy as np
from jax import random
import jax.numpy as jnp
import ppl
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS
from ppl.infer.reparam import LocScaleReparam

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def create_lookup(s1, s2):
    """
    Create a map between s1 indices and unique s2 indices
    """
    lookup = np.column_stack([s1, s2])
    lookup = np.unique(lookup, axis=0)
    lookup = lookup[lookup[:, 1].argsort()]
    return lookup[:, 0]


reparam_config = {
    k: LocScaleReparam(0)
    for k in [
        "alpha_s1",
        "alpha_s2",
        "alpha_age_drift",
        "beta_age_drift",
        "pi_drift",
    ]
}


@ppl.handlers.reparam(config=reparam_config)
def model(age, space, time, lookup, population, deaths=None):
    N_s1 = len(np.unique(lookup))
    N_s2 = len(np.unique(space))
    N_age = len(np.unique(age))
    N_t = len(np.unique(time))
    N = len(population)

    # plates
    age_plate = ppl.plate("age_groups", N_age, dim=-3)
    space_plate = ppl.plate("space", N_s2, dim=-2)
    year_plate = ppl.plate("year", N_t - 1, dim=-1)

    # hyperparameters
    sigma_alpha_s1 = ppl.sample("sigma_alpha_s1", dist.HalfNormal(1.0))
    sigma_alpha_s2 = ppl.sample("sigma_alpha_s2", dist.HalfNormal(1.0))
    sigma_alpha_age = ppl.sample("sigma_alpha_age", dist.HalfNormal(1.0))
    sigma_beta_age = ppl.sample("sigma_beta_age", dist.HalfNormal(1.0))
    sigma_pi = ppl.sample("sigma_pi", dist.HalfNormal(1.0))

    # spatial hierarchy
    with ppl.plate("s1", N_s1, dim=-2):
        alpha_s1 = ppl.sample("alpha_s1", dist.Normal(0, sigma_alpha_s1))
    with space_plate:
        alpha_s2 = ppl.sample(
            "alpha_s2", dist.Normal(alpha_s1[lookup], sigma_alpha_s2)
        )

    # age
    with age_plate:
        alpha_age_drift_scale = jnp.pad(
            jnp.broadcast_to(sigma_alpha_age, N_age - 1),
            (1, 0),
            constant_values=10.0,  # pad so first term is alpha0, prior N(0, 10)
        )[:, jnp.newaxis, jnp.newaxis]
        alpha_age_drift = ppl.sample(
            "alpha_age_drift", dist.Normal(0, alpha_age_drift_scale)
        )
        alpha_age = jnp.cumsum(alpha_age_drift, -3)

        beta_age_drift_scale = jnp.pad(
            jnp.broadcast_to(sigma_beta_age, N_age - 1), (1, 0), constant_values=10.0
        )[:, jnp.newaxis, jnp.newaxis]
        beta_age_drift = ppl.sample(
            "beta_age_drift", dist.Normal(0, beta_age_drift_scale)
        )
        beta_age = jnp.cumsum(beta_age_drift, -3)
        beta_age_cum = jnp.outer(beta_age, jnp.arange(N_t))[:, jnp.newaxis, :]

    # random walk over time
    with year_plate:
        pi_drift = ppl.sample("pi_drift", dist.Normal(0, sigma_pi))
        pi = jnp.pad(jnp.cumsum(pi_drift, -1), (1, 0))

    # likelihood
    latent_rate = alpha_age + beta_age_cum + alpha_s2 + pi
    with ppl.plate("N", N):
        mu_logit = latent_rate[age, space, time]
        ppl.sample("deaths", dist.Binomial(population, logits=mu_logit), obs=deaths)


def print_model_shape(model, age, space, time, lookup, population):
    with ppl.handlers.seed(rng_seed=1):
        trace = ppl.handlers.trace(model).get_trace(
            age=age,
            space=space,
            time=time,
            lookup=lookup,
            population=population,
        )
    print(ppl.util.format_shapes(trace))


def run_inference(model, age, space, time, lookup, population, deaths, rng_key, args):
    kernel = NUTS(model)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key, age, space, time, lookup, population, deaths)
    mcmc.print_summary()
    return mcmc.get_samples()


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=300, num_warmup=300, num_chains=2)


def simulate():
    """Data shaped as the example's MORTALITY (age groups x regions x years), drawn small."""
    rng = np.random.default_rng(0)
    n_age, n_s2, n_t = 4, 6, 5
    s1_of_s2 = np.array([0, 0, 1, 1, 2, 2])
    a, s2, t = [g.ravel() for g in np.meshgrid(np.arange(n_age), np.arange(n_s2), np.arange(n_t), indexing="ij")]
    s1 = s1_of_s2[s2]
    logits = -6.0 + 0.8 * a + 0.2 * rng.normal(size=n_s2)[s2] - 0.05 * t
    population = rng.integers(500, 5000, size=a.size)
    deaths = rng.binomial(population, 1 / (1 + np.exp(-logits)))
    return a, s1, s2, t, deaths, population


def run(args, rng_key):
    a, s1, s2, t, deaths, population = simulate()
    lookup = create_lookup(s1, s2)
    print_model_shape(model, a, s2, t, lookup, population)
    return run_inference(model, a, s2, t, lookup, population, deaths, rng_key, args)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mortality_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
