"""Run one chain: Stan-style windowed warmup, then sampling, all under one ``lax.scan``.

Warmup follows Stan's ``adapt_diag_e_nuts`` / ``adapt_dense_e_nuts``: after every
transition the step size is updated by dual averaging; draws inside a slow window enter a
Welford estimate; at the end of a slow window the inverse mass matrix is set to the
regularised estimate, the step size is re-initialised by the doubling/halving heuristic and
dual averaging restarts at mu = log(10 eps). Sampling uses the final averaged step size.

Iteration ``i`` of the single scan first applies the adaptation owed to transition ``i-1``
(all decisions are functions of ``i`` alone, precomputed from the schedule, so under
``vmap`` they stay real branches), then runs transition ``i`` and records it if ``i`` is a
sampling iteration. The kernel is therefore traced and compiled once. The whole function is
pure: ``jax.jit(jax.vmap(partial(run_chain, logdensity_fn=..., kernel=..., ...)))`` over keys
and initial positions runs many chains in one compiled program.

Reference: Stan Reference Manual, "HMC algorithm parameters" (automatic parameter tuning);
Hoffman & Gelman (2014), section 3.2.
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ppl import _counter_rng
from ppl.adapt import dual_averaging, welford, window
from ppl.adapt import initial_step_size as step_search
from ppl.mcmc import _cpu_blocks
from ppl.mcmc.base import Kernel


class Adaptation(NamedTuple):
    """The tuned values used for sampling, and what warmup cost.

    Fields: ``step_size``, ``inverse_mass_matrix`` (used for every draw),
    ``num_warmup_grad_evals`` (gradient/log-density evaluations of the warmup transitions;
    the step-size heuristic's probes excluded), ``num_warmup_divergences``,
    ``num_warmup_nonfinite`` (warmup transitions that met a numerical failure of the model)
    and ``nonfinite_position`` (the last point, warmup or sampling, where the model failed
    numerically; zeros if none).
    """

    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    num_warmup_grad_evals: jax.Array
    num_warmup_divergences: jax.Array
    num_warmup_nonfinite: jax.Array
    nonfinite_position: jax.Array


class _Tuning(NamedTuple):
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    dual_averaging: dual_averaging.DualAveragingState
    welford: welford.WelfordState
    last_accept: jax.Array
    num_grad_evals: jax.Array
    num_divergences: jax.Array
    num_nonfinite: jax.Array
    nonfinite_position: jax.Array


class _Plan(NamedTuple):
    """Per-iteration decisions (numpy, shape (num_iterations,)), functions of i alone."""

    adapt: np.ndarray  # apply dual averaging / counters for transition i-1 (a warmup one)
    add_sample: np.ndarray  # the state after transition i-1 enters the Welford estimate
    window_end: np.ndarray  # transition i-1 closed a slow window: update the mass matrix
    heuristic: np.ndarray  # re-initialise the step size (and restart dual averaging)
    finish: np.ndarray  # transition i-1 was the last warmup one: fix the step size
    record: np.ndarray  # transition i is a sampling one


def _check(kernel, num_warmup, num_samples, thinning, target_accept, progress_every):
    if not isinstance(kernel, Kernel):
        raise ValueError(
            "kernel must be what a build_kernel(...) returns (ppl.mcmc.base.Kernel, e.g. "
            f"ppl.mcmc.nuts.build_kernel()); received {type(kernel).__name__}."
        )
    for name, value, low in (("num_warmup", num_warmup, 0), ("num_samples", num_samples, 1),
                             ("thinning", thinning, 1), ("progress_every", progress_every, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; received {value!r}.")
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1); received {target_accept!r}.")


def _plan(num_warmup, num_samples, thinning, adapt_mass, adapt_step_size, restart_at_windows):
    total = num_warmup + num_samples * thinning
    schedule = window.build_schedule(num_warmup)
    prev = np.zeros(total, bool)  # "iteration i-1 was a warmup transition"
    prev[1:num_warmup + 1] = True

    def shifted(flags):
        out = np.zeros(total, bool)
        out[1:num_warmup + 1] = flags
        return out

    in_window = shifted(schedule.in_window) if adapt_mass else np.zeros(total, bool)
    window_end = shifted(schedule.window_end) if adapt_mass else np.zeros(total, bool)
    heuristic = window_end & restart_at_windows & adapt_step_size
    heuristic[0] = num_warmup > 0 and adapt_step_size
    finish = np.zeros(total, bool)
    if num_warmup > 0 and adapt_step_size:
        finish[num_warmup] = True
    record = np.zeros(total, bool)
    record[num_warmup:] = True
    return _Plan(prev, in_window, window_end, heuristic, finish, record)


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


def _progress(progress_fn, every, chain_index, iteration):
    """Call ``progress_fn(chain_index, iteration)`` on the host when iteration % every == 0."""
    if progress_fn is None:
        return

    def report():
        if chain_index is None:
            jax.debug.callback(lambda i: progress_fn(None, int(i)), iteration)
        else:
            jax.debug.callback(lambda c, i: progress_fn(int(c), int(i)), chain_index, iteration)

    jax.lax.cond(iteration % every == 0, report, lambda: None)


def run_chain(key, logdensity_fn: Callable, z0, *, kernel: Kernel, num_warmup: int = 1000,
              num_samples: int = 1000, target_accept: float = 0.8, dense_mass: bool = False,
              adapt_mass: bool = True, adapt_step_size: bool = True, thinning: int = 1,
              initial_step_size: float = 1.0, inverse_mass_matrix=None,
              progress_fn: Optional[Callable] = None, progress_every: int = 100,
              chain_index=None, initial_state=None):
    """Warm up and sample one chain.

    Args:
      key: a PRNG key (raw ``PRNGKey`` or typed ``jax.random.key``).
      logdensity_fn: ``z -> scalar`` log density over the flat unconstrained vector.
      z0: initial position, shape (d,); its dtype is the computation's dtype.
      kernel: a :class:`ppl.mcmc.base.Kernel` from ``hmc/nuts/mh.build_kernel``.
      num_warmup, num_samples: iteration counts (Python ints). Sampling runs
        ``num_samples * thinning`` transitions and keeps every ``thinning``-th.
      target_accept: dual-averaging target (0.8 for NUTS/HMC as Stan; about 0.234 for MH).
      dense_mass: adapt a dense (True) or diagonal (False) inverse mass matrix.
      adapt_mass, adapt_step_size: switch either adaptation off.
      initial_step_size: starting step size (then refined by the heuristic when adapting).
      inverse_mass_matrix: starting inverse mass matrix; identity when None.
      progress_fn: optional host callable ``(chain_index_or_None, iteration)``, invoked through
        ``jax.debug.callback`` when ``iteration % progress_every == 0`` (iterations count
        warmup then sampling transitions from 0).
      chain_index: optional integer (pass ``jnp.arange(num_chains)`` as a vmapped argument)
        forwarded to ``progress_fn``.
      initial_state: the kernel's state at ``z0`` when the caller has it already (e.g. from
        ``ppl.compile.init.first_finite(..., evaluate=kernel.init)``); else ``kernel.init``.

    Returns:
      ``(draws, infos, adaptation)``: draws of shape (num_samples, d); the kernel's ``Info``
      with a leading num_samples axis (with thinning: acceptance averaged, divergences and
      numerical failures any-ed, gradient evaluations summed over the thinned transitions;
      vector fields such as ``nonfinite_position`` are None); :class:`Adaptation`.

    Raises:
      ValueError: on a kernel that is not a ``Kernel``, non-int or negative counts, a
        target_accept outside (0, 1), or arrays of the wrong shape.
    """
    _check(kernel, num_warmup, num_samples, thinning, target_accept, progress_every)
    z0 = jnp.asarray(z0)
    if z0.ndim != 1:
        raise ValueError(f"z0 must be a flat vector of shape (d,); received shape {z0.shape}.")
    dtype, dim = z0.dtype, z0.shape[0]
    if inverse_mass_matrix is None:
        imm = jnp.eye(dim, dtype=dtype) if dense_mass else jnp.ones((dim,), dtype)
    else:
        imm = jnp.asarray(inverse_mass_matrix, dtype)
        if imm.shape != ((dim, dim) if dense_mass else (dim,)):
            raise ValueError(
                f"inverse_mass_matrix has shape {imm.shape}; with dense_mass={dense_mass} and "
                f"dim={dim} it must have shape {(dim, dim) if dense_mass else (dim,)}."
            )
    plan = _plan(num_warmup, num_samples, thinning, adapt_mass, adapt_step_size,
                 kernel.restart_at_windows)
    total = len(plan.record)

    state = kernel.init(z0, logdensity_fn) if initial_state is None else initial_state
    step_size = jnp.asarray(initial_step_size, dtype)
    zero = jnp.zeros((), jnp.int32)
    tuning = _Tuning(step_size, imm, dual_averaging.init(step_size),
                     welford.init(dim, dense_mass, dtype), jnp.zeros((), dtype), zero, zero, zero,
                     jnp.zeros((dim,), dtype))
    info_shape = kernel.info_shapes(state, key, logdensity_fn, step_size, imm, dtype)
    # Scalar fields are recorded per draw; a vector field (the kernel's nonfinite_position)
    # is kept in the tuning state instead.
    scalar_fields = [name for name, s in zip(info_shape._fields, info_shape) if s.shape == ()]
    info_fields = len(scalar_fields)
    # Draws and infos share one (num_samples, d + fields) buffer: one in-place write each
    # iteration (integer and boolean fields are exact in floating point).
    records = jnp.zeros((num_samples, dim + info_fields), dtype)

    def adapt(t: _Tuning, state, info_accept, flags):
        add_sample, window_end, finish = flags
        if adapt_step_size:
            da = dual_averaging.update(t.dual_averaging, info_accept, target_accept)
            t = t._replace(dual_averaging=da, step_size=jnp.exp(da.log_step_size))
        if plan.window_end.any():
            wf = jax.lax.cond(add_sample, lambda w: welford.update(w, state.position), lambda w: w,
                              t.welford)
            t = t._replace(welford=wf)

            def close_window(t):
                return t._replace(
                    inverse_mass_matrix=welford.regularized_inverse_mass_matrix(t.welford),
                    welford=welford.init(dim, dense_mass, dtype))

            t = jax.lax.cond(window_end, close_window, lambda t: t, t)
        if adapt_step_size:
            t = t._replace(step_size=jnp.where(
                finish, dual_averaging.final_step_size(t.dual_averaging), t.step_size))
        return t

    def prepare(t: _Tuning, state, flags):
        """The adaptation owed to the previous transition."""
        adapt_flag, add_sample, window_end, finish = (flags[k] == 1 for k in (0, 1, 2, 4))
        if num_warmup > 0:
            t = jax.lax.cond(adapt_flag, adapt, lambda t, *_: t, t, state, t.last_accept,
                             (add_sample, window_end, finish))
        return t

    info_zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), info_shape)

    def search_and_restart(state, t: _Tuning, key, heuristic):
        state, info, eps = search_then_move(kernel, key, state, logdensity_fn, t.step_size,
                                            t.inverse_mass_matrix, heuristic, info_zeros)
        restarted = t._replace(step_size=eps, dual_averaging=dual_averaging.init(eps))
        t = jax.tree.map(lambda a, b: jnp.where(heuristic, a, b), restarted, t)
        return state, info, t

    def bookkeeping(t: _Tuning, acc, state, info, i, record):
        """Warmup counters; thinning accumulators; the row (draw, info) to record."""
        warm = ~record
        t = t._replace(
            last_accept=jnp.asarray(info.acceptance_rate, dtype),
            num_grad_evals=t.num_grad_evals + jnp.where(warm, info.num_grad_evals, 0),
            num_divergences=t.num_divergences + (warm & info.is_divergent).astype(jnp.int32),
            num_nonfinite=t.num_nonfinite + (warm & info.is_nonfinite).astype(jnp.int32),
            nonfinite_position=jnp.where(info.is_nonfinite, info.nonfinite_position, t.nonfinite_position))
        j = jnp.maximum(i - num_warmup, 0)
        restart = (j % thinning) == 0
        acc = jnp.where(restart, 0.0, acc) + jnp.stack([
            jnp.asarray(info.acceptance_rate, dtype), jnp.asarray(info.is_divergent, dtype),
            jnp.asarray(info.num_grad_evals, dtype), jnp.asarray(info.is_nonfinite, dtype)])
        # Over thinned transitions: acceptance averaged, gradient evaluations summed, the
        # failure flags any-ed; other fields are the last transition's.
        thinned = {"acceptance_rate": acc[0] / ((j % thinning) + 1).astype(dtype),
                   "is_divergent": jnp.minimum(acc[1], 1.0), "num_grad_evals": acc[2],
                   "is_nonfinite": jnp.minimum(acc[3], 1.0)}
        fields = [thinned.get(name, jnp.asarray(getattr(info, name), dtype)) for name in scalar_fields]
        return t, acc, jnp.concatenate([state.position, jnp.stack(fields)]), j // thinning

    def transition(state, t, acc, key, row):
        i, flags, record = row[0], row[1:6], row[6] == 1
        t = _cpu_blocks.nested(prepare, t, state, flags)
        if plan.heuristic.any():
            state, info, t = search_and_restart(state, t, key, flags[3] == 1)
        else:
            state, info = kernel(key, state, logdensity_fn, t.step_size, t.inverse_mass_matrix)
        t, acc, new_row, slot = _cpu_blocks.nested(bookkeeping, t, acc, state, info, i, record)
        return state, t, acc, new_row, slot

    def full_iteration(carry, key, row):
        state, t, acc, records = carry
        state, t, acc, new_row, slot = transition(state, t, acc, key, row)
        records = jax.lax.dynamic_update_slice(records, new_row[None], (slot, jnp.zeros_like(slot)))
        _progress(progress_fn, progress_every, chain_index, row[0])
        return state, t, acc, records

    def iteration(carry, xs):
        key, row = xs
        return _cpu_blocks.nested_update(full_iteration, carry, key, row), None

    # One int32 row per iteration: i, then the plan's flags (one slice per iteration).
    rows = np.stack([np.arange(total)] + [np.asarray(a, np.int32) for a in (
        plan.adapt, plan.add_sample, plan.window_end, plan.heuristic, plan.finish, plan.record)],
        axis=1).astype(np.int32)
    xs = (jax.random.split(key, total), jnp.asarray(rows))
    carry = (state, tuning, jnp.zeros((4,), dtype), records)
    (state, tuning, _, records), _ = jax.lax.scan(iteration, carry, xs)

    draws = records[:, :dim]
    column = {name: dim + k for k, name in enumerate(scalar_fields)}
    infos = type(info_shape)(*(  # vector fields are not recorded per draw: None
        records[:, column[name]].astype(s.dtype) if name in column else None
        for name, s in zip(info_shape._fields, info_shape)))
    adaptation = Adaptation(tuning.step_size, tuning.inverse_mass_matrix, tuning.num_grad_evals,
                            tuning.num_divergences, tuning.num_nonfinite, tuning.nonfinite_position)
    return draws, infos, adaptation
