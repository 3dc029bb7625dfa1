"""Velocity-Verlet (leapfrog) integration of Hamiltonian dynamics.

Reference: Neal (2011), "MCMC using Hamiltonian dynamics", section 2.3, equations
(2.28)-(2.30); Betancourt (2017), section 5.1.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ppl.mcmc.metrics import Metric


class IntegratorState(NamedTuple):
    """A point in phase space with the log density and its gradient at ``position``."""

    position: jax.Array
    momentum: jax.Array
    log_density: jax.Array
    grad: jax.Array


def sanitize(log_density):
    """Map a NaN or +inf log density to -inf (a divergence/rejection, never a NaN state)."""
    return jnp.where(log_density < jnp.inf, log_density, -jnp.inf)


def safe_value_and_grad(logdensity_fn: Callable) -> Callable:
    """``z -> (log_density, grad)`` where a non-finite log density or gradient reads as -inf.

    Used to initialise states; inside trajectories a non-finite gradient surfaces through the
    momentum, hence the kinetic energy, and is caught as an infinite energy error.

    Args:
      logdensity_fn: ``z -> scalar`` over a flat vector.
    """
    value_and_grad = jax.value_and_grad(logdensity_fn)

    def fn(position):
        log_density, grad = value_and_grad(position)
        ok = jnp.all(jnp.isfinite(grad))
        return jnp.where(ok, sanitize(log_density), -jnp.inf), grad

    return fn


def velocity_verlet(logdensity_fn: Callable, metric: Metric) -> Callable:
    """Build one leapfrog step, reusing the gradient carried by the state.

    Args:
      logdensity_fn: ``z -> scalar`` log density over a flat vector.
      metric: the kinetic energy (:func:`ppl.mcmc.metrics.gaussian_euclidean`).

    Returns:
      ``step(state: IntegratorState, step_size) -> IntegratorState``; a negative step size
      integrates backwards in time. Exactly one gradient evaluation per call. A NaN or +inf
      log density is returned as -inf; a non-finite gradient leaves a non-finite momentum,
      hence a non-finite kinetic energy, which kernels treat as a divergence.

    Reference: Neal (2011), equations (2.28)-(2.30) with U = -log density.
    """
    value_and_grad = jax.value_and_grad(logdensity_fn)

    def step(state: IntegratorState, step_size) -> IntegratorState:
        half = 0.5 * step_size
        momentum = state.momentum + half * state.grad
        position = state.position + step_size * metric.velocity(momentum)
        log_density, grad = value_and_grad(position)
        momentum = momentum + half * grad
        return IntegratorState(position, momentum, sanitize(log_density), grad)

    return step
