"""NumPyro's examples/capture_recapture.py (Cormack-Jolly-Seber models: discrete states summed out
along a scan), numpyro renamed to ppl: the example's imports and code as it writes them
(numpyro 0.22, Apache-2.0, Copyright Contributors to the Pyro project), then a harness part;
see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import pytest

import compat_harness

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not compat_harness.importable("funsor"), reason=compat_harness.NEEDS_FUNSOR)]
if not compat_harness.importable("ppl.ops.indexing"):
    pytest.skip(compat_harness.NEEDS_ENUMERATION, allow_module_level=True)

import argparse
import os
from jax import random
import jax.numpy as jnp
from jax.scipy.special import expit, logit
import ppl
from ppl import handlers
from ppl.contrib.control_flow import scan
import ppl.distributions as dist
from ppl.infer import HMC, MCMC, NUTS
from ppl.infer.reparam import LocScaleReparam

import sys

import numpy as np
import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def model_1(capture_history, sex):
    N, T = capture_history.shape
    phi = ppl.sample("phi", dist.Uniform(0.0, 1.0))  # survival probability
    rho = ppl.sample("rho", dist.Uniform(0.0, 1.0))  # recapture probability

    def transition_fn(carry, y):
        first_capture_mask, z = carry
        with ppl.plate("animals", N, dim=-1):
            with handlers.mask(mask=first_capture_mask):
                mu_z_t = first_capture_mask * phi * z + (1 - first_capture_mask)
                # NumPyro exactly sums out the discrete states z_t.
                z = ppl.sample(
                    "z",
                    dist.Bernoulli(dist.util.clamp_probs(mu_z_t)),
                    infer={"enumerate": "parallel"},
                )
                mu_y_t = rho * z
                ppl.sample(
                    "y", dist.Bernoulli(dist.util.clamp_probs(mu_y_t)), obs=y
                )

        first_capture_mask = first_capture_mask | y.astype(bool)
        return (first_capture_mask, z), None

    z = jnp.ones(N, dtype=jnp.int32)
    # we use this mask to eliminate extraneous log probabilities
    # that arise for a given individual before its first capture.
    first_capture_mask = capture_history[:, 0].astype(bool)
    # NB swapaxes: we move time dimension of `capture_history` to the front to scan over it
    scan(
        transition_fn,
        (first_capture_mask, z),
        jnp.swapaxes(capture_history[:, 1:], 0, 1),
    )


def model_2(capture_history, sex):
    N, T = capture_history.shape
    rho = ppl.sample("rho", dist.Uniform(0.0, 1.0))  # recapture probability

    def transition_fn(carry, y):
        first_capture_mask, z = carry
        # note that phi_t needs to be outside the plate, since
        # phi_t is shared across all N individuals
        phi_t = ppl.sample("phi", dist.Uniform(0.0, 1.0))

        with ppl.plate("animals", N, dim=-1):
            with handlers.mask(mask=first_capture_mask):
                mu_z_t = first_capture_mask * phi_t * z + (1 - first_capture_mask)
                # NumPyro exactly sums out the discrete states z_t.
                z = ppl.sample(
                    "z",
                    dist.Bernoulli(dist.util.clamp_probs(mu_z_t)),
                    infer={"enumerate": "parallel"},
                )
                mu_y_t = rho * z
                ppl.sample(
                    "y", dist.Bernoulli(dist.util.clamp_probs(mu_y_t)), obs=y
                )

        first_capture_mask = first_capture_mask | y.astype(bool)
        return (first_capture_mask, z), None

    z = jnp.ones(N, dtype=jnp.int32)
    # we use this mask to eliminate extraneous log probabilities
    # that arise for a given individual before its first capture.
    first_capture_mask = capture_history[:, 0].astype(bool)
    # NB swapaxes: we move time dimension of `capture_history` to the front to scan over it
    scan(
        transition_fn,
        (first_capture_mask, z),
        jnp.swapaxes(capture_history[:, 1:], 0, 1),
    )


def model_3(capture_history, sex):
    N, T = capture_history.shape
    phi_mean = ppl.sample(
        "phi_mean", dist.Uniform(0.0, 1.0)
    )  # mean survival probability
    phi_logit_mean = logit(phi_mean)
    # controls temporal variability of survival probability
    phi_sigma = ppl.sample("phi_sigma", dist.Uniform(0.0, 10.0))
    rho = ppl.sample("rho", dist.Uniform(0.0, 1.0))  # recapture probability

    def transition_fn(carry, y):
        first_capture_mask, z = carry
        with handlers.reparam(config={"phi_logit": LocScaleReparam(0)}):
            phi_logit_t = ppl.sample(
                "phi_logit", dist.Normal(phi_logit_mean, phi_sigma)
            )
        phi_t = expit(phi_logit_t)
        with ppl.plate("animals", N, dim=-1):
            with handlers.mask(mask=first_capture_mask):
                mu_z_t = first_capture_mask * phi_t * z + (1 - first_capture_mask)
                # NumPyro exactly sums out the discrete states z_t.
                z = ppl.sample(
                    "z",
                    dist.Bernoulli(dist.util.clamp_probs(mu_z_t)),
                    infer={"enumerate": "parallel"},
                )
                mu_y_t = rho * z
                ppl.sample(
                    "y", dist.Bernoulli(dist.util.clamp_probs(mu_y_t)), obs=y
                )

        first_capture_mask = first_capture_mask | y.astype(bool)
        return (first_capture_mask, z), None

    z = jnp.ones(N, dtype=jnp.int32)
    # we use this mask to eliminate extraneous log probabilities
    # that arise for a given individual before its first capture.
    first_capture_mask = capture_history[:, 0].astype(bool)
    # NB swapaxes: we move time dimension of `capture_history` to the front to scan over it
    scan(
        transition_fn,
        (first_capture_mask, z),
        jnp.swapaxes(capture_history[:, 1:], 0, 1),
    )


def model_4(capture_history, sex):
    N, T = capture_history.shape
    # survival probabilities for males/females
    phi_male = ppl.sample("phi_male", dist.Uniform(0.0, 1.0))
    phi_female = ppl.sample("phi_female", dist.Uniform(0.0, 1.0))
    # we construct an N-dimensional vector that contains the appropriate
    # phi for each individual given its sex (female = 0, male = 1)
    phi = sex * phi_male + (1.0 - sex) * phi_female
    rho = ppl.sample("rho", dist.Uniform(0.0, 1.0))  # recapture probability

    def transition_fn(carry, y):
        first_capture_mask, z = carry
        with ppl.plate("animals", N, dim=-1):
            with handlers.mask(mask=first_capture_mask):
                mu_z_t = first_capture_mask * phi * z + (1 - first_capture_mask)
                # NumPyro exactly sums out the discrete states z_t.
                z = ppl.sample(
                    "z",
                    dist.Bernoulli(dist.util.clamp_probs(mu_z_t)),
                    infer={"enumerate": "parallel"},
                )
                mu_y_t = rho * z
                ppl.sample(
                    "y", dist.Bernoulli(dist.util.clamp_probs(mu_y_t)), obs=y
                )

        first_capture_mask = first_capture_mask | y.astype(bool)
        return (first_capture_mask, z), None

    z = jnp.ones(N, dtype=jnp.int32)
    # we use this mask to eliminate extraneous log probabilities
    # that arise for a given individual before its first capture.
    first_capture_mask = capture_history[:, 0].astype(bool)
    # NB swapaxes: we move time dimension of `capture_history` to the front to scan over it
    scan(
        transition_fn,
        (first_capture_mask, z),
        jnp.swapaxes(capture_history[:, 1:], 0, 1),
    )


def model_5(capture_history, sex):
    N, T = capture_history.shape

    # phi_beta controls the survival probability differential
    # for males versus females (in logit space)
    phi_beta = ppl.sample("phi_beta", dist.Normal(0.0, 10.0))
    phi_beta = sex * phi_beta
    rho = ppl.sample("rho", dist.Uniform(0.0, 1.0))  # recapture probability

    def transition_fn(carry, y):
        first_capture_mask, z = carry
        phi_gamma_t = ppl.sample("phi_gamma", dist.Normal(0.0, 10.0))
        phi_t = expit(phi_beta + phi_gamma_t)
        with ppl.plate("animals", N, dim=-1):
            with handlers.mask(mask=first_capture_mask):
                mu_z_t = first_capture_mask * phi_t * z + (1 - first_capture_mask)
                # NumPyro exactly sums out the discrete states z_t.
                z = ppl.sample(
                    "z",
                    dist.Bernoulli(dist.util.clamp_probs(mu_z_t)),
                    infer={"enumerate": "parallel"},
                )
                mu_y_t = rho * z
                ppl.sample(
                    "y", dist.Bernoulli(dist.util.clamp_probs(mu_y_t)), obs=y
                )

        first_capture_mask = first_capture_mask | y.astype(bool)
        return (first_capture_mask, z), None

    z = jnp.ones(N, dtype=jnp.int32)
    # we use this mask to eliminate extraneous log probabilities
    # that arise for a given individual before its first capture.
    first_capture_mask = capture_history[:, 0].astype(bool)
    # NB swapaxes: we move time dimension of `capture_history` to the front to scan over it
    scan(
        transition_fn,
        (first_capture_mask, z),
        jnp.swapaxes(capture_history[:, 1:], 0, 1),
    )


models = {
    name[len("model_") :]: model
    for name, model in globals().items()
    if name.startswith("model_")
}


def run_inference(model, capture_history, sex, rng_key, args):
    if args.algo == "NUTS":
        kernel = NUTS(model)
    elif args.algo == "HMC":
        kernel = HMC(model)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(rng_key, capture_history, sex)
    mcmc.print_summary()
    return mcmc.get_samples()


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=400, num_warmup=400, num_chains=2, algo="NUTS", model="1")


def simulate(N=60, T=7):
    """Capture histories shaped as the example's dipper data (first capture, survival 0.6,
    recapture 0.8), and sex, in place of the DIPPER_VOLE download."""
    rng = np.random.default_rng(0)
    first = rng.integers(0, T - 1, N)
    history = np.zeros((N, T), np.float32)
    for i in range(N):
        alive = True
        history[i, first[i]] = 1.0
        for t in range(first[i] + 1, T):
            alive = alive and rng.random() < 0.6
            history[i, t] = float(alive and rng.random() < 0.8)
    return jnp.asarray(history), jnp.asarray(rng.integers(0, 2, N).astype(np.float32))


def run(args, rng_key):
    capture_history, sex = simulate()
    return run_inference(models[args.model], capture_history, sex, rng_key, args)


@pytest.mark.parametrize("name", [
    "1",
    pytest.param("2", marks=pytest.mark.skip(reason="NumPyro's side fails (funsor's DimStack.request asserts on the "
                                                    "scanned continuous site 'phi'); ppl runs it")),
    pytest.param("3", marks=pytest.mark.skip(reason="the harness finds no scalar common to both runs' draws "
                                                    "(phi_logit / phi_logit_decentered under reparam): to investigate")),
    "4",
    pytest.param("5", marks=pytest.mark.skip(reason="NumPyro's chains do not move here (ESS 1 for every scalar, "
                                                    "phi_gamma sd 0.01) while ppl's do (min ESS 61): no agreement "
                                                    "to test")),
])
def test_capture_recapture_agrees_with_numpyro(name):
    compat_harness.check(sys.modules[__name__], argparse.Namespace(**{**vars(ARGS), "model": name}))
