"""Guide functions that do not fit the model: wrong support, names, shapes, a guide that
fails, a point mass outside the support. Each refused naming the site and the fix."""
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
        ppl.observe("y", dist.Normal(mu, s), y)


def vi(guide, **kw):
    return ppl.VI(guide=guide, num_steps=kw.pop("num_steps", 20), num_draws=50, num_eval_particles=50, **kw)


def test_a_normal_guide_for_a_positive_latent_names_both_supports_and_the_fix():
    """It used to be accepted and return draws of 's' below zero."""
    def guide(y):
        ppl.sample("mu", dist.Normal(ppl.param("m", 0.0), 1.0))
        ppl.sample("s", dist.Normal(1.0, 1.0))

    with pytest.raises(ValueError, match=r"guide site 's' has support Real\(\) \(Normal\) but the model's latent 's' has "
                                         r"support Positive.*\(HalfNormal\).*dist.LogNormal\(loc, scale\).*"
                                         r"Run ppl.check\(model, \*args, guide=guide, \*\*kwargs\)"):
        ppl.infer(model, Y, method=vi(guide))


def test_a_guide_on_the_wrong_interval():
    def bounded(y):
        p = ppl.sample("p", dist.Uniform(0.0, 2.0))
        ppl.observe("y", dist.Normal(p, 1.0), y)

    def guide(y):
        ppl.sample("p", dist.Beta(2.0, 2.0))

    with pytest.raises(ValueError, match=r"guide site 'p' has support UnitInterval.*model's latent 'p' has support Interval.*"
                                         r"TransformedDistribution"):
        ppl.infer(bounded, jnp.array(1.0), method=vi(guide))


def test_a_guide_over_more_categories_than_the_model():
    def labels(y):
        c = ppl.sample("c", dist.Categorical(jnp.ones(3) / 3))
        ppl.observe("y", dist.Normal(c, 1.0), y)

    def guide(y):
        ppl.sample("c", dist.Categorical(jnp.ones(4) / 4))

    with pytest.raises(ValueError, match=r"guide site 'c' has support IntegerInterval.*upper_bound=3.*upper_bound=2"):
        ppl.infer(labels, jnp.array(1.0), method=vi(guide))


def test_a_point_mass_outside_the_support():
    def guide(y):
        ppl.sample("mu", dist.Delta(ppl.param("m", 0.0)))
        ppl.sample("s", dist.Delta(ppl.param("log_s", -1.0)))

    with pytest.raises(ValueError, match=r"guide site 's' is a point mass \(Delta\) at a value outside the model's support Positive"):
        ppl.infer(model, Y, method=vi(guide))


def test_guides_with_the_same_support_by_another_family_are_accepted():
    """Gamma and LogNormal share the support (0, inf): the fit runs and draws are positive."""
    def guide(y):
        ppl.sample("mu", dist.Normal(ppl.param("m", 0.0), 1.0))
        ppl.sample("s", dist.Gamma(ppl.param("a", 2.0, dist.constraints.positive), 2.0))

    r = ppl.infer(model, Y, method=vi(guide, num_steps=5), key=0)
    assert np.all(np.asarray(r.samples["s"]) > 0)


def test_missing_extra_and_misshapen_guide_sites():
    def missing(y):
        ppl.sample("mu", dist.Normal(0.0, 1.0))

    def extra(y):
        ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.sample("s", dist.LogNormal(0.0, 1.0))
        ppl.sample("t", dist.Normal(0.0, 1.0))

    def misshapen(y):
        ppl.sample("mu", dist.Normal(jnp.zeros(2), 1.0))
        ppl.sample("s", dist.LogNormal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"missing from the guide \['s'\].*one ppl.sample site per model latent"):
        ppl.infer(model, Y, method=vi(missing))
    with pytest.raises(ValueError, match=r"in the guide but not latent in the model \['t'\]"):
        ppl.infer(model, Y, method=vi(extra))
    with pytest.raises(ValueError, match=r"guide site 'mu' has shape \(2,\) but the model's latent 'mu' has shape \(\)"):
        ppl.infer(model, Y, method=vi(misshapen))


def test_a_guide_that_fails_names_itself():
    def broken(y):
        ppl.sample("mu", dist.Normal(0.0, 1.0))
        raise KeyError("w")

    with pytest.raises(KeyError, match=r"running the guide function 'broken' on the model's arguments failed"):
        ppl.infer(model, Y, method=vi(broken))
