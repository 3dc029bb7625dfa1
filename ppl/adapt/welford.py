"""Streaming mean and (co)variance, and Stan's regularised inverse mass matrix.

Reference: Welford (1962), "Note on a method for calculating corrected sums of squares and
products"; regularisation as Stan's ``var_adaptation`` / ``covar_adaptation``:
(n / (n + 5)) * S + 1e-3 * (5 / (n + 5)) * I.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl.adapt.dual_averaging import quantize


class WelfordState(NamedTuple):
    """Sample ``count``, running ``mean`` and sum of squared deviations ``m2`` ((d,) or (d, d))."""

    count: jax.Array
    mean: jax.Array
    m2: jax.Array


def init(dim: int, dense: bool, dtype=jnp.float32) -> WelfordState:
    """An empty estimator for vectors of length ``dim``; ``dense`` tracks the full covariance."""
    m2 = jnp.zeros((dim, dim) if dense else (dim,), dtype)
    return WelfordState(jnp.zeros((), jnp.int32), jnp.zeros((dim,), dtype), m2)


def update(state: WelfordState, x) -> WelfordState:
    """Add one sample ``x`` (shape (d,))."""
    count = state.count + 1
    delta = x - state.mean
    mean = state.mean + delta / count.astype(x.dtype)
    # The barrier rounds the product before the sum (no fused multiply-add, whose use XLA
    # decides per program): vmapped and single chains agree bit for bit.
    if state.m2.ndim == 2:
        m2 = state.m2 + jax.lax.optimization_barrier(jnp.outer(x - mean, delta))
    else:
        m2 = state.m2 + jax.lax.optimization_barrier((x - mean) * delta)
    return WelfordState(count, mean, m2)


def covariance(state: WelfordState):
    """Unbiased sample variance (diagonal) or covariance (dense)."""
    return state.m2 / (state.count - 1).astype(state.m2.dtype)


def regularized_inverse_mass_matrix(state: WelfordState):
    """Stan's shrunk estimate (n/(n+5)) S + 1e-3 (5/(n+5)) I, diagonal or dense, rounded
    to 20 significant bits in float64 and 10 in float32 (see
    :func:`ppl.adapt.dual_averaging.quantize`: the same matrix whatever the chain layout)."""
    n = state.count.astype(state.m2.dtype)
    shrink = 1e-3 * (5.0 / (n + 5.0))
    scaled = jax.lax.optimization_barrier((n / (n + 5.0)) * covariance(state))
    if state.m2.ndim == 2:
        return quantize(scaled + shrink * jnp.eye(state.m2.shape[0], dtype=state.m2.dtype))
    return quantize(scaled + shrink)
