"""NumPyro's examples/minipyro.py (SVI with a hand-written guide, `numpyro.param` and
`Trace_ELBO(num_particles=100)`, `svi.update` in `numpyro.util.fori_loop`), numpyro renamed to
ppl: the example's imports and code as it writes them (numpyro 0.22, Apache-2.0, Copyright
Contributors to the Pyro project), then a harness part. Nothing differs but the rename.

The model is conjugate: data ~ Normal(loc, 1), loc ~ Normal(0, 1), so the posterior of loc is
Normal(sum(data) / (n + 1), 1 / sqrt(n + 1)) and the guide's family holds it exactly.
"""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse

from jax import random
import jax.numpy as jnp
from jax.random import key

import ppl
from ppl import optim
import ppl.distributions as dist
from ppl.infer import SVI, Trace_ELBO
from ppl.util import fori_loop

import math
import re
import sys

import numpy as np
import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def model(data):
    loc = ppl.sample("loc", dist.Normal(0.0, 1.0))
    ppl.sample("obs", dist.Normal(loc, 1.0), obs=data)


# Define a guide (i.e. variational distribution) with a Normal
# distribution over the latent random variable `loc`.
def guide(data):
    guide_loc = ppl.param("guide_loc", 0.0)
    guide_scale = jnp.exp(ppl.param("guide_scale_log", 0.0))
    ppl.sample("loc", dist.Normal(guide_loc, guide_scale))


def main(args):
    # Generate some data.
    data = random.normal(key(0), shape=(100,)) + 3.0

    # Construct an SVI object so we can do variational inference on our
    # model/guide pair.
    adam = optim.Adam(args.learning_rate)

    svi = SVI(model, guide, adam, Trace_ELBO(num_particles=100))
    svi_state = svi.init(key(0), data)

    # Training loop
    def body_fn(i, val):
        svi_state, loss = svi.update(val, data)
        return svi_state

    svi_state = fori_loop(0, args.num_steps, body_fn, svi_state)

    # Report the final values of the variational parameters
    # in the guide after training.
    params = svi.get_params(svi_state)
    for name, value in params.items():
        print("{} = {}".format(name, value))

    # For this simple (conjugate) model we know the exact posterior. In
    # particular we know that the variational distribution should be
    # centered near 3.0. So let's check this explicitly.
    assert jnp.abs(params["guide_loc"] - 3.0) < 0.1


# -- harness ----------------------------------------------------------------------------------
ARGS = argparse.Namespace(full_pyro=False, num_steps=1001, learning_rate=0.02)


def printed_params(module, capsys, **overrides) -> dict:
    """Run the example's `main` as written; read back the params it prints."""
    module.main(argparse.Namespace(**{**vars(ARGS), **overrides}))
    out = capsys.readouterr().out
    return {k: float(v) for k, v in re.findall(r"^(\w+) = (\S+)$", out, re.M)}


def exact_posterior():
    data = np.asarray(random.normal(key(0), shape=(100,)) + 3.0, np.float64)
    return data.sum() / (data.size + 1), -0.5 * math.log(data.size + 1)


def test_minipyro_runs_as_written_and_finds_the_posterior(capsys):
    """The example runs unchanged (its own check: |guide_loc - 3| < 0.1) and, run to 4000 steps,
    its guide is the exact posterior: the mean within 0.01 (Adam's last steps at lr 0.02 with
    a 100-particle gradient move it by a few 1e-3) and the log sd within 0.05 (its gradient,
    from 100 particles, has a relative noise of about 1/sqrt(100) per step)."""
    params = printed_params(sys.modules[__name__], capsys)
    assert set(params) == {"guide_loc", "guide_scale_log"}
    params = printed_params(sys.modules[__name__], capsys, num_steps=4000)
    mean, log_sd = exact_posterior()
    assert abs(params["guide_loc"] - mean) < 0.01, (params, mean)
    assert abs(params["guide_scale_log"] - log_sd) < 0.05, (params, log_sd)


@pytest.mark.slow
def test_minipyro_agrees_with_numpyro(capsys):
    """The example's printed params under ppl and NumPyro, at its 1001 steps (where the scale has
    not converged, on both sides: about -2.26 against the exact -2.31): within 0.01 (mean) and
    0.03 (log sd) of each other, the spread of the fits' last steps (different particles)."""
    ours = printed_params(sys.modules[__name__], capsys)
    theirs = printed_params(compat_harness.twin(sys.modules[__name__]), capsys)
    assert abs(ours["guide_loc"] - theirs["guide_loc"]) < 0.01, (ours, theirs)
    assert abs(ours["guide_scale_log"] - theirs["guide_scale_log"]) < 0.03, (ours, theirs)
