"""The No-U-Turn Sampler: multinomial NUTS as in Stan, built iteratively.

The trajectory doubles forwards or backwards in time (Hoffman & Gelman 2014, section 3).
Points are drawn from the trajectory in proportion to exp(-H) (multinomial sampling):
uniform progressive sampling inside a new subtree, biased progressive sampling when a
subtree is merged into the trajectory (Betancourt 2017, "A Conceptual Introduction to
HMC", appendix A.3.2). The trajectory stops at the generalised no-U-turn criterion on
momentum sums (appendix A.4.2), with Stan's two extra checks across each pair of merged
subtrees, at a divergence (energy error above 1000), or at ``max_tree_depth`` doublings.

Iterative construction. All leapfrog steps of one transition run in ONE ``lax.while_loop``.
Leaf ``n`` of the subtree being built (of ``2**depth`` leaves) completes the sub-subtrees of
sizes 2, 4, ..., 2**t, where t is the number of trailing one bits of n. A stack of
``max_tree_depth`` levels holds, at level k, the pending left sub-subtree of 2**k leaves
(its first and last momenta and velocities, and its momentum sum); at leaf n the merges at
levels 0..t-1 are checked together, vectorised over levels, and the merged tree is pushed
to level t. The trajectory built so far is pushed to level ``depth`` when a subtree starts,
so the check between the trajectory and a finished subtree is the same merge at one more
level. No Python recursion at trace time; the carry has a fixed size; under ``vmap`` chains
at different depths share the one loop.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl.mcmc import hmc
from ppl.mcmc.base import Kernel
from ppl.mcmc.integrators import IntegratorState, safe_value_and_grad, velocity_verlet
from ppl.mcmc.metrics import gaussian_euclidean, no_u_turn


class State(NamedTuple):
    """Position with its log density and gradient (the gradient is reused by the leapfrog)."""

    position: jax.Array
    log_density: jax.Array
    grad: jax.Array


class Info(NamedTuple):
    """One NUTS transition.

    Fields: core ``acceptance_rate`` (Stan's accept_stat: mean of min(1, exp(H0 - H)) over
    every new point of the trajectory), ``is_divergent``, ``num_grad_evals``; then ``energy``
    (Hamiltonian of the returned point), ``tree_depth`` (number of doublings merged, as Stan's
    treedepth__) and ``num_steps`` (leapfrog steps, equal to ``num_grad_evals``).
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    energy: jax.Array
    tree_depth: jax.Array
    num_steps: jax.Array


class _Point(NamedTuple):
    position: jax.Array
    momentum: jax.Array
    log_density: jax.Array
    grad: jax.Array
    velocity: jax.Array


class _Sample(NamedTuple):
    position: jax.Array
    log_density: jax.Array
    grad: jax.Array
    energy: jax.Array


class _Stack(NamedTuple):
    """Pending left trees, one row per level: end momenta/velocities and momentum sum."""

    p_beg: jax.Array
    v_beg: jax.Array
    p_end: jax.Array
    v_end: jax.Array
    rho: jax.Array


class _Carry(NamedTuple):
    left: _Point  # backward-in-time end of the trajectory
    right: _Point  # forward-in-time end
    proposal: _Sample  # the trajectory's current draw
    sub_proposal: _Sample  # the current subtree's draw
    rho: jax.Array  # momentum sum of the trajectory (before the current subtree)
    log_sum_weight: jax.Array  # log sum of exp(H0 - H) over the trajectory
    sub_log_sum_weight: jax.Array  # the same over the current subtree
    stack: _Stack
    depth: jax.Array  # doublings merged so far; the current subtree has 2**depth leaves
    leaf: jax.Array  # index of the next leaf within the current subtree
    num_steps: jax.Array
    sum_accept: jax.Array
    diverging: jax.Array
    done: jax.Array


def init(position, logdensity_fn) -> State:
    """Evaluate the log density and its gradient at ``position`` (a flat vector).

    A non-finite log density or gradient is stored as a log density of -inf.
    """
    position = jnp.asarray(position)
    log_density, grad = safe_value_and_grad(logdensity_fn)(position)
    return State(position, log_density, grad)


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _trailing_ones(n):
    """Number of trailing one bits of a non-negative int32 ``n``."""
    return jax.lax.population_count(n ^ (n + 1)) - 1


def _build_trajectory(key, state: State, momentum, direction_bits, logdensity_fn, step_size,
                      inverse_mass_matrix, max_tree_depth, max_delta_energy):
    """Run the NUTS trajectory from ``(state, momentum)``; returns the final loop carry.

    ``direction_bits`` (uint32): bit k set means the k-th doubling goes forward in time.
    ``key`` drives the within-subtree and between-subtree multinomial draws only, so the
    trajectory's extent (hence ``num_steps`` and ``depth``) depends on momentum and
    directions alone.
    """
    metric = gaussian_euclidean(inverse_mass_matrix)
    leapfrog = velocity_verlet(logdensity_fn, metric)
    dtype = state.position.dtype
    step_size = jnp.asarray(step_size, dtype)
    levels = jnp.arange(max_tree_depth, dtype=jnp.int32)

    velocity = metric.velocity(momentum)
    h0 = 0.5 * jnp.dot(momentum, velocity) - state.log_density
    start = _Point(state.position, momentum, state.log_density, state.grad, velocity)
    initial = _Sample(state.position, state.log_density, state.grad, h0)
    zeros_stack = jnp.zeros((max_tree_depth,) + momentum.shape, dtype)
    carry = _Carry(
        left=start,
        right=start,
        proposal=initial,
        sub_proposal=initial,
        rho=momentum,
        log_sum_weight=jnp.zeros((), dtype),
        sub_log_sum_weight=jnp.full((), -jnp.inf, dtype),
        stack=_Stack(*(zeros_stack,) * 5),
        depth=jnp.zeros((), jnp.int32),
        leaf=jnp.zeros((), jnp.int32),
        num_steps=jnp.zeros((), jnp.int32),
        sum_accept=jnp.zeros((), dtype),
        diverging=jnp.zeros((), bool),
        done=jnp.zeros((), bool),
    )

    def body(c: _Carry) -> _Carry:
        forward = ((direction_bits >> c.depth.astype(jnp.uint32)) & 1) == 1
        first = c.leaf == 0
        near = _select(forward, c.right, c.left)
        far = _select(forward, c.left, c.right)

        # A new subtree starts: push the trajectory (far end first) to level `depth`.
        push = (first & (levels == c.depth))[:, None]
        stack = _Stack(
            jnp.where(push, far.momentum, c.stack.p_beg),
            jnp.where(push, far.velocity, c.stack.v_beg),
            jnp.where(push, near.momentum, c.stack.p_end),
            jnp.where(push, near.velocity, c.stack.v_end),
            jnp.where(push, c.rho, c.stack.rho),
        )

        # One leapfrog step from the end being extended.
        eps = jnp.where(forward, step_size, -step_size)
        new = leapfrog(IntegratorState(near.position, near.momentum, near.log_density, near.grad), eps)
        p = new.momentum
        v = metric.velocity(p)
        h = 0.5 * jnp.dot(p, v) - new.log_density
        delta = hmc.energy_error(h0, h)
        log_weight = -delta
        diverging = delta > max_delta_energy
        num_steps = c.num_steps + 1
        sum_accept = c.sum_accept + jnp.minimum(1.0, jnp.exp(log_weight))

        # Uniform progressive sampling inside the subtree.
        u = jax.random.uniform(jax.random.fold_in(key, num_steps), (2,), dtype)
        log_u = jnp.log(u)
        sub_lsw = jnp.logaddexp(jnp.where(first, -jnp.inf, c.sub_log_sum_weight), log_weight)
        take = log_u[0] < log_weight - sub_lsw
        sub_proposal = _select(take, _Sample(new.position, new.log_density, new.grad, h), c.sub_proposal)

        # U-turn checks of every merge completed at this leaf, vectorised over levels.
        # Level k merges L = stack[k] with R = the tree of 2**k leaves ending at this leaf.
        t = _trailing_ones(c.leaf)
        last = c.leaf == (1 << c.depth) - 1
        r_beg_p = jnp.concatenate([p[None], stack.p_beg[:-1]])
        r_beg_v = jnp.concatenate([v[None], stack.v_beg[:-1]])
        rho_r = p + jnp.cumsum(stack.rho, axis=0) - stack.rho
        ok = (
            no_u_turn(stack.v_beg, v, stack.rho + rho_r)
            & no_u_turn(stack.v_beg, r_beg_v, stack.rho + r_beg_p)
            & no_u_turn(stack.v_end, v, rho_r + stack.p_end)
        )
        fail = ~ok & (levels < t + last.astype(jnp.int32))
        sub_turning = jnp.any(fail & (levels < t))
        traj_turning = jnp.any(fail & (levels == t))

        # Push the tree of 2**t leaves ending here (it has no right partner yet).
        keep = ((levels == t) & ~last)[:, None]
        stack = _Stack(
            jnp.where(keep, r_beg_p, stack.p_beg),
            jnp.where(keep, r_beg_v, stack.v_beg),
            jnp.where(keep, p, stack.p_end),
            jnp.where(keep, v, stack.v_end),
            jnp.where(keep, rho_r, stack.rho),
        )

        # A valid finished subtree is merged: biased progressive sampling (Betancourt A.3.2).
        invalid = diverging | sub_turning
        merge = last & ~invalid
        take_sub = merge & (log_u[1] < sub_lsw - c.log_sum_weight)
        proposal = _select(take_sub, sub_proposal, c.proposal)
        log_sum_weight = jnp.where(merge, jnp.logaddexp(c.log_sum_weight, sub_lsw), c.log_sum_weight)
        sub_rho = jnp.sum(jnp.where((levels == t)[:, None], rho_r, 0.0), axis=0)
        rho = jnp.where(merge, c.rho + sub_rho, c.rho)
        depth = c.depth + merge.astype(jnp.int32)
        done = invalid | (merge & (traj_turning | (depth >= max_tree_depth)))

        point = _Point(new.position, p, new.log_density, new.grad, v)
        return _Carry(
            left=_select(forward, c.left, point),
            right=_select(forward, point, c.right),
            proposal=proposal,
            sub_proposal=sub_proposal,
            rho=rho,
            log_sum_weight=log_sum_weight,
            sub_log_sum_weight=sub_lsw,
            stack=stack,
            depth=depth,
            leaf=jnp.where(last, 0, c.leaf + 1),
            num_steps=num_steps,
            sum_accept=sum_accept,
            diverging=diverging,
            done=done,
        )

    return jax.lax.while_loop(lambda c: ~c.done, body, carry)


def build_kernel(max_tree_depth: int = 10, max_delta_energy: float = 1000.0) -> Kernel:
    """Build a multinomial NUTS transition (Stan's algorithm, iterative).

    Args:
      max_tree_depth: maximum number of trajectory doublings (at most 2**max_tree_depth - 1
        leapfrog steps); a Python int in [1, 30].
      max_delta_energy: energy error above which a leapfrog step is a divergence.

    Returns:
      A :class:`ppl.mcmc.base.Kernel`; ``kernel(key, state, logdensity_fn, step_size,
      inverse_mass_matrix) -> (State, Info)``. Vmappable and jittable.

    Raises:
      ValueError: if ``max_tree_depth`` is not an int in [1, 30].

    Reference: Hoffman & Gelman (2014), "The No-U-Turn Sampler", algorithm 3 (doubling);
    Betancourt (2017), "A Conceptual Introduction to HMC", appendix A.3.2 (multinomial and
    biased progressive sampling) and A.4.2 (generalised criterion); Stan's ``base_nuts``.
    """
    if not isinstance(max_tree_depth, int) or isinstance(max_tree_depth, bool) or not 1 <= max_tree_depth <= 30:
        raise ValueError(f"max_tree_depth must be an int in [1, 30]; received {max_tree_depth!r}.")

    def step(key, state: State, logdensity_fn, step_size, inverse_mass_matrix):
        metric = gaussian_euclidean(inverse_mass_matrix)
        key_momentum, key_direction, key_tree = jax.random.split(key, 3)
        momentum = metric.sample_momentum(key_momentum, state.position)
        direction_bits = jax.random.bits(key_direction, (), jnp.uint32)
        c = _build_trajectory(key_tree, state, momentum, direction_bits, logdensity_fn, step_size,
                              inverse_mass_matrix, max_tree_depth, max_delta_energy)
        new_state = State(c.proposal.position, c.proposal.log_density, c.proposal.grad)
        info = Info(
            acceptance_rate=c.sum_accept / c.num_steps,
            is_divergent=c.diverging,
            num_grad_evals=c.num_steps,
            energy=c.proposal.energy,
            tree_depth=c.depth,
            num_steps=c.num_steps,
        )
        return new_state, info

    return Kernel(step=step, init=init, probe=hmc.probe, name="nuts")
