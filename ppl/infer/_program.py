"""Compiled programs, cached by (program, argument structure, shapes), with timing.

A method's program is a pure function `program(key, log_density)`; the log density is a
pytree of its data, so new data of the same shapes reuse the compiled executable.
"""
from __future__ import annotations

import functools
import time

import jax
import numpy as np


def _aval(leaf):
    dtype = leaf.dtype if hasattr(leaf, "dtype") else jax.numpy.asarray(leaf).dtype
    return jax.ShapeDtypeStruct(np.shape(leaf), dtype, weak_type=bool(getattr(leaf, "weak_type", False)))


@functools.lru_cache(maxsize=32)
def _executable(program, method, tree, avals, device):
    return jax.jit(functools.partial(program, method)).lower(*jax.tree.unflatten(tree, avals)).compile()


def _device_key():
    """The device a new program compiles for (the default device, or the one set by
    `jax.default_device`), so programs compiled for one device are not reused on another."""
    return str(jax.config.jax_default_device or jax.devices()[0])


def clear_cache() -> None:
    """Forget every compiled program (the next run of each method recompiles)."""
    _executable.cache_clear()


def run_program(method, *args):
    """Compile (or reuse) `type(method)._program` for `args`' structure and shapes, run it.

    The cache key holds the method object by value (methods are frozen dataclasses), the
    argument tree structure (which holds the model and its static arguments) and shapes.
    Returns `(outputs, compile_s, run_s)`; `compile_s` is 0 on a cache hit.
    """
    program = type(method)._program
    leaves, tree = jax.tree.flatten(args)
    avals = tuple(_aval(leaf) for leaf in leaves)
    t0 = time.perf_counter()
    try:
        hash((method, tree))
        cacheable = True
    except TypeError:  # an unhashable option (e.g. a dict of init values): compile uncached
        cacheable = False
    if cacheable:
        executable = _executable(program, method, tree, avals, _device_key())
    else:
        executable = jax.jit(functools.partial(program, method)).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(executable(*args))
    t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1
