"""NumPyro's `numpyro.util` helpers under ppl: JAX settings and a trace's shapes.

    enable_x64(use_x64=True)     64-bit floats and ints (jax_enable_x64)
    set_platform(platform=None)  "cpu", "gpu" or "tpu" (jax_platform_name)
    set_host_device_count(n)     n CPU devices (for chains in parallel on a CPU)
    format_shapes(trace)         a table of each site's batch, event and value shapes
    fori_collect(lower, upper, body_fun, init_val, transform=...)
                                 run body_fun upper times in one compiled loop, keep
                                 transform(state) from iteration lower on
    fori_loop(lower, upper, body_fun, init_val)
                                 jax.lax.fori_loop, as NumPyro's (a compiled loop)
    set_rng_seed(seed)           seed NumPy's global generator (NumPyro's; JAX keys are explicit)

The platform and device count take effect only before JAX runs its first operation: call
them right after `import ppl`, as in NumPyro.
"""
from __future__ import annotations

import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np


def enable_x64(use_x64: bool = True) -> None:
    """Use 64-bit (True) or 32-bit (False) floats and ints by default."""
    jax.config.update("jax_enable_x64", bool(use_x64))


def set_platform(platform: str | None = None) -> None:
    """Run on `platform` ("cpu", "gpu", "tpu"); None reads $JAX_PLATFORM_NAME, else "cpu"."""
    platform = platform or os.environ.get("JAX_PLATFORM_NAME", "cpu")
    jax.config.update("jax_platform_name", platform)


_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S+")


def set_host_device_count(n: int) -> None:
    """Expose `n` CPU devices to JAX (XLA_FLAGS' --xla_force_host_platform_device_count), so
    chains can run on CPU cores in parallel.

    Raises:
      ValueError: for `n` that is not a positive int.

    Warns when JAX has already started (the setting then applies to new processes only).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_host_device_count: n must be a positive int, got {n!r}.")
    flags = _COUNT_FLAG.sub("", os.environ.get("XLA_FLAGS", "")).split()
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        warnings.warn(f"set_host_device_count({n}): JAX has already started, so this process keeps "
                      f"{jax.local_device_count('cpu')} CPU device(s); call it right after `import ppl`.",
                      stacklevel=2)
    except AttributeError:  # an older JAX without the option: XLA_FLAGS alone does it
        pass


def format_shapes(trace, compute_log_prob: bool = False, title: str = "Trace Shapes:") -> str:
    """A table of the sites of `trace` (from `ppl.handlers.trace`): for each site its kind,
    its distribution's batch and event shapes, its value's shape and (with
    `compute_log_prob`) its log density's shape. For finding shape mistakes.

    Example:
      >>> print(ppl.util.format_shapes(ppl.handlers.trace(ppl.handlers.seed(model, 0)).get_trace(x)))
    """
    rows = [(title, "", "", "", "")]
    for site in trace.values():
        d = site.dist
        batch = " ".join(map(str, d.batch_shape)) if d is not None else ""
        event = " ".join(map(str, d.event_shape)) if d is not None else ""
        value = " ".join(map(str, jnp.shape(site.value))) if site.value is not None else ""
        lp = " ".join(map(str, jnp.shape(site.log_prob))) if compute_log_prob else ""
        rows.append((site.name, site.kind, batch, event, value + (f"  log_prob: {lp}" if lp else "")))
    rows.insert(1, ("name", "kind", "batch", "event", "value"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join((" ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + " " + r[4]).rstrip() for r in rows)


def fori_loop(lower, upper, body_fun, init_val):
    """``body_fun(i, val)`` for ``i`` in ``lower .. upper - 1``, as one compiled loop
    (``jax.lax.fori_loop``; NumPyro's ``numpyro.util.fori_loop``). ``body_fun`` may call
    ``svi.update``: its state is a pytree of arrays."""
    return jax.lax.fori_loop(lower, upper, body_fun, init_val)


def set_rng_seed(seed: int) -> None:
    """Seed NumPy's global random generator (NumPyro's ``set_rng_seed``). ppl's own draws
    take explicit JAX keys and are not affected."""
    np.random.seed(seed)


def _identity(x):
    return x


def fori_collect(lower, upper, body_fun, init_val, transform=_identity, progbar=True, return_last_val=False,
                 collection_size=None, thinning=1, *, progress_rate=None, **progbar_opts):
    """Apply ``body_fun`` ``upper`` times to ``init_val`` and collect ``transform(state)``
    after each of the iterations ``lower .. upper - 1``, thinned (NumPyro's
    `numpyro.util.fori_collect`, e.g. around `ppl.infer.hmc.hmc`'s ``sample_kernel``).

    The iterations run as ONE compiled loop (``lax.fori_loop``; ``body_fun`` and ``transform``
    traced once each). With ``progbar`` a tqdm bar advances between calls of that same
    program, each running about ``progress_rate`` iterations (default ``upper / 20``): no host
    callback enters the program.

    Args:
      lower: the number of iterations not collected (warmup).
      upper: the number of iterations in all.
      body_fun: ``state -> state``, jittable, keeping the pytree's structure, shapes and dtypes.
      init_val: the initial state (a pytree of arrays).
      transform: ``state -> pytree`` of what to keep (default: the state itself).
      progbar: show a progress bar.
      return_last_val: also return the last state.
      collection_size: the number of rows of the collection (default and minimum
        ``(upper - lower) // thinning``; rows past those are zeros).
      thinning: keep one state in ``thinning``: the last of each group of ``thinning``
        iterations ending at ``upper - 1``, as NumPyro.
      progress_rate: iterations between progress-bar updates.
      progbar_opts: NumPyro's ``progbar_desc`` (``str`` or ``i -> str``) and
        ``diagnostics_fn`` (``state -> str``, shown after the bar), and ``num_chains``
        (accepted, unused).

    Returns:
      The collection: ``transform``'s pytree with each leaf stacked along a new leading axis
      of ``collection_size`` rows; with ``return_last_val``, ``(collection, last state)``.

    Raises:
      ValueError: for ``lower > upper``, negative counts, ``thinning < 1`` or a
        ``collection_size`` below ``(upper - lower) // thinning``.
      TypeError: for an unknown keyword.

    Example:
      >>> draws = fori_collect(500, 1500, sample_kernel, state, transform=lambda s: post(s.z), progbar=False)
    """
    for name, value in (("lower", lower), ("upper", upper), ("thinning", thinning)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (name == "thinning"):
            raise ValueError(f"fori_collect: {name} must be an int >= {int(name == 'thinning')}, got {value!r}.")
    if lower > upper:
        raise ValueError(f"fori_collect: lower ({lower}) must not exceed upper ({upper}).")
    unknown = sorted(set(progbar_opts) - {"progbar_desc", "diagnostics_fn", "num_chains"})
    if unknown:
        raise TypeError(f"fori_collect got unknown keyword(s) {unknown}.")
    lower, upper, thinning = int(lower), int(upper), int(thinning)
    kept = (upper - lower) // thinning
    size = kept if collection_size is None else int(collection_size)
    if size < kept:
        raise ValueError(f"fori_collect: collection_size={collection_size} is below (upper - lower) // thinning "
                         f"= {kept}; give at least {kept} or None.")
    start = lower + (upper - lower) % thinning  # the kept iterations end at upper - 1

    def row(shape):
        return jnp.zeros((size,) + tuple(shape.shape), shape.dtype)

    collection = jax.tree.map(row, jax.eval_shape(transform, init_val))

    def body(i, carry):
        state, collected = carry
        state = body_fun(state)
        offset = i - start
        keep = (offset >= 0) & (offset % thinning == thinning - 1)

        def put(collected):
            index = offset // thinning
            return jax.tree.map(lambda c, v: jax.lax.dynamic_update_index_in_dim(c, jnp.asarray(v, c.dtype), index, 0),
                                collected, transform(state))

        return state, jax.lax.cond(keep, put, lambda c: c, collected)

    def loop(carry, first, last):  # iterations first .. last - 1 (traced: one program for every call)
        return jax.lax.fori_loop(first, last, body, carry)

    carry = (init_val, collection)
    run = _compiled(loop, (carry, 0, upper), inputs=init_val)
    if not progbar or upper == 0:
        carry = run(carry, 0, upper)
    else:
        carry = _with_progress_bar(run, carry, upper, progress_rate, progbar_opts)
    last, collection = carry
    return (collection, last) if return_last_val else collection


def _compiled(fn, args, inputs=(), evaluations=None):
    """``fn`` traced, lowered for ``args`` and compiled as ppl's own programs are
    (``ppl.runtime.program.compile_lowered``: its CPU compiler options and disk cache).
    Returns the compiled executable (called with arguments shaped as ``args``)."""
    from ppl.runtime import program

    if not isinstance(args, tuple):
        args = (args,)
    return program.compile_lowered(jax.jit(fn).lower(*args), jax.tree.leaves(inputs), evaluations)[0]


def _with_progress_bar(run, carry, upper, progress_rate, options):
    """``run`` over ``0 .. upper`` in calls of ``progress_rate`` iterations, a tqdm bar between."""
    from tqdm.auto import tqdm

    rate = max(1, int(progress_rate) if progress_rate else upper // 20)
    describe, diagnostics = options.get("progbar_desc"), options.get("diagnostics_fn")
    with tqdm(total=upper, mininterval=0.5, dynamic_ncols=True) as bar:
        for first in range(0, upper, rate):
            last = min(upper, first + rate)
            carry = jax.block_until_ready(run(carry, first, last))  # the bar follows the work, not the dispatch
            if describe is not None:
                bar.set_description(describe(last) if callable(describe) else str(describe), refresh=False)
            if diagnostics is not None:
                bar.set_postfix_str(diagnostics(carry[0]), refresh=False)
            bar.update(last - first)
    return carry


__all__ = ["enable_x64", "fori_collect", "fori_loop", "format_shapes", "set_host_device_count", "set_platform",
           "set_rng_seed"]
