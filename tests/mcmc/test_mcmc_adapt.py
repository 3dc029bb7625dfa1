"""Warmup building blocks: Stan's window schedule, dual averaging, Welford, step heuristic."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl.adapt import dual_averaging, welford, window
from ppl.adapt.initial_step_size import find_reasonable_step_size


def test_stan_schedule_for_1000_warmup():
    s = window.build_schedule(1000)
    assert s.windows == ((75, 100), (100, 150), (150, 250), (250, 450), (450, 950))
    assert [hi - lo for lo, hi in s.windows] == [25, 50, 100, 200, 500]
    assert not s.in_window[:75].any() and s.in_window[75:950].all() and not s.in_window[950:].any()
    assert list(np.flatnonzero(s.window_end)) == [99, 149, 249, 449, 949]


@pytest.mark.parametrize("num_warmup, expected", [
    (100, ((15, 90),)),  # 15% / 75% / 10%, as Stan when 75 + 25 + 50 > num_warmup
    (20, ((3, 18),)),
    (150, ((75, 100),)),  # 75 + 25 + 50 fits exactly: one slow window
    (200, ((75, 100), (100, 150))),
    (500, ((75, 100), (100, 150), (150, 250), (250, 450))),
    (2000, ((75, 100), (100, 150), (150, 250), (250, 450), (450, 850), (850, 1950))),  # stretched
])
def test_stan_schedule_small_and_odd_warmups(num_warmup, expected):
    s = window.build_schedule(num_warmup)
    assert s.windows == expected
    assert s.window_end.sum() == len(expected)


def test_no_mass_adaptation_below_20_warmup():
    s = window.build_schedule(19)
    assert s.windows == () and not s.in_window.any()
    assert window.build_schedule(0).windows == ()


def test_schedule_rejects_bad_num_warmup():
    with pytest.raises(ValueError, match="num_warmup"):
        window.build_schedule(-1)
    with pytest.raises(ValueError, match="num_warmup"):
        window.build_schedule(10.5)


def test_dual_averaging_reaches_target_on_deterministic_acceptance():
    """With acceptance a(eps) = exp(-eps) the fixed point is eps* = -log(target)."""
    target = 0.8

    def run(state, _):
        accept = jnp.exp(-jnp.exp(state.log_step_size))
        return dual_averaging.update(state, accept, target), None

    state, _ = jax.lax.scan(run, dual_averaging.init(1.0), None, length=2000)
    assert abs(float(dual_averaging.final_step_size(state)) - (-np.log(target))) < 0.01


def test_dual_averaging_constants_as_stan():
    s = dual_averaging.init(0.5)
    assert np.isclose(float(s.mu), np.log(5.0))
    s1 = dual_averaging.update(s, 1.0, 0.8)
    # t=1: eta = 1/11, H = -0.2/11, x = mu - H sqrt(1) / 0.05, x_bar = x (weight 1^-0.75 = 1)
    h = -0.2 / 11
    assert np.isclose(float(s1.log_step_size), np.log(5.0) - h / 0.05, rtol=1e-6)
    assert np.isclose(float(s1.log_step_size_avg), float(s1.log_step_size), rtol=1e-6)
    assert np.isfinite(float(dual_averaging.update(s, jnp.nan, 0.8).log_step_size))


@pytest.mark.parametrize("dense", [False, True])
def test_welford_matches_numpy(dense):
    x = np.random.default_rng(0).normal(size=(500, 3)) @ np.array([[2, 0, 0], [1, 1, 0], [0, 3, 0.5]])
    state = welford.init(3, dense, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    state, _ = jax.lax.scan(lambda s, xi: (welford.update(s, xi), None), state, jnp.asarray(x, state.mean.dtype))
    expected = np.cov(x.T) if dense else x.var(0, ddof=1)
    np.testing.assert_allclose(welford.covariance(state), expected, rtol=1e-4)
    n = 500
    reg = n / (n + 5.0) * expected + 1e-3 * 5 / (n + 5.0) * (np.eye(3) if dense else 1.0)
    # rounded to 20 significant bits in float64, 10 in float32 (dual_averaging.quantize)
    bits = 20 if jax.config.jax_enable_x64 else 10
    np.testing.assert_allclose(welford.regularized_inverse_mass_matrix(state), reg, rtol=2.0 ** -bits + 1e-4)


def test_quantize_rounds_to_the_given_significant_bits():
    x = jnp.asarray([1.0, 1.0 + 2.0 ** -12, 3.14159, -0.0123, 0.0], jnp.float32)
    q = np.asarray(dual_averaging.quantize(x, bits=10))
    np.testing.assert_array_equal(q[[0, 1, 4]], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(q[2:4], [3.14159, -0.0123], rtol=2.0 ** -10)
    mantissa, _ = np.frexp(q)
    assert np.all(mantissa * 2 ** 10 == np.round(mantissa * 2 ** 10))


def test_heuristic_doubles_and_halves_to_the_crossing():
    """A deterministic probe crossing log(0.8) at eps = 3: from 1 it doubles to 4 (the first
    step size below the threshold), from 100 it halves to 100/64 (the first one above)."""
    probe = lambda key, eps: jnp.where(eps < 3.0, 0.0, -1.0)
    assert float(find_reasonable_step_size(jax.random.PRNGKey(0), probe, 1.0)) == 4.0
    assert float(find_reasonable_step_size(jax.random.PRNGKey(0), probe, 100.0)) == 1.5625
    # Stan leaves degenerate step sizes alone and caps runaway doubling at 1e7.
    assert float(find_reasonable_step_size(jax.random.PRNGKey(0), probe, 0.0)) == 0.0
    flat = lambda key, eps: jnp.asarray(0.0)
    assert 1e7 < float(find_reasonable_step_size(jax.random.PRNGKey(0), flat, 1.0)) <= 2e7
