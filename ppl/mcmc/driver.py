"""Run one chain: Stan-style windowed warmup, then sampling, each under one ``lax.scan``.

Warmup (Stan's ``adapt_diag_e_nuts`` / ``adapt_dense_e_nuts`` transition): after every
transition the step size is updated by dual averaging; draws inside a slow window enter a
Welford estimate; at the end of a slow window the inverse mass matrix is set to the
regularised estimate, the step size is re-initialised by the doubling/halving heuristic and
dual averaging restarts at mu = log(10 eps). Sampling uses the final averaged step size.

The whole function is pure: ``jax.jit(jax.vmap(partial(run_chain, logdensity_fn=..., ...)))``
over keys and initial positions runs many chains in one compiled program.

Reference: Stan Reference Manual, "HMC algorithm parameters" (automatic parameter tuning);
Hoffman & Gelman (2014), section 3.2.
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ppl.adapt import dual_averaging, welford, window
from ppl.adapt.initial_step_size import find_reasonable_step_size
from ppl.mcmc.base import Kernel


class Adaptation(NamedTuple):
    """The tuned values used for sampling, and what warmup cost.

    Fields: ``step_size``, ``inverse_mass_matrix`` (used for every draw),
    ``num_warmup_grad_evals`` (gradient/log-density evaluations spent in warmup, the
    initial step-size heuristics excluded) and ``num_warmup_divergences``.
    """

    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    num_warmup_grad_evals: jax.Array
    num_warmup_divergences: jax.Array


class _WarmupCarry(NamedTuple):
    state: tuple
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    dual_averaging: dual_averaging.DualAveragingState
    welford: welford.WelfordState
    num_grad_evals: jax.Array
    num_divergences: jax.Array


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


def _combine_infos(infos):
    """Summarise the ``thinning`` transitions behind one kept draw (leading axis)."""
    combined = jax.tree.map(lambda x: x[-1], infos)
    return combined._replace(
        acceptance_rate=jnp.mean(infos.acceptance_rate, axis=0),
        is_divergent=jnp.any(infos.is_divergent, axis=0),
        num_grad_evals=jnp.sum(infos.num_grad_evals, axis=0),
    )


def run_chain(key, logdensity_fn: Callable, z0, *, kernel: Kernel, num_warmup: int = 1000,
              num_samples: int = 1000, target_accept: float = 0.8, dense_mass: bool = False,
              adapt_mass: bool = True, adapt_step_size: bool = True, thinning: int = 1,
              initial_step_size: float = 1.0, inverse_mass_matrix=None,
              progress_fn: Optional[Callable] = None, progress_every: int = 100,
              chain_index=None):
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
      chain_index: optional integer (pass ``jnp.arange(num_chains)`` as a vmapped keyword)
        forwarded to ``progress_fn``.

    Returns:
      ``(draws, infos, adaptation)``: draws of shape (num_samples, d); the kernel's ``Info``
      with a leading num_samples axis (with thinning: acceptance averaged, divergences
      any-ed, gradient evaluations summed over the thinned transitions); :class:`Adaptation`
      ``(step_size, inverse_mass_matrix)`` used for sampling.

    Raises:
      ValueError: on a kernel that is not a ``Kernel``, non-int or negative counts, or a
        target_accept outside (0, 1).
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
    key_init, key_warmup, key_sample = jax.random.split(key, 3)
    state = kernel.init(z0, logdensity_fn)
    step_size = jnp.asarray(initial_step_size, dtype)

    def heuristic(key, state, step_size, imm):
        probe = lambda k, eps: kernel.probe(k, state, logdensity_fn, eps, imm)
        return find_reasonable_step_size(key, probe, step_size)

    if num_warmup > 0 and adapt_step_size:
        step_size = heuristic(key_init, state, step_size, imm)

    schedule = window.build_schedule(num_warmup) if adapt_mass else window.Schedule(
        np.zeros(num_warmup, bool), np.zeros(num_warmup, bool), ())
    zero = jnp.zeros((), jnp.int32)
    carry = _WarmupCarry(state, step_size, imm, dual_averaging.init(step_size),
                         welford.init(dim, dense_mass, dtype), zero, zero)

    def warmup_step(c: _WarmupCarry, xs):
        key, i, in_window, window_end = xs
        key_step, key_heuristic = jax.random.split(key)
        state, info = kernel(key_step, c.state, logdensity_fn, c.step_size, c.inverse_mass_matrix)
        c = c._replace(state=state, num_grad_evals=c.num_grad_evals + info.num_grad_evals,
                       num_divergences=c.num_divergences + info.is_divergent.astype(jnp.int32))
        if adapt_step_size:
            da = dual_averaging.update(c.dual_averaging, info.acceptance_rate, target_accept)
            c = c._replace(dual_averaging=da, step_size=jnp.exp(da.log_step_size))
        if schedule.windows:
            wf = jax.lax.cond(in_window, lambda w: welford.update(w, state.position), lambda w: w, c.welford)
            c = c._replace(welford=wf)

            def end_window(c):
                imm = welford.regularized_inverse_mass_matrix(c.welford)
                fresh = welford.init(dim, dense_mass, dtype)
                if not (adapt_step_size and kernel.restart_at_windows):
                    return c._replace(inverse_mass_matrix=imm, welford=fresh)
                eps = heuristic(key_heuristic, c.state, c.step_size, imm)
                return c._replace(step_size=eps, inverse_mass_matrix=imm,
                                  dual_averaging=dual_averaging.init(eps), welford=fresh)

            c = jax.lax.cond(window_end, end_window, lambda c: c, c)
        _progress(progress_fn, progress_every, chain_index, i)
        return c, None

    if num_warmup > 0:
        xs = (jax.random.split(key_warmup, num_warmup), jnp.arange(num_warmup, dtype=jnp.int32),
              jnp.asarray(schedule.in_window), jnp.asarray(schedule.window_end))
        carry, _ = jax.lax.scan(warmup_step, carry, xs)
        if adapt_step_size:
            carry = carry._replace(step_size=dual_averaging.final_step_size(carry.dual_averaging))
    step_size, imm = carry.step_size, carry.inverse_mass_matrix

    def transition(state, key):
        return kernel(key, state, logdensity_fn, step_size, imm)

    def sample_step(state, xs):
        key, i = xs
        if thinning == 1:
            state, info = transition(state, key)
        else:
            state, infos = jax.lax.scan(transition, state, jax.random.split(key, thinning))
            info = _combine_infos(infos)
        _progress(progress_fn, progress_every, chain_index, num_warmup + i)
        return state, (state.position, info)

    xs = (jax.random.split(key_sample, num_samples), jnp.arange(num_samples, dtype=jnp.int32))
    _, (draws, infos) = jax.lax.scan(sample_step, carry.state, xs)
    return draws, infos, Adaptation(step_size, imm, carry.num_grad_evals, carry.num_divergences)
