"""NumPyro's examples/funnel.py (Neal's funnel, centred and with LocScaleReparam), numpyro
renamed to ppl; see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import sys

from jax import random
import jax.numpy as jnp
import pytest

import ppl
import ppl.distributions as dist
from ppl.handlers import reparam
from ppl.infer import MCMC, NUTS, Predictive
from ppl.infer.reparam import LocScaleReparam

import compat_harness


# -- the example's code (numpyro -> ppl) --------------------------------------------------
def model(dim=10):
    y = ppl.sample("y", dist.Normal(0, 3))
    ppl.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


reparam_model = reparam(model, config={"x": LocScaleReparam(0)})


def run_inference(model, args, rng_key):
    kernel = NUTS(model)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key)
    mcmc.print_summary(exclude_deterministic=False)
    return mcmc


# -- harness ------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=500, num_warmup=500, num_chains=2, centered=False)


def run(args, rng_key):
    if args.centered:
        mcmc = run_inference(model, args, rng_key)
        samples = mcmc.get_samples()
        assert mcmc.get_extra_fields()["diverging"].shape == samples["y"].shape
        return samples
    reparam_mcmc = run_inference(reparam_model, args, rng_key)
    reparam_samples = reparam_mcmc.get_samples()
    # collect deterministic sites (as the example does)
    return Predictive(reparam_model, reparam_samples, return_sites=["x", "y"])(random.key(1))


def test_funnel_reparam_agrees_with_numpyro():
    """The one example comparison in the default suite (the cheapest: ~10 s on 2 cores), at
    2 x (300 + 300); the others are marked slow."""
    compat_harness.check(sys.modules[__name__], argparse.Namespace(**{**vars(ARGS), "num_warmup": 300,
                                                                     "num_samples": 300}))


@pytest.mark.slow
@pytest.mark.xfail(reason="neither sampler mixes on the centred funnel (ESS of y: ppl 20, NumPyro 3 at 2 x 500)",
                   strict=False)
def test_funnel_centered_agrees_with_numpyro():
    """The centred funnel is biased under any HMC (divergences near the neck): both samplers
    should be wrong in the same way."""
    compat_harness.check(sys.modules[__name__], argparse.Namespace(**{**vars(ARGS), "centered": True}))
