"""NumPyro's functional HMC driver under ppl: `ppl.infer.util.initialize_model`,
`ppl.infer.hmc.hmc` and `ppl.util.fori_collect` (issue 17: examples/stochastic_volatility.py).

The conjugate model is a normal with unknown mean and variance under its normal-inverse-gamma
prior, whose posterior is known in closed form (Gelman et al., BDA3, section 3.3): sigma2 |
y ~ InvGamma(a_n, b_n) and mu | y a Student t with mean m_n and variance b_n / (k_n (a_n - 1)).
"""
import jax
import jax.numpy as jnp
import numpy as np
import ppl.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size

import ppl
from ppl.infer import HMC
from ppl.infer.hmc import HMCState, hmc
from ppl.infer.util import ModelInfo, ParamInfo, initialize_model
from ppl.util import fori_collect

M0, K0, A0, B0 = 0.5, 2.0, 3.0, 2.0
Y = np.random.default_rng(0).normal(1.0, 1.5, 15)


def nig(y):
    sigma2 = ppl.sample("sigma2", dist.InverseGamma(A0, B0))
    mu = ppl.sample("mu", dist.Normal(M0, jnp.sqrt(sigma2 / K0)))
    with ppl.plate("data", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, jnp.sqrt(sigma2)), y)


def exact_posterior(y):
    """Posterior means and sds of mu and sigma2 (normal-inverse-gamma conjugacy)."""
    n, ybar = len(y), float(np.mean(y))
    kn, an = K0 + n, A0 + n / 2
    mn = (K0 * M0 + n * ybar) / kn
    bn = B0 + 0.5 * float(np.sum((y - ybar) ** 2)) + K0 * n * (ybar - M0) ** 2 / (2 * kn)
    return {"mu": (mn, np.sqrt(bn / (kn * (an - 1)))),
            "sigma2": (bn / (an - 1), bn / ((an - 1) * np.sqrt(an - 2)))}


def run_functional(key, num_warmup, num_samples, algo="NUTS", **init_options):
    k_init, k_run = jax.random.split(key)
    info = initialize_model(k_init, nig, model_args=(jnp.asarray(Y),))
    init_kernel, sample_kernel = hmc(info.potential_fn, algo=algo)
    state = init_kernel(info.param_info, num_warmup, rng_key=k_run, **init_options)
    draws, last = fori_collect(num_warmup, num_warmup + num_samples, sample_kernel, state,
                               transform=lambda s: info.postprocess_fn(s.z), progbar=False, return_last_val=True)
    return info, draws, last


@pytest.fixture(scope="module")
def nuts_run():
    return run_functional(jax.random.PRNGKey(7), 300, 3000)


def test_names_do_not_shadow_numpyros_kernels():
    """`ppl.infer.hmc` the module beside `ppl.infer.HMC` the kernel door (case matters)."""
    import ppl.infer.hmc as module

    assert callable(HMC) and ppl.infer.HMC is HMC and module.hmc is hmc
    assert type(HMC(nig)).__name__ == "Kernel"


def test_initialize_model_gives_numpyros_records(nuts_run):
    info, _, _ = nuts_run
    assert isinstance(info, ModelInfo) and isinstance(info.param_info, ParamInfo)
    z = info.param_info.z
    assert set(z) == {"mu", "sigma2"} and jnp.shape(z["sigma2"]) == ()
    assert np.all(np.abs([z["mu"], z["sigma2"]]) <= 2.0)  # uniform(-2, 2) unconstrained
    # potential = minus the log joint in unconstrained space, Jacobian of sigma2 = exp(u) included
    u, mu = float(z["sigma2"]), float(z["mu"])
    s2 = np.exp(u)
    log_joint = (dist.InverseGamma(A0, B0).log_prob(s2) + u + dist.Normal(M0, np.sqrt(s2 / K0)).log_prob(mu)
                 + dist.Normal(mu, np.sqrt(s2)).log_prob(Y).sum())
    potential, grad, post = jax.jit(lambda z: (info.potential_fn(z), jax.grad(info.potential_fn)(z),
                                               info.postprocess_fn(z)))(z)
    np.testing.assert_allclose(potential, -log_joint, rtol=1e-5)
    np.testing.assert_allclose(info.param_info.potential_energy, -log_joint, rtol=1e-5)
    for k in z:
        np.testing.assert_allclose(info.param_info.z_grad[k], grad[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(post["sigma2"], s2, rtol=1e-6)
    assert info.model_trace["y"].kind == "observed"


def test_nuts_matches_the_exact_posterior(nuts_run):
    """Posterior means of mu and sigma2 within 5 MCSE (ESS from the chain), sds within 5
    standard errors of the sd (delta method on the squared deviations)."""
    _, draws, last = nuts_run
    exact = exact_posterior(Y)
    for site, (mean, sd) in exact.items():
        x = np.asarray(draws[site], np.float64)
        assert x.shape == (3000,)
        ess = float(effective_sample_size(x[None]))
        assert ess > 300, (site, ess)
        assert abs(x.mean() - mean) < 5 * sd / np.sqrt(ess), (site, x.mean(), mean, ess)
        sq = (x - x.mean()) ** 2
        se_sd = 0.5 * sq.std() / (x.std() * np.sqrt(float(effective_sample_size(sq[None]))))
        assert abs(x.std() - sd) < 5 * se_sd, (site, x.std(), sd, se_sd)
    assert isinstance(last, HMCState) and int(last.i) == 3300
    assert 0.6 < float(last.mean_accept_prob) < 0.99  # dual averaging aimed at 0.8
    assert float(last.adapt_state.step_size) > 0 and last.adapt_state.inverse_mass_matrix.shape == (2,)


def test_same_keys_give_ppl_nuts_draws(x64):
    """With the keys of chain 0 of `ppl.infer(..., method=ppl.NUTS(num_chains=1), key=K)` (start
    key fold_in(k_init, 0), run key fold_in(k_run, 0), `k_init, k_run = split(K)`), the
    functional driver gives that chain's draws: the same warmup and kernel, one iteration per
    call (float64: equal to rounding)."""
    key = jax.random.PRNGKey(3)
    r = ppl.infer(nig, jnp.asarray(Y), method=ppl.NUTS(num_chains=1, num_warmup=150, num_samples=100,
                                                         progress_bar=False), key=key)
    k_init, k_run = jax.random.split(key)
    info = initialize_model(jax.random.fold_in(k_init, 0), nig, model_args=(jnp.asarray(Y),))
    init_kernel, sample_kernel = hmc(info.potential_fn, algo="NUTS")
    state = init_kernel(info.param_info, 150, rng_key=jax.random.fold_in(k_run, 0))
    draws = fori_collect(150, 250, sample_kernel, state, transform=lambda s: info.postprocess_fn(s.z), progbar=False)
    for site in ("mu", "sigma2"):
        np.testing.assert_allclose(np.asarray(draws[site]), np.asarray(r.samples[site][0]), rtol=1e-9, atol=1e-12)


def test_hmc_algo_with_model_arguments_vectorised_over_chains():
    """algo="HMC" (ppl's HMC, num_steps leapfrog steps) on `potential_fn_gen` (the data given
    at every call, `initialize_model(dynamic_args=True)`), under vmap over 2 chains inside
    fori_collect's loop: the means agree with the exact posterior within 5 MCSE."""
    y = jnp.asarray(Y)
    keys = jax.random.split(jax.random.PRNGKey(11), 2)
    infos = [initialize_model(k, nig, model_args=(y,), dynamic_args=True) for k in keys]
    z = jax.tree.map(lambda *a: jnp.stack(a), *[i.param_info for i in infos])
    init_kernel, sample_kernel = hmc(potential_fn_gen=infos[0].potential_fn, algo="HMC")
    state = jax.vmap(lambda p, k: init_kernel(p, 300, num_steps=8, rng_key=k, model_args=(y,)))(
        z, jax.random.split(keys[0], 2))
    postprocess = infos[0].postprocess_fn(y)
    draws = fori_collect(300, 1800, jax.vmap(lambda s: sample_kernel(s, model_args=(y,))), state,
                         transform=lambda s: jax.vmap(postprocess)(s.z), progbar=False)
    exact = exact_posterior(Y)
    for site, (mean, sd) in exact.items():
        x = np.swapaxes(np.asarray(draws[site], np.float64), 0, 1)  # (chains, draws)
        ess = float(effective_sample_size(x))
        assert ess > 100, (site, ess)
        assert abs(x.mean() - mean) < 5 * sd / np.sqrt(ess), (site, x.mean(), mean, ess)


def test_fori_collect_keeps_numpyros_iterations():
    """Iterations lower .. upper - 1, thinned (the last of each group ending at upper - 1),
    padded to collection_size; the last value on request; one jitted loop."""
    def body(c):
        return {"n": c["n"] + 1, "sq": (c["n"] + 1) ** 2}

    init = {"n": jnp.int32(0), "sq": jnp.int32(0)}
    out, last = fori_collect(3, 10, body, init, progbar=False, return_last_val=True)
    np.testing.assert_array_equal(out["n"], np.arange(4, 11))
    np.testing.assert_array_equal(out["sq"], np.arange(4, 11) ** 2)
    assert int(last["n"]) == 10
    thinned = fori_collect(3, 10, body, init, transform=lambda c: c["n"], thinning=3, collection_size=4,
                           progbar=False)
    np.testing.assert_array_equal(thinned, [7, 10, 0, 0])  # NumPyro: (10 - 3) // 3 = 2 kept
    with_bar = fori_collect(0, 9, body, init, transform=lambda c: c["n"], progbar=True, progress_rate=4)
    np.testing.assert_array_equal(with_bar, np.arange(1, 10))


def test_unsupported_options_are_named():
    info = initialize_model(jax.random.PRNGKey(0), nig, model_args=(jnp.asarray(Y),))
    with pytest.raises(ValueError, match="kinetic_fn"):
        hmc(info.potential_fn, kinetic_fn=lambda m, r: 0.0)
    with pytest.raises(ValueError, match="algo"):
        hmc(info.potential_fn, algo="SA")
    init_kernel, _ = hmc(info.potential_fn)
    for option, value in (("forward_mode_differentiation", True), ("regularize_mass_matrix", False),
                          ("dense_mass", [("mu",)]), ("max_tree_depth", (8, 10))):
        with pytest.raises(ValueError, match=option):
            init_kernel(info.param_info, 10, **{option: value})
    with pytest.raises(ValueError, match="inverse_mass_matrix"):
        init_kernel(info.param_info, 10, inverse_mass_matrix=jnp.ones(3))
    _, sample_kernel = hmc(info.potential_fn)
    with pytest.raises(RuntimeError, match="init_kernel"):
        sample_kernel(None)
    with pytest.raises(ValueError, match="lower"):
        fori_collect(5, 3, lambda c: c, jnp.zeros(()), progbar=False)
    with pytest.raises(ValueError, match="batch"):
        initialize_model(jax.random.split(jax.random.PRNGKey(0), 2), nig, model_args=(jnp.asarray(Y),))
