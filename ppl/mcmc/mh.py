"""Random-walk Metropolis with a Gaussian proposal.

The proposal is z' = z + step_size * L xi, xi ~ N(0, I), with L L^T the inverse mass matrix
(so its covariance is step_size^2 * inverse_mass_matrix; diagonal or dense).

Reference: Metropolis et al. (1953); Roberts, Gelman & Gilks (1997), "Weak convergence and
optimal scaling of random walk Metropolis algorithms" (optimal acceptance rate 0.234).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl import _counter_rng
from ppl.mcmc import _cpu_blocks
from ppl.mcmc.base import Kernel


class State(NamedTuple):
    """Position and its log density (MH needs no gradient)."""

    position: jax.Array
    log_density: jax.Array


class Info(NamedTuple):
    """One MH transition.

    Fields: core ``acceptance_rate`` (min(1, exp(log ratio))), ``is_divergent`` (always False:
    a random walk has no energy error), ``num_grad_evals`` (log-density evaluations: 1),
    ``is_nonfinite`` (the proposal's log density was NaN or +inf); then ``energy`` (minus the
    log density of the returned state) and ``nonfinite_position`` (that proposal, or zeros).
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    is_nonfinite: jax.Array
    energy: jax.Array
    nonfinite_position: jax.Array

    # Field dtypes: "float" is the position's dtype (see ``Kernel.info_type``).
    KINDS = ("float", "bool", "int32", "bool", "float", "position")


def _safe_log_density(logdensity_fn, position):
    """The log density (NaN or +inf read as -inf) and whether it was NaN or +inf at a finite
    position (a numerical failure of the model)."""
    log_density = logdensity_fn(position)
    failed = (jnp.isnan(log_density) | (log_density == jnp.inf)) & jnp.all(jnp.isfinite(position))
    return jnp.where(log_density < jnp.inf, log_density, -jnp.inf), failed


def init(position, logdensity_fn) -> State:
    """Evaluate the log density at ``position``; NaN or +inf is stored as -inf."""
    position = jnp.asarray(position)
    return State(position, _safe_log_density(logdensity_fn, position)[0])


def _propose(words, position, step_size, inverse_mass_matrix):
    imm = jnp.asarray(inverse_mass_matrix, position.dtype)
    xi = _counter_rng.normal(words, _counter_rng.PROPOSAL, position.shape, position.dtype)
    if imm.ndim == 1:
        noise = jnp.sqrt(imm) * xi
    elif imm.ndim == 2 and imm.shape[0] == imm.shape[1]:
        noise = jnp.linalg.cholesky(imm) @ xi
    else:
        raise ValueError(
            "inverse_mass_matrix must have shape (d,) or (d, d); received shape "
            f"{imm.shape}."
        )
    return position + jnp.asarray(step_size, position.dtype) * noise


def probe(key, state, logdensity_fn, step_size, inverse_mass_matrix):
    """Log acceptance ratio of one proposal from ``state`` (NaN mapped to -inf).

    Used by the initial step-size heuristic.
    """
    proposal = _propose(_counter_rng.key_words(key), state.position, step_size, inverse_mass_matrix)
    log_density, _ = _safe_log_density(logdensity_fn, proposal)
    ratio = log_density - state.log_density
    return jnp.where(jnp.isnan(ratio), -jnp.inf, ratio)


def build_kernel() -> Kernel:
    """Build a random-walk Metropolis transition.

    Returns:
      A :class:`ppl.mcmc.base.Kernel`; ``kernel(key, state, logdensity_fn, step_size,
      inverse_mass_matrix) -> (State, Info)``. Its ``restart_at_windows`` is False: under
      ``run_chain`` one dual-averaging run spans the whole warmup (the per-transition
      acceptance of MH is too noisy for Stan's 50-iteration terminal restart).

    Reference: Metropolis et al. (1953); Hastings (1970), equation (2.2) with a symmetric
    proposal.
    """

    def transition(words, state: State, step_size, inverse_mass_matrix, logdensity_fn):
        dtype = state.position.dtype
        proposal = _propose(words, state.position, step_size, inverse_mass_matrix)
        log_density, is_nan = _safe_log_density(logdensity_fn, proposal)
        ratio = log_density - state.log_density
        ratio = jnp.where(jnp.isnan(ratio), -jnp.inf, ratio)
        accept = jnp.log(_counter_rng.uniform(words, 0, _counter_rng.ACCEPT, dtype)) < ratio
        new_state = State(
            jnp.where(accept, proposal, state.position),
            jnp.where(accept, log_density, state.log_density),
        )
        info = Info(
            acceptance_rate=jnp.minimum(1.0, jnp.exp(ratio)).astype(dtype),
            is_divergent=jnp.zeros((), bool),
            num_grad_evals=jnp.ones((), jnp.int32),
            is_nonfinite=is_nan,
            energy=-new_state.log_density,
            nonfinite_position=jnp.where(is_nan, proposal, jnp.zeros_like(proposal)),
        )
        return new_state, info

    def step(key, state: State, logdensity_fn, step_size, inverse_mass_matrix, trial=False):
        # A trial move (step-size search) is an ordinary transition: one proposal.
        step_size = jnp.asarray(step_size, state.position.dtype)
        return _cpu_blocks.nested(lambda *a: transition(*a, logdensity_fn), _counter_rng.key_words(key),
                                  state, step_size, inverse_mass_matrix)

    return Kernel(step=step, init=init, probe=probe, name="mh", info_type=Info, restart_at_windows=False)
