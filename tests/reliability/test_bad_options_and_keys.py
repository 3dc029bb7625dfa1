"""Method names, method options of the wrong type or range, and random keys: each refused
before anything is compiled, naming the option and what it accepts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist

Y = jnp.array([0.5, 1.5])


def model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", 2):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


def test_a_misspelled_method_lists_the_methods():
    with pytest.raises(ValueError, match=r"unknown method 'nutz'; choose one of \[.*'nuts'.*\]"):
        ppl.infer(model, Y, method="nutz")


def test_a_method_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"method must be a name from ppl.METHODS or a method object, got 3"):
        ppl.infer(model, Y, method=3)


@pytest.mark.parametrize("method, option", [
    (lambda: ppl.NUTS(num_samples=10.0), r"NUTS: num_samples must be a positive int, got 10.0"),
    (lambda: ppl.NUTS(num_chains=0), r"NUTS: num_chains must be a positive int, got 0"),
    (lambda: ppl.HMC(num_warmup=-1), r"HMC: num_warmup must be an int >= 0, got -1"),
    (lambda: ppl.NUTS(target_accept=1.5), r"target_accept must be in \(0, 1\), got 1.5"),
    (lambda: ppl.NUTS(chain_method="parallel"), r"chain_method must be 'auto', 'vectorized' or 'sequential', got 'parallel'"),
    (lambda: ppl.NUTS(max_tree_depth=0), r"max_tree_depth must be an int in \[1, 30\][;,] (received|got) 0"),
    (lambda: ppl.MAP(num_steps=0), r"num_steps must be a positive int, got 0"),
    (lambda: ppl.VI(num_steps=100.0), r"VI: num_steps must be a positive int, got 100.0"),
    (lambda: ppl.VI(guide="meanfield"), r"VI: unknown guide 'meanfield'; choose one of \[.*'mean_field'"),
    (lambda: ppl.Importance(num_particles=1e3), r"Importance: num_particles must be a positive int, got 1000.0"),
    (lambda: ppl.Importance(proposal="posterior"), r"proposal"),
    (lambda: ppl.Rejection(num_samples=0), r"Rejection: num_samples must be a positive int, got 0"),
    (lambda: ppl.Gibbs(inner="slice"), r"Gibbs: inner must be one of"),
], ids=["num_samples-float", "num_chains-0", "num_warmup-negative", "target_accept", "chain_method",
        "max_tree_depth", "map-num_steps", "vi-num_steps-float", "vi-guide-name", "num_particles-float",
        "proposal", "rejection-num_samples", "gibbs-inner"])
def test_an_option_out_of_range_names_it(method, option):
    with pytest.raises((ValueError, TypeError), match=option):
        ppl.infer(model, Y, method=method())


@pytest.mark.parametrize("key", ["zero", 1.5, True, None, np.zeros((3, 2), np.uint32), jnp.array([0, 1])],
                         ids=["str", "float", "bool", "None", "batch-of-raw-keys", "signed-int-pair"])
def test_a_key_that_is_not_one_key(key):
    with pytest.raises(TypeError, match=r"key must be an int"):
        ppl.infer(model, Y, method="map", key=key)


def test_every_form_of_one_key_gives_the_same_draws():
    m = ppl.Importance(num_particles=200)
    a = ppl.infer(model, Y, method=m, key=7).samples["mu"]
    b = ppl.infer(model, Y, method=m, key=jax.random.PRNGKey(7)).samples["mu"]
    c = ppl.infer(model, Y, method=m, key=jax.random.key(7)).samples["mu"]
    d = ppl.infer(model, Y, method=m, key=np.int64(7)).samples["mu"]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, d)
