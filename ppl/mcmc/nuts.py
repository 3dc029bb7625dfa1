"""The No-U-Turn Sampler: multinomial NUTS as in Stan, built iteratively.

The trajectory doubles forwards or backwards in time (Hoffman & Gelman 2014, section 3).
Points are drawn from the trajectory in proportion to exp(-H) (multinomial sampling):
uniform progressive sampling inside a new subtree, biased progressive sampling when a
subtree is merged into the trajectory (Betancourt 2017, "A Conceptual Introduction to
HMC", appendix A.3.2). The trajectory stops at the generalised no-U-turn criterion on
momentum sums (appendix A.4.2), with Stan's two extra checks across each pair of merged
subtrees, at a divergence (energy error above 1000), or at ``max_tree_depth`` doublings.

Iterative construction. All leapfrog steps of one transition run in ONE ``lax.while_loop``,
whose carry (:class:`_Carry`) is packed into four arrays and read through named views (the
ends as :class:`Point` s, the draws as :class:`Sample` s, :class:`Weights`,
:class:`Counters`).
Leaf ``n`` of the subtree being built (of ``2**depth`` leaves) completes the sub-subtrees of
sizes 2, 4, ..., 2**t, where t is the number of trailing one bits of n. A stack of
``max_tree_depth`` levels holds, at level k, the pending left sub-subtree of 2**k leaves
(its first and last momenta and velocities, and its momentum sum); at leaf n the merges at
levels 0..t-1 are checked together, vectorised over the fewest levels that hold them
(:func:`check_levels`), and the merged tree is pushed to level t. The trajectory (far end
first) sits at level ``depth`` while a subtree is built (pushed at the start and after every
merge), so the check between the trajectory and a finished subtree is the same merge at one
more level. No Python recursion at trace time; the
carry has a fixed size; under ``vmap`` chains at different depths share the one loop, and the
count of leapfrog steps is exact (one gradient per step, none for the initial point).

Each loop iteration runs as five small stages (drift, gradient, kick and energy, U-turn
checks, bookkeeping) nested as separate computations: see ``_cpu_blocks`` for why.
"""
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl import _counter_rng
from ppl.mcmc import _cpu_blocks, hmc
from ppl.mcmc.base import Kernel, Resumable
from ppl.mcmc.integrators import is_nonfinite, safe_value_and_grad, sanitize
from ppl.mcmc.metrics import gaussian_euclidean


class State(NamedTuple):
    """Position with its log density and gradient (the gradient is reused by the leapfrog)."""

    position: jax.Array
    log_density: jax.Array
    grad: jax.Array


class Info(NamedTuple):
    """One NUTS transition.

    Fields: core ``acceptance_rate`` (Stan's accept_stat: mean of min(1, exp(H0 - H)) over
    every new point of the trajectory), ``is_divergent``, ``num_grad_evals``,
    ``is_nonfinite`` (the trajectory ended at a point where the model failed numerically);
    then ``energy`` (Hamiltonian of the returned point), ``tree_depth`` (number of doublings
    merged, as Stan's treedepth__), ``num_steps`` (leapfrog steps, equal to
    ``num_grad_evals``) and ``nonfinite_position`` (that point, or zeros).
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    is_nonfinite: jax.Array
    energy: jax.Array
    tree_depth: jax.Array
    num_steps: jax.Array
    nonfinite_position: jax.Array

    # Field dtypes: "float" is the position's dtype (see ``Kernel.info_type``).
    KINDS = ("float", "bool", "int32", "bool", "float", "int32", "int32", "position")


class Point(NamedTuple):
    """A point of the trajectory: position, momentum, gradient and velocity (each (d,)) and
    its log density."""

    position: jax.Array
    momentum: jax.Array
    grad: jax.Array
    velocity: jax.Array
    log_density: jax.Array


class Sample(NamedTuple):
    """A multinomial draw from (part of) the trajectory: its position, gradient, log density
    and energy."""

    position: jax.Array
    grad: jax.Array
    log_density: jax.Array
    energy: jax.Array


class Counters(NamedTuple):
    """Doublings merged (``depth``), leaf index in the current subtree, leapfrog steps, and
    whether the trajectory diverged, is done, or ended at a numerical failure (0/1)."""

    depth: jax.Array
    leaf: jax.Array
    steps: jax.Array
    diverging: jax.Array
    done: jax.Array
    failed: jax.Array


class Weights(NamedTuple):
    """Log sums of the multinomial weights of the trajectory and of the subtree being built,
    and the sum of the acceptance probabilities of every new point."""

    log_sum: jax.Array
    sub_log_sum: jax.Array
    sum_accept: jax.Array


class Flags(NamedTuple):
    """What one leaf decided (0/1), and ``t``, the number of merges it completes."""

    forward: jax.Array
    take: jax.Array
    take_sub: jax.Array
    merge: jax.Array
    last: jax.Array
    next_forward: jax.Array
    t: jax.Array


class _Carry(NamedTuple):
    """The while-loop carry, PACKED into four arrays (few, large operations: see
    ``_cpu_blocks``; measured, a carry of some thirty separate arrays made a leapfrog 1.5-1.8x
    slower) and read through the named views below, the one place that knows the layout:

    ``vectors`` (13, d): the backward end's and the forward end's :class:`Point` vectors
    (position, momentum, grad, velocity), the trajectory's and the subtree's :class:`Sample`
    vectors (position, grad), and the trajectory's momentum sum; ``scalars`` (9,): the ends'
    log densities, the two samples' (log density, energy), the :class:`Weights`;
    ``counters`` (6,): the :class:`Counters`; ``stack`` (5, max_tree_depth, d): per level,
    the pending left tree's first momentum and velocity, last momentum and velocity, and
    momentum sum (see :func:`_merge_ok`); in :func:`resumable`'s form, one spare level on
    top (see :func:`_leaf`).
    """

    vectors: jax.Array
    scalars: jax.Array
    counters: jax.Array
    stack: jax.Array

    @property
    def backward(self) -> Point:
        return Point(*self.vectors[0:4], self.scalars[0])

    @property
    def forward(self) -> Point:
        return Point(*self.vectors[4:8], self.scalars[1])

    @property
    def draw(self) -> Sample:
        return Sample(*self.vectors[8:10], *self.scalars[2:4])

    @property
    def sub_draw(self) -> Sample:
        return Sample(*self.vectors[10:12], *self.scalars[4:6])

    @property
    def momentum_sum(self):
        return self.vectors[12]

    @property
    def weights(self) -> Weights:
        return Weights(*self.scalars[6:9])

    @property
    def count(self) -> Counters:
        return Counters(*self.counters)


def _pack_vectors(backward: Point, forward: Point, draw: Sample, sub_draw: Sample, momentum_sum):
    return jnp.stack([*backward[:4], *forward[:4], *draw[:2], *sub_draw[:2], momentum_sum])


def _pack_scalars(backward: Point, forward: Point, draw: Sample, sub_draw: Sample, weights: Weights):
    return jnp.stack([backward.log_density, forward.log_density, *draw[2:], *sub_draw[2:], *weights])


def typical_steps(max_tree_depth: int) -> int:
    """Leapfrog steps of a typical transition, for compile-time estimates of the work:
    2**3 - 1 to 2**4 - 1 (9 on average measured on the logistic regression of
    benchmarks/bench_mcmc.py), at most what ``max_tree_depth`` allows."""
    return min(10, 2 ** max_tree_depth - 1)


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


def _initial_carry(state: State, momentum, velocity, max_tree_depth, stack=None, go=None, spare=False):
    """The loop carry of a trajectory holding only the initial point, and H0. The stack is
    zeros (with a ``spare`` level on top, written by a step not taken: see :func:`_leaf`),
    or ``stack`` (a previous trajectory's, reused in place) with its level 0 written (where
    ``go``, if given): a trajectory reads a level only after writing it (see the module
    docstring)."""
    h0 = 0.5 * jnp.sum(momentum * velocity) - state.log_density
    start = Point(state.position, momentum, state.grad, velocity, state.log_density)
    draw = Sample(state.position, state.grad, state.log_density, h0)
    zero = jnp.zeros_like(h0)
    weights = Weights(zero, zero - jnp.inf, zero)
    first = jnp.stack([momentum, velocity, momentum, velocity, momentum])
    if stack is None:
        stack = jnp.zeros((5, max_tree_depth + spare) + momentum.shape, momentum.dtype).at[:, 0].set(first)
    else:
        if go is not None:
            first = jnp.where(go, first, stack[:, 0])
        stack = _cpu_blocks.nested_update(lambda s, row: s.at[:, 0].set(row), stack, first)
    carry = _Carry(_pack_vectors(start, start, draw, draw, momentum),
                   _pack_scalars(start, start, draw, draw, weights), jnp.zeros((6,), jnp.int32), stack)
    return carry, h0


def _merge_ok(stack, point: Point, batched: bool = False):
    """No-U-turn checks of merging each stack level (L) with the tree (R) ending at ``point``.

    Level k's R is the tree of 2**k leaves ending at the current leaf; its first point is the
    leaf itself (k = 0) or level k-1's first point, and its momentum sum is p plus the sums
    of levels 0..k-1. Stan's three checks per merge: the merged tree, L extended by R's first
    point, R extended by L's last point (Betancourt 2017, A.4.2; Stan ``base_nuts``).

    Two formulations of the same arithmetic (the same terms, summed in an order that may
    differ in the last bits, so a verdict on an inner product within rounding of zero could
    differ; tests compare lanes with chains run alone in float64, to 1e-9, with equal step
    counts): ``batched`` for a step batched over lanes
    (``ppl.mcmc.lanes``), where XLA's reduce-window (``cumsum``) is slow, and the six inner
    products are six dot products: as one multiply of two stacks of six, XLA's loop fusion
    of the two concatenations was slow (measured, 16 lanes of a 100-dimensional Gaussian:
    330 us of a batched step; as dot products, NUTS took 24 instead of 54 us per chain and
    gradient; 256 lanes of eight schools: 4.1-4.3 against 4.4-4.6 s); the other for one
    trajectory, where the batched form's extra operations cost more (measured: 2.5 ->
    3.2-3.4 us per leapfrog).

    Returns ``(ok, rho_r, r_beg_p, r_beg_v)``; ``ok`` has shape (max_tree_depth,).
    """
    p, v = point.momentum, point.velocity
    p_beg, v_beg, p_end, v_end, rho_l = stack  # the packed stack's five rows (see _Carry)
    r_beg_p = jnp.concatenate([p[None], p_beg[:-1]])
    r_beg_v = jnp.concatenate([v[None], v_beg[:-1]])
    # R's momentum sums, p + rho_l[0] + ... + rho_l[k-1], summed in that order.
    if batched:
        prefix = [p]
        for level in range(rho_l.shape[0] - 1):
            prefix.append(prefix[-1] + rho_l[level])
        rho_r = jnp.stack(prefix)
    else:
        rho_r = jnp.cumsum(jnp.concatenate([p[None], rho_l[:-1]]), axis=0)
    rho_lr, rho_l_ext, rho_r_ext = rho_l + rho_r, rho_l + r_beg_p, rho_r + p_end
    if batched:  # the six inner products as six dot products (full precision on any backend)
        def dot(a, b):
            return jnp.einsum("kd,kd->k", a, b, precision=jax.lax.Precision.HIGHEST)

        def dot_v(a):
            return jnp.einsum("kd,d->k", a, v, precision=jax.lax.Precision.HIGHEST)
        ok = ((dot(v_beg, rho_lr) > 0) & (dot_v(rho_lr) > 0) & (dot(v_beg, rho_l_ext) > 0)
              & (dot(r_beg_v, rho_l_ext) > 0) & (dot(v_end, rho_r_ext) > 0) & (dot_v(rho_r_ext) > 0))
    else:
        ok = ((jnp.sum(v_beg * rho_lr, axis=-1) > 0) & (jnp.sum(rho_lr * v, axis=-1) > 0)
              & (jnp.sum(v_beg * rho_l_ext, axis=-1) > 0) & (jnp.sum(r_beg_v * rho_l_ext, axis=-1) > 0)
              & (jnp.sum(v_end * rho_r_ext, axis=-1) > 0) & (jnp.sum(rho_r_ext * v, axis=-1) > 0))
    return ok, rho_r, r_beg_p, r_beg_v


class Checks(NamedTuple):
    """The U-turn verdicts of one leaf (see :func:`_turn_checks`): ``sub_turning``, a merge
    inside the subtree fails (levels below t); ``top_turning``, the merge at level t fails
    (read only at a subtree's last leaf, where it is the trajectory's merge with the
    subtree); ``row`` (3, d), the tree of 2**t leaves ending at the leaf: its first momentum
    and velocity and its momentum sum."""

    sub_turning: jax.Array
    top_turning: jax.Array
    row: jax.Array


def _checks_up_to(stack, point: Point, t, levels: int, batched: bool = False) -> Checks:
    """The :class:`Checks` at a leaf completing ``t`` merges (t < ``levels``), from the
    stack's lowest ``levels`` levels only (``batched``: see :func:`_merge_ok`)."""
    ok, rho_r, r_beg_p, r_beg_v = _merge_ok(stack[:, :levels], point, batched)
    sub_turning = jnp.any(~ok & (jnp.arange(levels) < t))
    at = jnp.minimum(t, levels - 1)
    if not batched:
        return Checks(sub_turning, ~ok[at], jnp.stack([r_beg_p[at], r_beg_v[at], rho_r[at]]))
    # R's first point read off the stack (level at - 1) or the leaf, not off r_beg_p and
    # r_beg_v: those are then used in the checks' one loop only, not made as arrays
    # (measured: 2 x 8 of some 190 us of a step batched over 256 chains).
    below = stack[:2, jnp.maximum(at - 1, 0)]
    first = jnp.where(at == 0, jnp.stack([point.momentum, point.velocity]), below)
    return Checks(sub_turning, ~ok[at], jnp.concatenate([first, rho_r[at][None]]))


# Below this many coordinates a leaf checks every level: the choice of levels (a three-way
# branch) costs more to compile than it saves. Measured (2-core CPU, fresh processes,
# interleaved): eight schools (10 coordinates), four chains, first call 1.95 s with the
# choice against 1.74 s without; the 503-dimensional stochastic volatility model, one chain,
# 55-65 us per leapfrog without it against 24-33 with it.
RESTRICT_MIN_DIM = 64


def check_levels(max_tree_depth: int, restrict: bool, dim: int = RESTRICT_MIN_DIM):
    """The stack depths :func:`_turn_checks` chooses from. A leaf completing t merges needs
    levels 0..t only, and t is 0 at half the leaves, 1 at a quarter, ...: checking levels
    0..1, 0..3 or all (whichever is the fewest that suffices) checks about 3 levels per leaf
    instead of ``max_tree_depth``, which matters where the checks (over ``dim``
    coordinates) are a good part of a leapfrog (see ``RESTRICT_MIN_DIM``). Chains batched by
    ``vmap`` would run every branch of the choice (``restrict=False``: all levels)."""
    if not restrict or dim < RESTRICT_MIN_DIM:
        return (max_tree_depth,)
    return tuple(sorted({min(s, max_tree_depth) for s in (2, 4)} | {max_tree_depth}))


def _turn_checks(stack, point: Point, t, levels: tuple, batched: bool = False) -> Checks:
    """The :class:`Checks` at a leaf completing ``t`` merges, over the fewest of
    ``levels`` (see :func:`check_levels`) stack levels that hold levels 0..t."""
    branch = jnp.sum(jnp.asarray(levels[:-1]) < t + 1)
    return jax.lax.switch(branch, [partial(_checks_up_to, levels=n, batched=batched) for n in levels], stack, point, t)


def _trajectory(key, state: State, momentum, direction_bits, logdensity_fn, step_size,
                inverse_mass_matrix, max_tree_depth, max_delta_energy, depth_limit=None):
    """Run the NUTS trajectory from ``(state, momentum)``; returns the final loop carry.

    ``direction_bits`` (uint32): bit k set means the k-th doubling goes forward in time.
    ``key`` (uint32[2], a ``_counter_rng`` key) drives the within-subtree and
    between-subtree multinomial draws only, so the trajectory's extent (hence the number of
    steps and the depth) depends on the momentum and the directions alone. The trajectory
    stops at ``depth_limit`` (<= ``max_tree_depth``, may be traced; default
    ``max_tree_depth``) doublings.

    Each stage of the loop body runs as a nested computation (``_cpu_blocks``).
    """
    metric = gaussian_euclidean(inverse_mass_matrix)
    step_size = jnp.asarray(step_size, state.position.dtype)
    depth_limit = max_tree_depth if depth_limit is None else depth_limit
    carry, h0 = _cpu_blocks.nested(
        lambda s, p: _initial_carry(s, p, metric.velocity(p), max_tree_depth), state, momentum)

    def body(c: _Carry) -> _Carry:
        return _cpu_blocks.nested(partial(_leaf, key=key, direction_bits=direction_bits, h0=h0,
                                          logdensity_fn=logdensity_fn, step_size=step_size,
                                          inverse_mass_matrix=inverse_mass_matrix, max_tree_depth=max_tree_depth,
                                          max_delta_energy=max_delta_energy, depth_limit=depth_limit,
                                          levels=check_levels(max_tree_depth, True, momentum.size)), c)

    return jax.lax.while_loop(lambda c: c.count.done == 0, body, carry)


def _leaf(c: _Carry, *, key, direction_bits, h0, logdensity_fn, step_size, inverse_mass_matrix,
          max_tree_depth, max_delta_energy, depth_limit, levels, go=None) -> _Carry:
    """One leapfrog step of the trajectory (its next leaf) with its multinomial draws,
    U-turn checks (over stack depths ``levels``, see :func:`check_levels`) and merges: the
    loop body of :func:`_trajectory`. With ``go`` (a bool, batched under ``vmap``; the
    stack then has a spare level on top), the step is taken only where it is true;
    elsewhere the carry is returned unchanged but for the spare level, which is never read
    (a select of the whole stack costs more than the leapfrog: measured, 35 us of some 300
    per batched step at 256 chains of eight schools)."""
    metric = gaussian_euclidean(inverse_mass_matrix)
    value_and_grad = jax.value_and_grad(logdensity_fn)
    dtype = c.vectors.dtype

    def bit(depth):
        return ((direction_bits >> depth.astype(jnp.uint32)) & 1) == 1

    def drift(vectors, counters):
        """Leapfrog, first half: half kick and drift from the end being extended."""
        c = _Carry(vectors, None, counters, None)
        forward = bit(c.count.depth)
        near = Point(*jnp.where(forward, vectors[4:8], vectors[0:4]), None)  # the forward or backward end
        eps = jnp.where(forward, step_size, -step_size)
        momentum = near.momentum + 0.5 * eps * near.grad
        return near.position + eps * metric.velocity(momentum), momentum, eps

    def kick(position, momentum, eps, log_density, grad):
        """Leapfrog, second half: the closing half kick with the new gradient. Returns the
        new point's vectors (4, d: a :class:`Point`'s) and its (log density, energy, failed)."""
        failed = is_nonfinite(position, log_density, grad).astype(dtype)
        log_density = sanitize(log_density)
        momentum = momentum + 0.5 * eps * grad
        v = metric.velocity(momentum)
        h = 0.5 * jnp.sum(momentum * v) - log_density
        return jnp.stack([position, momentum, grad, v]), jnp.stack([log_density, h, failed])

    # One trajectory with every level checked: the level-t row is picked in `assemble` (for
    # one trajectory the fewest operations; measured 2.5 against 3.0 us per leapfrog on
    # eight schools). A batch (`go`): `Checks`, as in the restricted case.
    every = len(levels) == 1 and go is None

    def bookkeeping(scalars, counters, point_scalars, verdicts):
        """Energy error, multinomial choices, U-turn verdicts (scalars only). Returns the new
        scalars and counters, and the leaf's :class:`Flags` (packed)."""
        c = _Carry(None, scalars, counters, None)
        count, weights = c.count, c.weights
        new_ld, h, failed = point_scalars[0], point_scalars[1], point_scalars[2] > 0
        depth, leaf, num_steps = count.depth, count.leaf, count.steps + 1
        forward = bit(depth)
        first = leaf == 0
        delta = hmc.energy_error(h0, h)
        log_weight = -delta
        diverging = delta > max_delta_energy
        sum_accept = weights.sum_accept + jnp.minimum(1.0, jnp.exp(log_weight))
        log_u = jnp.log(_counter_rng.uniform(
            key, num_steps, jnp.array([_counter_rng.LEAF, _counter_rng.MERGE], jnp.uint32), dtype))

        # Uniform progressive sampling inside the subtree.
        sub_lsw = jnp.logaddexp(jnp.where(first, -jnp.inf, weights.sub_log_sum), log_weight)
        take = log_u[0] < log_weight - sub_lsw
        sub_draw = jnp.where(take, point_scalars[:2], scalars[4:6])  # (log density, energy)

        # Merges completed at this leaf: levels < t inside the subtree; at the subtree's last
        # leaf, level t = depth is the merge of the trajectory with the subtree.
        t = _trailing_ones(leaf)
        last = leaf == (1 << depth) - 1
        if every:  # verdicts: each level's merge is fine (`_merge_ok`)
            lv = jnp.arange(max_tree_depth, dtype=jnp.int32)
            fail = ~verdicts & (lv < t + last.astype(jnp.int32))
            sub_turning, trajectory_turning = jnp.any(fail & (lv < t)), jnp.any(fail & (lv == t))
        else:  # verdicts: (sub_turning, top_turning) of `_turn_checks`
            sub_turning, trajectory_turning = verdicts[0], last & verdicts[1]

        # A valid finished subtree is merged: biased progressive sampling (Betancourt A.3.2).
        invalid = diverging | sub_turning
        merge = last & ~invalid
        take_sub = merge & (log_u[1] < sub_lsw - weights.log_sum)
        draw = jnp.where(take_sub, sub_draw, scalars[2:4])
        lsw = jnp.where(merge, jnp.logaddexp(weights.log_sum, sub_lsw), weights.log_sum)
        depth = depth + merge.astype(jnp.int32)
        done = invalid | (merge & (trajectory_turning | (depth >= depth_limit)))
        ends = jnp.where(forward, jnp.stack([scalars[0], new_ld]), jnp.stack([new_ld, scalars[1]]))
        scalars = jnp.concatenate([ends, draw, sub_draw, jnp.stack([lsw, sub_lsw, sum_accept])])
        counters = jnp.stack(Counters(depth, jnp.where(last, 0, leaf + 1), num_steps,
                                      (diverging & ~failed).astype(jnp.int32), done.astype(jnp.int32),
                                      failed.astype(jnp.int32)))
        flags = Flags(forward, take, take_sub, merge, last, bit(depth), t)
        if go is not None:
            scalars, counters = jnp.where(go, scalars, c.scalars), jnp.where(go, counters, c.counters)
        return scalars, counters, jnp.stack([jnp.asarray(f, jnp.int32) for f in flags])

    def assemble(vectors, stack, point_vectors, rows, flags):
        """The new ends, draws, momentum sum and stack (vector data). ``rows``: the level-t
        tree's first momentum, velocity and momentum sum, (3, d) (``Checks.row``), or those
        of every level, (3, max_tree_depth, d), read at level t here. Returns the new
        vectors and the stack row to write with its level (where ``go`` is false: the old
        vectors, and the spare level)."""
        f = Flags(*(flags[i] == 1 for i in range(6)), flags[6])
        if every:
            at_t = (jnp.arange(max_tree_depth, dtype=jnp.int32) == f.t)[:, None]
            r_beg = jnp.sum(jnp.where(at_t, rows, 0.0), axis=1)
        else:
            r_beg = rows
        c = _Carry(vectors, None, None, stack)
        point = Point(*point_vectors, None)
        sub_draw = jnp.where(f.take, jnp.stack([point.position, point.grad]), vectors[10:12])
        draw = jnp.where(f.take_sub, sub_draw, vectors[8:10])
        rho = jnp.where(f.merge, c.momentum_sum + r_beg[2], c.momentum_sum)
        backward = jnp.where(f.forward, vectors[0:4], point_vectors)
        forward = jnp.where(f.forward, point_vectors, vectors[4:8])

        # ONE level of the stack is written (in place; under vmap, a scatter): inside a
        # subtree, level t gets the tree of 2**t leaves ending here (no right partner yet);
        # at a subtree's last leaf, after a merge, level t + 1 (the new depth) gets the
        # trajectory, far end first, for the next subtree. A last leaf without a merge ends
        # the trajectory, so what it writes is never read.
        far = Point(*jnp.where(f.next_forward, backward, forward), None)
        near = Point(*jnp.where(f.next_forward, forward, backward), None)
        trajectory = jnp.stack([far.momentum, far.velocity, near.momentum, near.velocity, rho])
        entry = jnp.stack([r_beg[0], r_beg[1], point.momentum, point.velocity, r_beg[2]])
        row = jnp.where(f.last, trajectory, entry)
        level = jnp.where(f.last, f.t + 1, f.t)
        new = jnp.concatenate([backward, forward, draw, sub_draw, rho[None]])
        if go is not None:  # a lane that does not step writes to the spare top level
            level = jnp.where(go, level, max_tree_depth)
            new = jnp.where(go, new, vectors)
        return new, row, level

    def write(stack, row, level):
        zero = jnp.zeros_like(level)
        return jax.lax.dynamic_update_slice(stack, row[:, None, :], (zero, level, zero))

    def assemble_in_place(vectors, stack, *args):
        new, row, level = assemble(vectors, stack, *args)
        return new, write(stack, row, level)

    position, momentum, eps = _cpu_blocks.nested(drift, c.vectors, c.counters)
    log_density, grad = _cpu_blocks.nested(value_and_grad, position)
    point_vectors, point_scalars = _cpu_blocks.nested(kick, position, momentum, eps, log_density, grad)
    def checks(stack, v, counters):
        """The verdicts and rows :func:`bookkeeping` and :func:`assemble` take."""
        point = Point(*v, None)
        if every:  # vectorised over every level; the level-t row is selected in `assemble`
            ok, rho_r, r_beg_p, r_beg_v = _merge_ok(stack[:, :max_tree_depth], point)
            return ok, jnp.stack([r_beg_p, r_beg_v, rho_r])
        leaf = _Carry(None, None, counters, None).count.leaf
        ch = _turn_checks(stack, point, _trailing_ones(leaf), levels, batched=go is not None)
        return jnp.stack([ch.sub_turning, ch.top_turning]), ch.row

    # Every operation of the loop body sits inside a nested stage (see `_cpu_blocks`).
    verdicts, rows = _cpu_blocks.nested(checks, c.stack, point_vectors, c.counters)
    scalars, counters, flags = _cpu_blocks.nested(bookkeeping, c.scalars, c.counters, point_scalars, verdicts)
    if go is None:  # one trajectory: its stack written in the stage, in place
        vectors, stack = _cpu_blocks.nested(assemble_in_place, c.vectors, c.stack, point_vectors, rows, flags)
    else:  # a batch: the stage's output would be a copy of the stack (measured: 2 x 20 us at 256 chains)
        vectors, row, level = _cpu_blocks.nested(assemble, c.vectors, c.stack, point_vectors, rows, flags)
        stack = _cpu_blocks.nested_update(write, c.stack, row, level)
    return _Carry(vectors, scalars, counters, stack)


def _finish(c: _Carry, direction_bits):
    """The transition's new state and info from the final loop carry."""
    count, draw = c.count, c.draw
    new_state = State(draw.position, draw.log_density, draw.grad)
    failed = count.failed == 1
    # A failed point ends the trajectory at once (no merge), so it is the far end of the side
    # being extended, which the direction bit of the current depth gives.
    forward = ((direction_bits >> count.depth.astype(jnp.uint32)) & 1) == 1
    last = jnp.where(forward, c.forward.position, c.backward.position)
    info = Info(
        acceptance_rate=c.weights.sum_accept / count.steps.astype(c.scalars.dtype),
        is_divergent=count.diverging == 1,
        num_grad_evals=count.steps,
        is_nonfinite=failed,
        energy=draw.energy,
        tree_depth=count.depth,
        num_steps=count.steps,
        nonfinite_position=jnp.where(failed, last, jnp.zeros_like(last)),
    )
    return new_state, info


def _transition(words, state: State, step_size, inverse_mass_matrix, trial, logdensity_fn,
                max_tree_depth, max_delta_energy):
    """One NUTS transition keyed by ``words`` (a ``_counter_rng`` key); a ``trial`` one
    stops after its first leapfrog step (one doubling)."""

    momentum, direction_bits = _cpu_blocks.nested(_momentum, words, state, inverse_mass_matrix)
    depth_limit = jnp.where(trial, 1, max_tree_depth).astype(jnp.int32)
    c = _trajectory(words, state, momentum, direction_bits, logdensity_fn, step_size,
                    inverse_mass_matrix, max_tree_depth, max_delta_energy, depth_limit)
    return _cpu_blocks.nested(_finish, c, direction_bits)


class Trajectory(NamedTuple):
    """A transition under way (the carry of :func:`resumable`): the loop carry, the
    transition's key, direction bits and initial energy, its step size and depth limit."""

    carry: _Carry
    words: jax.Array
    direction_bits: jax.Array
    h0: jax.Array
    step_size: jax.Array
    depth_limit: jax.Array


def _momentum(words, state: State, inverse_mass_matrix):
    """A transition's momentum and direction bits, from its key."""
    metric = gaussian_euclidean(inverse_mass_matrix)
    noise = _counter_rng.normal(words, _counter_rng.MOMENTUM, state.position.shape, state.position.dtype)
    return metric.scale_noise(noise), _counter_rng.bits(words, 0, _counter_rng.DIRECTION)


def resumable(max_tree_depth: int, max_delta_energy: float) -> Resumable:
    """The NUTS transition one leapfrog step at a time (see :class:`ppl.mcmc.base.Resumable`):
    the steps of :func:`_transition`, with the trajectory's loop turned inside out."""

    def begin(words, state: State, step_size, inverse_mass_matrix, trial, previous=None, go=None):
        # Made apart (a nested stage): fused into the stack's row, each of its elements
        # would draw the momentum again (measured: 150 us a batched serve at 256 chains).
        momentum, direction_bits = _cpu_blocks.nested(_momentum, words, state, inverse_mass_matrix)
        velocity = gaussian_euclidean(inverse_mass_matrix).velocity(momentum)
        stack = None if previous is None else previous.carry.stack
        carry, h0 = _initial_carry(state, momentum, velocity, max_tree_depth, stack, go, spare=True)
        depth_limit = jnp.where(trial, 1, max_tree_depth).astype(jnp.int32)
        t = Trajectory(carry, words, direction_bits, h0, jnp.asarray(step_size, state.position.dtype), depth_limit)
        if go is None or previous is None:
            return t
        # Where `go` is false, the previous trajectory: a select of all but the stack.
        light = jax.tree.map(lambda a, b: jnp.where(go, a, b), t._replace(carry=carry._replace(stack=None)),
                             previous._replace(carry=previous.carry._replace(stack=None)))
        return light._replace(carry=light.carry._replace(stack=carry.stack))

    def tick(t: Trajectory, logdensity_fn, inverse_mass_matrix, go=None) -> Trajectory:
        carry = _leaf(t.carry, key=t.words, direction_bits=t.direction_bits, h0=t.h0, logdensity_fn=logdensity_fn,
                      step_size=t.step_size, inverse_mass_matrix=inverse_mass_matrix, max_tree_depth=max_tree_depth,
                      max_delta_energy=max_delta_energy, depth_limit=t.depth_limit,
                      levels=check_levels(max_tree_depth, False), go=go)
        return t._replace(carry=carry)

    def done(t: Trajectory):
        return t.carry.count.done == 1

    def end(t: Trajectory):
        return _finish(t.carry, t.direction_bits)

    return Resumable(begin, tick, done, end)


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

    def step(key, state: State, logdensity_fn, step_size, inverse_mass_matrix, trial=False):
        words = _counter_rng.key_words(key)
        step_size = jnp.asarray(step_size, state.position.dtype)
        transition = partial(_transition, logdensity_fn=logdensity_fn,
                             max_tree_depth=max_tree_depth, max_delta_energy=max_delta_energy)
        return _cpu_blocks.nested(transition, words, state, step_size, inverse_mass_matrix,
                                  jnp.asarray(trial))

    return Kernel(step=step, init=init, probe=hmc.probe, name="nuts", info_type=Info,
                  resumable=resumable(max_tree_depth, max_delta_energy))
