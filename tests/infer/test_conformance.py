"""Every method in `ppl.METHODS` honours the `Result` contract (DESIGN.md section 1).

Parametrized over the registry at collection time, so a method registered later is tested
automatically: with the small options in `FAST` when it has an entry, else its defaults.
The same model and data serve the MLE/MAP closed forms at the end, so those reuse the
compiled programs.
"""
import dataclasses
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import ppl
from ppl import dist

# Small settings per method; options a method does not have are ignored.
FAST = {
    "nuts": dict(num_warmup=100, num_samples=100, num_chains=2),
    "hmc": dict(num_warmup=100, num_samples=100, num_chains=2, num_steps=8),
    "chees": dict(num_warmup=100, num_samples=50, num_chains=8),
    "mh": dict(num_warmup=200, num_samples=200, num_chains=2),
    "gibbs": dict(num_warmup=50, num_samples=50, num_chains=2),
    "rejection": dict(num_samples=100),
    "importance": dict(num_particles=1000),
    "vi": dict(num_steps=200, num_draws=100, num_eval_particles=100),
    "iwae": dict(num_steps=200, num_draws=100, num_eval_particles=100),
}
# Whether a method yields a log-evidence estimate or bound (contract); unlisted: not checked.
HAS_LOG_EVIDENCE = {
    "importance": True, "rejection": True, "vi": True, "iwae": True,
    "nuts": False, "hmc": False, "mh": False, "chees": False, "gibbs": False, "mle": False, "map": False,
}
METHOD_NAMES = sorted(ppl.METHODS)

rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
Y = jnp.asarray(X @ np.array([1.0, -0.5]) + 0.3 + rng.normal(size=6), jnp.float32)
TRACED_RUNS = {"n": 0}


def regression(X, y):
    """b ~ N(0, 1), w ~ N(0, I), y ~ N(b + X w, 1); `mu` is deterministic."""
    if isinstance(X, jax.core.Tracer):
        TRACED_RUNS["n"] += 1  # counts traces (compilations), not eager inspection runs
    b = ppl.sample("b", dist.Normal(0.0, 1.0))
    w = ppl.sample("w", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    mu = ppl.deterministic("mu", b + X @ w)
    with ppl.plate("n", X.shape[0]):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


SHAPES = {"b": (), "w": (2,), "mu": (6,)}


def method(name):
    m = ppl.METHODS[name]()
    fields = {f.name for f in dataclasses.fields(m)}
    return dataclasses.replace(m, **{k: v for k, v in FAST.get(name, {}).items() if k in fields})


_RESULTS = {}


def result(name, key=0, y=Y):
    """`ppl.infer` on the regression, memoised per (method, key) for the default data."""
    cache_key = (name, repr(key)) if y is Y else None
    if cache_key in _RESULTS:
        return _RESULTS[cache_key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small settings may warn about ESS or convergence
        r = ppl.infer(regression, X, y, method=method(name), key=key)
    if cache_key is not None:
        _RESULTS[cache_key] = r
    return r


def is_point_estimate(r):
    return r.num_chains == 1 and r.num_draws == 1


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_result_fields_and_shapes(name):
    r = result(name)
    assert isinstance(r, ppl.Result) and isinstance(r.method, ppl.Method)
    assert set(r.samples) == set(SHAPES), "latent and deterministic sites, nothing else"
    c, d = r.num_chains, r.num_draws
    assert c >= 1 and d >= 1
    for site, shape in SHAPES.items():
        assert np.shape(r.samples[site]) == (c, d) + shape, site
        assert np.all(np.isfinite(r.samples[site])), site
    # deterministic sites are recomputed from the draws
    np.testing.assert_allclose(
        r.samples["mu"], r.samples["b"][..., None] + np.einsum("nk,cdk->cdn", X, r.samples["w"]), rtol=1e-4, atol=1e-4
    )
    assert isinstance(r.params, dict) and isinstance(r.diagnostics, dict)
    assert {"compile_s", "run_s"} <= set(r.timing)
    assert all(float(r.timing[k]) >= 0 for k in ("compile_s", "run_s"))
    if r.log_evidence is not None:
        assert np.isfinite(r.log_evidence)
    if name in HAS_LOG_EVIDENCE:
        assert (r.log_evidence is not None) == HAS_LOG_EVIDENCE[name]
    if name in ("mle", "map"):
        assert is_point_estimate(r)
        np.testing.assert_allclose(r.params["w"], r.samples["w"][0, 0])
    if name in ("importance", "rejection"):
        assert c == 1
        assert d == FAST[name].get("num_particles", FAST[name].get("num_samples"))
    if name == "importance":
        assert np.shape(r.log_weights) == (d,)
        assert {k: np.shape(v) for k, v in r.particles.items()} == {k: (d,) + s for k, s in SHAPES.items()}
        assert 1 <= r.diagnostics["ess_weights"] <= d


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_summary_is_a_dataframe_with_the_contract_columns(name):
    r = result(name)
    s = r.summary()
    assert isinstance(s, pd.DataFrame)
    assert list(s.columns) == ["mean", "sd", "q5", "q50", "q95", "r_hat", "ess_bulk", "ess_tail"]
    expected_rows = {"b", "w[0]", "w[1]"} | {f"mu[{i}]" for i in range(6)}
    assert set(s.index) == expected_rows and len(s) == len(expected_rows)
    np.testing.assert_allclose(s.loc["w[1]", "mean"], np.mean(r.samples["w"][..., 1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.loc["b", "q50"], np.median(r.samples["b"]), rtol=1e-5, atol=1e-6)
    if not is_point_estimate(r):
        assert np.all(s["sd"] > 0) and np.all(s["ess_bulk"] > 0)
    text = str(r)
    assert "mean" in text and "w[1]" in text


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_to_arviz(name):
    r = result(name)
    idata = r.to_arviz()
    assert isinstance(idata, az.InferenceData)
    post = idata.posterior
    assert set(SHAPES) <= set(post.data_vars)
    assert post.sizes["chain"] == r.num_chains and post.sizes["draw"] == r.num_draws
    np.testing.assert_allclose(post["w"].values, r.samples["w"])


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_keys_int_prngkey_and_typed_key_agree_and_fix_the_draws(name):
    r = result(name, 0)
    for key in (0, jax.random.PRNGKey(0), jax.random.key(0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r2 = ppl.infer(regression, X, Y, method=method(name), key=key)
        for site in SHAPES:
            np.testing.assert_array_equal(r2.samples[site], r.samples[site], err_msg=f"{name} {site} key={key!r}")
    other = result(name, 1)
    if not is_point_estimate(r):  # stochastic methods: another key, other draws
        assert not np.array_equal(other.samples["b"], r.samples["b"])


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_new_data_of_the_same_shape_reuses_the_compiled_program(name):
    result(name)  # compiled once for these shapes
    before = TRACED_RUNS["n"]
    r = result(name, 0, y=Y + 1.0)
    assert TRACED_RUNS["n"] == before, f"{name} retraced the model for new data of the same shape"
    assert r.samples["b"].shape == result(name).samples["b"].shape


@pytest.mark.parametrize("name", ["importance", "map"])
def test_second_infer_hits_the_compile_cache(name):
    from ppl.runtime.program import _executable

    result(name)
    info = _executable.cache_info()
    r = result(name, 0, y=Y - 1.0)
    after = _executable.cache_info()
    assert after.misses == info.misses and after.hits == info.hits + 1
    assert r.timing["compile_s"] >= 0


# --- closed forms on the same model and data ------------------------------------------

A = np.concatenate([np.ones((6, 1)), np.asarray(X, float)], axis=1)  # design with intercept


def test_mle_of_linear_regression_is_least_squares():
    r = result("mle")
    coef = np.linalg.lstsq(A, np.asarray(Y, float), rcond=None)[0]
    # float32 L-BFGS to tolerance 1e-6 (decrease and relative gradient): agree to ~1e-4
    np.testing.assert_allclose(r.params["b"], coef[0], atol=2e-4)
    np.testing.assert_allclose(r.params["w"], coef[1:], atol=2e-4)
    assert r.diagnostics["converged"]
    assert r.log_evidence is None


def test_map_with_normal_prior_is_ridge():
    r = result("map")
    # prior N(0, 1) on every coefficient, noise sd 1: ridge penalty lambda = 1^2 / 1^2 = 1
    coef = np.linalg.solve(A.T @ A + np.eye(3), A.T @ np.asarray(Y, float))
    np.testing.assert_allclose(r.params["b"], coef[0], atol=2e-4)
    np.testing.assert_allclose(r.params["w"], coef[1:], atol=2e-4)
    mle = result("mle")
    assert not np.allclose(r.params["w"], mle.params["w"], atol=1e-3)  # the prior matters
