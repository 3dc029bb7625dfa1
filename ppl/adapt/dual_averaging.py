"""Nesterov dual averaging of the log step size toward a target acceptance statistic.

Reference: Hoffman & Gelman (2014), "The No-U-Turn Sampler", section 3.2.1, equation (6)
and algorithm 5; Nesterov (2009). Constants as Stan's ``stepsize_adaptation``:
gamma = 0.05, t0 = 10, kappa = 0.75, mu = log(10 * eps0).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp


def quantize(x, bits=None):
    """``x`` rounded to ``bits`` significant bits (default: 20 in float64, 10 in float32).

    Adaptation is a feedback loop (the acceptance statistic sets the step size, which sets the
    next trajectory and its acceptance), and it amplifies a last-bit difference in the
    arithmetic exponentially: two programs that compute a chain's log density in a different
    order (vectorised and single chains, one device and four) would reach different step
    sizes, hence different draws, within a few hundred warmup iterations. Rounding what enters
    the loop to far coarser than rounding noise (2^-20 ~ 1e-6 against ~1e-15 in float64) makes
    both programs see the same values, except with probability ~1e-9 per update; the rounding
    itself is far below the Monte Carlo noise of an acceptance statistic.

    By Veltkamp's splitting (Dekker 1971): with c = x (2^s + 1), s = p - bits for p
    significant bits, (c - (c - x)) is x rounded to nearest with ``bits`` bits: three
    flops (``frexp``/``ldexp`` measured 0.3 s of XLA compile time more per program). The
    barrier keeps the product rounded before the subtraction (no fused multiply-add).
    Values above 2^(emax - s) (1e34 in float32) would overflow; they are returned as they are.
    """
    x = jnp.asarray(x)
    p = jnp.finfo(x.dtype).nmant + 1
    if bits is None:
        bits = 20 if x.dtype == jnp.float64 else 10
    factor = jnp.asarray(2.0 ** (p - bits) + 1.0, x.dtype)
    c = jax.lax.optimization_barrier(x * factor)
    q = c - jax.lax.optimization_barrier(c - x)
    return jnp.where(jnp.isfinite(c), q, x)


class DualAveragingState(NamedTuple):
    """Iterate ``log_step_size`` (x), its weighted average ``log_step_size_avg`` (x bar),
    the iteration ``count`` (t), the averaged error ``avg_error`` (H bar) and the shrinkage
    point ``mu``."""

    log_step_size: jax.Array
    log_step_size_avg: jax.Array
    count: jax.Array
    avg_error: jax.Array
    mu: jax.Array


def init(step_size) -> DualAveragingState:
    """Start (or restart) dual averaging at ``step_size``, with mu = log(10 * step_size)."""
    log_eps = jnp.log(jnp.asarray(step_size))
    zero = jnp.zeros_like(log_eps)
    return DualAveragingState(log_eps, zero, jnp.zeros((), jnp.int32), zero, jnp.log(10.0).astype(log_eps.dtype) + log_eps)


def update(state: DualAveragingState, acceptance_rate, target_accept, gamma=0.05, t0=10.0,
           kappa=0.75) -> DualAveragingState:
    """One dual-averaging update from the last transition's acceptance statistic.

    Args:
      state: the current state.
      acceptance_rate: the transition's acceptance statistic; NaN counts as 0, values are
        clipped to [0, 1].
      target_accept: the target acceptance statistic (delta in the paper).
      gamma, t0, kappa: as Hoffman & Gelman (2014), equation (6).

    Returns:
      The new state; the next step size is ``exp(state.log_step_size)``.
    """
    dtype = state.log_step_size.dtype
    accept = jnp.clip(jnp.nan_to_num(jnp.asarray(acceptance_rate, dtype), nan=0.0), 0.0, 1.0)
    accept = quantize(accept)
    count = state.count + 1
    t = count.astype(dtype)
    eta = 1.0 / (t + t0)
    # Barriers round each product before the sum: no fused multiply-add, whose use XLA
    # decides per program, so vmapped and single chains compute bit-identical values.
    barrier = jax.lax.optimization_barrier
    avg_error = jnp.add(*barrier(((1.0 - eta) * state.avg_error, eta * (target_accept - accept))))
    log_eps = state.mu - barrier(avg_error * jnp.sqrt(t) / gamma)
    # t^(-3/4) through correctly rounded square roots (pow's vectorised and scalar forms
    # may differ in the last bit).
    weight = 1.0 / (jnp.sqrt(t) * jnp.sqrt(jnp.sqrt(t))) if kappa == 0.75 else t ** (-kappa)
    log_eps_avg = jnp.add(*barrier(((1.0 - weight) * state.log_step_size_avg, weight * log_eps)))
    return DualAveragingState(log_eps, log_eps_avg, count, avg_error, state.mu)


def final_step_size(state: DualAveragingState):
    """The adapted step size exp(x bar) (exp(x) if no update was made since the restart)."""
    return jnp.exp(jnp.where(state.count > 0, state.log_step_size_avg, state.log_step_size))
