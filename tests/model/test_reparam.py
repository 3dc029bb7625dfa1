"""`ppl.handlers.reparam` with `LocScaleReparam` (NumPyro's names and semantics)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ppl.handlers import reparam, seed, substitute, trace

import ppl
from ppl import dist
from ppl.infer import Predictive
from ppl.infer.reparam import LocScaleReparam
from ppl.model.sites import user_dist


def funnel(dim=10):
    """NumPyro's examples/funnel.py model, with only `numpyro` renamed."""
    y = ppl.sample("y", dist.Normal(0, 3))
    ppl.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


Y = jnp.array([1.0, -0.5, 2.0])


def groups(y, sigma_y=0.5):
    mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
    with ppl.plate("g", 3):
        x = ppl.sample("x", dist.Normal(mu, 1.5))
        ppl.observe("y", dist.Normal(x, sigma_y), y)


def groups_posterior():
    """Exact Gaussian posterior of (mu, x1, x2, x3) in `groups(Y)`: means and sds."""
    prior = np.full((4, 4), 4.0) + np.diag([0.0, 2.25, 2.25, 2.25])
    h = np.hstack([np.zeros((3, 1)), np.eye(3)])
    gain = prior @ h.T @ np.linalg.inv(h @ prior @ h.T + 0.25 * np.eye(3))
    return gain @ np.asarray(Y), np.sqrt(np.diag(prior - gain @ h @ prior))


# --- the transformed model ------------------------------------------------------------------


def test_noncentred_site_keeps_its_name_as_a_deterministic_function_of_the_decentred_one():
    tr = trace(seed(reparam(funnel, config={"x": LocScaleReparam(0)}), 0)).get_trace()
    assert [(s.name, s.kind) for s in tr.values()] == [
        ("y", "latent"), ("x_decentered", "latent"), ("x", "deterministic")]
    z, y = tr["x_decentered"].value, tr["y"].value
    assert isinstance(user_dist(tr["x_decentered"].dist), dist.Normal)
    np.testing.assert_allclose(tr["x_decentered"].dist.mean, 0.0)  # standard: no funnel left
    np.testing.assert_allclose(tr["x_decentered"].dist.variance, 1.0)
    np.testing.assert_allclose(tr["x"].value, jnp.exp(y / 2) * z, rtol=1e-6)


def test_centered_one_leaves_the_model_unchanged():
    plain = trace(seed(funnel, 3)).get_trace()
    same = trace(seed(reparam(funnel, config={"x": LocScaleReparam(centered=1.0)}), 3)).get_trace()
    assert [(s.name, s.kind) for s in same.values()] == [(s.name, s.kind) for s in plain.values()]
    for name in plain:
        np.testing.assert_array_equal(same[name].value, plain[name].value)
    np.testing.assert_array_equal(same.log_joint(), plain.log_joint())


@pytest.mark.parametrize("centered", [0.0, 0.3, None])
def test_prior_of_the_reparameterised_site_is_unchanged(centered):
    # x | y ~ Normal(2 + y, exp(y / 2)) for every centredness: the standardised x is N(0, 1).
    def model():
        y = ppl.sample("y", dist.Normal(0.0, 1.0))
        ppl.sample("x", dist.Normal(2.0 + y, jnp.exp(y / 2)))

    n = 20000
    draws = Predictive(reparam(model, config={"x": LocScaleReparam(centered)}), num_samples=n)(0)
    u = (draws["x"] - 2.0 - draws["y"]) / np.exp(draws["y"] / 2)
    se = 1 / np.sqrt(n)  # MC standard error of the mean of n iid N(0, 1) draws
    assert abs(u.mean()) < 4 * se
    assert abs(u.std() - 1.0) < 4 / np.sqrt(2 * n)  # the sd's MC standard error is 1 / sqrt(2n)
    assert "x_decentered" in draws


def test_student_t_and_lognormal_sites_inside_a_plate():
    @reparam(config={"t": LocScaleReparam(0), "w": LocScaleReparam(0)})  # the decorator form (mortality.py)
    def model():
        y = ppl.sample("y", dist.Normal(0.0, 1.0))
        with ppl.plate("n", 4):
            ppl.sample("t", dist.StudentT(4.0, 1.0, jnp.exp(y)))
            ppl.sample("w", dist.LogNormal(y, 2.0))

    tr = trace(seed(model, 0)).get_trace()
    assert [(s.name, s.kind) for s in tr.values()] == [
        ("y", "latent"), ("t_decentered", "latent"), ("t", "deterministic"),
        ("w_decentered", "latent"), ("w", "deterministic")]
    d = tr["t_decentered"].dist.base_dist
    assert isinstance(d, dist.StudentT) and float(d.df) == 4.0  # df copied over
    y = tr["y"].value
    np.testing.assert_allclose(tr["t"].value, 1.0 + jnp.exp(y) * tr["t_decentered"].value, rtol=1e-5)
    np.testing.assert_allclose(tr["w"].value, jnp.exp(y + 2.0 * tr["w_decentered"].value), rtol=1e-5)
    assert tr["w"].plates == tr["w_decentered"].plates == (ppl.Plate("n", 4, -1, 4),)


def test_config_as_a_function_and_as_a_context_manager():
    config = lambda site: LocScaleReparam(0) if site["name"] == "x" else None
    with trace() as tr, reparam(config=config), seed(rng_seed=0):
        funnel()
    assert list(tr) == ["y", "x_decentered", "x"]


def test_learnable_centredness_is_a_param_in_the_unit_interval():
    tr = trace(seed(reparam(funnel, config={"x": LocScaleReparam()}), 0)).get_trace()
    site = tr["x_centered"]
    assert site.kind == "param" and float(site.value) == 0.5
    assert site.constraint is dist.constraints.unit_interval


# --- inference ------------------------------------------------------------------------------


def test_noncentred_funnel_under_nuts_has_the_analytic_marginal_and_no_divergences():
    method = ppl.NUTS(num_warmup=500, num_samples=1000)
    r = ppl.infer(reparam(funnel, config={"x": LocScaleReparam(0)}), method=method, key=0)
    y = np.asarray(r.samples["y"])
    ess = float(r.summary().loc["y", "ess_bulk"])
    assert r.diagnostics["divergences"] == 0
    # y ~ N(0, 3): MC standard errors 3 / sqrt(ess) (mean) and 3 / sqrt(2 ess) (sd); 4 SE.
    assert abs(y.mean()) < 4 * 3 / np.sqrt(ess)
    assert abs(y.std() - 3.0) < 4 * 3 / np.sqrt(2 * ess)
    assert r.samples["x"].shape == r.samples["x_decentered"].shape == (4, 1000, 9)

    with pytest.warns(UserWarning):
        centred = ppl.infer(funnel, method=method, key=0)
    assert centred.diagnostics["divergences"] > 0  # the neck of the funnel
    assert np.asarray(centred.samples["y"]).std() < 3.0 - 20 * 3 / np.sqrt(2 * ess)  # and it is never reached


def test_learnable_centredness_under_nuts_gives_the_exact_posterior():
    # MCMC holds the param at 0.5; every centredness gives the same posterior (closed form).
    r = ppl.infer(reparam(groups, config={"x": LocScaleReparam()}), Y, method="nuts", key=0)
    mean, sd = groups_posterior()
    ess = r.summary()["ess_bulk"].to_numpy()
    draws = np.concatenate([np.asarray(r.samples["mu"])[..., None], np.asarray(r.samples["x"])], -1).reshape(-1, 4)
    tol = 4 * sd / np.sqrt(ess.min())  # 4 MC standard errors at the smallest ESS
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), tol)
    np.testing.assert_array_less(np.abs(draws.std(0) - sd), tol)


def test_learnable_centredness_under_vi():
    model = reparam(groups, config={"x": LocScaleReparam()})
    r = ppl.infer(model, Y, method=ppl.VI(guide="full_rank", num_steps=1500), key=0)
    mean, sd = groups_posterior()
    draws = np.concatenate([np.asarray(r.samples["mu"])[..., None], np.asarray(r.samples["x"])], -1).reshape(-1, 4)
    # A full-rank Gaussian is exact here for any centredness (the map is linear); 1000 draws
    # give MC SE sd / 32 for the mean; the rest of the tolerance is the stochastic optimiser's.
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 0.2 * sd)
    np.testing.assert_array_less(np.abs(draws.std(0) / sd - 1), 0.15)
    assert 0.0 <= float(r.params["x_centered"]) <= 1.0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:vi. Pareto")
def test_mean_field_vi_learns_the_centredness_the_data_call_for():
    model = reparam(groups, config={"x": LocScaleReparam()})
    # Mean-field learns the coordinates its factorisation fits (Gorinova et al. 2019): centred
    # for strong data, non-centred for weak data.
    mf = ppl.VI(guide="mean_field", num_steps=3000)
    strong = float(ppl.infer(model, Y, 0.05, method=mf, key=0).params["x_centered"])
    weak = float(ppl.infer(model, Y, 20.0, method=mf, key=0).params["x_centered"])
    assert strong > 0.7 and weak < 0.3


def test_predictive_recomputes_the_reparameterised_site():
    # funnel.py collects the deterministic sites with Predictive(reparam_model, samples).
    model = reparam(funnel, config={"x": LocScaleReparam(0)})
    z = jax.random.normal(jax.random.PRNGKey(1), (5, 9))
    y = jnp.linspace(-1.0, 1.0, 5)
    out = Predictive(model, {"y": y, "x_decentered": z}, return_sites=["x", "y"])(jax.random.PRNGKey(1))
    np.testing.assert_allclose(out["x"], jnp.exp(y / 2)[:, None] * z, rtol=1e-5)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("d, words", [
    (dist.Gamma(2.0, 1.0), "no loc and scale"),
    (dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)), "no loc and scale"),
    (dist.HalfNormal(1.0), "no loc and scale"),
    (dist.TruncatedNormal(0.0, 1.0, low=0.0), "cannot decentre"),
])
def test_a_site_it_cannot_handle_is_an_error_naming_it(d, words):
    model = reparam(lambda: ppl.sample("g", d), config={"g": LocScaleReparam(0)})
    with pytest.raises(ValueError, match=f"site 'g'.*{words}"):
        trace(seed(model, 0)).get_trace()


def test_observed_or_preset_sites_cannot_be_reparameterised():
    observed = reparam(lambda: ppl.observe("g", dist.Normal(0.0, 1.0), 1.0), config={"g": LocScaleReparam(0)})
    with pytest.raises(ValueError, match="site 'g' is observed"):
        trace(observed).get_trace()
    preset = reparam(substitute(lambda: ppl.sample("g", dist.Normal(0.0, 1.0)), data={"g": 1.0}),
                     config={"g": LocScaleReparam(0)})
    with pytest.raises(ValueError, match="site 'g' is given a value"):
        trace(preset).get_trace()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LocScaleReparam(centered=1.5)
    with pytest.raises(TypeError, match="config"):
        reparam(funnel)
    with pytest.raises(TypeError, match="site 'x'"):
        reparam(funnel, config={"x": 0.0})
