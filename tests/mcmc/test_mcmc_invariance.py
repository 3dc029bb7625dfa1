"""Each kernel leaves its target invariant: exact draws in, exact draws out.

N independent chains start from exact draws of the target and take one transition (and,
reusing the compiled step, five). If the kernel is correct the output is again an exact
sample, so the whitened draws y = L^{-1} x must have mean 0 and covariance I. Tolerances are
five Monte Carlo standard errors with N independent draws: |mean| < 5 / sqrt(N),
|cov_ii - 1| < 5 sqrt(2 / N), |cov_ij| < 5 / sqrt(N), |E y^4 - 3| < 5 sqrt(96 / N). The inverse
mass matrices deliberately differ from the target's covariance (invariance must hold for
any metric), and the kernel must actually move (it is not the identity).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl.mcmc import hmc, mh, nuts

N = 20_000
COVARIANCES = {
    "standard": np.eye(2),
    "correlated": np.array([[1.0, 0.9], [0.9, 1.0]]) * np.array([[1.0, 2.0], [2.0, 4.0]]),
}
KERNELS = {
    "hmc": (lambda: hmc.build_kernel(num_steps=3), 0.6),
    "nuts": (lambda: nuts.build_kernel(max_tree_depth=5), 0.8),
    "mh": (lambda: mh.build_kernel(), 1.2),
}
METRICS = {"diag": np.array([1.5, 0.7]), "dense": np.array([[1.2, 0.5], [0.5, 0.8]])}


@functools.lru_cache(maxsize=None)
def _stepper(kernel_name, metric_name):
    """A jitted, vmapped single transition; the target's precision is an argument."""
    build, step_size = KERNELS[kernel_name]
    kernel = build()
    imm = jnp.asarray(METRICS[metric_name], jnp.float32)

    def one(key, x, precision):
        logdensity = lambda z: -0.5 * z @ precision @ z
        state = kernel.init(x, logdensity)
        state, info = kernel(key, state, logdensity, step_size, imm)
        return state.position, info.acceptance_rate

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def _check_whitened(y, label):
    n = y.shape[0]
    mean = y.mean(0)
    cov = np.cov(y.T)
    assert np.all(np.abs(mean) < 5 / np.sqrt(n)), (label, mean)
    assert np.all(np.abs(np.diag(cov) - 1) < 5 * np.sqrt(2 / n)), (label, cov)
    assert abs(cov[0, 1]) < 5 / np.sqrt(n), (label, cov)
    assert np.all(np.abs((y ** 4).mean(0) - 3) < 5 * np.sqrt(96 / n)), (label, (y ** 4).mean(0))


@pytest.mark.parametrize("metric_name", ["diag", "dense"])
@pytest.mark.parametrize("kernel_name", ["hmc", "nuts", "mh"])
def test_one_step_preserves_gaussian(kernel_name, metric_name):
    step = _stepper(kernel_name, metric_name)
    for target, cov in COVARIANCES.items():
        chol = np.linalg.cholesky(cov)
        precision = jnp.asarray(np.linalg.inv(cov), jnp.float32)
        key = jax.random.PRNGKey(hash((kernel_name, metric_name, target)) % 2 ** 31)
        x0 = np.asarray(jax.random.normal(key, (N, 2))) @ chol.T
        x = jnp.asarray(x0, jnp.float32)
        for t in range(5):
            x, accept = step(jax.random.split(jax.random.fold_in(key, t + 1), N), x, precision)
            if t == 0:
                moved = np.mean(np.any(np.asarray(x) != x0, axis=1))
                assert moved > 0.3, (kernel_name, metric_name, target, moved)
                _check_whitened(np.linalg.solve(chol, np.asarray(x, np.float64).T).T,
                                (kernel_name, metric_name, target, "1 step"))
        _check_whitened(np.linalg.solve(chol, np.asarray(x, np.float64).T).T,
                        (kernel_name, metric_name, target, "5 steps"))


def test_nuts_preserves_non_gaussian_banana():
    """x0 ~ N(0, 4), x1 | x0 ~ N(x0^2 / 2, 1): E x0 = 0, E x0^2 = 4, E x1 = 2, E r^2 = 1
    with r = x1 - x0^2/2; tolerance 5 standard errors (sd of x0^2 is 4 sqrt 2, of x1 is 3)."""
    kernel = nuts.build_kernel(max_tree_depth=5)

    def logdensity(z):
        return -0.5 * (z[0] ** 2 / 4.0 + (z[1] - 0.5 * z[0] ** 2) ** 2)

    @jax.jit
    @jax.vmap
    def step(key, x):
        state = kernel.init(x, logdensity)
        return kernel(key, state, logdensity, 0.5, jnp.ones(2))[0].position

    key = jax.random.PRNGKey(7)
    a, b = jax.random.normal(key, (2, N))
    x = jnp.stack([2.0 * a, 0.5 * (2.0 * a) ** 2 + b], axis=1)
    for t in range(3):
        x = step(jax.random.split(jax.random.fold_in(key, t), N), x)
    x = np.asarray(x, np.float64)
    se = 5 / np.sqrt(N)
    assert abs(x[:, 0].mean()) < 2 * se
    assert abs((x[:, 0] ** 2).mean() - 4) < 4 * np.sqrt(2) * se
    assert abs(x[:, 1].mean() - 2) < 3 * se
    assert abs(((x[:, 1] - 0.5 * x[:, 0] ** 2) ** 2).mean() - 1) < np.sqrt(2) * se
