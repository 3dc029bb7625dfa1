"""Velocity-Verlet (leapfrog) integration of Hamiltonian dynamics.

Reference: Neal (2011), "MCMC using Hamiltonian dynamics", section 2.3, equations
(2.28)-(2.30); Betancourt (2017), section 5.1.
"""
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ppl.mcmc.metrics import Metric


class IntegratorState(NamedTuple):
    """A point in phase space with the log density and its gradient at ``position``;
    ``nonfinite``: the log density computed there was NaN or +inf, or its gradient was not
    finite (:func:`is_nonfinite`; the stored ``log_density`` is then -inf)."""

    position: jax.Array
    momentum: jax.Array
    log_density: jax.Array
    grad: jax.Array
    nonfinite: Any = False


def is_nonfinite(position, log_density, grad):
    """A numerical failure of the model at a point, as opposed to a zero density or a
    runaway trajectory: at a finite position, the log density is NaN or +inf, or it is finite
    and its gradient is not. (A log density of -inf, e.g. outside a support, is a point of zero
    density: an ordinary rejection; a position that overflowed is an unstable integration: a
    divergence.)"""
    finite_grad = jnp.all(jnp.isfinite(grad))
    failed = jnp.isnan(log_density) | (log_density == jnp.inf) | (jnp.isfinite(log_density) & ~finite_grad)
    return failed & jnp.all(jnp.isfinite(position))


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
      hence a non-finite kinetic energy, which ends the trajectory; either is flagged in the
      new state's ``nonfinite`` (kernels count it apart from divergences).

    Reference: Neal (2011), equations (2.28)-(2.30) with U = -log density.
    """
    value_and_grad = jax.value_and_grad(logdensity_fn)

    def step(state: IntegratorState, step_size) -> IntegratorState:
        half = 0.5 * step_size
        momentum = state.momentum + half * state.grad
        position = state.position + step_size * metric.velocity(momentum)
        log_density, grad = value_and_grad(position)
        momentum = momentum + half * grad
        return IntegratorState(position, momentum, sanitize(log_density), grad, is_nonfinite(position, log_density, grad))

    return step
