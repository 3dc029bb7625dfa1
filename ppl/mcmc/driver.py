"""The chain driver: Stan-style windowed warmup and sampling, a chunk of iterations at a time.

Every MCMC method (NUTS, HMC, MH, and Gibbs, whose sweep is a `Move` of several adapted
blocks) runs through :func:`advance`: a pure function that takes a chain's
:class:`ChainState` and the plan rows of a chunk of iterations (:class:`Rows`, from
:func:`plan`) and returns the new state and a :class:`Record` of each iteration (the position
and the scalar fields of each block's ``Info``). The method compiles ONE program around it
and calls it chunk after chunk (``ppl.runtime.chunks``); Python regains control between
chunks, so a run can be interrupted, checkpointed, resumed, extended and watched. The
draws do not depend on where the chunks end: the plan is a function of the iteration
index alone, and the random key of iteration ``i`` is derived from the chain's key and ``i``.

Warmup follows Stan's ``adapt_diag_e_nuts`` / ``adapt_dense_e_nuts``, per adapted block:
after every transition the step size is updated by dual averaging; draws inside a slow
window enter a Welford estimate; at the end of a slow window the inverse mass matrix is set to
the regularised estimate, the step size is re-initialised by the doubling/halving heuristic
and dual averaging restarts at mu = log(10 eps). Sampling uses the final averaged step size.
Iteration ``i`` first applies the adaptation owed to transition ``i-1`` (all decisions are
functions of ``i`` alone), then runs transition ``i``.

Reference: Stan Reference Manual, "HMC algorithm parameters" (automatic parameter tuning);
Hoffman & Gelman (2014), section 3.2.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl import _counter_rng
from ppl.adapt import dual_averaging, welford, window
from ppl.adapt import initial_step_size as step_search
from ppl.mcmc import _cpu_blocks
from ppl.mcmc.base import Kernel, Move


# ------------------------------------------------------------------------------- the plan

class Rows(NamedTuple):
    """The plan of a chunk: per iteration (int32 arrays of the chunk's static length), its
    index ``i`` and flags. Flags about adaptation concern the PREVIOUS transition (i - 1):

    active: the iteration runs (rows past the chunk's end are padding);
    adapt: apply dual averaging and counters for transition i-1 (a warmup one);
    add_sample: the state after transition i-1 enters the Welford estimate;
    window_end: transition i-1 closed a slow window: update the mass matrix;
    search: re-initialise the step size by the heuristic (and restart dual averaging)
      before transition i;
    finish: transition i-1 was the last warmup one: fix the step size;
    warmup: transition i is a warmup one;
    record: transition i ends a thinned group of sampling transitions: record it;
    ahead: the iteration is past the chunk's end, one a chain that finished the chunk early
      may run ahead (`ppl.mcmc.lanes`); the chunk's own iterations are the active rows before.
    """

    i: Any
    active: Any
    adapt: Any
    add_sample: Any
    window_end: Any
    search: Any
    finish: Any
    warmup: Any
    record: Any
    ahead: Any


def plan(start: int, n: int, length: int, num_warmup: int, thinning: int = 1, adapt_mass: bool = True,
         adapt_step_size: bool = True, restart_at_windows: bool = True, ahead: int = 0) -> Rows:
    """The rows of iterations ``start .. start + n - 1``, padded to ``length`` (numpy); the
    last ``ahead`` of them are flagged as a lookahead past the chunk's end.

    The same whatever the number of sampling iterations, so a finished run can be extended.
    """
    if not 0 <= n <= length:
        raise ValueError(f"a chunk of {n} iterations does not fit {length} rows.")
    schedule = window.build_schedule(num_warmup)
    i = start + np.arange(length)
    active = np.arange(length) < n
    prev = i - 1
    warm_prev = (prev >= 0) & (prev < num_warmup)
    in_window = np.zeros(length, bool)
    window_end = np.zeros(length, bool)
    if adapt_mass and schedule.windows:
        in_window[warm_prev] = schedule.in_window[prev[warm_prev]]
        window_end[warm_prev] = schedule.window_end[prev[warm_prev]]
    search = window_end & restart_at_windows & adapt_step_size
    search |= (i == 0) & (num_warmup > 0) & adapt_step_size
    finish = (prev == num_warmup - 1) & (num_warmup > 0) & adapt_step_size
    j = i - num_warmup
    record = (j >= 0) & (j % thinning == thinning - 1)
    columns = [i, active, warm_prev, in_window, window_end, search, finish, i < num_warmup, record,
               np.arange(length) >= n - ahead]
    return Rows(*(np.where(active, c, 0).astype(np.int32) if k else c.astype(np.int32)
                  for k, c in enumerate(columns)))


# ------------------------------------------------------------------------------- the state

class Tuning(NamedTuple):
    """One adapted block's step size, inverse mass matrix and their estimators."""

    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    dual_averaging: dual_averaging.DualAveragingState
    welford: welford.WelfordState
    last_accept: jax.Array


class Tally(NamedTuple):
    """Running diagnostics: warmup gradient evaluations, divergences and numerical failures,
    and the last point (warmup or sampling) where the model failed numerically."""

    warmup_grad_evals: jax.Array
    warmup_divergences: jax.Array
    warmup_nonfinite: jax.Array
    nonfinite_position: jax.Array


class Thinned(NamedTuple):
    """Per block, over the transitions of the current thinned group: their ``count``, the
    summed acceptance and gradient evaluations, and whether any diverged or failed
    numerically."""

    count: jax.Array
    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    is_nonfinite: jax.Array


class ChainState(NamedTuple):
    """Everything a chain carries from one chunk to the next (serialisable: arrays only).

    Fields: ``move`` (the move's state, e.g. a NUTS ``State``), ``tuning`` (one
    :class:`Tuning` per adapted block), ``tally`` (:class:`Tally`), ``thinned``
    (:class:`Thinned`) and ``ok`` (its initial point was finite); ``ahead``: for chains run
    as lanes, the iterations done past the last chunk's end (`ppl.mcmc.lanes.Ahead`), else None.
    """

    move: Any
    tuning: Tuple[Tuning, ...]
    tally: Tally
    thinned: Thinned
    ok: jax.Array
    ahead: Any = None


class Record(NamedTuple):
    """A chunk's output per iteration: ``position`` (length, d) and ``infos``, one per block,
    each the block's ``Info`` with its scalar fields as (length,) arrays (the vector field
    ``nonfinite_position`` is None: the state's tally keeps it)."""

    position: jax.Array
    infos: Tuple[Any, ...]


class Settings(NamedTuple):
    """The driver's static options.

    ``chain_axis``: None, or the name of the ``vmap`` axis over chains (chains in lockstep,
    :func:`advance` vectorised): the chains then adapt TOGETHER, sharing one step size and
    one mass matrix: dual averaging is fed the chains' mean acceptance statistic (harmonic
    for transitions ``i < harmonic_until``, arithmetic afterwards: :func:`pooled_acceptance`),
    and a slow window's mass matrix is estimated from the draws of every chain
    (``welford.pooled_inverse_mass_matrix``). The move must keep the chains' step sizes
    equal where it re-runs the step-size heuristic (ChEES-HMC, ``ppl.mcmc.chees``, pools
    its trials).
    """

    target_accept: float = 0.8
    dense_mass: bool = False
    adapt_mass: bool = True
    adapt_step_size: bool = True
    initial_step_size: float = 1.0
    chain_axis: Optional[str] = None
    harmonic_until: int = 0


def pooled_acceptance(accept, axis_name, harmonic):
    """The chains' mean of ``accept`` over the ``vmap`` axis ``axis_name`` (the same value in
    every chain): what dual averaging follows when the chains adapt together. Where
    ``harmonic`` (a traced bool) the harmonic mean, which stays low while ANY chain rejects
    nearly everything (a chain started where the posterior is far narrower than in its bulk),
    so that the shared step size shrinks until every chain moves (the reduction of ChEES-HMC's
    authors' TensorFlow Probability code); else the arithmetic mean, which, once the
    chains are in the bulk, is not dragged down by the rare low acceptance of one chain among
    many (measured: with the harmonic mean throughout, 256 chains on the non-centred eight
    schools kept an acceptance of 0.99 and a step size less than half of NUTS's)."""
    tiny = jnp.finfo(accept.dtype).tiny
    return jnp.where(harmonic, 1.0 / jax.lax.pmean(1.0 / jnp.maximum(accept, tiny), axis_name),
                     jax.lax.pmean(accept, axis_name))


def _block_dims(move: Move, dim: int):
    return [dim if idx is None else len(idx) for idx in move.blocks]


def new_chain_state(move: Move, z0, logdensity_fn, settings: Settings = Settings(), move_state=None, ok=True,
                  inverse_mass_matrix=None) -> ChainState:
    """The state of a chain starting at ``z0`` (its move's state there, unless given)."""
    z0 = jnp.asarray(z0)
    dtype, dim = z0.dtype, z0.shape[0]
    move_state = move.init(z0, logdensity_fn) if move_state is None else move_state
    step_size = jnp.asarray(settings.initial_step_size, dtype)
    tunings = []
    for d in _block_dims(move, dim):
        if inverse_mass_matrix is not None and len(move.blocks) == 1:
            imm = jnp.asarray(inverse_mass_matrix, dtype)
        else:
            imm = jnp.eye(d, dtype=dtype) if settings.dense_mass else jnp.ones((d,), dtype)
        tunings.append(Tuning(step_size, imm, dual_averaging.init(step_size),
                              welford.init(d, settings.dense_mass, dtype), jnp.zeros((), dtype)))
    zero = jnp.zeros((), jnp.int32)
    nb = len(move.blocks)
    thinned = Thinned(zero, jnp.zeros((nb,), dtype), jnp.zeros((nb,), bool), jnp.zeros((nb,), jnp.int32),
                      jnp.zeros((nb,), bool))
    return ChainState(move_state, tuple(tunings), Tally(zero, zero, zero, jnp.zeros((dim,), dtype)),
                      thinned, jnp.asarray(ok))


def record_template(move: Move, state: ChainState, logdensity_fn, length: int):
    """Zeros shaped as the :class:`Record` of a chunk of ``length`` iterations."""
    dtype = state.tally.nonfinite_position.dtype
    dim = state.tally.nonfinite_position.shape[0]
    shapes = move.info_shapes(state.move, logdensity_fn, [(t.step_size, t.inverse_mass_matrix) for t in state.tuning],
                              dtype)
    infos = tuple(type(s)(*(None if f.shape != () else jnp.zeros((length,), f.dtype) for f in s))
                  for s in shapes)
    return Record(jnp.zeros((length, dim), dtype), infos)


# ------------------------------------------------------------------------------- one chunk

def search_then_move(kernel: Kernel, key, state, logdensity_fn, step_size, inverse_mass_matrix,
                     heuristic, info_zeros):
    """When ``heuristic`` (a traced bool), the initial step-size search (Hoffman & Gelman
    2014, algorithm 4) from ``step_size``, its trials being one-move calls of the kernel
    (``trial=True``); then the transition with the step size found. Both go through ONE call
    site of the kernel, so the model's gradient is compiled once; without the search the
    loop makes a single trip. ``info_zeros``: an ``Info`` of zeros (the loop's initial carry).

    Returns ``(state, info, step_size)``: the transition's state and info, and the step size
    it used (the one found, or ``step_size``). Trial moves count in no ``Info``.
    """
    words = _counter_rng.key_words(key)  # the transition's own key, as a raw key

    def body(c):
        search, _, _, _ = c
        trial = ~search.done
        k = jnp.where(trial, step_search.trial_key(words, search.trial), words)
        new_state, info = kernel(k, state, logdensity_fn, search.step_size, inverse_mass_matrix, trial)
        search = jax.tree.map(lambda a, b: jnp.where(trial, a, b),
                              step_search.update(search, info.acceptance_rate), search)
        return search, ~trial, new_state, info

    search = step_search.start(step_size, heuristic)
    search, _, state, info = jax.lax.while_loop(
        lambda c: ~c[1], body, (search, jnp.zeros((), bool), state, info_zeros))
    return state, info, search.step_size


def single(kernel: Kernel) -> Move:
    """The :class:`Move` of one kernel over every coordinate (NUTS, HMC, MH): its step-size
    searches run through the kernel's own trial moves (:func:`search_then_move`)."""

    def shapes(state, logdensity_fn, params, dtype):
        (eps, imm), = params
        return (kernel.info_shapes(state, jnp.zeros((2,), jnp.uint32), logdensity_fn, eps, imm, dtype),)

    def step(key, state, logdensity_fn, params, search):
        (eps, imm), = params
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes(state, logdensity_fn, params, eps.dtype)[0])
        state, info, used = search_then_move(kernel, key, state, logdensity_fn, eps, imm, search, zeros)
        return state, (info,), (used,)

    return Move(blocks=(None,), init=kernel.init, step=step, position=lambda s: s.position,
                info_shapes=shapes, name=kernel.name, restart_at_windows=kernel.restart_at_windows, kernel=kernel)


def _adapt(t: Tuning, x, accept, row: Rows, settings: Settings, target_accept, dense: bool):
    """The adaptation of one block owed to the previous transition (``row.adapt`` set)."""
    dtype = t.step_size.dtype
    if settings.adapt_step_size:
        da = dual_averaging.update(t.dual_averaging, accept, target_accept)
        t = t._replace(dual_averaging=da, step_size=jnp.exp(da.log_step_size))
    if settings.adapt_mass:
        wf = jax.lax.cond(row.add_sample == 1, lambda w: welford.update(w, x), lambda w: w, t.welford)

        def close_window(t):
            if settings.chain_axis is None:
                imm = welford.regularized_inverse_mass_matrix(t.welford)
            else:
                imm = welford.pooled_inverse_mass_matrix(t.welford, settings.chain_axis)
            return t._replace(inverse_mass_matrix=imm,
                              welford=welford.init(x.shape[0], dense, dtype))

        t = jax.lax.cond(row.window_end == 1, close_window, lambda t: t, t._replace(welford=wf))
    if settings.adapt_step_size:
        t = t._replace(step_size=jnp.where(row.finish == 1, dual_averaging.final_step_size(t.dual_averaging),
                                           t.step_size))
    return t


class Steps(NamedTuple):
    """The parts of one iteration that every schedule shares (:func:`steps_of`), so that the
    chain-by-chain loop (:func:`advance`) and the lane schedule (``ppl.mcmc.lanes``) run
    the same warmup and keep the same records:

    prepare: ``(tuning, z, row) -> tuning``, the adaptation owed to the previous transition;
    bookkeeping: ``(state, tuning, infos, row) -> (state, row_values)``: the tally, the
      thinning sums and the values to record (draw and scalar fields, one flat vector);
    width: the length of a record row;
    unpack: ``buffer -> Record``, a chunk's rows back into named fields.
    """

    prepare: Callable
    bookkeeping: Callable
    width: int
    unpack: Callable


def steps_of(move: Move, state: ChainState, logdensity_fn, length: int, settings: Settings) -> Steps:
    """The :class:`Steps` of ``move`` for chunks of ``length`` rows."""
    targets = move.target_accept if move.target_accept is not None else (settings.target_accept,) * len(move.blocks)
    record0 = record_template(move, state, logdensity_fn, length)
    indices = [None if idx is None else jnp.asarray(idx, jnp.int32) for idx in move.blocks]
    names = [[n for n, v in zip(info._fields, info) if v is not None] for info in record0.infos]
    dtype = state.tally.nonfinite_position.dtype
    dim = state.tally.nonfinite_position.shape[0]

    def prepare(tuning, z, row):
        """The adaptation owed to the previous transition, per block."""
        adapted = []
        for t, idx, target in zip(tuning, indices, targets):
            x = z if idx is None else z[idx]
            adapted.append(jax.lax.cond(
                row.adapt == 1,
                lambda t, x, target=target: _adapt(t, x, t.last_accept, row, settings, target, settings.dense_mass),
                lambda t, x: t, t, x))
        return tuple(adapted)

    def bookkeeping(s: ChainState, tuning, infos, row):
        """The accept statistics for the next adaptation, the warmup tally, the thinning sums
        and the fields to record (over a thinned group: acceptance averaged, divergence and
        failure any-ed, gradient evaluations summed; other fields the last transition's).
        Draw and fields share one row of one buffer: one in-place write each iteration
        (integer and boolean fields are exact in floating point)."""
        warm = row.warmup == 1

        def stack(values, kind):  # per block (a move may have no adapted block: Gibbs on discrete sites)
            return jnp.stack([jnp.asarray(v, kind) for v in values]) if values else jnp.zeros((0,), kind)

        accept = stack([i.acceptance_rate for i in infos], dtype)
        div = stack([i.is_divergent for i in infos], bool)
        bad = stack([i.is_nonfinite for i in infos], bool)
        grads = stack([i.num_grad_evals for i in infos], jnp.int32)
        pooled = accept if settings.chain_axis is None else \
            pooled_acceptance(accept, settings.chain_axis, row.i < settings.harmonic_until)
        tuning = tuple(t._replace(last_accept=a) for t, a in zip(tuning, pooled))
        witness = s.tally.nonfinite_position
        for i in infos:
            witness = jnp.where(i.is_nonfinite, i.nonfinite_position, witness)
        tally = Tally(s.tally.warmup_grad_evals + jnp.where(warm, grads.sum(dtype=jnp.int32), 0),
                      s.tally.warmup_divergences + (warm & div.any()).astype(jnp.int32),
                      s.tally.warmup_nonfinite + (warm & bad.any()).astype(jnp.int32), witness)
        th = s.thinned
        th = Thinned(th.count + 1, th.acceptance_rate + accept, th.is_divergent | div,
                     th.num_grad_evals + grads, th.is_nonfinite | bad)
        fields = []
        for b, (info, keep) in enumerate(zip(infos, names)):
            summary = {"acceptance_rate": th.acceptance_rate[b] / th.count.astype(dtype),
                       "is_divergent": th.is_divergent[b], "num_grad_evals": th.num_grad_evals[b],
                       "is_nonfinite": th.is_nonfinite[b]}
            fields.append(tuple(summary[n] if n in summary else getattr(info, n) for n in keep))
        # Warmup transitions and recorded groups leave nothing behind for the next group.
        th = jax.tree.map(lambda a: jnp.where(warm | (row.record == 1), jnp.zeros_like(a), a), th)
        values = [move.position(s.move)] + [jnp.asarray(f, dtype)[None] for block in fields for f in block]
        return s._replace(tuning=tuning, tally=tally, thinned=th), jnp.concatenate(values)

    def unpack(buffer) -> Record:
        """The draws, then each block's scalar fields in their dtypes."""
        infos, column = [], dim
        for rec, keep in zip(record0.infos, names):
            values = {}
            for n in keep:
                values[n] = buffer[:, column].astype(getattr(rec, n).dtype)
                column += 1
            infos.append(type(rec)(*(values.get(n) for n in rec._fields)))
        return Record(buffer[:, :dim], tuple(infos))

    return Steps(prepare, bookkeeping, dim + sum(len(keep) for keep in names), unpack)


def restart_searched(tuning, used, row: Rows):
    """Where ``row.search`` re-ran the step-size heuristic: each block's step size is the one
    found (``used``) and its dual averaging restarts there."""
    restarted = tuple(t._replace(step_size=e, dual_averaging=dual_averaging.init(e)) for t, e in zip(tuning, used))
    return jax.tree.map(lambda a, b: jnp.where(row.search == 1, a, b), restarted, tuning)


def iteration_keys(words, rows: Rows):
    """The raw keys of a chunk's iterations, ``(2, length)``: column ``k`` is
    ``_counter_rng.subkey(words, rows.i[k], ITERATION)``, computed for the whole chunk at
    once (one vectorised cipher instead of one inside the loop's body)."""
    return _counter_rng.subkey(words, rows.i, _counter_rng.ITERATION)


def row_at(rows: Rows, k) -> Rows:
    """Row ``k`` of a chunk's plan."""
    return Rows(*(r[k] for r in rows))


def advance(words, state: ChainState, rows: Rows, move: Move, logdensity_fn, settings: Settings = Settings()):
    """Run the active iterations of ``rows`` on one chain, one after another; pure and
    jittable (vmap over chains: a chain's iterations then wait for the batch's longest
    transition; ``ppl.mcmc.lanes.advance`` avoids that for kernels that can resume).

    Args:
      words: the chain's raw ``uint32[2]`` key (``_counter_rng.key_words``); iteration ``i``
        uses ``_counter_rng.subkey(words, i, ITERATION)``.
      state: the chain's :class:`ChainState`.
      rows: the chunk's :class:`Rows` (from :func:`plan`).
      move: the :class:`ppl.mcmc.base.Move` (``single(kernel)`` for NUTS/HMC/MH).
      logdensity_fn: ``z -> scalar`` over the flat vector.
      settings: :class:`Settings`.

    Returns:
      ``(state, record)``: the state after the chunk and its :class:`Record` (rows past the
      active ones are zeros).
    """
    length = rows.i.shape[0]
    steps = steps_of(move, state, logdensity_fn, length, settings)

    def iteration(carry, k):
        s, buffer = carry
        row = row_at(rows, k)
        tuning = _cpu_blocks.nested(steps.prepare, s.tuning, move.position(s.move), row)
        # Inside the body, not precomputed for the chunk: measured (eight schools, one chain,
        # 2 cores) a (2, length) key array read by column cost 0.7 us per leapfrog (3.1 us
        # against 2.4).
        key = _counter_rng.subkey(words, row.i, _counter_rng.ITERATION)
        params = tuple((t.step_size, t.inverse_mass_matrix) for t in tuning)
        move_state, infos, used = move.step(key, s.move, logdensity_fn, params, row.search == 1)
        tuning = restart_searched(tuning, used, row)
        s, new_row = _cpu_blocks.nested(steps.bookkeeping, s._replace(move=move_state), tuning, infos, row)
        return s, jax.lax.dynamic_update_slice(buffer, new_row[None], (k, jnp.zeros_like(k)))

    def body(k, carry):
        return _cpu_blocks.nested_update(iteration, carry, k)

    dtype = state.tally.nonfinite_position.dtype
    state, buffer = jax.lax.fori_loop(0, jnp.sum(rows.active), body, (state, jnp.zeros((length, steps.width), dtype)))
    return state, steps.unpack(buffer)


def run_chain(key, logdensity_fn: Callable, z0, *, kernel, num_warmup: int = 1000,
              num_samples: int = 1000, target_accept: float = 0.8, dense_mass: bool = False,
              adapt_mass: bool = True, adapt_step_size: bool = True, thinning: int = 1,
              initial_step_size: float = 1.0, inverse_mass_matrix=None, initial_state=None):
    """Warm up and sample one chain in one call (one chunk of every iteration): a
    convenience for users writing their own programs; ppl's samplers call :func:`advance`
    chunk by chunk.

    Args:
      key: a PRNG key (raw ``PRNGKey`` or typed ``jax.random.key``).
      logdensity_fn: ``z -> scalar`` log density over the flat unconstrained vector.
      z0: initial position, shape (d,); its dtype is the computation's dtype.
      kernel: a :class:`ppl.mcmc.base.Kernel` (``hmc/nuts/mh.build_kernel``) or a
        :class:`ppl.mcmc.base.Move`.
      num_warmup, num_samples: iteration counts (Python ints). Sampling runs
        ``num_samples * thinning`` transitions and keeps every ``thinning``-th.
      target_accept: dual-averaging target (0.8 for NUTS/HMC as Stan; about 0.234 for MH).
      dense_mass: adapt a dense (True) or diagonal (False) inverse mass matrix.
      adapt_mass, adapt_step_size: switch either adaptation off.
      initial_step_size: starting step size (then refined by the heuristic when adapting).
      inverse_mass_matrix: starting inverse mass matrix; identity when None.
      initial_state: the kernel's state at ``z0`` when the caller has it already.

    Returns:
      ``(draws, infos, adaptation)``: draws of shape (num_samples, d); the kernel's ``Info``
      with a leading num_samples axis (with thinning: acceptance averaged, divergences and
      numerical failures any-ed, gradient evaluations summed over the thinned transitions;
      the vector field ``nonfinite_position`` is None); :class:`Adaptation`.

    Raises:
      ValueError: on a kernel that is not a ``Kernel``, non-int or negative counts, a
        target_accept outside (0, 1), or arrays of the wrong shape.
    """
    _check(kernel, num_warmup, num_samples, thinning, target_accept)
    move = kernel if isinstance(kernel, Move) else single(kernel)
    z0 = jnp.asarray(z0)
    if z0.ndim != 1:
        raise ValueError(f"z0 must be a flat vector of shape (d,); received shape {z0.shape}.")
    dim = z0.shape[0]
    if inverse_mass_matrix is not None:
        shape = (dim, dim) if dense_mass else (dim,)
        if jnp.shape(inverse_mass_matrix) != shape:
            raise ValueError(
                f"inverse_mass_matrix has shape {jnp.shape(inverse_mass_matrix)}; with dense_mass={dense_mass} "
                f"and dim={dim} it must have shape {shape}.")
    settings = Settings(target_accept, dense_mass, adapt_mass, adapt_step_size, initial_step_size)
    state = new_chain_state(move, z0, logdensity_fn, settings, initial_state, True, inverse_mass_matrix)
    total = num_warmup + num_samples * thinning
    rows = jax.tree.map(jnp.asarray, plan(0, total, total, num_warmup, thinning, adapt_mass, adapt_step_size,
                                          move.restart_at_windows))
    state, record = advance(_counter_rng.key_words(key), state, rows, move, logdensity_fn, settings)
    keep = np.flatnonzero(np.asarray(plan(0, total, total, num_warmup, thinning).record))
    infos = record.infos[0]
    infos = type(infos)(*(None if v is None else v[keep] for v in infos))
    return record.position[keep], infos, adaptation_of(state)


class Adaptation(NamedTuple):
    """A chain's tuned values and what its warmup cost (first adapted block's step size and
    mass matrix; :func:`adaptation_of`).

    Fields: ``step_size``, ``inverse_mass_matrix`` (used for every draw),
    ``num_warmup_grad_evals`` (gradient/log-density evaluations of the warmup transitions;
    the step-size heuristic's probes excluded), ``num_warmup_divergences``,
    ``num_warmup_nonfinite`` (warmup transitions that met a numerical failure of the model)
    and ``nonfinite_position`` (the last point where the model failed numerically; zeros if
    none).
    """

    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    num_warmup_grad_evals: jax.Array
    num_warmup_divergences: jax.Array
    num_warmup_nonfinite: jax.Array
    nonfinite_position: jax.Array


def adaptation_of(state: ChainState) -> Adaptation:
    """The :class:`Adaptation` of a chain state (its first block's tuned values)."""
    t, tally = state.tuning[0], state.tally
    return Adaptation(t.step_size, t.inverse_mass_matrix, tally.warmup_grad_evals, tally.warmup_divergences,
                      tally.warmup_nonfinite, tally.nonfinite_position)


def _check(kernel, num_warmup, num_samples, thinning, target_accept):
    if not isinstance(kernel, (Kernel, Move)):
        raise ValueError(
            "kernel must be what a build_kernel(...) returns (ppl.mcmc.base.Kernel, e.g. "
            f"ppl.mcmc.nuts.build_kernel()) or a ppl.mcmc.base.Move; received {type(kernel).__name__}."
        )
    for name, value, low in (("num_warmup", num_warmup, 0), ("num_samples", num_samples, 1),
                             ("thinning", thinning, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; received {value!r}.")
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1); received {target_accept!r}.")
