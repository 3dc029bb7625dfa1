"""The chain driver: Stan warmup + sampling recover known Gaussians; jit/vmap compose.

Recovery tolerances are Monte Carlo errors from the draws themselves: per coordinate,
|mean - truth| < 5 sd / sqrt(ESS) and |mean((x - truth)^2) - var| < 5 sd_sq / sqrt(ESS_sq),
with ESS the (rank-free) effective sample size of numpyro.diagnostics over all chains.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size

from ppl.mcmc import driver, hmc, mh, nuts

CHAINS = 4
_corr = 0.5 ** np.abs(np.subtract.outer(np.arange(5), np.arange(5)))
_scales = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
TARGETS = {
    "correlated": (np.array([1.0, -2.0, 0.0, 3.0, 0.5]), _corr * np.outer(_scales, _scales)),
    "badly_scaled": (np.array([0.0, 1.0, -1.0, 0.0, 2.0]), np.diag([0.01, 0.1, 1.0, 10.0, 100.0]) ** 2),
}


@functools.lru_cache(maxsize=None)
def _runner(kernel_name, dense, num_warmup, num_samples, target_accept, x64=False):
    kernel = {"nuts": nuts.build_kernel, "mh": mh.build_kernel,
              "hmc": functools.partial(hmc.build_kernel, num_steps=8)}[kernel_name]()

    def one(key, z0, mean, precision):
        logdensity = lambda z: -0.5 * (z - mean) @ precision @ (z - mean)
        return driver.run_chain(key, logdensity, z0, kernel=kernel, num_warmup=num_warmup,
                                num_samples=num_samples, target_accept=target_accept,
                                dense_mass=dense)

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))


def _run(kernel_name, dense, target, num_warmup=1000, num_samples=1000, target_accept=0.8, seed=0):
    mean, cov = TARGETS[target]
    run = _runner(kernel_name, dense, num_warmup, num_samples, target_accept)
    keys = jax.random.split(jax.random.PRNGKey(seed), CHAINS)
    z0 = jax.random.uniform(jax.random.PRNGKey(seed + 1), (CHAINS, 5), minval=-2, maxval=2)
    draws, infos, adaptation = run(keys, z0, jnp.asarray(mean, jnp.float32),
                                   jnp.asarray(np.linalg.inv(cov), jnp.float32))
    return np.asarray(draws, np.float64), infos, adaptation


def _check_recovery(draws, mean, cov):
    sd = np.sqrt(np.diag(cov))
    ess = np.asarray(effective_sample_size(draws))
    assert np.all(ess > 100), ess
    err = draws.mean((0, 1)) - mean
    assert np.all(np.abs(err) < 5 * sd / np.sqrt(ess)), (err / sd, ess)
    sq = (draws - mean) ** 2
    ess_sq = np.asarray(effective_sample_size(sq))
    err_sq = sq.mean((0, 1)) - np.diag(cov)
    assert np.all(np.abs(err_sq) < 5 * sq.std((0, 1)) / np.sqrt(ess_sq)), (err_sq / np.diag(cov), ess_sq)


@pytest.mark.parametrize("target", ["correlated", "badly_scaled"])
def test_nuts_diag_recovers_gaussian(target):
    draws, infos, adaptation = _run("nuts", False, target)
    _check_recovery(draws, *TARGETS[target])
    assert int(infos.is_divergent.sum()) == 0
    # Dual averaging: realised acceptance just above the target (its average of log step
    # sizes sits on the concave side of the acceptance curve, as in Stan).
    assert 0.75 < float(infos.acceptance_rate.mean()) < 0.95
    # The adapted diagonal inverse metric tracks the marginal variances.
    ratio = np.asarray(adaptation.inverse_mass_matrix) / np.diag(TARGETS[target][1])
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_nuts_dense_recovers_correlated_gaussian():
    draws, infos, adaptation = _run("nuts", True, "correlated")
    _check_recovery(draws, *TARGETS["correlated"])
    assert adaptation.inverse_mass_matrix.shape == (CHAINS, 5, 5)
    # With the dense metric the target is nearly white: short trajectories.
    assert float(infos.tree_depth.mean()) < 3.0
    assert 0.75 < float(infos.acceptance_rate.mean()) < 0.95


def test_mh_recovers_correlated_gaussian_at_optimal_acceptance():
    draws, infos, adaptation = _run("mh", False, "correlated", num_warmup=2000, num_samples=4000,
                                    target_accept=0.234)
    _check_recovery(draws, *TARGETS["correlated"])
    assert abs(float(infos.acceptance_rate.mean()) - 0.234) < 0.08
    assert np.all(np.asarray(infos.num_grad_evals) == 1)


def test_hmc_float64_end_to_end():
    with jax.enable_x64(True):
        kernel = hmc.build_kernel(num_steps=8)
        logdensity = lambda z: -0.5 * jnp.sum((z / jnp.array([0.1, 1.0, 10.0])) ** 2)
        run = jax.jit(lambda k, z: driver.run_chain(k, logdensity, z, kernel=kernel, num_warmup=300,
                                                    num_samples=200))
        draws, infos, adaptation = run(jax.random.PRNGKey(0), jnp.ones(3, jnp.float64))
        assert draws.dtype == infos.acceptance_rate.dtype == adaptation.step_size.dtype == jnp.float64
        assert np.all(np.isfinite(np.asarray(draws)))
        assert int(adaptation.num_warmup_grad_evals) == 300 * 8


def test_vmap_equals_sequential():
    """Same random numbers, same decisions (tree depths), same draws up to float rounding:
    XLA may evaluate exp/log of a batch with other instructions than one value at a time."""
    logdensity = lambda z: -0.5 * jnp.sum((z - 1.0) ** 2 / jnp.array([1.0, 4.0, 0.25]))
    kernel = nuts.build_kernel()

    def run(key, z0):
        return driver.run_chain(key, logdensity, z0, kernel=kernel, num_warmup=60, num_samples=40)

    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    z0 = jax.random.normal(jax.random.PRNGKey(4), (3, 3))
    batched = jax.jit(jax.vmap(run))(keys, z0)
    single = jax.jit(run)
    for c in range(3):
        one = single(keys[c], z0[c])
        np.testing.assert_array_equal(np.asarray(one[1].tree_depth), np.asarray(batched[1].tree_depth)[c])
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(batched)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[c], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", [nuts.build_kernel(), hmc.build_kernel(num_steps=6, jitter=0.5),
                                    mh.build_kernel()], ids=["nuts", "hmc", "mh"])
def test_chunks_give_the_draws_of_one_call(kernel):
    """The plan and the keys are functions of the iteration index alone, so advancing a chain
    in chunks of any lengths (one compiled program for all of them) gives the very same
    state and records as one call over every iteration."""
    logdensity = lambda z: -0.5 * jnp.sum((z - 1.0) ** 2 / jnp.array([1.0, 4.0, 0.25]))
    move = driver.single(kernel)
    settings = driver.Settings()
    num_warmup, num_samples, thinning, length = 150, 60, 2, 64
    total = num_warmup + num_samples * thinning
    words = jnp.array([7, 11], jnp.uint32)
    state0 = driver.new_chain_state(move, jnp.zeros(3), logdensity, settings)
    step = jax.jit(lambda s, r: driver.advance(words, s, r, move, logdensity, settings))

    def run(sizes):
        state, start, records = state0, 0, []
        for n in sizes:
            rows = driver.plan(start, n, length, num_warmup, thinning)
            state, record = step(state, jax.tree.map(jnp.asarray, rows))
            keep = np.flatnonzero(rows.record[:n])
            records.append(np.asarray(record.position)[keep])
            start += n
        assert start == total
        return state, np.concatenate(records)

    one_state, one = run([64, 64, 64, 64, 14])
    for sizes in ([1, 63, 64, 2, 60, 64, 16], [30] * 9):
        state, draws = run(sizes)
        np.testing.assert_array_equal(draws, one)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(one_state)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert one.shape == (num_samples, 3)


def test_divergences_counted_and_never_in_draws():
    """The density is NaN for z0 > 1.5: transitions there diverge, draws stay finite."""
    logdensity = lambda z: jnp.where(z[0] > 1.5, jnp.nan, -0.5 * jnp.sum(z ** 2))
    kernel = nuts.build_kernel()
    run = jax.jit(lambda k, z: driver.run_chain(k, logdensity, z, kernel=kernel, num_warmup=200,
                                                num_samples=300, thinning=2))
    draws, infos, adaptation = run(jax.random.PRNGKey(0), jnp.zeros(2))
    assert draws.shape == (300, 2) and np.all(np.isfinite(np.asarray(draws)))
    assert np.all(np.asarray(draws[:, 0]) <= 1.5)
    assert int(infos.is_divergent.sum()) + int(adaptation.num_warmup_divergences) > 0
    assert np.all(np.asarray(infos.num_grad_evals) >= 2)  # summed over the 2 thinned steps


def test_driver_rejects_bad_arguments():
    logdensity = lambda z: -0.5 * jnp.sum(z ** 2)
    kernel = nuts.build_kernel()
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="kernel"):
        driver.run_chain(key, logdensity, jnp.zeros(2), kernel=kernel.step)
    with pytest.raises(ValueError, match="num_samples"):
        driver.run_chain(key, logdensity, jnp.zeros(2), kernel=kernel, num_samples=0)
    with pytest.raises(ValueError, match="target_accept"):
        driver.run_chain(key, logdensity, jnp.zeros(2), kernel=kernel, target_accept=1.5)
    with pytest.raises(ValueError, match="z0"):
        driver.run_chain(key, logdensity, jnp.zeros((2, 2)), kernel=kernel)
    with pytest.raises(ValueError, match="inverse_mass_matrix"):
        driver.run_chain(key, logdensity, jnp.zeros(2), kernel=kernel, dense_mass=True,
                         inverse_mass_matrix=jnp.ones(2))
