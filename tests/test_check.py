"""The model doctor, `ppl.check`: per-site findings, problems naming the site and the fix,
methods that apply, and the pointer to it in every error about a model."""
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.distributions import constraints as C

import ppl
from ppl import dist
from ppl.check import Problem, Report, SiteReport, check

SIGMA = jnp.array([15.0, 10, 16, 11, 9, 11, 10, 18])
Y8 = jnp.array([28.0, 8, -3, 7, -1, 1, 18, 12])


def eight_schools(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("school", sigma.shape[0]):
        theta_raw = ppl.sample("theta_raw", dist.Normal(0.0, 1.0))
        theta = ppl.deterministic("theta", mu + tau * theta_raw)
        ppl.observe("y", dist.Normal(theta, sigma), y)


def test_a_healthy_model_reports_every_site_and_no_problem():
    r = check(eight_schools, SIGMA, y=Y8)
    assert isinstance(r, Report) and r.ok and r.problems == ()
    assert [s.name for s in r.sites] == ["mu", "tau", "theta_raw", "theta", "y"]
    y = r.site("y")
    assert isinstance(y, SiteReport) and y.kind == "observed" and y.shape == (8,) and y.plates == ("school",)
    assert y.data_in_support and y.finite_at_init == (16, 16) and y.grad_finite_at_prior == (16, 16)
    assert r.site("tau").support == "positive" and not r.site("tau").discrete
    assert set(r.applicable) >= {"nuts", "hmc", "mh", "map", "importance", "vi"}
    text = str(r)
    assert text.startswith("ppl.check(eight_schools): OK") and "theta_raw" in text and "no problems found" in text


def test_invalid_data_are_reported_per_site_with_the_fix_not_raised():
    r = check(eight_schools, SIGMA.at[2].set(-1.0), y=Y8.at[0].set(jnp.nan))
    assert not r.ok and r.site("y").data_in_support is False
    messages = [p.message for p in r.site("y").problems]
    assert any("contains NaN" in m and "mask" in m for m in messages)
    assert any("parameter 'scale'" in m and "> 0" in m for m in messages)
    assert all("Run ppl.check" not in m for m in messages)  # the report does not point to itself
    assert "methods that apply: none until the errors below are fixed" in str(r)


def test_a_region_of_nan_density_is_a_warning_with_counts():
    def half(y):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.factor("f", jnp.where(a > 0, 0.0, jnp.nan))
        ppl.observe("y", dist.Normal(a, 1.0), y)

    r = check(half, jnp.array(0.5), num_points=32)
    f = r.site("f")
    assert r.ok and 0 < f.finite_at_init[0] < 32 and 0 < f.finite_at_prior[0] < 32
    assert r.site("a").finite_at_init == (32, 32)
    warning = f.problems[0]
    assert warning.severity == "warning" and "factor site 'f'" in warning.message
    assert "reject moves into it" in warning.message


def test_a_site_finite_nowhere_is_an_error_that_no_method_can_start():
    def hopeless(y):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(a, 1.0), y)
        ppl.factor("f", -jnp.inf)

    r = check(hopeless, jnp.array(0.5))
    assert not r.ok and [p.site for p in r.errors] == ["f"]
    assert "no method can start" in r.errors[0].message and r.site("f").finite_at_init == (0, 16)


def test_a_nan_gradient_is_blamed_on_the_site_whose_term_has_it():
    def kinked(y):
        s = ppl.sample("s", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(jnp.where(s > 0, jnp.sqrt(s), 0.0), 1.0), y)

    r = check(kinked, jnp.array(1.0))
    assert r.site("s").grad_finite_at_init == (16, 16)
    assert r.site("y").grad_finite_at_init[0] < 16
    assert [p.site for p in r.warnings] == ["y"] and "jnp.where" in r.warnings[0].message


def test_discrete_and_improper_sites_decide_the_methods():
    def mixture(y):
        k = ppl.sample("k", dist.Bernoulli(0.5))
        ppl.observe("y", dist.Normal(2.0 * k, 1.0), y)

    r = check(mixture, jnp.array(1.0))
    assert r.site("k").discrete and "gibbs" in r.applicable and "importance" in r.applicable
    assert "nuts" in r.applicable  # a finite discrete site is summed out for gradient methods

    def counts(y):
        k = ppl.sample("k", dist.Poisson(3.0))
        ppl.observe("y", dist.Normal(1.0 * k, 1.0), y)

    r = check(counts, jnp.array(1.0))
    assert "nuts" not in r.applicable and "'k' has a Poisson" in r.methods["nuts"]

    def flat(y):
        a = ppl.sample("a", dist.ImproperUniform(C.real, (), ()))
        ppl.observe("y", dist.Normal(a, 1.0), y)

    r = check(flat, jnp.array(1.0))
    assert r.site("a").improper and "nuts" in r.applicable
    assert "importance" not in r.applicable and "improper" in r.methods["importance"]
    assert r.site("a").finite_at_prior == (16, 16)  # started uniformly: a flat prior has no draws


def test_every_shape_mismatch_is_found_in_one_run():
    def two_mismatches(y, z):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", 3):
            ppl.observe("y", dist.Normal(mu, 1.0), y)
            ppl.observe("z", dist.Normal(mu, 1.0), z)
        ppl.sample("after", dist.Normal(0.0, 1.0))

    r = check(two_mismatches, jnp.ones(4), jnp.ones(5))
    assert {p.site for p in r.errors} >= {"y", "z"}
    assert all("plate 'n' of size 3" in p.message for p in r.errors if p.site in ("y", "z"))
    assert "after" in [s.name for s in r.sites]  # the run went on past the mismatches


def test_a_guide_is_checked_site_by_site():
    def model(y):
        s = ppl.sample("s", dist.HalfNormal(1.0))
        p = ppl.sample("p", dist.Beta(1.0, 1.0))
        ppl.observe("y", dist.Normal(p, s), y)

    def guide(y):
        ppl.sample("s", dist.Normal(0.0, 1.0))
        ppl.sample("p", dist.Normal(0.0, 1.0))

    r = check(model, jnp.array(0.5), guide=guide)
    assert [p.site for p in r.errors] == ["s", "p"]
    assert "dist.LogNormal" in r.site("s").problems[0].message and "dist.Beta" in r.site("p").problems[0].message
    assert check(model, jnp.array(0.5)).ok


def test_model_code_errors_are_reported_naming_the_site():
    def branch(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        if mu > 0:
            ppl.observe("y", dist.Normal(mu, 1.0), y)

    r = check(branch, jnp.array(0.5))
    assert not r.ok and r.errors[0].site == "mu" and "jnp.where" in r.errors[0].message

    def numpyro_inside(y):
        numpyro.sample("mu", dist.Normal(0.0, 1.0))

    r = check(numpyro_inside, jnp.array(0.5))
    assert not r.ok and "Use ppl.sample" in r.errors[0].message


def test_an_argument_that_cannot_be_data_is_a_reported_error():
    r = check(eight_schools, np.array(["a", "b"]))
    assert not r.ok and "positional argument 0" in r.errors[0].message and r.sites == ()
    assert isinstance(r.errors[0], Problem)


def test_errors_about_the_model_point_to_the_doctor():
    def hopeless(y):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.factor("f", -jnp.inf)
        ppl.observe("y", dist.Normal(a, 1.0), y)

    hint = r"Run ppl.check\({}, \*args, \*\*kwargs\) for a report on every site."
    with pytest.raises(ValueError, match=r"'y'.*" + hint.format("eight_schools")):
        ppl.compile(eight_schools, SIGMA, y=Y8.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"no finite starting point.*" + hint.format("hopeless")):
        ppl.infer(hopeless, jnp.array(0.5), method="map")


def test_bad_arguments_of_check_itself():
    with pytest.raises(TypeError, match="model function"):
        check(3)
    with pytest.raises(TypeError, match="num_points"):
        check(eight_schools, SIGMA, y=Y8, num_points=0)
