"""NumPyro's examples/ode.py (Lotka-Volterra dynamics through odeint), numpyro renamed to ppl: the
example's imports and code as it writes them (numpyro 0.22, Apache-2.0, Copyright Contributors
to the Pyro project), then a harness part; see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
from jax.experimental.ode import odeint
import jax.numpy as jnp
from jax.random import key
import ppl
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS, Predictive

import sys

import numpy as np
import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def dz_dt(z, t, theta):
    """
    Lotka–Volterra equations. Real positive parameters `alpha`, `beta`, `gamma`, `delta`
    describes the interaction of two species.
    """
    u = z[0]
    v = z[1]
    alpha, beta, gamma, delta = (
        theta[..., 0],
        theta[..., 1],
        theta[..., 2],
        theta[..., 3],
    )
    du_dt = (alpha - beta * v) * u
    dv_dt = (-gamma + delta * u) * v
    return jnp.stack([du_dt, dv_dt])


def model(N, y=None):
    """
    :param int N: number of measurement times
    :param numpy.ndarray y: measured populations with shape (N, 2)
    """
    # initial population
    z_init = ppl.sample("z_init", dist.LogNormal(jnp.log(10), 1).expand([2]))
    # measurement times
    ts = jnp.arange(float(N))
    # parameters alpha, beta, gamma, delta of dz_dt
    theta = ppl.sample(
        "theta",
        dist.TruncatedNormal(
            low=0.0,
            loc=jnp.array([1.0, 0.05, 1.0, 0.05]),
            scale=jnp.array([0.5, 0.05, 0.5, 0.05]),
        ),
    )
    # integrate dz/dt, the result will have shape N x 2
    z = odeint(dz_dt, z_init, ts, theta, rtol=1e-6, atol=1e-5, mxstep=1000)
    # measurement errors
    sigma = ppl.sample("sigma", dist.LogNormal(-1, 1).expand([2]))
    # measured populations
    ppl.sample("y", dist.LogNormal(jnp.log(z), sigma), obs=y)


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=300, num_warmup=300, num_chains=2)


def simulate(N=20):
    """Populations from the model's ODE at known parameters, with log-normal noise (in place
    of the example's LYNXHARE download)."""
    theta = jnp.array([0.55, 0.028, 0.8, 0.024])
    z = odeint(dz_dt, jnp.array([33.0, 6.0]), jnp.arange(float(N)), theta, rtol=1e-6, atol=1e-5, mxstep=1000)
    noise = np.random.default_rng(0).normal(size=(N, 2)) * 0.25
    return jnp.asarray(np.exp(np.log(np.asarray(z)) + noise))


def run(args, rng_key):
    data = simulate()
    # main()'s inference part, as the example writes it
    mcmc = MCMC(
        NUTS(model, dense_mass=True),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(key(1), N=data.shape[0], y=data)
    mcmc.print_summary()
    pop_pred = Predictive(model, mcmc.get_samples())(key(2), data.shape[0])["y"]
    return {**mcmc.get_samples(), "pop_pred": pop_pred}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ode_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)
