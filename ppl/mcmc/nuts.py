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

from ppl.mcmc import _counter_rng, hmc
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


class _Carry(NamedTuple):
    """The while-loop carry, packed into few arrays (each array costs a kernel per step).

    Row layouts: an end or a new point is (position, momentum, grad, velocity); a draw is
    (position, grad) with scalars (log_density, energy); a stack level is
    (p_beg, v_beg, p_end, v_end, rho) of a pending left tree.
    """

    ends: jax.Array  # (2, 4, d): [backward end, forward end]
    ends_log_density: jax.Array  # (2,)
    draws: jax.Array  # (2, 2, d): [trajectory draw, subtree draw]
    draws_scalars: jax.Array  # (2, 2): [trajectory, subtree] x [log_density, energy]
    rho: jax.Array  # (d,): momentum sum of the trajectory before the current subtree
    weights: jax.Array  # (3,): log sum weight of trajectory, of subtree; sum of accept probs
    stack: jax.Array  # (5, max_tree_depth, d)
    counters: jax.Array  # (3,) int32: depth (doublings merged), leaf in subtree, num_steps
    flags: jax.Array  # (2,) bool: diverging, done


_X, _P, _G, _V = range(4)  # rows of an end
_LSW, _SUB_LSW, _SUM_ACCEPT = range(3)  # entries of weights


def init(position, logdensity_fn) -> State:
    """Evaluate the log density and its gradient at ``position`` (a flat vector).

    A non-finite log density or gradient is stored as a log density of -inf.
    """
    position = jnp.asarray(position)
    log_density, grad = safe_value_and_grad(logdensity_fn)(position)
    return State(position, log_density, grad)


def _trailing_ones(n):
    """Number of trailing one bits of a non-negative int32 ``n``."""
    return jax.lax.population_count(n ^ (n + 1)) - 1


def _merge_ok(stack, p, v, max_tree_depth):
    """No-U-turn checks of merging each stack level (L) with the tree (R) ending at (p, v).

    Level k's R is the tree of 2**k leaves ending at the current leaf; its first point is the
    leaf itself (k = 0) or level k-1's first point, and its momentum sum is p plus the sums
    of levels 0..k-1. Stan's three checks per merge: the merged tree, L extended by R's first
    point, R extended by L's last point (Betancourt 2017, A.4.2; Stan ``base_nuts``).

    Returns ``(ok, rho_r, r_beg_p, r_beg_v)``; ``ok`` has shape (max_tree_depth,).
    """
    p_beg, v_beg, p_end, v_end, rho_l = stack
    r_beg_p = jnp.concatenate([p[None], p_beg[:-1]])
    r_beg_v = jnp.concatenate([v[None], v_beg[:-1]])
    rows, acc = [p], p
    for k in range(max_tree_depth - 1):
        acc = acc + rho_l[k]
        rows.append(acc)
    rho_r = jnp.stack(rows)
    rho_lr, rho_l_ext, rho_r_ext = rho_l + rho_r, rho_l + r_beg_p, rho_r + p_end
    v = jnp.broadcast_to(v, v_beg.shape)
    dots = jnp.sum(
        jnp.stack([v_beg, v, v_beg, r_beg_v, v_end, v])
        * jnp.stack([rho_lr, rho_lr, rho_l_ext, rho_l_ext, rho_r_ext, rho_r_ext]),
        axis=-1,
    )
    return jnp.all(dots > 0, axis=0), rho_r, r_beg_p, r_beg_v


def _build_trajectory(key, state: State, momentum, direction_bits, logdensity_fn, step_size,
                      inverse_mass_matrix, max_tree_depth, max_delta_energy):
    """Run the NUTS trajectory from ``(state, momentum)``; returns the final loop carry.

    ``direction_bits`` (uint32): bit k set means the k-th doubling goes forward in time.
    ``key`` (uint32[2], a ``_counter_rng`` key) drives the within-subtree and
    between-subtree multinomial draws only, so the trajectory's extent (hence ``num_steps``
    and ``depth``) depends on the momentum and the directions alone.
    """
    metric = gaussian_euclidean(inverse_mass_matrix)
    leapfrog = velocity_verlet(logdensity_fn, metric)
    dtype = state.position.dtype
    step_size = jnp.asarray(step_size, dtype)
    levels = jnp.arange(max_tree_depth, dtype=jnp.int32)
    sides = jnp.arange(2, dtype=jnp.int32)

    velocity = metric.velocity(momentum)
    h0 = 0.5 * jnp.sum(momentum * velocity) - state.log_density
    start = jnp.stack([state.position, momentum, state.grad, velocity])
    draw = jnp.stack([state.position, state.grad])
    carry = _Carry(
        ends=jnp.stack([start, start]),
        ends_log_density=jnp.stack([state.log_density, state.log_density]),
        draws=jnp.stack([draw, draw]),
        draws_scalars=jnp.stack([jnp.stack([state.log_density, h0])] * 2),
        rho=momentum,
        weights=jnp.array([0.0, -jnp.inf, 0.0], dtype),
        stack=jnp.zeros((5, max_tree_depth) + momentum.shape, dtype),
        counters=jnp.zeros((3,), jnp.int32),
        flags=jnp.zeros((2,), bool),
    )

    def body(c: _Carry) -> _Carry:
        depth, leaf, num_steps = c.counters[0], c.counters[1], c.counters[2] + 1
        forward = ((direction_bits >> depth.astype(jnp.uint32)) & 1) == 1
        near = jnp.where(forward, c.ends[1], c.ends[0])
        far = jnp.where(forward, c.ends[0], c.ends[1])
        near_log_density = jnp.where(forward, c.ends_log_density[1], c.ends_log_density[0])
        first = leaf == 0

        # A new subtree starts: push the trajectory (far end first) to level `depth`.
        trajectory = jnp.stack([far[_P], far[_V], near[_P], near[_V], c.rho])
        push = (first & (levels == depth))[None, :, None]
        stack = jnp.where(push, trajectory[:, None, :], c.stack)

        # One leapfrog step from the end being extended.
        eps = jnp.where(forward, step_size, -step_size)
        new = leapfrog(IntegratorState(near[_X], near[_P], near_log_density, near[_G]), eps)
        p = new.momentum
        v = metric.velocity(p)
        h = 0.5 * jnp.sum(p * v) - new.log_density
        delta = hmc.energy_error(h0, h)
        log_weight = -delta
        diverging = delta > max_delta_energy
        sum_accept = c.weights[_SUM_ACCEPT] + jnp.minimum(1.0, jnp.exp(log_weight))

        # Uniform progressive sampling inside the subtree.
        sub_lsw = jnp.logaddexp(jnp.where(first, -jnp.inf, c.weights[_SUB_LSW]), log_weight)
        u_leaf = _counter_rng.uniform(key, num_steps, _counter_rng.LEAF, dtype)
        take = jnp.log(u_leaf) < log_weight - sub_lsw
        sub_draw = jnp.where(take, jnp.stack([new.position, new.grad]), c.draws[1])
        sub_scalars = jnp.where(take, jnp.stack([new.log_density, h]), c.draws_scalars[1])

        # U-turn checks of every merge completed at this leaf, vectorised over levels; at the
        # subtree's last leaf, level `depth` is the merge with the trajectory.
        t = _trailing_ones(leaf)
        last = leaf == (1 << depth) - 1
        ok, rho_r, r_beg_p, r_beg_v = _merge_ok(stack, p, v, max_tree_depth)
        fail = ~ok & (levels < t + last.astype(jnp.int32))
        sub_turning = jnp.any(fail & (levels < t))
        trajectory_turning = jnp.any(fail & (levels == t))

        # Push the tree of 2**t leaves ending here (it has no right partner yet).
        keep = ((levels == t) & ~last)[None, :, None]
        pb = jnp.broadcast_to
        entry = jnp.stack([r_beg_p, r_beg_v, pb(p, r_beg_p.shape), pb(v, r_beg_p.shape), rho_r])
        stack = jnp.where(keep, entry, stack)

        # A valid finished subtree is merged: biased progressive sampling (Betancourt A.3.2).
        invalid = diverging | sub_turning
        merge = last & ~invalid
        u_merge = _counter_rng.uniform(key, num_steps, _counter_rng.MERGE, dtype)
        take_sub = merge & (jnp.log(u_merge) < sub_lsw - c.weights[_LSW])
        draws = jnp.stack([jnp.where(take_sub, sub_draw, c.draws[0]), sub_draw])
        draws_scalars = jnp.stack([jnp.where(take_sub, sub_scalars, c.draws_scalars[0]), sub_scalars])
        lsw = jnp.where(merge, jnp.logaddexp(c.weights[_LSW], sub_lsw), c.weights[_LSW])
        sub_rho = jnp.sum(jnp.where((levels == t)[:, None], rho_r, 0.0), axis=0)
        depth = depth + merge.astype(jnp.int32)
        done = invalid | (merge & (trajectory_turning | (depth >= max_tree_depth)))

        side = (sides == forward.astype(jnp.int32))
        point = jnp.stack([new.position, p, new.grad, v])
        return _Carry(
            ends=jnp.where(side[:, None, None], point[None], c.ends),
            ends_log_density=jnp.where(side, new.log_density, c.ends_log_density),
            draws=draws,
            draws_scalars=draws_scalars,
            rho=jnp.where(merge, c.rho + sub_rho, c.rho),
            weights=jnp.stack([lsw, sub_lsw, sum_accept]),
            stack=stack,
            counters=jnp.stack([depth, jnp.where(last, 0, leaf + 1), num_steps]),
            flags=jnp.stack([diverging, done]),
        )

    return jax.lax.while_loop(lambda c: ~c.flags[1], body, carry)


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
        words = _counter_rng.key_words(key)
        dtype = state.position.dtype
        noise = _counter_rng.normal(words, _counter_rng.MOMENTUM, state.position.shape, dtype)
        momentum = metric.scale_noise(noise)
        direction_bits = _counter_rng.bits(words, 0, _counter_rng.DIRECTION)
        c = _build_trajectory(words, state, momentum, direction_bits, logdensity_fn, step_size,
                              inverse_mass_matrix, max_tree_depth, max_delta_energy)
        num_steps = c.counters[2]
        new_state = State(c.draws[0, 0], c.draws_scalars[0, 0], c.draws[0, 1])
        info = Info(
            acceptance_rate=c.weights[_SUM_ACCEPT] / num_steps.astype(dtype),
            is_divergent=c.flags[0],
            num_grad_evals=num_steps,
            energy=c.draws_scalars[0, 1],
            tree_depth=c.counters[0],
            num_steps=num_steps,
        )
        return new_state, info

    return Kernel(step=step, init=init, probe=hmc.probe, name="nuts")
