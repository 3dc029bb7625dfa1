"""Bad input to `ppl.infer`: each error names the site (or method) and the fix.

Every error here is raised before any program is compiled, except the non-finite start.
"""
import jax.numpy as jnp
import pytest
from numpyro.distributions import constraints as C

import ppl
from ppl import dist

Y = jnp.array([0.5, 1.5])


def model(y):
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    b = ppl.sample("b", dist.Normal(0.0, 1.0))
    with ppl.plate("n", 2):
        ppl.observe("y", dist.Normal(a + b, 1.0), y)


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown method 'nutz'.*'importance'.*'map'"):
        ppl.infer(model, Y, method="nutz")


def test_method_of_the_wrong_type():
    with pytest.raises(TypeError, match="ppl.METHODS"):
        ppl.infer(model, Y, method=3)


def test_bad_key():
    with pytest.raises(TypeError, match="key"):
        ppl.infer(model, Y, method="map", key="zero")


def test_method_class_is_accepted_like_its_default_object():
    r1 = ppl.infer(model, Y, method=ppl.Importance, key=0)
    r2 = ppl.infer(model, Y, method="importance", key=0)
    assert (r1.samples["a"] == r2.samples["a"]).all()


def test_duplicate_site_name():
    def dup(y):
        ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'a'.*twice"):
        ppl.infer(dup, Y, method="map")


def test_observed_value_outside_the_support():
    def counts(y):
        rate = ppl.sample("rate", dist.Exponential(1.0))
        with ppl.plate("n", 2):
            ppl.observe("k", dist.Poisson(rate), y)

    with pytest.raises(ValueError, match=r"'k'.*outside the support.*Poisson"):
        ppl.infer(counts, jnp.array([1.0, -2.0]), method="importance")


def test_plate_size_not_matching_the_data():
    with pytest.raises(ValueError, match=r"'y'.*plate 'n'"):
        ppl.infer(model, jnp.ones(3), method="map")


def test_nan_in_observed_data():
    with pytest.raises(ValueError, match=r"'y' contains NaN"):
        ppl.infer(model, Y.at[0].set(jnp.nan), method="importance")


def test_non_finite_log_density_at_every_start_names_the_site():
    def hopeless(y):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(a, 1.0), y)
        ppl.factor("f", -jnp.inf)

    with pytest.raises(ValueError, match=r"no finite starting point.*'f'"):
        ppl.infer(hopeless, Y, method="map")


@pytest.mark.parametrize("name", ["mle", "map"])
def test_infinite_discrete_latent_given_to_an_optimiser_suggests_gibbs(name):
    def counts(y):
        k = ppl.sample("k", dist.Poisson(3.0))
        ppl.observe("y", dist.Normal(2.0 * k, 1.0), y)

    with pytest.raises(ValueError, match=rf"'{name}'.*'k' has a Poisson.*infinite.*gibbs"):
        ppl.infer(counts, Y, method=name)


def test_importance_with_an_improper_prior_names_the_site():
    def flat(y):
        a = ppl.sample("a", dist.ImproperUniform(C.real, (), ()))
        ppl.observe("y", dist.Normal(a, 1.0), y)

    with pytest.raises(ValueError, match=r"'importance'.*'a'.*improper"):
        ppl.infer(flat, Y, method="importance")


def test_guide_with_missing_sites():
    def guide(y):
        ppl.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"missing from the guide \['b'\]"):
        ppl.infer(model, Y, method=ppl.Importance(proposal=guide))


def test_guide_with_extra_sites():
    def guide(y):
        ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("b", dist.Normal(0.0, 1.0))
        ppl.sample("c", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"not latent in the model \['c'\]"):
        ppl.infer(model, Y, method=ppl.Importance(proposal=guide))


def test_bad_method_options():
    with pytest.raises(ValueError, match="num_particles"):
        ppl.infer(model, Y, method=ppl.Importance(num_particles=0))
    with pytest.raises(ValueError, match="proposal"):
        ppl.infer(model, Y, method=ppl.Importance(proposal="posterior"))
    with pytest.raises(ValueError, match="num_steps"):
        ppl.infer(model, Y, method=ppl.MAP(num_steps=0))


def test_importance_with_no_finite_weight_warns_naming_the_site():
    """Zero density at the data for every particle: a warning naming the site, the count in
    diagnostics, and the result kept (nothing is lost)."""
    def zero_density(y):
        a = ppl.sample("a", dist.Exponential(1.0))
        with ppl.plate("n", 3):
            ppl.observe("bobs", dist.Beta(a + 1.0, 2.0), y)  # density 0 at y = 1

    with pytest.warns(UserWarning, match=r"none of the 500 particles.*\['bobs'\]"):
        r = ppl.infer(zero_density, jnp.array([0.2, 1.0, 0.3]), method=ppl.Importance(num_particles=500), key=0)
    assert r.diagnostics["num_finite_weights"] == 0 and r.log_evidence == float("-inf")


def test_errors_about_the_model_point_to_the_doctor():
    """Compile-time and start-up errors end with the pointer to ppl.check (the model's name)."""
    hint = r".* Run ppl\.check\({}, \*args, \*\*kwargs\) for a report on every site\."
    with pytest.raises(ValueError, match=r"'y'.*plate 'n'" + hint.format("model")):
        ppl.infer(model, jnp.ones(3), method="map")

    def hopeless(y):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.factor("f", -jnp.inf)

    with pytest.raises(ValueError, match=r"no finite starting point.*'f'" + hint.format("hopeless")):
        ppl.infer(hopeless, Y, method="map")


def test_method_errors_about_the_model_point_to_the_doctor_and_option_errors_do_not():
    """Needs ppl.infer to run `method.check` and `method.run` inside
    `ppl.compile.errors.pointing_to_check(model, sites_only=True)`."""
    def counts(y):
        k = ppl.sample("k", dist.Poisson(3.0))
        ppl.observe("y", dist.Normal(2.0 * k, 1.0), y)

    with pytest.raises(ValueError, match=r"'k' has a Poisson.*Run ppl\.check\(counts, \*args, \*\*kwargs\)"):
        ppl.infer(counts, Y, method="nuts")
    with pytest.raises(ValueError, match=r"num_samples must be a positive int, got 0\.") as e:
        ppl.infer(model, Y, method=ppl.NUTS(num_samples=0))
    assert "ppl.check" not in str(e.value)
