"""Bad `init=` values: every method with an init option refuses them before compiling, naming
the site, what was received and what to give (one check, `ppl.compile.init.check_init_values`)."""
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist

Y = jnp.array([0.5, 1.5, 0.2])


def model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    s = ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("n", y.shape[0]):
        theta = ppl.sample("theta", dist.Normal(mu, 1.0))
        ppl.observe("y", dist.Normal(theta, s), y)


SHORT = dict(num_warmup=5, num_samples=5, num_chains=1)
METHODS = {
    "nuts": lambda init: ppl.NUTS(init=init, **SHORT),
    "hmc": lambda init: ppl.HMC(init=init, **SHORT),
    "mh": lambda init: ppl.MH(init=init, **SHORT),
    "gibbs": lambda init: ppl.Gibbs(init=init, **SHORT),
    "map": lambda init: ppl.MAP(init=init),
    "mle": lambda init: ppl.MLE(init=init),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_name_that_is_no_latent_site_lists_the_latent_sites(name):
    with pytest.raises(ValueError, match=r"init names 'sigma', which is not a latent site.*\['mu', 's', 'theta'\]"):
        ppl.infer(model, Y, method=METHODS[name]({"sigma": 1.0}))


def test_the_name_of_an_observed_site_says_so():
    with pytest.raises(ValueError, match=r"init names 'y'.*'y' is an observed site.*\['mu', 's', 'theta'\]"):
        ppl.infer(model, Y, method=METHODS["map"]({"y": Y}))


@pytest.mark.parametrize("name", ["nuts", "map"])
def test_a_wrong_shape_names_the_site_with_both_shapes(name):
    """It used to be read as flat values and blame another site (or pass silently)."""
    with pytest.raises(ValueError, match=r"init value for site 'mu' has shape \(3,\), but the site has shape \(\); give a scalar"):
        ppl.infer(model, Y, method=METHODS[name]({"mu": jnp.ones(3)}))
    with pytest.raises(ValueError, match=r"site 'theta' has shape \(\), but the site has shape \(3,\) \(plates \['n'\]\).*jnp.full\(\(3,\), value\)"):
        ppl.infer(model, Y, method=METHODS[name]({"theta": 0.0}))


@pytest.mark.parametrize("name", ["nuts", "mh", "mle"])
def test_a_value_outside_the_support_names_site_and_support(name):
    """It used to read 'no finite starting point found in 100 tries'."""
    with pytest.raises(ValueError, match=r"init value for site 's' \(-1\.\) lies outside the site's support Positive.*give a value inside it"):
        ppl.infer(model, Y, method=METHODS[name]({"s": -1.0}))


def test_a_value_outside_a_unit_interval():
    def beta(y):
        p = ppl.sample("p", dist.Beta(2.0, 2.0))
        ppl.observe("y", dist.Bernoulli(p), y)

    with pytest.raises(ValueError, match=r"site 'p' \(1\.5\) lies outside the site's support UnitInterval"):
        ppl.infer(beta, jnp.array(1), method=ppl.MAP(init={"p": 1.5}))


def test_a_non_finite_value_names_the_site():
    with pytest.raises(ValueError, match=r"init value for site 'mu' is not finite.*finite values"):
        ppl.infer(model, Y, method=METHODS["nuts"]({"mu": jnp.nan}))


def test_a_non_numeric_value_names_the_site():
    with pytest.raises(TypeError, match=r"init value for site 'mu' must be numeric"):
        ppl.infer(model, Y, method=METHODS["map"]({"mu": "zero"}))


def test_init_that_is_neither_a_strategy_nor_a_dict():
    with pytest.raises(TypeError, match=r"init must be 'uniform', 'prior', a radius r .* or a dict.*got list"):
        ppl.infer(model, Y, method=METHODS["map"]([0.0, 1.0]))


def test_a_misspelled_strategy_lists_the_strategies():
    with pytest.raises(ValueError, match=r"unknown init strategy 'unifrom'; use 'uniform'.*'prior'.*dict"):
        ppl.infer(model, Y, method=METHODS["nuts"]("unifrom"))


def test_a_discrete_value_outside_its_support_under_gibbs():
    def mixture(y):
        k = ppl.sample("k", dist.Bernoulli(0.5))
        ppl.observe("y", dist.Normal(2.0 * k, 1.0), y)

    with pytest.raises(ValueError, match=r"site 'k' \(2\) lies outside the site's support Boolean"):
        ppl.infer(mixture, jnp.array(1.0), method=ppl.Gibbs(init={"k": 2}, **SHORT))


def test_a_support_set_by_another_latent_accepts_a_value_that_fits_some_draws():
    """b ~ Uniform(0, a): b = 0.5 fits when a > 0.5 (the start retries until it does);
    b = 20 fits no a ~ Uniform(1, 3), and is refused."""
    def nested(y):
        a = ppl.sample("a", dist.Uniform(1.0, 3.0))
        b = ppl.sample("b", dist.Uniform(0.0, a))
        ppl.observe("y", dist.Normal(b, 1.0), y)

    r = ppl.infer(nested, jnp.array(0.4), method=ppl.MAP(init={"b": 0.5}), key=0)
    assert 0.0 < float(r.params["b"]) < float(r.params["a"])
    with pytest.raises(ValueError, match=r"site 'b' \(20\.\) lies outside the site's support"):
        ppl.infer(nested, jnp.array(0.4), method=ppl.MAP(init={"b": 20.0}))


def test_valid_values_are_used_where_given():
    ld = ppl.compile(model, Y)
    z = ld.init(0, values={"theta": jnp.array([0.1, 0.2, 0.3]), "s": 2.0})
    v = ld.constrain(z)
    np.testing.assert_allclose(v["theta"], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(v["s"], 2.0, rtol=1e-6)


def test_prior_init_with_an_improper_site_starts_it_uniformly():
    """init='prior' used to fail on a flat prior ("cannot draw from ImproperUniform")."""
    from numpyro.distributions import constraints as C

    def flat(y):
        a = ppl.sample("a", dist.ImproperUniform(C.real, (), ()))
        b = ppl.sample("b", dist.Normal(100.0, 0.1))
        ppl.observe("y", dist.Normal(a + b, 1.0), y)

    ld = ppl.compile(flat, jnp.array(1.0))
    v = ld.constrain(ld.init(0, strategy="prior"))
    assert abs(float(v["a"])) < 2.0 and 99.0 < float(v["b"]) < 101.0
    r = ppl.infer(flat, jnp.array(1.0), method=ppl.MAP(init="prior"), key=0)
    np.testing.assert_allclose(float(r.params["a"]) + float(r.params["b"]), 1.0, atol=1e-2)
