"""Model code a new user writes that cannot be traced, or that bypasses ppl: each a clear
error naming the site (or argument), the line, and the fix, before any method starts."""
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import ppl
from ppl import dist

Y = jnp.array([0.5, 1.5, 0.2])


def branch_on_latent(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    if mu > 0:
        ppl.observe("y", dist.Normal(mu, 1.0), y)
    else:
        ppl.observe("y", dist.Normal(-mu, 1.0), y)


def test_python_if_on_a_latent_names_the_site_the_line_and_the_fix():
    with pytest.raises(TypeError, match=r"model 'branch_on_latent' uses the value of latent site 'mu' in Python control flow"
                                        r".*test_bad_model_code.py:\d+ \(`if mu > 0:`\).*jnp.where\(cond, a, b\) or jax.lax.cond"):
        ppl.infer(branch_on_latent, Y, method="nuts")


def _converts(conversion):
    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(conversion(mu), 1.0), y)
    return model


@pytest.mark.parametrize("conversion", [
    float,
    lambda mu: [0.0, 1.0][int(mu > 0)],
    lambda mu: float(np.asarray(mu)),
    lambda mu: 1.0 if bool(mu > 0) else 0.0,
], ids=["float", "int-index", "np.asarray", "bool"])
def test_python_conversions_of_a_latent_name_the_site(conversion):
    with pytest.raises(TypeError, match=r"uses the value of latent site 'mu'.*x.astype\(float\), not float\(x\)"):
        ppl.compile(_converts(conversion), Y)


def test_python_control_flow_on_data_makes_the_argument_a_constant_and_names_it():
    """As NumPyro closes over model arguments, a data argument whose value Python needs
    becomes a constant of the program (a recompile per new value), with a warning naming it."""
    def steps(y, n):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        for _ in range(int(n)):
            mu = mu * 0.5
        ppl.observe("y", dist.Normal(mu, 1.0), y)

    with pytest.warns(UserWarning, match=r"positional argument 1 in Python.*constant.*recompiles.*Python int"):
        ld = ppl.compile(steps, Y, jnp.array(3))
    z = jnp.array([0.8])
    expected = dist.Normal(0.0, 1.0).log_prob(0.8) + dist.Normal(0.1, 1.0).log_prob(Y).sum()
    assert jnp.allclose(jax.jit(lambda ld, z: ld.log_prob(z))(ld, z), expected, rtol=1e-5)
    ppl.compile(steps, Y, 3)  # a Python int is static: fine, and no warning


@pytest.mark.parametrize("primitive, expected", [
    (lambda: numpyro.sample("mu", dist.Normal(0.0, 1.0)), r"numpyro.sample\('mu', ...\).*Use ppl.sample"),
    (lambda: numpyro.deterministic("d", jnp.ones(2)), r"numpyro.deterministic\('d', ...\).*Use ppl.deterministic"),
    (lambda: numpyro.factor("f", -1.0), r"numpyro.factor\('f', ...\).*Use ppl.factor"),
    (lambda: numpyro.param("w", 0.5), r"numpyro.param\('w', ...\).*Use ppl.param"),
    (lambda: numpyro.plate("n", 3).__enter__(), r"numpyro.plate\('n', ...\).*Use ppl.plate"),
], ids=["sample", "deterministic", "factor", "param", "plate"])
def test_a_numpyro_primitive_inside_a_ppl_model_names_the_site(primitive, expected):
    """numpyro.sample used to fail with an empty AssertionError; deterministic, factor and param
    were silently ignored."""
    def mixed(y):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        primitive()
        ppl.observe("y", dist.Normal(a, 1.0), y)

    with pytest.raises(TypeError, match=expected):
        ppl.infer(mixed, Y, method="map")
    import numpyro.primitives as npp
    assert not npp._PYRO_STACK  # the guard leaves NumPyro's stack as it found it


def test_numpyro_models_still_run_outside_ppl():
    def numpyro_model():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    ppl.compile(_converts(lambda mu: mu), Y)  # the guard is on NumPyro's stack only meanwhile
    tr = numpyro.handlers.trace(numpyro.handlers.seed(numpyro_model, 0)).get_trace()
    assert "x" in tr


def test_a_site_name_used_twice():
    def twice(y):
        ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"site name 'a' is used twice.*unique name"):
        ppl.compile(twice, Y)


def test_a_site_name_that_is_not_a_string():
    def numbered(y):
        ppl.sample(3, dist.Normal(0.0, 1.0))

    with pytest.raises(TypeError, match=r"site name must be a non-empty string, got 3"):
        ppl.compile(numbered, Y)


def test_a_distribution_class_instead_of_a_distribution():
    def uncalled(y):
        ppl.sample("x", dist.Normal)

    with pytest.raises(TypeError, match=r"site 'x': got the distribution class Normal.*dist.Normal\(...\)"):
        ppl.compile(uncalled, Y)


def test_swapped_name_and_distribution():
    def swapped(y):
        ppl.sample(dist.Normal(0.0, 1.0), "x")

    with pytest.raises(TypeError, match=r"site 'x': the arguments are swapped.*ppl.sample\('x', Normal\(...\)\)"):
        ppl.compile(swapped, Y)


def test_a_deterministic_site_holding_a_string():
    def labelled(y):
        ppl.sample("x", dist.Normal(0.0, 1.0))
        ppl.deterministic("label", "group A")

    with pytest.raises(TypeError, match=r"deterministic site 'label'.*numeric.*got str"):
        ppl.compile(labelled, Y)


def test_arguments_the_model_does_not_take_point_to_the_doctor():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'yy'.*Run ppl.check\(branch_on_latent, \*args, \*\*kwargs\)"):
        ppl.compile(branch_on_latent, yy=Y)


def test_not_a_model():
    with pytest.raises(TypeError, match=r"expected a model function, got NoneType"):
        ppl.infer(None, Y)


def test_sampling_without_a_seed_says_to_wrap_the_model():
    with pytest.raises(RuntimeError, match=r"sample site 'mu' needs a random key.*ppl.handlers.seed"):
        branch_on_latent(Y)
