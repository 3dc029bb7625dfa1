"""Static-trajectory Hamiltonian Monte Carlo with a Metropolis correction.

Reference: Neal (2011), "MCMC using Hamiltonian dynamics", section 3.2 (the HMC algorithm);
Duane et al. (1987). Divergence: energy error above ``max_delta_energy`` (1000, as Stan).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl import _counter_rng
from ppl.mcmc import _cpu_blocks
from ppl.mcmc.base import Kernel
from ppl.mcmc.integrators import IntegratorState, safe_value_and_grad, velocity_verlet
from ppl.mcmc.metrics import gaussian_euclidean


class State(NamedTuple):
    """Position with its log density and gradient (the gradient is reused by the leapfrog)."""

    position: jax.Array
    log_density: jax.Array
    grad: jax.Array


class Info(NamedTuple):
    """One HMC transition: core fields (see ``ppl.mcmc.base``), then ``energy`` (Hamiltonian
    at the returned state), then ``nonfinite_position`` (the first point of the trajectory
    where the model failed numerically, zeros if none)."""

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    is_nonfinite: jax.Array
    energy: jax.Array
    nonfinite_position: jax.Array

    # Field dtypes: "float" is the position's dtype (see ``Kernel.info_type``).
    KINDS = ("float", "bool", "int32", "bool", "float", "position")


def init(position, logdensity_fn) -> State:
    """Evaluate the log density and its gradient at ``position`` (a flat vector).

    A non-finite log density or gradient is stored as a log density of -inf.
    """
    position = jnp.asarray(position)
    log_density, grad = safe_value_and_grad(logdensity_fn)(position)
    return State(position, log_density, grad)


def energy_error(h0, h):
    """``h - h0`` with NaN mapped to +inf, so that NaN counts as a divergence/rejection."""
    delta = h - h0
    return jnp.where(jnp.isnan(delta), jnp.inf, delta)


def probe(key, state, logdensity_fn, step_size, inverse_mass_matrix):
    """Log acceptance ratio ``H0 - H`` of one leapfrog from ``state`` with a fresh momentum.

    Used by the initial step-size heuristic (Hoffman & Gelman 2014, algorithm 4; Stan's
    ``base_hmc::init_stepsize``). NaN is mapped to -inf.
    """
    metric = gaussian_euclidean(inverse_mass_matrix)
    step_size = jnp.asarray(step_size, state.position.dtype)
    momentum = metric.scale_noise(_counter_rng.normal(
        _counter_rng.key_words(key), _counter_rng.MOMENTUM, state.position.shape, state.position.dtype))
    h0 = metric.kinetic_energy(momentum) - state.log_density
    leapfrog = velocity_verlet(logdensity_fn, metric)
    new = leapfrog(IntegratorState(state.position, momentum, state.log_density, state.grad), step_size)
    h = metric.kinetic_energy(new.momentum) - new.log_density
    return -energy_error(h0, h)


def num_steps_range(num_steps: int, jitter: float):
    """The (low, high) number of leapfrog steps a transition draws from, inclusive."""
    low = max(1, int(round(num_steps * (1.0 - jitter))))
    return low, max(low, int(round(num_steps * (1.0 + jitter))))


def build_kernel(num_steps: int = 10, max_delta_energy: float = 1000.0, jitter: float = 0.0) -> Kernel:
    """Build an HMC transition of ``num_steps`` leapfrog steps.

    Args:
      num_steps: number of leapfrog steps per trajectory (a positive Python int).
      max_delta_energy: energy error above which the transition is flagged divergent.
      jitter: each transition draws its number of steps uniformly from the integers in
        ``num_steps * [1 - jitter, 1 + jitter]`` (at least 1), so that no trajectory length
        is used every time: a fixed length can resonate with the target (a Gaussian of
        period near ``num_steps`` steps returns to its start, and the chain barely moves;
        Neal 2011, section 3.2, "randomly choosing ... L from some fairly small interval";
        Mackenzie 1989). 0 keeps the number fixed.

    Returns:
      A :class:`ppl.mcmc.base.Kernel`; ``kernel(key, state, logdensity_fn, step_size,
      inverse_mass_matrix) -> (State, Info)``.

    Raises:
      ValueError: if ``num_steps`` is not a positive integer.

    Reference: Neal (2011), section 3.2, and figure 2 (the algorithm).
    """
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int; received {num_steps!r}.")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must lie in [0, 1); received {jitter!r}.")
    low, high = num_steps_range(num_steps, jitter)

    def transition(words, state: State, step_size, inverse_mass_matrix, trial, logdensity_fn):
        metric = gaussian_euclidean(inverse_mass_matrix)
        dtype = state.position.dtype
        momentum = metric.scale_noise(
            _counter_rng.normal(words, _counter_rng.MOMENTUM, state.position.shape, dtype))
        h0 = metric.kinetic_energy(momentum) - state.log_density
        leapfrog = velocity_verlet(logdensity_fn, metric)
        start = IntegratorState(state.position, momentum, state.log_density, state.grad, jnp.zeros((), bool))
        if high > low:
            u = _counter_rng.uniform(words, 0, _counter_rng.LENGTH, dtype)
            length = low + jnp.minimum(jnp.floor(u * (high - low + 1)), high - low).astype(jnp.int32)
        else:
            length = jnp.int32(low)
        steps = jnp.where(trial, 1, length)  # a trial move is one leapfrog step

        def one_step(_, c):  # the first point where the model fails numerically is kept
            s, witness = c
            s_new = _cpu_blocks.nested(leapfrog, s, step_size)
            first = s_new.nonfinite & ~s.nonfinite
            return s_new._replace(nonfinite=s.nonfinite | s_new.nonfinite), \
                jnp.where(first, s_new.position, witness)

        end, witness = jax.lax.fori_loop(0, steps, one_step, (start, jnp.zeros_like(state.position)))
        h = metric.kinetic_energy(end.momentum) - end.log_density
        delta = energy_error(h0, h)
        log_u = jnp.log(_counter_rng.uniform(words, 0, _counter_rng.ACCEPT, dtype))
        accept = log_u < -delta
        new_state = jax.tree.map(
            lambda new, old: jnp.where(accept, new, old),
            State(end.position, end.log_density, end.grad),
            state,
        )
        info = Info(
            acceptance_rate=jnp.minimum(1.0, jnp.exp(-delta)).astype(dtype),
            is_divergent=(delta > max_delta_energy) & ~end.nonfinite,
            num_grad_evals=steps.astype(jnp.int32),
            is_nonfinite=end.nonfinite,
            energy=jnp.where(accept, h, h0),
            nonfinite_position=witness,
        )
        return new_state, info

    def step(key, state: State, logdensity_fn, step_size, inverse_mass_matrix, trial=False):
        step_size = jnp.asarray(step_size, state.position.dtype)
        return _cpu_blocks.nested(lambda *a: transition(*a, logdensity_fn), _counter_rng.key_words(key),
                                  state, step_size, inverse_mass_matrix, jnp.asarray(trial))

    return Kernel(step=step, init=init, probe=probe, name="hmc", info_type=Info)
