"""A chain that has stopped moving (e.g. warmup ended with a step size orders of magnitude
too small) is found and named, never silently pooled with the others."""
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.method.diagnostics import flag_stuck_chains, stuck_chains


def _moving(chains=4, draws=200, shape=(), seed=0):
    return np.random.default_rng(seed).normal(size=(chains, draws) + shape)


def test_a_chain_crawling_below_a_thousandth_of_the_others_is_stuck():
    x = _moving(shape=(3,))
    x[2, :, 1] = 0.7 + 1e-5 * np.random.default_rng(1).normal(size=200)  # crawls in one scalar
    assert stuck_chains({"beta": x}) == {2: ["beta"]}


def test_a_frozen_chain_is_stuck_even_alone_and_healthy_chains_are_not():
    frozen = np.full((1, 50), 0.3)
    assert stuck_chains({"sigma": frozen}) == {0: ["sigma"]}
    assert stuck_chains({"sigma": _moving(), "mu": _moving(seed=3)}) == {}
    # Too few draws to judge.
    assert stuck_chains({"sigma": frozen[:, :5]}) == {}


def test_structurally_fixed_scalars_do_not_count():
    # A Cholesky factor's L[0, 0] = 1 and upper triangle = 0 in every chain.
    draws = np.zeros((3, 100, 2, 2))
    draws[..., 0, 0] = 1.0
    draws[..., 1, 0] = _moving(chains=3, draws=100)
    draws[..., 1, 1] = np.abs(_moving(chains=3, draws=100, seed=1))
    assert stuck_chains({"L": draws}) == {}
    draws[1, :, 1, :] = draws[1, :1, 1, :]  # chain 1 frozen
    assert stuck_chains({"L": draws}) == {1: ["L"]}


def model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(2.0))
    z = ppl.sample("z", dist.Bernoulli(0.5))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu + 0.0 * z, sigma), y)


def test_a_stuck_chain_is_named_in_a_warning_with_its_step_size():
    ld = ppl.compile(model, jnp.linspace(-1.0, 1.0, 20))
    samples = {"mu": _moving(), "sigma": np.abs(_moving(seed=1)) + 0.5,
               "z": np.zeros((4, 200), np.int32)}  # discrete: may rightly stay put
    samples["sigma"][3] = 0.9
    d = {}
    with pytest.warns(ppl.method.flags.PplWarning, match=r"chain 3 has stopped moving in sigma.*step size is 4e-06"):
        flag_stuck_chains(d, "nuts", samples, ld, np.array([0.3, 0.4, 0.35, 4e-6]))
    assert d["stuck_chains"] == {3: ["sigma"]}
    assert any("chain 3" in w for w in d["warnings"])


def test_a_healthy_run_reports_no_stuck_chain():
    def normal(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
        sigma = ppl.sample("sigma", dist.HalfNormal(2.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, sigma), y)

    r = ppl.infer(normal, jnp.linspace(-1.0, 1.0, 20), method=ppl.NUTS(num_warmup=200, num_samples=200), key=0)
    assert r.diagnostics["stuck_chains"] == {}
