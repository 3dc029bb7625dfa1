"""NumPyro's examples/ar2.py (an AR(2) process, with `scan` and as an unrolled loop), numpyro
renamed to ppl; see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import time

import jax
from jax import random
import jax.numpy as jnp
import pytest

import ppl
from ppl.contrib.control_flow import scan
import ppl.distributions as dist

import sys

import compat_harness


# -- the example's code (numpyro -> ppl) --------------------------------------------------
def ar2_scan(y):
    alpha_1 = ppl.sample("alpha_1", dist.Normal(0, 1))
    alpha_2 = ppl.sample("alpha_2", dist.Normal(0, 1))
    const = ppl.sample("const", dist.Normal(0, 1))
    sigma = ppl.sample("sigma", dist.HalfNormal(1))

    def transition(carry, _):
        y_prev, y_prev_prev = carry
        m_t = const + alpha_1 * y_prev + alpha_2 * y_prev_prev
        y_t = ppl.sample("y", dist.Normal(m_t, sigma))
        carry = (y_t, y_prev)
        return carry, m_t

    timesteps = jnp.arange(y.shape[0] - 2)
    init = (y[1], y[0])

    with ppl.handlers.condition(data={"y": y[2:]}):
        _, mu = scan(transition, init, timesteps)

    ppl.deterministic("mu", mu)


def ar2_for_loop(y):
    alpha_1 = ppl.sample("alpha_1", dist.Normal(0, 1))
    alpha_2 = ppl.sample("alpha_2", dist.Normal(0, 1))
    const = ppl.sample("const", dist.Normal(0, 1))
    sigma = ppl.sample("sigma", dist.HalfNormal(1))

    y_prev = y[1]
    y_prev_prev = y[0]
    mu = []
    for i in range(2, len(y)):
        m_t = const + alpha_1 * y_prev + alpha_2 * y_prev_prev
        mu.append(m_t)
        y_t = ppl.sample("y_{}".format(i), dist.Normal(m_t, sigma), obs=y[i])
        y_prev_prev = y_prev
        y_prev = y_t

    ppl.deterministic("mu", jnp.asarray(mu))


def run_inference(model, args, rng_key, y):
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


# -- harness: small settings, the example's own simulated data ----------------------------
ARGS = argparse.Namespace(num_data=60, num_samples=400, num_warmup=300, num_chains=2, unroll_loop=False)


def run(args, rng_key):
    num_data = args.num_data
    key = jax.random.key(0)
    t = jnp.arange(0, num_data)
    y = jnp.sin(t) + random.normal(key, (num_data,)) * 0.1
    model = ar2_for_loop if args.unroll_loop else ar2_scan
    return run_inference(model, args, rng_key, y)


def test_ar2_scan_agrees_with_numpyro():
    """In the default suite (~8 s on 2 cores) at 2 x (200 + 300): a few hundred effective
    draws per side."""
    compat_harness.check(sys.modules[__name__], argparse.Namespace(**{**vars(ARGS), "num_warmup": 200}))


@pytest.mark.slow
def test_ar2_for_loop_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], argparse.Namespace(**{**vars(ARGS), "unroll_loop": True}))
