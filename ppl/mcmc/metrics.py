"""Euclidean-Gaussian kinetic energy built from an inverse mass matrix.

The momentum is p ~ N(0, M) and the kinetic energy K(p) = p^T M^{-1} p / 2, with M^{-1}
either a vector (diagonal metric) or a square matrix (dense metric).

Reference: Betancourt (2017), "A Conceptual Introduction to Hamiltonian Monte Carlo",
section 4.2 (Euclidean-Gaussian kinetic energies); Neal (2011), "MCMC using Hamiltonian
dynamics", section 4.1.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Metric(NamedTuple):
    """The three operations an HMC kernel needs from its kinetic energy.

    Fields:
      sample_momentum: ``(key, position) -> p`` with ``p ~ N(0, M)`` in ``position.dtype``.
      scale_noise: ``xi -> p``, mapping standard normal noise to ``p ~ N(0, M)``.
      kinetic_energy: ``p -> p^T M^{-1} p / 2`` (a scalar).
      velocity: ``p -> M^{-1} p`` (Betancourt's ``p_sharp``; the leapfrog's position drift).
    """

    sample_momentum: Callable
    scale_noise: Callable
    kinetic_energy: Callable
    velocity: Callable


def gaussian_euclidean(inverse_mass_matrix) -> Metric:
    """Build the Euclidean metric of an inverse mass matrix.

    Args:
      inverse_mass_matrix: shape ``(d,)`` (diagonal M^{-1}) or ``(d, d)`` (dense, symmetric
        positive definite M^{-1}).

    Returns:
      A :class:`Metric`.

    Raises:
      ValueError: if ``inverse_mass_matrix`` is neither 1-D nor square 2-D.

    Reference: Betancourt (2017), section 4.2; for a dense metric the momentum is drawn as
    p = L^{-T} xi with M^{-1} = L L^T, so that Cov(p) = L^{-T} L^{-1} = M.
    """
    imm = jnp.asarray(inverse_mass_matrix)
    if imm.ndim == 1:
        return _diagonal(imm)
    if imm.ndim == 2 and imm.shape[0] == imm.shape[1]:
        return _dense(imm)
    raise ValueError(
        "inverse_mass_matrix must have shape (d,) (diagonal) or (d, d) (dense); "
        f"received shape {imm.shape}."
    )


def _sampler(scale_noise):
    def sample_momentum(key, position):
        return scale_noise(jax.random.normal(key, position.shape, position.dtype))

    return sample_momentum


def _diagonal(imm) -> Metric:
    std_momentum = jax.lax.rsqrt(imm)

    def scale_noise(xi):
        return xi * std_momentum.astype(xi.dtype)

    def velocity(momentum):
        return imm.astype(momentum.dtype) * momentum

    def kinetic_energy(momentum):
        return 0.5 * jnp.sum(momentum * velocity(momentum))

    return Metric(_sampler(scale_noise), scale_noise, kinetic_energy, velocity)


def _dense(imm) -> Metric:
    chol = jnp.linalg.cholesky(imm)

    def scale_noise(xi):
        return jax.scipy.linalg.solve_triangular(chol.astype(xi.dtype), xi, lower=True, trans="T")

    def velocity(momentum):
        return jnp.matmul(imm.astype(momentum.dtype), momentum)

    def kinetic_energy(momentum):
        return 0.5 * jnp.sum(momentum * velocity(momentum))

    return Metric(_sampler(scale_noise), scale_noise, kinetic_energy, velocity)


def no_u_turn(velocity_minus, velocity_plus, rho):
    """Generalised no-U-turn criterion: True while the trajectory keeps expanding.

    Args:
      velocity_minus, velocity_plus: ``M^{-1} p`` at the two ends of a (sub)trajectory.
      rho: sum of the momenta over the (sub)trajectory, ends included.

    Returns:
      ``(velocity_minus . rho > 0) & (velocity_plus . rho > 0)`` (leading axes broadcast).

    Reference: Betancourt (2017), appendix A.4.2 (generalised criterion with momentum sums);
    Stan's ``base_nuts::compute_criterion``.
    """
    return (jnp.sum(velocity_minus * rho, -1) > 0) & (jnp.sum(velocity_plus * rho, -1) > 0)
