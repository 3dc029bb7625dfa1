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

from ppl.mcmc import _counter_rng, _cpu_blocks, hmc
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
    """The while-loop carry, packed into four arrays (see ``_cpu_blocks``: few, large ops).

    ``vectors`` rows: backward end (position, momentum, grad, velocity) 0-3, forward end
    4-7, trajectory draw (position, grad) 8-9, subtree draw 10-11, trajectory momentum sum
    12. ``scalars``: log densities of the ends 0-1, trajectory draw (log density, energy)
    2-3, subtree draw 4-5, log sum of weights of the trajectory 6 and of the subtree 7, sum
    of acceptance probabilities 8. ``counters``: doublings merged, leaf index in the current
    subtree, leapfrog steps, diverging, done. ``stack``: (p_beg, v_beg, p_end, v_end, rho)
    of the pending left tree at each level, shape (5, max_tree_depth, d).
    """

    vectors: jax.Array
    scalars: jax.Array
    counters: jax.Array
    stack: jax.Array


_END = (0, 4)  # first row of the backward / forward end; rows x, p, g, v follow
_X, _P, _G, _V = range(4)
_DRAW, _SUB, _RHO = 8, 10, 12
_END_LD, _DRAW_LD, _SUB_LD, _LSW, _SUB_LSW, _SUM_ACCEPT = 0, 2, 4, 6, 7, 8
_DEPTH, _LEAF, _STEPS, _DIVERGING, _DONE = range(5)


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


def _merge_ok(stack, p, v):
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
    rho_r = p + jnp.cumsum(rho_l, axis=0) - rho_l
    rho_lr, rho_l_ext, rho_r_ext = rho_l + rho_r, rho_l + r_beg_p, rho_r + p_end
    ok = (no_u_turn(v_beg, v, rho_lr) & no_u_turn(v_beg, r_beg_v, rho_l_ext)
          & no_u_turn(v_end, v, rho_r_ext))
    return ok, rho_r, r_beg_p, r_beg_v


def _build_trajectory(key, state: State, momentum, direction_bits, logdensity_fn, step_size,
                      inverse_mass_matrix, max_tree_depth, max_delta_energy):
    """Run the NUTS trajectory from ``(state, momentum)``; returns the final loop carry.

    ``direction_bits`` (uint32): bit k set means the k-th doubling goes forward in time.
    ``key`` (uint32[2], a ``_counter_rng`` key) drives the within-subtree and
    between-subtree multinomial draws only, so the trajectory's extent (hence the number of
    steps and the depth) depends on the momentum and the directions alone.
    """
    metric = gaussian_euclidean(inverse_mass_matrix)
    leapfrog = velocity_verlet(logdensity_fn, metric)
    dtype = state.position.dtype
    step_size = jnp.asarray(step_size, dtype)
    levels = jnp.arange(max_tree_depth, dtype=jnp.int32)

    velocity = metric.velocity(momentum)
    h0 = 0.5 * jnp.sum(momentum * velocity) - state.log_density
    start = [state.position, momentum, state.grad, velocity]
    draw = [state.position, state.grad]
    ld = state.log_density
    carry = _Carry(
        vectors=jnp.stack(start + start + draw + draw + [momentum]),
        scalars=jnp.stack([ld, ld, ld, h0, ld, h0, jnp.zeros_like(h0), jnp.full_like(h0, -jnp.inf),
                           jnp.zeros_like(h0)]),
        counters=jnp.zeros((5,), jnp.int32),
        stack=jnp.zeros((5, max_tree_depth) + momentum.shape, dtype),
    )

    def going_forward(c):
        return ((direction_bits >> c.counters[_DEPTH].astype(jnp.uint32)) & 1) == 1

    def integrate(c: _Carry):
        """Stage 1: one leapfrog step from the end being extended; its energy."""
        forward = going_forward(c)
        near = jnp.where(forward, c.vectors[4:8], c.vectors[0:4])
        near_ld = jnp.where(forward, c.scalars[1], c.scalars[0])
        eps = jnp.where(forward, step_size, -step_size)
        new = leapfrog(IntegratorState(near[_X], near[_P], near_ld, near[_G]), eps)
        v = metric.velocity(new.momentum)
        h = 0.5 * jnp.sum(new.momentum * v) - new.log_density
        return jnp.stack([new.position, new.momentum, new.grad, v]), jnp.stack([new.log_density, h])

    def update(c: _Carry, point, point_scalars) -> _Carry:
        """Stage 2: multinomial draws, U-turn checks, stack and trajectory bookkeeping."""
        depth, leaf, num_steps = c.counters[_DEPTH], c.counters[_LEAF], c.counters[_STEPS] + 1
        forward = going_forward(c)
        first = leaf == 0
        near = jnp.where(forward, c.vectors[4:8], c.vectors[0:4])
        far = jnp.where(forward, c.vectors[0:4], c.vectors[4:8])
        p, v = point[_P], point[_V]
        new_ld, h = point_scalars[0], point_scalars[1]
        delta = hmc.energy_error(h0, h)
        log_weight = -delta
        diverging = delta > max_delta_energy
        sum_accept = c.scalars[_SUM_ACCEPT] + jnp.minimum(1.0, jnp.exp(log_weight))
        u_leaf, u_merge = _counter_rng.uniform(
            key, num_steps, jnp.array([_counter_rng.LEAF, _counter_rng.MERGE], jnp.uint32), dtype)

        # Uniform progressive sampling inside the subtree.
        sub_lsw = jnp.logaddexp(jnp.where(first, -jnp.inf, c.scalars[_SUB_LSW]), log_weight)
        take = jnp.log(u_leaf) < log_weight - sub_lsw
        sub_draw = jnp.where(take, point[jnp.array([_X, _G])], c.vectors[_SUB:_SUB + 2])
        sub_scalars = jnp.where(take, point_scalars, c.scalars[_SUB_LD:_SUB_LD + 2])

        # A new subtree starts: push the trajectory (far end first) to level `depth`.
        trajectory = jnp.stack([far[_P], far[_V], near[_P], near[_V], c.vectors[_RHO]])
        push = (first & (levels == depth))[None, :, None]
        stack = jnp.where(push, trajectory[:, None, :], c.stack)

        # U-turn checks of every merge completed at this leaf, vectorised over levels; at the
        # subtree's last leaf, level `depth` is the merge with the trajectory.
        t = _trailing_ones(leaf)
        last = leaf == (1 << depth) - 1
        ok, rho_r, r_beg_p, r_beg_v = _merge_ok(stack, p, v)
        fail = ~ok & (levels < t + last.astype(jnp.int32))
        sub_turning = jnp.any(fail & (levels < t))
        trajectory_turning = jnp.any(fail & (levels == t))

        # Push the tree of 2**t leaves ending here (it has no right partner yet).
        keep = ((levels == t) & ~last)[None, :, None]
        bcast = jnp.broadcast_to
        entry = jnp.stack([r_beg_p, r_beg_v, bcast(p, r_beg_p.shape), bcast(v, r_beg_p.shape), rho_r])
        stack = jnp.where(keep, entry, stack)

        # A valid finished subtree is merged: biased progressive sampling (Betancourt A.3.2).
        invalid = diverging | sub_turning
        merge = last & ~invalid
        lsw = c.scalars[_LSW]
        take_sub = merge & (jnp.log(u_merge) < sub_lsw - lsw)
        draw = jnp.where(take_sub, sub_draw, c.vectors[_DRAW:_DRAW + 2])
        draw_scalars = jnp.where(take_sub, sub_scalars, c.scalars[_DRAW_LD:_DRAW_LD + 2])
        lsw = jnp.where(merge, jnp.logaddexp(lsw, sub_lsw), lsw)
        sub_rho = jnp.sum(jnp.where((levels == t)[:, None], rho_r, 0.0), axis=0)
        rho = jnp.where(merge, c.vectors[_RHO] + sub_rho, c.vectors[_RHO])
        depth = depth + merge.astype(jnp.int32)
        done = invalid | (merge & (trajectory_turning | (depth >= max_tree_depth)))

        backward_end = jnp.where(forward, c.vectors[0:4], point)
        forward_end = jnp.where(forward, point, c.vectors[4:8])
        end_lds = jnp.where(forward, jnp.stack([c.scalars[0], new_ld]), jnp.stack([new_ld, c.scalars[1]]))
        return _Carry(
            vectors=jnp.concatenate([backward_end, forward_end, draw, sub_draw, rho[None]]),
            scalars=jnp.concatenate([end_lds, draw_scalars, sub_scalars,
                                     jnp.stack([lsw, sub_lsw, sum_accept])]),
            counters=jnp.stack([depth, jnp.where(last, 0, leaf + 1), num_steps,
                                diverging.astype(jnp.int32), done.astype(jnp.int32)]),
            stack=stack,
        )

    def body(c: _Carry) -> _Carry:
        point, point_scalars = _cpu_blocks.nested(integrate, c)
        return _cpu_blocks.nested(update, c, point, point_scalars)

    return jax.lax.while_loop(lambda c: c.counters[_DONE] == 0, body, carry)


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
        num_steps = c.counters[_STEPS]
        new_state = State(c.vectors[_DRAW + _X], c.scalars[_DRAW_LD], c.vectors[_DRAW + 1])
        info = Info(
            acceptance_rate=c.scalars[_SUM_ACCEPT] / num_steps.astype(dtype),
            is_divergent=c.counters[_DIVERGING] == 1,
            num_grad_evals=num_steps,
            energy=c.scalars[_DRAW_LD + 1],
            tree_depth=c.counters[_DEPTH],
            num_steps=num_steps,
        )
        return new_state, info

    return Kernel(step=step, init=init, probe=hmc.probe, name="nuts")
