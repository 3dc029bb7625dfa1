"""`ppl.scan` (`ppl.contrib.control_flow.scan`): sites inside a `jax.lax.scan` body."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ppl.handlers import condition, reparam, seed, trace

import ppl
from ppl import dist
from ppl.contrib.control_flow import scan
from ppl.infer import Predictive
from ppl.infer.reparam import LocScaleReparam

T = 20
Y = jnp.sin(jnp.arange(T) / 3.0)


def ssm(y, length=None):
    """A latent AR(1) state x_t observed with noise: latent and observed sites in the body."""
    s = ppl.sample("s", dist.HalfNormal(1.0))

    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(0.9 * x_prev, s))
        ppl.observe("y", dist.Normal(x, 0.5), y_t)
        ppl.deterministic("x2", x ** 2)
        return x, x

    _, xs = scan(step, 0.0, y, length=length)
    return xs


def ssm_vectorised(y, length=None):
    """`ssm` with its states as one vector (same sites, same flat layout)."""
    s = ppl.sample("s", dist.HalfNormal(1.0))
    x = ppl.sample("x", dist.ImproperUniform(dist.constraints.real, (), (y.shape[0],)))
    ppl.factor("x_prior", dist.Normal(0.9 * jnp.concatenate([jnp.zeros(1), x[:-1]]), s).log_prob(x).sum())
    ppl.observe("y", dist.Normal(x, 0.5), y)


# NumPyro's examples/ar2.py model, with only `numpyro` renamed to `ppl`.
def ar2_scan(y):
    alpha_1 = ppl.sample("alpha_1", dist.Normal(0, 1))
    alpha_2 = ppl.sample("alpha_2", dist.Normal(0, 1))
    const = ppl.sample("const", dist.Normal(0, 1))
    sigma = ppl.sample("sigma", dist.HalfNormal(1))

    def transition(carry, _):
        y_prev, y_prev_prev = carry
        m_t = const + alpha_1 * y_prev + alpha_2 * y_prev_prev
        y_t = ppl.sample("y", dist.Normal(m_t, sigma))
        carry = (y_t, y_prev)
        return carry, None

    timesteps = jnp.arange(y.shape[0] - 2)
    init = (y[1], y[0])

    with ppl.handlers.condition(data={"y": y[2:]}):
        scan(transition, init, timesteps)


def ar2_vectorised(y):
    alpha_1 = ppl.sample("alpha_1", dist.Normal(0, 1))
    alpha_2 = ppl.sample("alpha_2", dist.Normal(0, 1))
    const = ppl.sample("const", dist.Normal(0, 1))
    sigma = ppl.sample("sigma", dist.HalfNormal(1))
    ppl.observe("y", dist.Normal(const + alpha_1 * y[1:-1] + alpha_2 * y[:-2], sigma), y[2:])


def ar2_data(n=60):
    t = jnp.arange(0, n)
    return jnp.sin(t) + jax.random.normal(jax.random.PRNGKey(0), (n,)) * 0.1


# NumPyro's examples/holt_winters.py model, with only `numpyro` renamed to `ppl`.
def holt_winters(y, n_seasons, future=0):
    T = y.shape[0]
    level_smoothing = ppl.sample("level_smoothing", dist.Beta(1, 1))
    trend_smoothing = ppl.sample("trend_smoothing", dist.Beta(1, 1))
    seasonality_smoothing = ppl.sample("seasonality_smoothing", dist.Beta(1, 1))
    adj_seasonality_smoothing = seasonality_smoothing * (1 - level_smoothing)
    noise = ppl.sample("noise", dist.HalfNormal(1))
    level_init = ppl.sample("level_init", dist.Normal(0, 1))
    trend_init = ppl.sample("trend_init", dist.Normal(0, 1))
    with ppl.plate("n_seasons", n_seasons):
        seasonality_init = ppl.sample("seasonality_init", dist.Normal(0, 1))

    def transition_fn(carry, t):
        previous_level, previous_trend, previous_seasonality = carry
        level = jnp.where(
            t < T,
            level_smoothing * (y[t] - previous_seasonality[0])
            + (1 - level_smoothing) * (previous_level + previous_trend),
            previous_level,
        )
        trend = jnp.where(
            t < T,
            trend_smoothing * (level - previous_level)
            + (1 - trend_smoothing) * previous_trend,
            previous_trend,
        )
        new_season = jnp.where(
            t < T,
            adj_seasonality_smoothing * (y[t] - (previous_level + previous_trend))
            + (1 - adj_seasonality_smoothing) * previous_seasonality[0],
            previous_seasonality[0],
        )
        step = jnp.where(t < T, 1, t - T + 1)
        mu = previous_level + step * previous_trend + previous_seasonality[0]
        pred = ppl.sample("pred", dist.Normal(mu, noise))

        seasonality = jnp.concatenate(
            [previous_seasonality[1:], new_season[None]], axis=0
        )
        return (level, trend, seasonality), pred

    with ppl.handlers.condition(data={"pred": y}):
        _, preds = scan(
            transition_fn,
            (level_init, trend_init, seasonality_init),
            jnp.arange(T + future),
        )

    if future > 0:
        ppl.deterministic("y_forecast", preds[-future:])


# --- sites and shapes ------------------------------------------------------------------------


def test_each_body_site_is_recorded_once_with_a_leading_time_dimension():
    with trace() as tr, seed(rng_seed=0):
        xs = ssm(Y)
    assert [(s.name, s.kind) for s in tr.values()] == [
        ("s", "latent"), ("x", "latent"), ("y", "observed"), ("x2", "deterministic")]
    assert tr["x"].value.shape == tr["y"].value.shape == tr["x2"].value.shape == (T,)
    assert tr["x"].log_prob.shape == tr["y"].log_prob.shape == (T,)
    np.testing.assert_array_equal(tr["y"].value, Y)
    np.testing.assert_array_equal(xs, tr["x"].value)  # the stacked outputs are the site values
    np.testing.assert_allclose(tr["x2"].value, tr["x"].value ** 2, rtol=1e-6)
    # The log density sums over time, each step scored under its own distribution.
    x, s = tr["x"].value, tr["s"].value
    prev = jnp.concatenate([jnp.zeros(1), x[:-1]])
    np.testing.assert_allclose(tr["x"].log_prob, dist.Normal(0.9 * prev, s).log_prob(x), rtol=1e-5)


def test_numpyro_docstring_example_runs_generatively_and_with_data():
    def gaussian_hmm(y=None, T=10):
        def transition(x_prev, y_curr):
            x_curr = ppl.sample("x", dist.Normal(x_prev, 1))
            y_curr = ppl.sample("y", dist.Normal(x_curr, 1), obs=y_curr)
            return x_curr, (x_curr, y_curr)

        x0 = ppl.sample("x_0", dist.Normal(0, 1))
        _, (x, y) = scan(transition, x0, y, length=T)
        return (x, y)

    with seed(rng_seed=0):
        x, y = gaussian_hmm(np.arange(10.0))
    assert x.shape == (10,) and y.shape == (10,) and np.all(y == np.arange(10))
    with seed(rng_seed=0):
        x, y = gaussian_hmm()
    assert x.shape == (10,) and y.shape == (10,)


def test_log_density_equals_the_vectorised_model_and_compiles_to_one_scan():
    ld, ref = ppl.compile(ssm, Y), ppl.compile(ssm_vectorised, Y)
    assert ld.dim == ref.dim == T + 1
    for k in range(3):
        z = jax.random.normal(jax.random.PRNGKey(k), (ld.dim,))
        np.testing.assert_allclose(ld.log_prob(z), ref.log_prob(z), rtol=1e-5)
        np.testing.assert_allclose(jax.grad(ld.log_prob)(z), jax.grad(ref.log_prob)(z), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ld.unconstrain(ld.constrain(z)), z, rtol=1e-5, atol=1e-6)

    def scans(n):
        z = jnp.zeros(n + 1)
        jaxpr = jax.make_jaxpr(ppl.compile(ssm, jnp.zeros(n)).log_prob)(z).jaxpr
        return [e.primitive.name for e in jaxpr.eqns].count("scan"), len(jaxpr.eqns)

    (one, eqns_short), (also_one, eqns_long) = scans(10), scans(100)
    assert one == also_one == 1
    assert eqns_short == eqns_long  # one loop, not unrolled over T


def test_plates_around_the_body_and_reverse_scans():
    def model(y):
        s = ppl.sample("s", dist.HalfNormal(1.0))
        with ppl.plate("series", y.shape[1]):
            def step(x_next, y_t):
                x = ppl.sample("x", dist.Normal(0.9 * x_next, s))
                ppl.observe("y", dist.Normal(x, 0.5), y_t)
                ppl.factor("f", -0.1 * x ** 2)
                return x, None
            scan(step, jnp.zeros(y.shape[1]), y, reverse=True)

    y = jnp.cos(jnp.arange(15.0)).reshape(5, 3)
    ld = ppl.compile(model, y)
    assert ld.spec.latent("x").shape == (5, 3)
    assert ld.spec.latent("x").plates == (ppl.Plate("series", 3, -1, 3),)
    z = jax.random.normal(jax.random.PRNGKey(0), (ld.dim,))
    c = ld.constrain(z)
    s, x = c["s"], c["x"]
    nxt = jnp.concatenate([x[1:], jnp.zeros((1, 3))])  # reverse: step t follows step t + 1
    expected = (dist.HalfNormal(1.0).log_prob(s) + jnp.log(s) + dist.Normal(0.9 * nxt, s).log_prob(x).sum()
                + dist.Normal(x, 0.5).log_prob(y).sum() - 0.1 * jnp.sum(x ** 2))
    np.testing.assert_allclose(ld.log_prob(z), expected, rtol=1e-5)


def test_reparam_applies_to_a_site_inside_the_body():
    model = reparam(ssm, config={"x": LocScaleReparam(0)})
    tr = trace(seed(model, 0)).get_trace(Y)
    assert [(s.name, s.kind) for s in tr.values()] == [
        ("s", "latent"), ("x_decentered", "latent"), ("x", "deterministic"), ("y", "observed"),
        ("x2", "deterministic")]
    x, z, s = tr["x"].value, tr["x_decentered"].value, tr["s"].value
    prev = jnp.concatenate([jnp.zeros(1), x[:-1]])
    np.testing.assert_allclose(x, 0.9 * prev + s * z, rtol=1e-5, atol=1e-6)


# --- inference -------------------------------------------------------------------------------


def test_ar2_posterior_under_nuts_matches_the_vectorised_model():
    y = ar2_data()
    r = ppl.infer(ar2_scan, y, method=ppl.NUTS(num_warmup=500, num_samples=1000), key=0)
    ref = ppl.infer(ar2_vectorised, y, method=ppl.NUTS(num_warmup=500, num_samples=1000), key=1)
    assert r.diagnostics["divergences"] == 0
    a, b = r.summary(), ref.summary()
    for name in ("alpha_1", "alpha_2", "const", "sigma"):
        # two independent estimates of one posterior mean: 4 standard errors of their difference
        se = np.hypot(a.loc[name, "sd"] / np.sqrt(a.loc[name, "ess_bulk"]),
                      b.loc[name, "sd"] / np.sqrt(b.loc[name, "ess_bulk"]))
        assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < 4 * se, name
        assert abs(a.loc[name, "sd"] / b.loc[name, "sd"] - 1) < 0.1, name  # ESS > 1000: sd within ~3%


def test_ar2_map_and_vi_match_the_vectorised_model():
    # Same log density and flat layout, so the same optimiser path (up to float rounding).
    y = ar2_data()
    for method in (ppl.MAP(num_steps=300), ppl.VI(guide="full_rank", num_steps=300)):
        r = ppl.infer(ar2_scan, y, method=method, key=0)
        ref = ppl.infer(ar2_vectorised, y, method=method, key=0)
        for name in ("alpha_1", "alpha_2", "const", "sigma"):
            np.testing.assert_allclose(np.mean(r.samples[name]), np.mean(ref.samples[name]), rtol=1e-2, atol=1e-3)


def test_latent_states_under_nuts_and_vi():
    r = ppl.infer(ssm, Y, method=ppl.NUTS(num_warmup=500, num_samples=500, num_chains=2), key=0)
    ref = ppl.infer(ssm_vectorised, Y, method=ppl.NUTS(num_warmup=500, num_samples=500, num_chains=2), key=1)
    assert r.samples["x"].shape == (2, 500, T) and r.samples["x2"].shape == (2, 500, T)
    a, b = np.asarray(r.samples["x"]).reshape(-1, T), np.asarray(ref.samples["x"]).reshape(-1, T)
    ess = min(r.summary()["ess_bulk"].min(), ref.summary()["ess_bulk"].min())
    se = np.hypot(a.std(0), b.std(0)) / np.sqrt(ess)
    np.testing.assert_array_less(np.abs(a.mean(0) - b.mean(0)), 4.5 * se)  # 4.5 SE over 20 states
    v = ppl.infer(ssm, Y, method=ppl.VI(num_steps=500), key=0)
    assert v.samples["x"].shape == (1, 1000, T) and np.isfinite(v.log_evidence)


# --- predictive ------------------------------------------------------------------------------


def test_prior_predictive_draws_each_step_from_its_own_distribution():
    # A Gaussian random walk from 0 with unit steps: var(x_t) = t + 1.
    def walk(length):
        def step(x_prev, _):
            x = ppl.sample("x", dist.Normal(x_prev, 1.0))
            return x, None
        scan(step, 0.0, None, length=length)

    n = 4000
    x = Predictive(walk, num_samples=n)(jax.random.PRNGKey(0), 8)["x"]
    assert x.shape == (n, 8)
    var = x.var(0)
    # the variance of n normal draws has relative standard error sqrt(2 / n); 4 SE
    np.testing.assert_array_less(np.abs(var / np.arange(1, 9) - 1), 4 * np.sqrt(2 / n))
    np.testing.assert_array_less(np.abs(np.corrcoef(x[:, 3], x[:, 7])[0, 1] - np.sqrt(4 / 8)), 0.05)


@pytest.mark.parametrize("reverse", [False, True])
def test_each_step_sees_the_carry_its_predecessor_drew(reverse):
    """Each recorded draw is exactly the carry the next step sees, in either direction (a
    step's draw is made once, with its own key, whatever the way the body is run)."""
    def walk(length):
        def step(x_prev, _):
            ppl.deterministic("prev", x_prev)
            x = ppl.sample("x", dist.Normal(x_prev, 1.0))
            return x, x
        return scan(step, 0.0, None, length=length, reverse=reverse)

    with seed(rng_seed=3):
        tr = trace(walk).get_trace(6)
    x, prev = tr["x"].value, tr["prev"].value
    before = (x[1:], prev[:-1]) if reverse else (x[:-1], prev[1:])
    np.testing.assert_array_equal(before[0], before[1])
    assert float(prev[-1 if reverse else 0]) == 0.0 and np.all(np.asarray(x) != 0.0)


def test_posterior_predictive_draws_the_observed_sites_anew():
    r = ppl.infer(ssm, Y, method=ppl.NUTS(num_warmup=300, num_samples=300, num_chains=2), key=0)
    yrep = ppl.predictive(ssm, r, Y, key=1)
    assert yrep["y"].shape == (2, 300, T)
    resid = np.asarray(yrep["y"] - r.samples["x"])  # y_rep | x ~ N(x, 0.5)
    n = resid.size
    assert abs(resid.mean()) < 4 * 0.5 / np.sqrt(n)
    assert abs(resid.std() / 0.5 - 1) < 4 / np.sqrt(2 * n)
    np.testing.assert_array_equal(yrep["x"], r.samples["x"])


def test_holt_winters_example_runs_and_forecasts():
    n_points = 10
    t = jnp.linspace(0, 4, 4 * n_points)
    y = jnp.sin(2 * np.pi * t) + 0.3 * t + jax.random.normal(jax.random.PRNGKey(0), t.shape) * 0.1
    y_train = y[:-n_points]
    r = ppl.infer(holt_winters, y_train, n_points, method=ppl.NUTS(num_warmup=200, num_samples=200, num_chains=1),
                  key=1)
    assert "pred" not in r.samples and r.samples["seasonality_init"].shape == (1, 200, n_points)  # observed
    samples = {k: v[0] for k, v in r.samples.items()}
    # NumPyro's predict(): the condition covers 30 of 40 steps; the last 10 are drawn.
    preds = Predictive(holt_winters, samples, return_sites=["y_forecast"])(
        jax.random.PRNGKey(2), y=y_train, n_seasons=n_points, future=n_points)["y_forecast"]
    assert preds.shape == (200, n_points) and np.all(np.isfinite(preds))
    assert np.abs(preds.mean(0) - y[-n_points:]).mean() < 0.5  # the forecast follows the series
    from ppl.diagnostics import hpdi  # holt_winters.py's other import
    assert hpdi(preds).shape == (2, n_points)


def test_a_condition_shorter_than_the_scan_draws_the_rest():
    def model(y, length):
        def step(prev, _):
            x = ppl.sample("x", dist.Normal(prev, 1.0))
            return x, x
        with condition(data={"x": y}):
            return scan(step, 0.0, None, length=length)[1]

    y = jnp.arange(3.0)
    with trace() as tr, seed(rng_seed=0):
        out = model(y, 5)
    np.testing.assert_array_equal(out[:3], y)
    assert tr["x"].kind == "observed" and tr["x"].value.shape == (5,)
    with pytest.raises(ValueError, match="site 'x'.*covers 3.*seed"):
        trace(model).get_trace(y, 5)
    with pytest.raises(ValueError, match="site 'x'.*shape"):
        trace(seed(model, 0)).get_trace(jnp.arange(7.0), 5)


# --- errors ----------------------------------------------------------------------------------


def test_a_site_in_a_bare_lax_scan_body_is_an_error_naming_it():
    def model(y):
        s = ppl.sample("s", dist.HalfNormal(1.0))

        def step(c, y_t):
            x = ppl.sample("x", dist.Normal(c, s))
            ppl.observe("y", dist.Normal(x, 1.0), y_t)
            return x, None

        jax.lax.scan(step, 0.0, y)

    for run in (lambda: ppl.compile(model, Y), lambda: trace(seed(model, 0)).get_trace(Y)):
        with pytest.raises(TypeError, match=r"site 'x' is called inside the body of jax.lax.scan.*use ppl.scan"):
            run()


def test_bad_bodies_and_arguments():
    def with_param(y):
        def step(c, _):
            ppl.param("w", 1.0)
            return c, None
        scan(step, 0.0, y)

    with pytest.raises(ValueError, match="param 'w'.*before the scan"):
        trace(seed(with_param, 0)).get_trace(Y)

    def twice(y):
        def step(c, _):
            ppl.sample("x", dist.Normal(0.0, 1.0))
            ppl.sample("x", dist.Normal(0.0, 1.0))
            return c, None
        scan(step, 0.0, y)

    with pytest.raises(ValueError, match="'x' is used twice"):
        trace(seed(twice, 0)).get_trace(Y)

    def nested(y):
        def step(c, _):
            scan(lambda c2, _: (c2, None), c, None, length=2)
            return c, None
        scan(step, 0.0, y)

    with pytest.raises(NotImplementedError, match="nested|inside the body of another"):
        trace(seed(nested, 0)).get_trace(Y)
    body = lambda c, x: (c, x)
    with pytest.raises(ValueError, match="give the number of steps"):
        scan(body, 0.0, None)
    with pytest.raises(ValueError, match="length=3"):
        scan(body, 0.0, Y, length=3)
    with pytest.raises(ValueError, match="history"):
        scan(body, 0.0, Y, history=-1)
