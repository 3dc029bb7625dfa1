"""ChEES-HMC's transition: jittered HMC whose chains move in lockstep and adapt together.

Reference: Hoffman, Radul & Sountsov (2021), "An adaptive MCMC scheme for setting
trajectory lengths in Hamiltonian Monte Carlo", AISTATS (Algorithm 1, ChEES-HMC).

Every chain runs the same number of leapfrog steps at every iteration: ceil(h_i T / eps),
with h_i the base-2 Halton sequence at iteration i (the paper's jitter, t = h T), T the
trajectory length and eps the step size, both shared by all chains. Within warmup T climbs
the ChEES criterion, estimated across the chains after every transition
(``ppl.adapt.chees``); the step size and the mass matrix are the chain driver's, adapted
from every chain's statistics (``driver.Settings.chain_axis``: dual averaging on the chains'
mean acceptance probability, each slow window's mass matrix from the draws of all chains).
Where the driver re-runs the step-size heuristic (the first iteration, each window's end),
every trial is one leapfrog step of every chain and the heuristic follows the chains' mean
acceptance, so all chains keep one step size. Sampling uses the final step size and the
averaged T, still jittered.

The move is meant to run under ``jax.vmap`` with ``axis_name`` naming the chain axis: it
reduces over it (``jax.lax.pmean``) every iteration. Because the step count and the search
are then the same for every chain, the loops have one trip count for the whole batch (no
chain waits for another and no lane idles), which is what makes the method fast with
hundreds or thousands of chains.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl import _counter_rng
from ppl.adapt import chees as trajectory
from ppl.adapt import initial_step_size as step_search
from ppl.adapt.dual_averaging import quantize
from ppl.mcmc import _cpu_blocks
from ppl.mcmc.base import Move
from ppl.mcmc.hmc import energy_error
from ppl.mcmc.integrators import IntegratorState, safe_value_and_grad, velocity_verlet
from ppl.mcmc.metrics import gaussian_euclidean


class State(NamedTuple):
    """A chain's position with its log density and gradient, the shared trajectory
    adaptation (:class:`ppl.adapt.chees.TrajectoryState`), the number of transitions made
    (``iteration``: it picks the jitter and says whether warmup is over) and the inverse
    mass matrix of the last one (where the driver changes it, T is rescaled)."""

    position: jax.Array
    log_density: jax.Array
    grad: jax.Array
    trajectory: trajectory.TrajectoryState
    iteration: jax.Array
    inverse_mass_matrix: jax.Array


class Info(NamedTuple):
    """One transition: the core fields (``ppl.mcmc.base``), ``energy`` (the Hamiltonian at
    the returned state), ``trajectory_length`` (T in effect, before the jitter) and
    ``nonfinite_position`` (the first point where the model failed, zeros if none)."""

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    is_nonfinite: jax.Array
    energy: jax.Array
    trajectory_length: jax.Array
    nonfinite_position: jax.Array

    KINDS = ("float", "bool", "int32", "bool", "float", "float", "position")


def init(position, logdensity_fn, dense_mass: bool = False) -> State:
    """The state at ``position`` (log density and gradient; non-finite ones read as -inf),
    under the unit metric the driver starts with (diagonal, or dense with ``dense_mass``)."""
    position = jnp.asarray(position)
    log_density, grad = safe_value_and_grad(logdensity_fn)(position)
    d = position.shape[0]
    imm = jnp.eye(d, dtype=position.dtype) if dense_mass else jnp.ones((d,), position.dtype)
    return State(position, log_density, grad, trajectory.init(position.dtype), jnp.zeros((), jnp.int32), imm)


def _info_shapes(position, dtype):
    def shape(kind):
        if kind == "position":
            return jax.ShapeDtypeStruct(jnp.shape(position), dtype)
        return jax.ShapeDtypeStruct((), dtype if kind == "float" else jnp.dtype(kind))

    return Info(*(shape(kind) for kind in Info.KINDS))


def _transition(words, state: State, step_size, inverse_mass_matrix, steps, logdensity_fn):
    """``steps`` leapfrog steps from ``state`` with a fresh momentum, then the Metropolis
    correction (Neal 2011, section 3.2). Returns the next (position, log density, gradient),
    the ``Info`` (its ``trajectory_length`` left 0) and the trajectory's end (the proposal
    and its momentum, for the ChEES gradient)."""
    metric = gaussian_euclidean(inverse_mass_matrix)
    dtype = state.position.dtype
    momentum = metric.scale_noise(_counter_rng.normal(words, _counter_rng.MOMENTUM, state.position.shape, dtype))
    h0 = metric.kinetic_energy(momentum) - state.log_density
    leapfrog = velocity_verlet(logdensity_fn, metric)
    begin = IntegratorState(state.position, momentum, state.log_density, state.grad, jnp.zeros((), bool))

    def one_step(_, c):  # the first point where the model fails numerically is kept
        s, witness = c
        s_new = _cpu_blocks.nested(leapfrog, s, step_size)
        first = s_new.nonfinite & ~s.nonfinite
        return s_new._replace(nonfinite=s.nonfinite | s_new.nonfinite), jnp.where(first, s_new.position, witness)

    end, witness = jax.lax.fori_loop(0, steps, one_step, (begin, jnp.zeros_like(state.position)))
    h = metric.kinetic_energy(end.momentum) - end.log_density
    delta = energy_error(h0, h)
    accept = jnp.log(_counter_rng.uniform(words, 0, _counter_rng.ACCEPT, dtype)) < -delta
    moved = jax.tree.map(lambda new, old: jnp.where(accept, new, old),
                         (end.position, end.log_density, end.grad), (state.position, state.log_density, state.grad))
    info = Info(acceptance_rate=jnp.minimum(1.0, jnp.exp(-delta)).astype(dtype),
                is_divergent=(delta > 1000.0) & ~end.nonfinite,
                num_grad_evals=jnp.asarray(steps, jnp.int32),
                is_nonfinite=end.nonfinite,
                energy=jnp.where(accept, h, h0),
                trajectory_length=jnp.zeros((), dtype),
                nonfinite_position=witness)
    return moved, info, (end.position, end.momentum)


def build_move(num_warmup: int, axis_name: str, max_leapfrog_steps: int = 1000,
               learning_rate: float = trajectory.LEARNING_RATE, dense_mass: bool = False) -> Move:
    """The ChEES-HMC :class:`ppl.mcmc.base.Move` for the chain driver.

    Args:
      num_warmup: warmup iterations: the trajectory length adapts during the first
        ``num_warmup`` transitions of each chain and is fixed afterwards.
      axis_name: the name of the ``vmap`` axis over the chains (the move reduces over it).
      max_leapfrog_steps: at most this many leapfrog steps per transition (T is kept below
        that many step sizes).
      learning_rate: Adam's learning rate for log T.
      dense_mass: the driver adapts a dense inverse mass matrix (else diagonal).

    Returns:
      A ``Move`` of one adapted block (every coordinate); its state is :class:`State`, its
      ``Info`` :class:`Info`. Run it through ``driver.advance`` under ``jax.vmap(...,
      axis_name=axis_name)`` with ``driver.Settings(chain_axis=axis_name)``.
    """

    def shapes(state, logdensity_fn, params, dtype):
        return (_info_shapes(state.position, dtype),)

    def step(key, state: State, logdensity_fn, params, search):
        (eps, imm), = params
        dtype = state.position.dtype
        words = _counter_rng.key_words(key)
        # Equal in every chain; reduced, they become one value for the whole batch (not a
        # per-chain copy), so the loops below have one trip count.
        eps = jax.lax.pmax(jnp.asarray(eps, dtype), axis_name)
        iteration = jax.lax.pmax(state.iteration, axis_name)
        adapting = iteration < num_warmup
        # Where the driver has just changed the metric (a window ended), T follows it first.
        traj = jax.lax.cond(adapting & search, lambda t: trajectory.rescale(t, state.inverse_mass_matrix, imm),
                            lambda t: t, state.trajectory)
        log_length = jax.lax.pmax(trajectory.length(traj, adapting), axis_name)
        jitter = trajectory.halton(iteration + 1, dtype)

        def run(k, step_size, steps):
            return _cpu_blocks.nested(lambda *a: _transition(*a, logdensity_fn), k, state, step_size, imm, steps)

        def body(c):
            found, _, _ = c
            trial = ~found.done  # a step-size trial: one leapfrog step of every chain
            k = jnp.where(trial, step_search.trial_key(words, found.trial), words)
            steps = jnp.where(trial, 1, trajectory.num_steps(log_length, found.step_size, jitter, max_leapfrog_steps))
            out = run(k, found.step_size, steps)
            mean_accept = quantize(jax.lax.pmean(out[1].acceptance_rate, axis_name))
            found = jax.tree.map(lambda a, b: jnp.where(trial, a, b), step_search.update(found, mean_accept), found)
            return found, ~trial, out

        x0 = jnp.zeros_like(state.position)
        zeros = ((x0, jnp.zeros_like(state.log_density), x0),
                 jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), _info_shapes(state.position, dtype)), (x0, x0))
        found, _, (moved, info, (proposal, momentum)) = jax.lax.while_loop(
            lambda c: ~c[1], body, (step_search.start(eps, search), jnp.zeros((), bool), zeros))
        used = found.step_size

        def adapt(traj):
            traj = trajectory.start(traj, used, search)  # the T this transition used (one step at first)
            grad = trajectory.gradient(state.position, proposal, momentum, info.acceptance_rate, imm, jitter,
                                       traj.log_length, axis_name)
            return trajectory.update(traj, grad, used, max_leapfrog_steps, learning_rate)

        traj = jax.lax.cond(adapting, adapt, lambda t: t, traj)
        info = info._replace(trajectory_length=jnp.exp(log_length).astype(dtype))
        new = State(*moved, traj, iteration + 1, jnp.asarray(imm, dtype))
        return new, (info,), (used,)

    return Move(blocks=(None,), init=lambda z, f: init(z, f, dense_mass), step=step,
                position=lambda s: s.position, info_shapes=shapes,
                name="chees", restart_at_windows=True)
