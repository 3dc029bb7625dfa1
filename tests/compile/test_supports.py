"""Supports and parameter checks (`ppl.compile.supports`): which supports are the same set,
and which distribution parameters are checked against their constraints."""
import jax.numpy as jnp
import pytest
from numpyro.distributions import constraints as C

import ppl
from ppl import dist
from ppl.compile.supports import holds, same_support, short_support


@pytest.mark.parametrize("a, b, same", [
    (C.positive, C.greater_than(0.0), True),
    (C.real, C.independent(C.real, 1), True),  # a plate-expanded Normal vs one with to_event
    (C.unit_interval, C.interval(0.0, 1.0), True),
    (C.real, C.positive, False),
    (C.positive, C.greater_than(1.0), False),
    (C.unit_interval, C.interval(0.0, 2.0), False),
    (C.interval(jnp.zeros(3), jnp.ones(3)), C.unit_interval, True),  # array bounds: decided by points
    (C.interval(jnp.zeros(3), jnp.array([1.0, 2.0, 1.0])), C.unit_interval, False),
    (C.integer_interval(0, 2), C.integer_interval(0, 2), True),
    (C.integer_interval(0, 2), C.integer_interval(0, 3), False),
    (C.boolean, C.nonnegative_integer, False),
    (C.simplex, C.simplex, True),
])
def test_same_support(a, b, same):
    assert same_support(a, b, (3,)) is same
    assert same_support(b, a, (3,)) is same


def test_holds_allows_minus_infinite_logits_and_rounded_simplexes():
    assert bool(holds(C.real, "logits", jnp.array(-jnp.inf)))
    assert not bool(holds(C.real, "loc", jnp.array(-jnp.inf)))
    assert not bool(holds(C.real, "logits", jnp.array(jnp.nan)))
    p = jnp.full(1000, 1e-3) * (1 + 1e-6)  # sums to 1 + 1e-6: rounding, not an error
    assert bool(holds(C.simplex, "probs", p)) and not bool(holds(C.simplex, "probs", jnp.array([0.5, 0.6])))


def test_only_parameters_fixed_by_the_data_are_checked():
    """A scale computed from a latent is never an error in the data; one passed in is."""
    def model(s, t):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("b", dist.Normal(0.0, jnp.exp(a) * t))
        ppl.observe("y", dist.Normal(a, s), 0.5)

    ppl.compile(model, jnp.array(1.0), jnp.array(-1.0))  # b's scale moves with a: not checked
    with pytest.raises(ValueError, match=r"observed site 'y': parameter 'scale'"):
        ppl.compile(model, jnp.array(-1.0), jnp.array(1.0))


def test_short_support_text():
    assert short_support(C.positive) == "positive"
    assert short_support(C.independent(C.unit_interval, 1)) == "(0, 1)"
    assert short_support(C.interval(0.0, 2.0)) == "(0, 2)"
    assert short_support(C.integer_interval(0, 4)) == "integers 0..4"
    assert short_support(C.greater_than(1.5)) == "> 1.5"
    assert short_support(C.interval(jnp.zeros(3), jnp.ones(3))) == "Interval"  # bounds per element
