"""Kernel building blocks and per-kernel contracts (counts, caps, divergences, dtypes)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from ppl import _counter_rng
from ppl.mcmc import hmc, integrators, metrics, mh, nuts


def test_counter_rng_is_threefry():
    key = jnp.array([0x13198A2E, 0x03707344], jnp.uint32)
    x0, x1 = jnp.arange(8, dtype=jnp.uint32), jnp.arange(8, dtype=jnp.uint32) * 7 + 3
    ours = jnp.concatenate(_counter_rng.threefry2x32(key, x0, x1))
    np.testing.assert_array_equal(ours, threefry_2x32(key, jnp.concatenate([x0, x1])))
    # Known-answer test of Random123 (Salmon et al. 2011): key 0, counter 0.
    zero = jnp.zeros((), jnp.uint32)
    assert [int(v) for v in _counter_rng.threefry2x32(jnp.zeros(2, jnp.uint32), zero, zero)] == [
        0x6B200159, 0x99BA4EFE]


def test_counter_rng_normal_moments():
    z = np.asarray(_counter_rng.normal(_counter_rng.key_words(jax.random.PRNGKey(0)), 2, (100_000,), jnp.float32))
    se = 1 / np.sqrt(z.size)
    assert abs(z.mean()) < 5 * se and abs(z.var() - 1) < 5 * np.sqrt(2) * se
    assert abs((z ** 4).mean() - 3) < 5 * np.sqrt(96) * se


@pytest.mark.parametrize("imm", [np.array([0.5, 2.0, 4.0]),
                                 np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])])
def test_metric_momentum_covariance_and_energy(imm):
    metric = metrics.gaussian_euclidean(imm)
    keys = jax.random.split(jax.random.PRNGKey(1), 50_000)
    p = np.asarray(jax.vmap(lambda k: metric.sample_momentum(k, jnp.zeros(3)))(keys), np.float64)
    mass = np.linalg.inv(imm) if imm.ndim == 2 else np.diag(1 / imm)
    sd = np.sqrt(np.outer(np.diag(mass), np.diag(mass)) + mass ** 2)  # sd of p_i p_j
    assert np.all(np.abs(np.cov(p.T) - mass) < 5 * sd / np.sqrt(len(p)))
    q = jnp.array([0.3, -1.0, 2.0])
    inv = imm if imm.ndim == 2 else np.diag(imm)
    np.testing.assert_allclose(metric.kinetic_energy(q), 0.5 * q @ inv @ q, rtol=1e-5)
    np.testing.assert_allclose(metric.velocity(q), inv @ q, rtol=1e-5)


def test_metric_rejects_bad_shapes():
    with pytest.raises(ValueError, match="inverse_mass_matrix"):
        metrics.gaussian_euclidean(np.ones((2, 3)))
    with pytest.raises(ValueError, match="inverse_mass_matrix"):
        metrics.gaussian_euclidean(np.ones((2, 2, 2)))


def test_leapfrog_reversible_and_second_order():
    logdensity = lambda x: -0.5 * jnp.sum(x ** 2 / jnp.array([1.0, 4.0]))
    metric = metrics.gaussian_euclidean(jnp.array([1.0, 2.0]))
    step = jax.jit(integrators.velocity_verlet(logdensity, metric))
    x = jnp.array([1.0, -0.5])
    s0 = integrators.IntegratorState(x, jnp.array([0.3, 0.8]), logdensity(x), jax.grad(logdensity)(x))
    s = s0
    for _ in range(10):
        s = step(s, 0.1)
    for _ in range(10):
        s = step(s, -0.1)
    np.testing.assert_allclose(s.position, s0.position, atol=1e-5)
    np.testing.assert_allclose(s.momentum, s0.momentum, atol=1e-5)

    def energy_error(eps):
        s = s0
        for _ in range(int(round(1.0 / eps))):
            s = step(s, eps)
        h = lambda z: metric.kinetic_energy(z.momentum) - z.log_density
        return abs(float(h(s) - h(s0)))

    assert energy_error(0.05) < energy_error(0.1) / 3  # O(eps^2): about 4 times smaller


def _counting(logdensity):
    """The log density plus a host counter of its evaluations (gradients included)."""
    calls = []

    def counted(x):
        jax.debug.callback(lambda: calls.append(1))
        return logdensity(x)

    return counted, calls


def test_nuts_grad_evals_equal_num_steps_and_calls():
    logdensity, calls = _counting(lambda x: -0.5 * jnp.sum(x ** 2))
    kernel = nuts.build_kernel()
    state = kernel.init(jnp.ones(3), logdensity)
    step = jax.jit(lambda k, s: kernel(k, s, logdensity, 0.4, jnp.ones(3)))
    step(jax.random.PRNGKey(0), state)  # compile
    for i in range(5):
        calls.clear()
        state, info = step(jax.random.PRNGKey(i), state)
        jax.block_until_ready(state)
        assert int(info.num_grad_evals) == int(info.num_steps) == len(calls) > 0


def test_nuts_tree_depth_capped():
    logdensity = lambda x: -0.5 * jnp.sum(x ** 2)
    for depth in (1, 4):
        kernel = nuts.build_kernel(max_tree_depth=depth)
        state, info = jax.jit(lambda s: kernel(jax.random.PRNGKey(0), s, logdensity, 1e-4, jnp.ones(2)))(
            kernel.init(jnp.ones(2), logdensity))
        assert int(info.tree_depth) == depth and int(info.num_steps) == 2 ** depth - 1
        assert not bool(info.is_divergent)


@pytest.mark.parametrize("bad", [jnp.nan, -jnp.inf])
@pytest.mark.parametrize("kernel", [nuts.build_kernel(), hmc.build_kernel(num_steps=5), mh.build_kernel()],
                         ids=["nuts", "hmc", "mh"])
def test_non_finite_region_is_rejected_never_propagated(kernel, bad):
    """Log density NaN (or -inf) for x0 > 1: such points are rejected; NaN ones are counted
    as numerical failures (with the failing point), -inf ones (zero density) as divergences
    of the trajectory (NUTS, HMC); the state stays finite and inside the valid region."""
    logdensity = lambda x: jnp.where(x[0] > 1.0, bad, -0.5 * jnp.sum(x ** 2))
    step = jax.jit(jax.vmap(lambda k, s: kernel(k, s, logdensity, 1.5, jnp.ones(2))))
    n = 2000
    x = jnp.zeros((n, 2)) + jnp.array([0.9, 0.0])
    state = jax.vmap(lambda z: kernel.init(z, logdensity))(x)
    divergent = failed = 0
    for t in range(5):
        state, info = step(jax.random.split(jax.random.PRNGKey(t), n), state)
        divergent += int(info.is_divergent.sum())
        failed += int(info.is_nonfinite.sum())
        assert np.all(np.isfinite(np.asarray(state.position)))
        assert np.all(np.asarray(state.position[:, 0]) <= 1.0)
        assert np.all(np.isfinite(np.asarray(state.log_density)))
        assert np.all(np.isfinite(np.asarray(info.acceptance_rate)))
        where = np.asarray(info.is_nonfinite)
        assert np.all(np.asarray(info.nonfinite_position)[where, 0] > 1.0)  # the failing points
        assert not np.any(np.asarray(info.nonfinite_position)[~where])
    if bool(jnp.isnan(bad)):
        assert failed > 0 and divergent == 0
    else:
        assert failed == 0 and (divergent > 0) == (kernel.name != "mh")


@jax.custom_jvp
def _nan_gradient_below(t):
    return 0.0 * t


@_nan_gradient_below.defjvp
def _nan_gradient_below_jvp(primals, tangents):
    (t,), (dt,) = primals, tangents
    return _nan_gradient_below(t), jnp.where(t < -0.5, jnp.nan, 0.0) * dt


def test_nan_gradient_is_a_numerical_failure_never_a_state():
    """A finite log density whose gradient is NaN for x0 < -0.5: a numerical failure (not a
    divergence), with the failing point; never a state."""
    logdensity = lambda x: -0.5 * jnp.sum(x ** 2) + _nan_gradient_below(x[0])
    kernel = nuts.build_kernel()
    step = jax.jit(jax.vmap(lambda k, s: kernel(k, s, logdensity, 1.0, jnp.ones(2))))
    state = jax.vmap(lambda z: kernel.init(z, logdensity))(jnp.zeros((500, 2)))
    state, info = step(jax.random.split(jax.random.PRNGKey(3), 500), state)
    failed = np.asarray(info.is_nonfinite)
    assert failed.sum() > 0 and int(info.is_divergent.sum()) == 0
    assert np.all(np.asarray(info.nonfinite_position)[failed, 0] < -0.5)
    assert np.all(np.isfinite(np.asarray(state.grad))) and np.all(np.asarray(state.position[:, 0]) >= -0.5)


def test_hmc_counts_and_divergence():
    logdensity = lambda x: -0.5 * jnp.sum(x ** 2)
    kernel = hmc.build_kernel(num_steps=7)
    state = kernel.init(jnp.ones(2), logdensity)
    _, info = jax.jit(lambda k: kernel(k, state, logdensity, 0.3, jnp.ones(2)))(jax.random.PRNGKey(0))
    assert int(info.num_grad_evals) == 7 and not bool(info.is_divergent)
    # Unstable leapfrog (eps > 2 on a unit Gaussian): the energy explodes past 1000.
    new, info = jax.jit(lambda k: kernel(k, state, logdensity, 5.0, jnp.ones(2)))(jax.random.PRNGKey(0))
    assert bool(info.is_divergent) and float(info.acceptance_rate) == 0.0
    np.testing.assert_array_equal(new.position, state.position)


def test_build_kernel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        hmc.build_kernel(num_steps=0)
    with pytest.raises(ValueError, match="max_tree_depth"):
        nuts.build_kernel(max_tree_depth=0)
    with pytest.raises(ValueError, match="max_tree_depth"):
        nuts.build_kernel(max_tree_depth=2.5)


@pytest.mark.parametrize("kernel", [nuts.build_kernel(), hmc.build_kernel(num_steps=3), mh.build_kernel()],
                         ids=["nuts", "hmc", "mh"])
def test_kernels_respect_float64(kernel):
    with jax.enable_x64(True):
        logdensity = lambda x: -0.5 * jnp.sum(x ** 2)
        state = kernel.init(jnp.ones(3, jnp.float64), logdensity)
        new, info = jax.jit(lambda k: kernel(k, state, logdensity, 0.5, jnp.ones(3)))(jax.random.PRNGKey(0))
        assert new.position.dtype == jnp.float64 and new.log_density.dtype == jnp.float64
        assert info.acceptance_rate.dtype == jnp.float64 and info.energy.dtype == jnp.float64


@pytest.mark.parametrize("build", [hmc.build_kernel, nuts.build_kernel, mh.build_kernel])
def test_a_trial_move_is_one_step_with_the_probes_acceptance(build):
    """The step-size search runs its trials through the kernel (trial=True): one leapfrog
    (one proposal for MH), acceptance min(1, exp(log ratio)), the log ratio being what the
    kernel's probe gives for the same key (HMC and MH: the same move exactly)."""
    logdensity = lambda z: -0.5 * jnp.sum(z ** 2 / jnp.array([1.0, 0.3]))
    kernel = build()
    state = kernel.init(jnp.array([0.4, -0.2]), logdensity)
    for i in range(5):
        key = jax.random.PRNGKey(i)
        _, info = jax.jit(lambda k, e: kernel(k, state, logdensity, e, jnp.ones(2), True))(key, 0.7 * (i + 1))
        assert int(info.num_grad_evals) == 1
        if build is not nuts.build_kernel:  # NUTS picks a random direction for its step
            expected = np.exp(min(0.0, float(kernel.probe(key, state, logdensity, 0.7 * (i + 1), jnp.ones(2)))))
            np.testing.assert_allclose(float(info.acceptance_rate), expected, rtol=1e-5)
        else:
            assert int(info.tree_depth) == 1 and 0.0 <= float(info.acceptance_rate) <= 1.0
