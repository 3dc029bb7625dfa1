"""NumPyro's examples/ucbadmit.py (a binomial GLMM with `len(np.unique(dept))` on its data),
numpyro renamed to ppl: the example's imports and code as it writes them (numpyro 0.22,
Apache-2.0, Copyright Contributors to the Pyro project), then a harness part; see
compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import numpy as np
from jax import random
import jax.numpy as jnp
from jax.scipy.special import expit
import ppl
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS, Predictive

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def glmm(dept, male, applications, admit=None):
    v_mu = ppl.sample("v_mu", dist.Normal(0, jnp.array([4.0, 1.0])))

    sigma = ppl.sample("sigma", dist.HalfNormal(jnp.ones(2)))
    L_Rho = ppl.sample("L_Rho", dist.LKJCholesky(2, concentration=2))
    scale_tril = sigma[..., jnp.newaxis] * L_Rho
    # non-centered parameterization
    num_dept = len(np.unique(dept))
    z = ppl.sample("z", dist.Normal(jnp.zeros((num_dept, 2)), 1))
    v = jnp.dot(scale_tril, z.T).T

    logits = v_mu[0] + v[dept, 0] + (v_mu[1] + v[dept, 1]) * male
    if admit is None:
        # we use a Delta site to record probs for predictive distribution
        probs = expit(logits)
        ppl.sample("probs", dist.Delta(probs), obs=probs)
    ppl.sample("admit", dist.Binomial(applications, logits=logits), obs=admit)


def run_inference(dept, male, applications, admit, rng_key, args):
    kernel = NUTS(glmm)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key, dept, male, applications, admit)
    return mcmc.get_samples()


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=400, num_warmup=400, num_chains=2)


def simulate():
    """Data shaped as UCBADMIT (6 departments x 2 sexes), drawn from the model's own form."""
    rng = np.random.default_rng(0)
    dept = np.repeat(np.arange(6), 2)
    male = np.tile(np.array([1.0, 0.0]), 6)
    applications = rng.integers(50, 600, size=12)
    logits = np.array([0.5, 0.4, -0.5, -0.6, -1.5, -2.5])[dept] - 0.1 * male
    admit = rng.binomial(applications, 1 / (1 + np.exp(-logits)))
    return dept, male, applications, admit


def run(args, rng_key):
    dept, male, applications, admit = simulate()
    return run_inference(dept, male, applications, admit, rng_key, args)


@pytest.mark.slow
def test_ucbadmit_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
