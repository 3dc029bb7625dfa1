"""A NumPyro model ports by renaming `numpyro` to `ppl`: the import paths and signatures
NumPyro users type (issue 17 §1). Every test uses a fixed key; exact checks unless stated."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import ppl
from ppl import dist
from ppl.model import handlers


def run(model, *args, seed=0, **kwargs):
    return handlers.trace(handlers.seed(model, seed)).get_trace(*args, **kwargs)


# -- 1, 2: import paths ---------------------------------------------------------------------
def test_ppl_handlers_is_an_import_path():
    from ppl.handlers import block, condition, mask, replay, scale, seed, substitute, trace
    import ppl.handlers as h

    assert h is ppl.handlers is handlers
    assert (block, condition, mask, replay, scale, seed, substitute, trace) == (
        handlers.block, handlers.condition, handlers.mask, handlers.replay, handlers.scale, handlers.seed,
        handlers.substitute, handlers.trace)

    def model():
        with mask(mask=jnp.array([True, False])):
            ppl.observe("y", dist.Normal(0.0, 1.0).expand([2]), jnp.array([0.0, 5.0]))

    assert float(trace(model).get_trace()["y"].log_prob_sum()) == pytest.approx(float(dist.Normal(0, 1).log_prob(0.0)))


def test_ppl_dist_is_numpyro_distributions_as_an_import_path():
    from ppl.dist import constraints, transforms
    from ppl.distributions.transforms import AffineTransform
    import ppl.dist as d
    import ppl.distributions as d2

    assert d is d2 is ppl.dist is ppl.distributions is numpyro.distributions
    assert constraints is numpyro.distributions.constraints and transforms is numpyro.distributions.transforms
    assert AffineTransform is numpyro.distributions.transforms.AffineTransform
    assert isinstance(d.Normal(0.0, 1.0), numpyro.distributions.Distribution)


# -- 3: plate(name, size, subsample_size=None, dim=None) ------------------------------------
def test_plate_takes_numpyros_positional_order():
    def model():
        with ppl.plate("n", 10, 4) as idx:
            ppl.sample("x", dist.Normal(0.0, 1.0))
        with ppl.plate("m", 3, None, -2):
            ppl.sample("z", dist.Normal(0.0, 1.0))
        return idx

    tr = run(model)
    assert tr["x"].value.shape == (4,) and tr["x"].scale == pytest.approx(2.5)
    assert tr["x"].plates[0].subsample_size == 4 and tr["z"].value.shape == (3, 1)
    assert tr["z"].plates[0].dim == -2
    assert handlers.seed(model, 0)().shape == (4,)


# -- 4: sample(name, fn, obs, rng_key, sample_shape, infer, obs_mask) -----------------------
def test_sample_shape_puts_iid_copies_in_front_of_the_plates():
    def model():
        with ppl.plate("p", 4):
            return ppl.sample("x", dist.Normal(0.0, 1.0), sample_shape=(3,))

    site = run(model)["x"]
    assert site.value.shape == (3, 4) and site.log_prob.shape == (3, 4)
    np.testing.assert_allclose(site.log_prob, dist.Normal(0.0, 1.0).log_prob(site.value), rtol=1e-6)
    ld = ppl.compile(model)
    assert ld.dim == 12 and ld.spec.latents[0].shape == (3, 4)


def _three_latents(y):
    x = ppl.sample("x", dist.Normal(0.0, 1.0), sample_shape=(3,))
    ppl.observe("y", dist.Normal(x, 1.0), y)


def test_nuts_on_a_model_with_sample_shape():
    """x_i ~ N(0, 1), y_i ~ N(x_i, 1): posterior N(y_i / 2, 1/2) per coordinate. 2 x 500
    draws give a standard error ~0.03 on each mean; tolerance 0.15."""
    y = jnp.array([1.0, -1.0, 2.0])
    r = ppl.infer(_three_latents, y, method=ppl.NUTS(num_warmup=300, num_samples=500, num_chains=2), key=0)
    assert r.samples["x"].shape == (2, 500, 3)
    np.testing.assert_allclose(r.samples["x"].mean((0, 1)), y / 2, atol=0.15)
    np.testing.assert_allclose(r.samples["x"].std((0, 1)), np.sqrt(0.5), atol=0.15)


def test_sample_takes_rng_key_and_infer():
    key = jax.random.PRNGKey(3)

    def model():
        return ppl.sample("x", dist.Normal(0.0, 1.0), rng_key=key, infer={"enumerate": "parallel"})

    with handlers.trace() as tr:
        value = model()  # no seed handler needed: the site has its own key
    assert value == dist.Normal(0.0, 1.0).sample(key)
    assert tr["x"].infer == {"enumerate": "parallel"} and tr["x"]["infer"] == {"enumerate": "parallel"}


def test_obs_mask_observes_where_true_and_imputes_where_false():
    y = jnp.array([0.5, jnp.nan, 1.5, jnp.nan])
    obs_mask = ~jnp.isnan(y)

    def model(y, obs_mask):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        with ppl.plate("n", 4):
            return ppl.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=obs_mask)

    tr = run(model, y, obs_mask)
    assert tr["y_observed"].kind == "observed" and tr["y_unobserved"].kind == "latent"
    assert tr["y"].kind == "deterministic"
    filled = tr["y"].value
    np.testing.assert_allclose(filled[np.array([0, 2])], [0.5, 1.5])
    np.testing.assert_allclose(filled[np.array([1, 3])], tr["y_unobserved"].value[np.array([1, 3])])

    ld = ppl.compile(model, y, obs_mask)
    assert ld.dim == 5  # mu and the four latent entries (the observed ones are auxiliary prior draws)
    z = jnp.linspace(-1.0, 1.0, 5)
    mu, u = z[0], z[1:]
    expected = (dist.Normal(0.0, 10.0).log_prob(mu) + dist.Normal(mu, 1.0).log_prob(u).sum()
                + dist.Normal(mu, 1.0).log_prob(jnp.array([0.5, 1.5])).sum())
    assert float(ld.log_prob(z)) == pytest.approx(float(expected), rel=1e-5)


def test_obs_mask_without_obs_names_the_site():
    def model():
        ppl.sample("y", dist.Normal(0.0, 1.0), obs_mask=jnp.array([True]))

    with pytest.raises(ValueError, match=r"site 'y': obs_mask .* give obs="):
        run(model)


def test_a_keyword_sample_does_not_know_is_an_error_naming_it():
    with pytest.raises(TypeError, match="foo"):
        ppl.sample("x", dist.Normal(0.0, 1.0), foo=1)
    with pytest.raises(ValueError, match=r"site 'x': sample_shape must be a tuple of ints"):
        run(lambda: ppl.sample("x", dist.Normal(0.0, 1.0), sample_shape=(-1,)))


# -- 5: prng_key, subsample, JAX settings ----------------------------------------------------
def test_prng_key_inside_a_seed_and_outside():
    def model():
        return ppl.prng_key(), ppl.prng_key()

    k1, k2 = handlers.seed(model, rng_seed=0)()
    assert k1.shape == k2.shape and not jnp.array_equal(k1, k2)
    assert jnp.array_equal(handlers.seed(model, rng_seed=0)()[0], k1)  # a seeded model is deterministic
    with pytest.warns(UserWarning, match="no handler active"):
        assert ppl.prng_key() is None


def test_subsample_indexes_data_only_in_subsampling_plates():
    data = jnp.arange(10.0)

    def model():
        with ppl.plate("all", 10):
            whole = ppl.subsample(data, event_dim=0)
        with ppl.plate("batch", 10, subsample_size=3) as idx:
            part = ppl.subsample(data, event_dim=0)
        return whole, part, idx

    whole, part, idx = handlers.seed(model, 0)()
    assert whole is data
    np.testing.assert_array_equal(part, data[idx])
    matrix = jnp.arange(20.0).reshape(10, 2)  # one event dim
    with handlers.seed(rng_seed=0), ppl.plate("b", 10, 4) as idx:
        np.testing.assert_array_equal(ppl.subsample(matrix, event_dim=1), matrix[idx])


def test_enable_x64_and_set_platform():
    previous = (jax.config.jax_enable_x64, jax.config.values["jax_platform_name"])
    try:
        ppl.enable_x64()
        assert jnp.ones(1).dtype == jnp.float64
        ppl.enable_x64(False)
        assert jnp.ones(1).dtype == jnp.float32
        ppl.set_platform(jax.default_backend())
        assert jax.config.values["jax_platform_name"] == jax.default_backend()
    finally:
        jax.config.update("jax_enable_x64", previous[0])
        jax.config.update("jax_platform_name", previous[1])


def test_set_host_device_count_sets_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=7")
    jnp.zeros(1).block_until_ready()  # JAX has started: the setting is for new processes
    with pytest.warns(UserWarning, match="JAX has already started"):
        ppl.set_host_device_count(2)
    import os

    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_foo=1", "--xla_force_host_platform_device_count=2"]
    with pytest.raises(ValueError, match="positive int"):
        ppl.set_host_device_count(0)


# -- 6: sites read as dicts ------------------------------------------------------------------
def test_sites_read_as_numpyro_dicts():
    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", 2):
            ppl.observe("y", dist.Normal(mu, 1.0), y)
        ppl.deterministic("d", 2 * mu)
        ppl.param("w", jnp.ones(2))

    tr = run(model, jnp.zeros(2))
    mu, y, d, w = tr["mu"], tr["y"], tr["d"], tr["w"]
    assert (mu["name"], mu["type"], mu["is_observed"]) == ("mu", "sample", False)
    assert mu["value"] is mu.value and mu["fn"] is mu.dist and mu["infer"] == {}
    assert (y["type"], y["is_observed"], y["cond_indep_stack"][0].name) == ("sample", True, "n")
    assert (d["type"], w["type"]) == ("deterministic", "param")
    latents = [name for name, site in tr.items() if site["type"] == "sample" and not site["is_observed"]]
    assert latents == ["mu"] and mu.get("nope", 1) == 1 and "value" in mu
    with pytest.raises(KeyError, match=r"site 'mu' has no key 'nope'"):
        mu["nope"]


def test_block_and_substitute_with_numpyro_style_functions():
    def model():
        ppl.sample("x", dist.Normal(0.0, 1.0))
        ppl.sample("z", dist.Normal(0.0, 1.0))

    hidden = handlers.block(handlers.seed(model, 0), hide_fn=lambda site: site["name"] == "x")
    assert list(handlers.trace(hidden).get_trace()) == ["z"]
    sub = handlers.substitute(model, substitute_fn=lambda site: 3.0 if site["name"] == "z" else None)
    assert run(sub)["z"].value == 3.0


def test_format_shapes():
    def model():
        with ppl.plate("p", 4):
            ppl.sample("x", dist.Normal(0.0, 1.0).expand([4, 2]).to_event(1))

    text = ppl.util.format_shapes(run(model), compute_log_prob=True)
    assert text.splitlines()[0] == "Trace Shapes:"
    assert text.splitlines()[2].split() == ["x", "latent", "4", "2", "4", "2", "log_prob:", "4"]


# -- 7: module with a stax pair --------------------------------------------------------------
def test_module_takes_a_stax_pair_and_mle_learns_it():
    from jax.example_libraries import stax

    x = jnp.linspace(-1.0, 1.0, 20)[:, None]
    y = 2.0 * x[:, 0] + 1.0

    def model(x, y):
        net = ppl.module("net", stax.Dense(1), (-1, 1))
        ppl.observe("y", dist.Normal(net(x)[:, 0], 0.1), y)

    r = ppl.infer(model, x, y, method=ppl.MLE(num_steps=200), key=0)
    w, b = r.params["net$params"]
    np.testing.assert_allclose([float(w[0, 0]), float(b[0])], [2.0, 1.0], atol=1e-3)
    with pytest.raises(TypeError, match=r"module 'net': .* needs input_shape"):
        run(lambda: ppl.module("net", stax.Dense(1)))


# -- 8: ppl.infer as NumPyro's numpyro.infer -------------------------------------------------
def _regression(x, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", x.shape[0]):
        return ppl.observe("y", dist.Normal(mu + x, 0.01), y)


def test_ppl_infer_is_callable_and_the_module_of_numpyro_infer_names():
    from ppl.infer import MH, Predictive, log_likelihood
    import ppl.infer as infer_module

    assert infer_module is ppl.infer and callable(ppl.infer)
    assert (MH, Predictive, log_likelihood) == (ppl.MH, ppl.infer.Predictive, ppl.infer.log_likelihood)
    # ppl.infer.NUTS/HMC are NumPyro's kernels given a model, ppl.NUTS/HMC without: test below
    r = ppl.infer(_regression, jnp.zeros(3), y=jnp.ones(3), method="map", key=0)
    assert float(r.samples["mu"][0, 0]) == pytest.approx(1.0, abs=1e-3)
    from ppl.infer import SA, SVI, autoguide  # importable (a ported file may import them) ...

    assert SVI is ppl.infer.svi.SVI and autoguide.AutoDelta is ppl.infer.autoguide.AutoDelta  # tests/compat/test_svi_names.py
    with pytest.raises(NotImplementedError, match=r"ppl.infer.SA .*NUTS"):
        SA(_regression)  # ... names ppl does not offer: an error naming them when used
    with pytest.raises(AttributeError, match="Nope"):
        ppl.infer.Nope


# -- 8b: NumPyro's MCMC driver -----------------------------------------------------------------
def _normal_mean(y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    with ppl.plate("n", 5):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_mcmc_driver_runs_ppl_nuts_with_numpyros_calls():
    """mu ~ N(0, 10^2), y_i ~ N(mu, 1), 5 points: posterior N(sum y / (5 + 0.01), 1 / 5.01).
    2 x 400 draws, ESS >= ~300: standard error of the mean ~0.026; tolerance 0.13 (5 se)."""
    from ppl.infer import MCMC, NUTS

    y = jnp.arange(5.0)
    kernel = NUTS(_normal_mean, target_accept_prob=0.9, max_tree_depth=8)
    assert kernel.method == ppl.NUTS(target_accept=0.9, max_tree_depth=8)
    mcmc = MCMC(kernel, num_warmup=300, num_samples=400, num_chains=2, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), y=y)
    assert mcmc.result.method.num_chains == 2 and mcmc.result.method.chain_method == "auto"
    samples, grouped = mcmc.get_samples(), mcmc.get_samples(group_by_chain=True)
    assert samples["mu"].shape == (800,) and grouped["mu"].shape == (2, 400)
    np.testing.assert_array_equal(samples["mu"], grouped["mu"].reshape(-1))
    assert float(samples["mu"].mean()) == pytest.approx(10.0 / 5.01, abs=0.13)
    extra = mcmc.get_extra_fields()
    assert extra["diverging"].shape == (800,) and extra["diverging"].dtype == bool
    assert set(extra) >= {"diverging", "num_steps", "accept_prob"}
    same = ppl.infer(_normal_mean, y=y, key=jax.random.PRNGKey(0),
                     method=ppl.NUTS(num_warmup=300, num_samples=400, num_chains=2, target_accept=0.9,
                                     max_tree_depth=8, progress_bar=False))
    np.testing.assert_array_equal(grouped["mu"], same.samples["mu"])  # a door, not another sampler


def test_ppl_infer_nuts_without_a_model_is_ppls_method_object():
    from ppl.infer import HMC, NUTS

    assert NUTS(num_samples=10) == ppl.NUTS(num_samples=10)
    assert HMC(num_steps=4) == ppl.HMC(num_steps=4)
    assert HMC(_normal_mean, num_steps=4).method == ppl.HMC(num_steps=4)


def test_mcmc_driver_refuses_what_ppl_does_not_do_by_name():
    from ppl.infer import MCMC, NUTS, init_to_uniform

    with pytest.raises(ValueError, match=r"NUTS\(model, adapt_step_size=False\): not supported"):
        NUTS(_normal_mean, adapt_step_size=False)
    with pytest.raises(TypeError, match="unknown keyword 'foo'"):
        NUTS(_normal_mean, foo=1)
    with pytest.raises(TypeError, match=r"MCMC\(sampler, ...\): sampler must be NUTS\(model"):
        MCMC(ppl.NUTS(), num_warmup=10, num_samples=10)
    mcmc = MCMC(NUTS(_normal_mean, init_strategy=init_to_uniform(radius=1)), num_warmup=10, num_samples=10)
    with pytest.raises(RuntimeError, match=r"call MCMC.run"):
        mcmc.get_samples()
    with pytest.raises(ValueError, match=r"extra_fields=\['foo'\]"):
        mcmc.run(0, y=jnp.zeros(5), extra_fields=("foo",))


def test_init_to_uniform_keeps_its_radius():
    from ppl.infer import init_to_uniform
    from ppl.infer.numpyro_names import _ppl_init

    assert _ppl_init(init_to_uniform(radius=1), _normal_mean, 0, (), {}) == 1.0
    assert _ppl_init(init_to_uniform(), _normal_mean, 0, (), {}) == "uniform"


def test_init_strategies_become_ppls_init_option():
    """init_to_median/mean: the median/mean of prior draws (here of N(0, 10): within 0.5 * 10
    of 0 for 15 draws, |median| > 5 has probability < 0.1%); init_to_feasible: 0 unconstrained."""
    from ppl.infer import init_to_feasible, init_to_median, init_to_sample, init_to_uniform, init_to_value
    from ppl.infer.numpyro_names import _ppl_init

    def init(strategy):
        return _ppl_init(strategy, _normal_mean, jax.random.PRNGKey(0), (), {"y": jnp.zeros(5)})

    assert init(init_to_uniform()) == "uniform" and init(init_to_sample()) == "prior"
    assert init(init_to_value(values={"mu": 1.5})) == {"mu": 1.5}
    assert float(init(init_to_feasible())["mu"]) == 0.0
    median = init(init_to_median(num_samples=15))
    assert set(median) == {"mu"} and abs(float(median["mu"])) < 5.0


def test_predictive_from_numpyro_style_draws_and_from_a_result():
    x = jnp.arange(3.0)
    mu = jnp.linspace(-1.0, 1.0, 50)
    out = ppl.infer.Predictive(_regression, {"mu": mu})(jax.random.PRNGKey(0), x)
    assert set(out) == {"y"} and out["y"].shape == (50, 3)
    np.testing.assert_allclose(out["y"], mu[:, None] + x, atol=0.05)
    prior = ppl.infer.Predictive(_regression, num_samples=20)(0, x)
    assert prior["mu"].shape == (20,) and prior["y"].shape == (20, 3)
    r = ppl.infer(_regression, x, y=x + 0.5, method="map", key=0)
    assert ppl.infer.Predictive(_regression, r)(1, x)["y"].shape == (1, 1, 3)


def test_log_likelihood_per_draw():
    x, y = jnp.arange(3.0), jnp.array([0.1, 1.0, 2.2])
    mu = jnp.array([0.0, 0.1, 0.2])
    ll = ppl.infer.log_likelihood(_regression, {"mu": mu}, x, y=y)
    np.testing.assert_allclose(ll["y"], dist.Normal(mu[:, None] + x, 0.01).log_prob(y), rtol=1e-5)


# -- 9: NumPy on a data argument -------------------------------------------------------------
def test_numpy_on_a_data_argument_makes_it_a_constant_with_a_warning():
    dept = np.array([0, 1, 1, 2, 2, 2])
    y = jnp.array([1.0, 2.0, 2.0, -1.0, -1.0, -1.0])

    def model(dept, y):
        k = len(np.unique(dept))
        with ppl.plate("dept", k):
            a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(a[dept], 1.0), y)

    with pytest.warns(UserWarning, match=r"positional argument 0 in Python .*np.unique.*constant.*recompiles"):
        r = ppl.infer(model, dept, y, method="map", key=0)
    # a_j ~ N(0, 1), n_j data at y_j: the mode is n_j y_j / (n_j + 1).
    np.testing.assert_allclose(r.samples["a"][0, 0], [0.5, 4 / 3, -0.75], atol=1e-3)

    def counts(annotations):
        k = int(np.max(annotations)) + 1
        p = ppl.sample("p", dist.Dirichlet(jnp.ones(k)))
        ppl.observe("y", dist.Categorical(p), annotations)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ld = ppl.compile(counts, np.array([0, 1, 2, 2]))
    assert ld.spec.latents[0].shape == (3,)
    assert any("keyword" not in str(w.message) and "positional argument 0" in str(w.message) for w in caught)


def test_plate_takes_a_negative_third_argument_as_its_dim():
    """DESIGN.md section 1 promises plate(name, size, dim); NumPyro's third is subsample_size.
    A dim is negative and a subsample size is not, so both orders work."""
    def model():
        with ppl.plate("a", 3, -2):
            with ppl.plate("b", 4):
                x = ppl.sample("x", ppl.dist.Normal(0.0, 1.0))
        return x

    with ppl.handlers.seed(rng_seed=0):
        assert model().shape == (3, 4)


def test_mcmc_run_takes_an_unhashable_python_object_as_a_model_keyword():
    """hmm_enum.py passes its argparse.Namespace as `args=`: NumPyro's driver takes any object."""
    import argparse

    from ppl.infer import MCMC, NUTS

    def model(y, args=None):
        mu = ppl.sample("mu", dist.Normal(0.0, args.prior_scale))
        with ppl.plate("n", y.shape[0]):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), jnp.zeros(3), args=argparse.Namespace(prior_scale=1e-3))
    assert float(jnp.abs(mcmc.get_samples()["mu"]).max()) < 5e-3  # the prior, scale 1e-3, dominates


_TWO_DEVICES = """
import jax, jax.numpy as jnp
import ppl
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS

def fully_pooled(at_bats, hits=None):  # NumPyro's examples/baseball.py
    phi = ppl.sample("phi", dist.Uniform(0, 1))
    with ppl.plate("num_players", at_bats.shape[0]):
        return ppl.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)

assert jax.device_count() == 2
mcmc = MCMC(NUTS(fully_pooled), num_warmup=50, num_samples=50, num_chains=2, progress_bar=False)
mcmc.run(jax.random.PRNGKey(0), jnp.full(18, 45), jnp.arange(18) % 20)
print("draws", mcmc.get_samples()["phi"].shape)
"""


def test_example_with_set_host_device_count_runs_its_chains_on_two_devices():
    """NumPyro's examples call set_host_device_count(num_chains) first; with 2 chains the
    chains are then sharded over 2 CPU devices. (This failed while `hoist` replayed
    equations recorded with the chains' mesh inside each device's shard_map.)"""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _TWO_DEVICES], env=env, capture_output=True, text=True, timeout=250)
    assert out.returncode == 0, ([line for line in out.stderr.splitlines() if "Error" in line] or ["?"])[-1]
    assert "draws (100,)" in out.stdout
