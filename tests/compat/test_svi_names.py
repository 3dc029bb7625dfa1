"""NumPyro's SVI API (`ppl.infer.SVI`, the ELBOs, `ppl.infer.autoguide`, `ppl.optim`,
`Predictive(model, guide=...)`) as a door onto ppl's variational inference.

Statistical checks use fixed keys; their tolerances are stated from the Monte Carlo error of
the draws and the optimiser's end-point noise (Adam's steps in posterior sds at lr 0.01 leave
the fitted location within ~0.05 sd of the optimum)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
import ppl.distributions as dist
import ppl.optim as optim
from ppl.distributions import constraints
from ppl.infer import (SVI, Predictive, RenyiELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO, autoguide,
                       init_to_value)
from ppl.infer.autoguide import (AutoDelta, AutoDiagonalNormal, AutoLaplaceApproximation,
                                 AutoLowRankMultivariateNormal, AutoMultivariateNormal, AutoNormal)
from ppl.method.flags import PplWarning

Y = jnp.asarray(np.random.default_rng(0).normal(3.0, 1.0, 50), jnp.float32)
POST_PREC = 50 + 0.01  # mu ~ N(0, 10^2), y_i ~ N(mu, 1), 50 points
POST_MEAN, POST_SD = float(jnp.sum(Y)) / POST_PREC, POST_PREC ** -0.5


def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    with ppl.plate("n", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


def normal_scale(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(5.0))
    with ppl.plate("n", y.shape[0]):
        ppl.sample("y", dist.Normal(mu, sigma), obs=y)


def hand_guide(y):
    loc = ppl.param("loc", 0.0)
    scale = ppl.param("scale", 1.0, constraint=constraints.positive)
    ppl.sample("mu", dist.Normal(loc, scale))


def test_imports_are_numpyros():
    from ppl.infer.autoguide import AutoNormal as A  # noqa: F401

    assert ppl.optim is optim and optim.Adam(0.1).name == "Adam"
    assert autoguide.AutoNormal is A


@pytest.mark.parametrize("guide_type", [AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal,
                                        AutoLowRankMultivariateNormal, AutoLaplaceApproximation])
def test_gaussian_guides_recover_the_exact_posterior(guide_type):
    """The posterior is N(POST_MEAN, POST_SD^2), in the family of every Gaussian guide: the fitted
    guide's 4000 draws have mean within 0.25 sd (MC error 0.016 sd; the end point's noise is ~0.05
    sd, ~0.15 sd for the low-rank family, whose factor and diagonal are redundant in one dimension)
    and sd within 8% (MC error of an sd from 4000 draws 1.1%, end-point noise of the scale ~3%)."""
    guide = guide_type(normal_mean)
    svi = SVI(normal_mean, guide, optim.Adam(0.01), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(0), 1500, Y, progress_bar=False)
    draws = guide.sample_posterior(jax.random.PRNGKey(1), result.params, sample_shape=(4000,))["mu"]
    assert draws.shape == (4000,)
    assert abs(float(draws.mean()) - POST_MEAN) < 0.25 * POST_SD
    assert abs(float(draws.std()) / POST_SD - 1) < 0.08
    assert float(guide.median(result.params)["mu"]) == pytest.approx(POST_MEAN, abs=0.25 * POST_SD)
    q = guide.quantiles(result.params, [0.1, 0.5, 0.9])["mu"]
    assert q.shape == (3,) and float(q[1]) == pytest.approx(float(guide.median(result.params)["mu"]), abs=1e-5)
    assert float(q[2] - q[0]) == pytest.approx(2 * 1.2816 * POST_SD, rel=0.08)


def test_autonormal_params_are_numpyros_names_per_site():
    guide = AutoNormal(normal_scale)
    svi = SVI(normal_scale, guide, optim.Adam(0.01), Trace_ELBO())
    params = svi.run(jax.random.PRNGKey(0), 200, Y, progress_bar=False).params
    assert set(params) == {"mu_auto_loc", "mu_auto_scale", "sigma_auto_loc", "sigma_auto_scale"}
    assert float(params["sigma_auto_scale"]) > 0


def test_autodelta_is_the_map():
    """AutoDelta ends at the mode of the constrained posterior density, as ppl.MAP (L-BFGS)
    finds it, to 1e-3 (an optimiser's end point on a smooth mode); its params are constrained."""
    guide = AutoDelta(normal_scale)
    svi = SVI(normal_scale, guide, optim.Adam(0.01), Trace_ELBO())
    params = svi.run(jax.random.PRNGKey(0), 2000, Y, progress_bar=False).params
    assert set(params) == {"mu_auto_loc", "sigma_auto_loc"}
    mode = ppl.infer(normal_scale, Y, method="map", key=0).samples
    for k in ("mu", "sigma"):
        assert float(params[f"{k}_auto_loc"]) == pytest.approx(float(np.ravel(mode[k])[0]), abs=1e-3)
        assert float(guide.median(params)[k]) == float(params[f"{k}_auto_loc"])


def test_hand_written_guide_with_param_recovers_the_posterior():
    """`ppl.param` with a positivity constraint: optimised unconstrained, returned constrained;
    the fitted loc and scale are the exact posterior's (0.25 sd and 8%, as above: the raw steps of
    0.01 are 0.07 posterior sd)."""
    svi = SVI(normal_mean, hand_guide, optim.Adam(0.01), TraceMeanField_ELBO())
    result = svi.run(jax.random.PRNGKey(0), 3000, Y, progress_bar=False)
    assert set(result.params) == {"loc", "scale"}
    assert float(result.params["loc"]) == pytest.approx(POST_MEAN, abs=0.25 * POST_SD)
    assert float(result.params["scale"]) == pytest.approx(POST_SD, rel=0.08)
    pred = Predictive(normal_mean, guide=hand_guide, params=result.params, num_samples=300)(jax.random.PRNGKey(2), Y)
    assert pred["mu"].shape == (300,) and pred["y"].shape == (300, 50)


def test_run_is_init_then_updates_and_losses_fall():
    """`run` takes the same steps as `init` and `update` by hand (same params to rounding), its
    losses are one per step, and they fall (mean of the last 100 below the first 10)."""
    svi = SVI(normal_mean, hand_guide, optim.Adam(0.05), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(3), 300, Y, progress_bar=False)
    state = svi.init(jax.random.PRNGKey(3), Y)
    update = jax.jit(svi.update)
    for _ in range(300):
        state, _ = update(state, Y)
    assert result.losses.shape == (300,)
    assert float(jnp.mean(result.losses[-100:])) < float(jnp.mean(result.losses[:10]))
    for k in ("loc", "scale"):
        np.testing.assert_allclose(svi.get_params(state)[k], result.params[k], rtol=1e-4)
    assert int(state.optim_state.step) == 300
    assert np.isfinite(float(svi.evaluate(state, Y)))


def test_run_continues_from_init_state_and_takes_init_params():
    svi = SVI(normal_mean, hand_guide, optax.adam(0.05), Trace_ELBO())  # a bare optax transformation
    state = svi.init(jax.random.PRNGKey(0), Y, init_params={"loc": 2.0, "scale": 0.5})
    assert float(svi.get_params(state)["loc"]) == pytest.approx(2.0)
    assert float(svi.get_params(state)["scale"]) == pytest.approx(0.5)
    first = svi.run(None, 100, Y, init_state=state, progress_bar=False)
    second = svi.run(None, 100, Y, init_state=first.state, progress_bar=False)
    assert int(second.state.optim_state.step) == 200


def mixture(y):
    locs = ppl.sample("locs", dist.Normal(jnp.array([-1.0, 1.0]), 3.0).to_event(1))
    with ppl.plate("n", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(jnp.array([0.5, 0.5])), infer={"enumerate": "parallel"})
        ppl.sample("y", dist.Normal(locs[z], 0.5), obs=y)


def mixture_guide(y):
    loc = ppl.param("locs_loc", jnp.array([-1.0, 1.0]))
    ppl.sample("locs", dist.Normal(loc, 0.05).to_event(1))


Y_MIX = jnp.asarray(np.concatenate([np.random.default_rng(1).normal(-2.0, 0.5, 100),
                                    np.random.default_rng(2).normal(2.5, 0.5, 100)]), jnp.float32)


def test_trace_enum_elbo_sums_out_the_assignments():
    """Two well-separated components: with z summed out exactly, the fitted component means are
    the data's cluster means to 0.1 (their posterior sds are 0.05; optimiser noise ~0.02)."""
    svi = SVI(mixture, mixture_guide, optim.Adam(0.02), TraceEnum_ELBO())
    result = svi.run(jax.random.PRNGKey(0), 1500, Y_MIX, progress_bar=False)
    np.testing.assert_allclose(result.params["locs_loc"], [float(Y_MIX[:100].mean()), float(Y_MIX[100:].mean())],
                               atol=0.1)
    assert float(jnp.mean(result.losses[-100:])) < float(jnp.mean(result.losses[:10]))


def test_trace_enum_elbo_gradient_is_the_exact_marginals():
    """The ELBO's gradient for a point-like guide (sd 1e-4) is the gradient of the exact
    marginal log density log p(y, locs) at the guide's loc (z summed out by hand), to 1e-2."""
    def point_guide(y):
        ppl.sample("locs", dist.Normal(ppl.param("locs_loc", jnp.array([-1.5, 2.0])), 1e-4).to_event(1))

    svi = SVI(mixture, point_guide, optax.sgd(1.0), TraceEnum_ELBO())
    state = svi.init(jax.random.PRNGKey(0), Y_MIX)
    new, _ = svi.update(state, Y_MIX)
    step = svi.get_params(new)["locs_loc"] - svi.get_params(state)["locs_loc"]  # = the ELBO's gradient

    def exact(locs):
        prior = dist.Normal(jnp.array([-1.0, 1.0]), 3.0).log_prob(locs).sum()
        comp = dist.Normal(locs, 0.5).log_prob(Y_MIX[:, None]) + jnp.log(0.5)
        return prior + jax.scipy.special.logsumexp(comp, axis=1).sum()

    np.testing.assert_allclose(step, jax.grad(exact)(jnp.array([-1.5, 2.0])), rtol=1e-2, atol=1e-2)


def test_trace_elbo_with_an_unguided_discrete_site_names_it():
    with pytest.raises(ValueError, match="discrete site 'z'.*TraceEnum_ELBO"):
        SVI(mixture, mixture_guide, optim.Adam(0.01), Trace_ELBO()).init(jax.random.PRNGKey(0), Y_MIX)


def test_bad_guides_and_options_are_named():
    def wrong_name(y):
        ppl.sample("m", dist.Normal(ppl.param("loc", 0.0), 1.0))

    with pytest.raises(ValueError, match=r"missing from the guide \['mu'\].*\['m'\]"):
        SVI(normal_mean, wrong_name, optim.Adam(0.01), Trace_ELBO()).init(jax.random.PRNGKey(0), Y)
    with pytest.raises(TypeError, match="loss must be Trace_ELBO"):
        SVI(normal_mean, hand_guide, optim.Adam(0.01), "elbo")
    with pytest.raises(TypeError, match="optim must be"):
        SVI(normal_mean, hand_guide, "adam", Trace_ELBO())
    with pytest.raises(NotImplementedError, match="alpha=0"):
        RenyiELBO(alpha=0.5)
    with pytest.raises(ValueError, match="num_particles"):
        Trace_ELBO(num_particles=0)
    with pytest.raises(ValueError, match="num_steps"):
        SVI(normal_mean, hand_guide, optim.Adam(0.01), Trace_ELBO()).run(jax.random.PRNGKey(0), 0, Y)
    with pytest.raises(ValueError, match="step_size"):
        optim.Adam(-1.0)
    with pytest.raises(RuntimeError, match="fit the guide first"):
        AutoNormal(normal_mean).median({})
    with pytest.raises(ValueError, match=r"init_params.*\['nope'\]"):
        SVI(normal_mean, hand_guide, optim.Adam(0.01), Trace_ELBO()).init(jax.random.PRNGKey(0), Y,
                                                                          init_params={"nope": 1.0})


def test_nonfinite_steps_are_skipped_counted_and_warned():
    """A model whose log density is NaN where mu < 0, a guide N(0, 1) on mu: about half the
    steps' losses are NaN; each is skipped (params kept), counted, and `run` warns with the count."""
    def half_nan(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.factor("f", jnp.where(mu > 0, 0.0, jnp.nan))

    def guide(y):
        ppl.sample("mu", dist.Normal(ppl.param("loc", 0.0), ppl.param("scale", 1.0, constraint=constraints.positive)))

    svi = SVI(half_nan, guide, optim.SGD(1e-6), Trace_ELBO())
    with pytest.warns(PplWarning, match="of 40 steps had a non-finite loss or gradient and were skipped"):
        result = svi.run(jax.random.PRNGKey(0), 40, Y, progress_bar=False)
    skipped = int(result.state.optim_state.num_nonfinite)
    assert 5 <= skipped <= 35 and int(np.sum(~np.isfinite(np.asarray(result.losses)))) == skipped


def test_renyi_alpha_zero_is_the_importance_weighted_bound():
    """RenyiELBO(alpha=0, K) is ppl.IWAE(k=K); with K = 5 particles the hand-written guide
    reaches the posterior mean (0.3 sd: the IWAE gradient is weaker than the ELBO's, so Adam(0.05),
    whose raw steps leave ~0.1 sd of end-point noise) and a scale at least the posterior's (the
    importance-weighted bound's best proposal is wider)."""
    assert RenyiELBO(num_particles=5).objective == ppl.IWAE(k=5)
    svi = SVI(normal_mean, hand_guide, optim.Adam(0.05), RenyiELBO(num_particles=5))
    result = svi.run(jax.random.PRNGKey(0), 3000, Y, progress_bar=False)
    assert float(result.params["loc"]) == pytest.approx(POST_MEAN, abs=0.3 * POST_SD)
    assert 0.95 * POST_SD < float(result.params["scale"]) < 2 * POST_SD


def test_init_loc_fn_and_predictive_with_an_autoguide():
    guide = AutoNormal(normal_scale, init_loc_fn=init_to_value(values={"mu": 2.0, "sigma": 1.0}))
    svi = SVI(normal_scale, guide, optim.Adam(0.01), Trace_ELBO(), y=Y)  # static_kwargs
    result = svi.run(jax.random.PRNGKey(0), 300, progress_bar=False)
    out = Predictive(normal_scale, guide=guide, params=result.params, num_samples=200)(jax.random.PRNGKey(1),
                                                                                       y=Y[:10])
    assert out["mu"].shape == (200,) and out["sigma"].shape == (200,) and out["y"].shape == (200, 10)
    assert float(jnp.mean(out["mu"])) == pytest.approx(float(jnp.mean(Y)), abs=0.1)


def test_optimisers_take_numpyros_steps():
    """SGD's step is -step_size * g; Momentum's second step adds mass times the first; each
    optimiser runs an SVI fit to a finite loss."""
    g = {"x": jnp.array([1.0, -2.0])}
    sgd = optim.SGD(0.1)
    s = sgd.update(g, sgd.init({"x": jnp.zeros(2)}))
    np.testing.assert_allclose(sgd.get_params(s)["x"], [-0.1, 0.2], rtol=1e-6)
    mom = optim.Momentum(0.1, mass=0.9)
    s = mom.update(g, mom.update(g, mom.init({"x": jnp.zeros(2)})))
    np.testing.assert_allclose(mom.get_params(s)["x"], -0.1 * (1 + 1.9) * np.array([1.0, -2.0]), rtol=1e-6)
    for opt in (optim.Adam(0.01), optim.ClippedAdam(0.01), optim.RMSProp(0.01), optim.Adagrad(0.1),
                optim.optax_to_numpyro(optax.adamw(0.01))):
        losses = SVI(normal_mean, hand_guide, opt, Trace_ELBO()).run(jax.random.PRNGKey(0), 50, Y,
                                                                     progress_bar=False).losses
        assert np.all(np.isfinite(losses)), opt.name
