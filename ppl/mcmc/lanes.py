"""Chains as lanes: a batch of chains advanced one gradient evaluation at a time, without
lockstep.

Under ``vmap``, the chain-by-chain driver (:func:`ppl.mcmc.driver.advance`) makes every
chain of the batch wait, at every iteration, for the batch's longest transition: a NUTS
trajectory of 3 leapfrog steps idles while another of 63 finishes, and the batch's work is
the sum over iterations of the longest trajectory. Here each chain is a small state machine
(Radul et al. 2020, "Automatically batching control-intensive programs for modern
accelerators": the program counter made data; Dance et al. 2025 apply it to NUTS) whose
every step makes ONE gradient evaluation of its current transition. The batch steps while
most of its lanes (``BUSY_FRACTION``) are inside a trajectory; then every lane whose
trajectory ended is served at once: its transition recorded, its adaptation applied and its
next trajectory started. The batch loop runs until every chain has done the chunk's
iterations, so its work is about the busiest chain's total over the chunk, not the sum of
per-iteration maxima. Meanwhile a chain that has done its chunk runs ahead into the next
chunk's iterations (as many as the plan has lookahead rows): those it finishes are carried in
its state (:class:`Ahead`) and become the next chunk's first iterations; the one still
running when the chunk ends is carried too, in flight, and goes on where it stopped: no
gradient evaluation is thrown away. (They were dropped and run again: about half a
trajectory per chain and chunk. Measured, 256 chains of the 5000 x 25 logistic regression,
500 + 500, chunks of about 12 iterations: lane utilisation 0.79 -> 0.88, run 84 -> 74 s; the
100-d Gaussian's 256 chains, chunks of about one iteration, had 0.56 against a bound of
0.93.) The state then holds the trajectory's carry too (about 70 vectors of the position's
size).
Measured (eight schools, 500 + 500, first call, 2-core CPU): lane utilisation 0.61 -> 0.70 at
256 chains, 0.46 -> 0.59 at 1024 (chunks of about a second end the batch's loop often) with
64 lookahead rows; 0.74 and 0.65 with 455 and 113. A schedule cannot pass mean / max of
the batch's chains' gradient evaluations (each chain's are its own: 0.76 and 0.70 there, the
chains' step sizes spreading over a factor of 2 as NumPyro's do). Chains sharing a lane in
turn (a lane whose chain has done the chunk takes the next, so that a batch waits for its
busiest lane, whose work, a sum of chains', spreads less) pass that bound, but not the run
time: measured (256 chains of eight schools as two groups, first call, 2026-12-08), lane
utilisation 0.80 with two chains per lane and 0.84 with four, against 0.736 with one; run
4.01 and 4.21 s against 3.87 (narrower batches cost more per lane, and a lane changing
chains is a select over its whole state), compile 11.1-11.4 s against 7.5. Not adopted.

A chain's phases: NEW (the adaptation owed to the previous transition, the iteration's key
and, where the plan says so, a step-size search), BEGIN (start a trajectory: a search trial,
or the transition itself), RUNNING (one gradient evaluation per step until the kernel says
``done``; a trial then updates the search and begins again, the transition is recorded).
Every decision and every random number is the chain-by-chain driver's (the same steps,
``driver.steps_of``; the same keys), so each chain's draws are those it makes alone: only
the schedule differs (tested). Kernels offer this through ``Kernel.resumable``
(:class:`ppl.mcmc.base.Resumable`; NUTS does).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ppl.adapt import initial_step_size as step_search
from ppl.mcmc import driver
from ppl.mcmc.base import Kernel

NEW, BEGIN, RUNNING = 0, 1, 2


class Lane(NamedTuple):
    """One chain's place in the schedule: its :class:`driver.ChainState` (``state``, whose
    tuning is the current iteration's once ``phase`` has left NEW; otherwise ``done``), the
    state after its last finished iteration (``done``), ``k`` (iterations of the chunk
    finished, those run ahead in the chunk before included), ``phase``, the iteration's key
    ``words``, the step-size ``search``, whether the running trajectory is a search
    ``trial``, the kernel's ``trajectory`` carry, ``ticks`` (gradient evaluations made in
    this chunk, trials included) and ``offered`` (the batch's steps in this chunk:
    ``ticks / offered`` is how busy the lane was)."""

    state: Any
    done: Any
    k: jax.Array
    phase: jax.Array
    words: jax.Array
    search: step_search.Search
    trial: jax.Array
    trajectory: Any
    ticks: jax.Array
    offered: jax.Array


class Ahead(NamedTuple):
    """What a chain did past its last chunk's end: ``count`` iterations finished (at most the
    plan's lookahead rows), their record rows, in order, in ``rows`` (lookahead rows, record
    width), its state being already past them; and the iteration after them as it stood,
    perhaps in flight (its :class:`Lane`'s ``phase``, ``words``, ``search``, ``trial``,
    ``trajectory`` and the ``tuning`` prepared for it). The next chunk takes the finished
    iterations as its first and goes on with the one in flight."""

    rows: jax.Array
    count: jax.Array
    phase: jax.Array
    words: jax.Array
    search: step_search.Search
    trial: jax.Array
    trajectory: Any
    tuning: Any


# Whether vectorised chains of a resumable kernel run as lanes at all (False: in lockstep,
# each iteration waiting for the batch's longest transition; for measuring the difference).
ENABLED = True


def no_ahead(state: driver.ChainState, move: driver.Move, rows: int, width: int) -> Ahead:
    """A chain at ``state`` with nothing done ahead or in flight, that may run up to ``rows``
    iterations ahead (records ``width`` wide)."""
    dtype = state.tally.nonfinite_position.dtype
    t0 = state.tuning[0]
    words = jnp.zeros((2,), jnp.uint32)
    # Zeros shaped as a trajectory (never read: the lane is not running).
    trajectory = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
        move.kernel.resumable.begin, words, state.move, t0.step_size, t0.inverse_mass_matrix, jnp.asarray(False)))
    return Ahead(jnp.zeros((rows, width), dtype), jnp.zeros((), jnp.int32), jnp.int32(NEW), words,
                 step_search.start(t0.step_size, False), jnp.asarray(False), trajectory, state.tuning)


class LaneWork(NamedTuple):
    """A lane's work in a chunk: ``ticks``, the gradient evaluations it made (search trials
    included; none is thrown away), and ``offered``, the batch's steps (its chance of one).
    Lane utilisation is sum(ticks) / sum(offered) over the chains."""

    ticks: jax.Array
    offered: jax.Array


def _per_lane(tree, words):
    """``tree``, each leaf made a value of the lane (batched under ``vmap``, as a loop carry
    that the loop makes per lane would become): ``vmap`` then finds how the loops' carries
    are batched in one pass over their bodies instead of re-tracing them (XLA removes the
    select)."""
    same = words[0] == words[0]
    return jax.tree.map(lambda a: jnp.where(same, a, a), tree)


def supports(move: driver.Move) -> bool:
    """Whether ``move`` can run as lanes: one kernel over every coordinate
    (``driver.single``) whose kernel is resumable."""
    return isinstance(move.kernel, Kernel) and move.kernel.resumable is not None


# The batch ticks on while at least this fraction of its lanes is inside a trajectory; then
# every lane whose trajectory ended is served at once (recorded, adapted, started again).
# Serving costs about as much as a few leapfrog steps of a small model, so serving at every
# step (1.0) loses more than the idle lanes it saves. Measured (eight schools, 64 chains,
# 300 + 300, 2-core CPU, run time without compile): lockstep 2.82 s; this schedule with
# 0.5: 2.74 s, 0.75: 2.40 s, 0.9: 1.87 s, 1.0: 3.78 s.
BUSY_FRACTION = 0.9


def advance(words, state: driver.ChainState, rows: driver.Rows, move: driver.Move, logdensity_fn,
            settings: driver.Settings = driver.Settings(), axis_name: str = "chains",
            busy_fraction: Optional[float] = None):
    """:func:`ppl.mcmc.driver.advance` scheduled as lanes (see the module docstring): the
    same arguments, the same ``(state, record)``, the same draws. It must run under
    ``jax.vmap(..., axis_name=axis_name)`` over the chains (the batch's loops are steered by
    counts over that axis, so they stay real loops and branches, not masked ones).

    Returns ``(state, record, work)``: ``work`` (:class:`LaneWork`) says how busy the lane
    was.
    """
    busy_fraction = BUSY_FRACTION if busy_fraction is None else busy_fraction
    kernel: Kernel = move.kernel
    resumable = kernel.resumable
    length = rows.i.shape[0]
    n = jnp.sum(rows.active * (1 - rows.ahead), dtype=jnp.int32)  # the chunk's own iterations
    n_all = jnp.sum(rows.active, dtype=jnp.int32)  # and those a lane may run ahead
    steps = driver.steps_of(move, state, logdensity_fn, length, settings)
    dtype = state.tally.nonfinite_position.dtype
    keys = driver.iteration_keys(words, rows)

    def count(flag):  # over the batch: unbatched, so a loop or branch on it stays one
        return jax.lax.psum(flag.astype(jnp.int32), axis_name)

    def row_of(lane):
        return driver.row_at(rows, jnp.minimum(lane.k, length - 1))

    def new_iteration(lane: Lane) -> Lane:
        row = row_of(lane)
        s = lane.state
        tuning = steps.prepare(s.tuning, move.position(s.move), row)
        search = step_search.start(tuning[0].step_size, row.search == 1)
        return lane._replace(state=s._replace(tuning=tuning), phase=jnp.int32(BEGIN),
                             words=keys[:, jnp.minimum(lane.k, length - 1)], search=search)

    def begin(lane: Lane) -> Lane:
        """Start the trajectory of every lane in BEGIN (a trial of the search or the
        transition); the others are left as they are. Not a branch: under ``vmap`` a branch
        selects its every output, the trajectory's buffers included (measured: 180 us of
        a batched serve at 256 chains of eight schools); the kernel selects what matters."""
        go = lane.phase == BEGIN
        trial = ~lane.search.done
        key = jnp.where(trial, step_search.trial_key(lane.words, lane.search.trial), lane.words)
        t = lane.state.tuning[0]
        trajectory = resumable.begin(key, lane.state.move, lane.search.step_size, t.inverse_mass_matrix, trial,
                                     lane.trajectory, go)
        return lane._replace(phase=jnp.where(go, RUNNING, lane.phase), trial=jnp.where(go, trial, lane.trial),
                             trajectory=trajectory)

    def end(lane: Lane):
        """A trajectory ended: a search trial updates the search; a transition is recorded.
        Returns the lane and the record row to write (with whether to write it)."""
        new_state, info = resumable.end(lane.trajectory)

        def after_trial(lane):
            search = step_search.update(lane.search, info.acceptance_rate)
            return lane._replace(search=search, phase=jnp.int32(BEGIN)), jnp.zeros((steps.width,), dtype), False

        def after_transition(lane):
            row = row_of(lane)
            tuning = driver.restart_searched(lane.state.tuning, (lane.search.step_size,), row)
            s, values = steps.bookkeeping(lane.state._replace(move=new_state), tuning, (info,), row)
            return (lane._replace(state=s, done=s, k=lane.k + 1, phase=jnp.int32(NEW)),
                    values.astype(dtype), True)

        return jax.lax.cond(lane.trial, after_trial, after_transition, lane)

    def skip(lane: Lane):
        return lane, jnp.zeros((steps.width,), dtype), False

    def ended(lane: Lane):
        return (lane.phase == RUNNING) & resumable.done(lane.trajectory)

    def serve(lane: Lane, buffer):
        """Every lane whose trajectory ended: record it (or update its search), then start
        its next trajectory (a new iteration's adaptation first) unless the chunk is done."""
        k = lane.k
        lane, values, write = jax.lax.cond(ended(lane), end, skip, lane)
        # The record is written outside the branches (a branch of a batch becomes a select
        # of its every output: the buffer would be copied); an unwritten row goes to the
        # spare last row.
        slot = jnp.where(write, k, length)
        buffer = jax.lax.dynamic_update_slice(buffer, values[None], (slot, jnp.zeros_like(slot)))
        lane = jax.lax.cond((lane.phase == NEW) & (lane.k < n_all), new_iteration, lambda x: x, lane)
        return begin(lane), buffer

    def running(lane: Lane):
        return (lane.phase == RUNNING) & ~resumable.done(lane.trajectory)

    def tick(lane: Lane) -> Lane:
        go = running(lane)
        trajectory = resumable.tick(lane.trajectory, logdensity_fn, lane.state.tuning[0].inverse_mass_matrix, go)
        return lane._replace(trajectory=trajectory, ticks=lane.ticks + go.astype(jnp.int32), offered=lane.offered + 1)

    def round_(carry):
        lane, buffer = carry
        lane, buffer = serve(lane, buffer)
        busy = jnp.maximum(1, jnp.ceil(busy_fraction * count(lane.k < n_all)).astype(jnp.int32))
        # At least one step, then on while enough lanes are busy: a loop whose first trip is
        # forced, so that the step is traced and compiled once.
        lane, _ = jax.lax.while_loop(lambda c: c[1] | (count(running(c[0])) >= busy),
                                     lambda c: (tick(c[0]), jnp.zeros((), bool)), (lane, jnp.ones((), bool)))
        return lane, buffer

    carried = state.ahead
    room = carried.rows.shape[0]  # iterations a lane may run ahead (the plan's last rows)
    state = state._replace(ahead=None)
    zero = jnp.zeros((), jnp.int32)
    # The iterations run ahead in the last chunk come first, as done; the one after them goes
    # on as it stood (a fresh chain's: NEW, with a blank trajectory, never read).
    buffer = jax.lax.dynamic_update_slice(jnp.zeros((length + 1, steps.width), dtype), carried.rows, (zero, zero))
    lane = Lane(state._replace(tuning=carried.tuning), state, carried.count, carried.phase, carried.words,
                carried.search, carried.trial, carried.trajectory, zero, zero)
    lane, buffer = jax.lax.while_loop(lambda c: count(c[0].k < n) > 0, round_, _per_lane((lane, buffer), words))
    # Every lane has done the chunk's iterations; those finished past its end are carried,
    # and so is the iteration after them, in flight or not.
    ahead = Ahead(jax.lax.dynamic_slice(buffer, (n, zero), (room, steps.width)), lane.k - n, lane.phase, lane.words,
                  lane.search, lane.trial, lane.trajectory, lane.state.tuning)
    own = length - room
    return lane.done._replace(ahead=ahead), steps.unpack(buffer[:own]), LaneWork(lane.ticks, lane.offered)
