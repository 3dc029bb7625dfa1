"""Optimisation loops (VI, MLE, MAP) a chunk of steps at a time, like the chains.

An optimising method compiles ONE program ``(key, ld, state, steps) -> (state, final)``:
``state`` holds everything the loop carries (parameters, optimiser state, the loss trace,
``started``); ``steps`` (:class:`Steps`) says which steps to run and whether the chunk is the
``last``, after which the program also computes the ``final`` outputs (draws, bounds, the
point). :func:`run_fit` calls it chunk after chunk (``ppl.runtime.chunks``), saves the state
after each chunk when a checkpoint is given (and the final outputs when done), and on Ctrl-C
runs one more call with no steps and ``last`` set: the result of the fit so far.
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import numpy as np

from ppl.runtime.program import execute, prepare
from ppl.runtime import chunks, progress
from ppl.runtime.checkpoint import Checkpoint, identity
from ppl.runtime.interrupt import Interrupt

FREE_OPTIONS = ("progress_bar", "chunk_size")


class Steps(NamedTuple):
    """The steps of a chunk: ``i`` (their indices, padded to the program's static length),
    ``active`` (1 for the steps to run) and ``last`` (a scalar: compute the final outputs)."""

    i: Any
    active: Any
    last: Any


def steps(start: int, n: int, length: int, last: bool) -> Steps:
    i = start + np.arange(length)
    return Steps(i.astype(np.int32), (np.arange(length) < n).astype(np.int32), np.asarray(last, np.int32))


class FitRun(NamedTuple):
    """A finished (or interrupted) fit: the loop's final ``state``, the ``final`` outputs,
    the steps done, and the timing."""

    state: Any
    final: Any
    iterations: int
    compile_s: float
    run_s: float
    source: str
    interrupted: bool


def blank(shapes):
    """Zeros shaped as ``shapes`` (a pytree of ShapeDtypeStructs), ``started`` False."""
    out = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    return out._replace(started=np.zeros((), bool))


def run_fit(method, key, ld, checkpoint, state0, total: int, done=None) -> FitRun:
    """Run ``method._program(key, ld, state, steps)`` from ``state0`` (or from the checkpoint)
    until ``total`` steps or ``done(state)``; see the module docstring."""
    length = int(method.chunk_size) if getattr(method, "chunk_size", None) else max(1, total)
    ckpt = None
    state, start = state0, 0
    if checkpoint is not None:
        ckpt = Checkpoint(checkpoint, identity(ld, method, key, ignore=FREE_OPTIONS))
        loaded = ckpt.load(0, state0)
        if loaded is not None:
            start, state, _ = loaded
        if ckpt.finished() is not None:
            final = ckpt.load_result(_final_shapes(method, key, ld, state0, length))
            if final is not None:
                return FitRun(state, final, start, 0.0, 0.0, "memory", False)
    executable, compile_s = prepare(method, key, ld, state0, steps(0, 0, length, False))
    final_out = [None]

    def run_chunk(g, s, rows):
        return jax.device_get(execute(executable, (key, ld, s, rows)))

    def rows(g, begin, n):
        return steps(begin, n, length, begin + n >= total)

    def is_done(g, s):
        return bool(done(s)) if done is not None else False

    work = [chunks.Group(state, start, total)]

    def on_chunk(c: chunks.Chunk):
        if int(np.asarray(c.rows.last)) or is_done(0, c.state):
            final_out[0] = c.outputs
        if ckpt is not None:
            ckpt.save(0, c.start + c.n, c.state)
        bar.update(0, c.n, **method._postfix(c.state))

    t0 = time.perf_counter()
    interrupted = False
    if ckpt is not None:
        ckpt.unfinish()
    if start < total and not is_done(0, state):
        with Interrupt(method.name) as interrupt, \
                progress.Bars(progress.enabled(getattr(method, "progress_bar", None)), [method.name], [total],
                              [start]) as bar:
            interrupted = chunks.run(run_chunk, work, rows, length, on_chunk, concurrent=False,
                                     interrupt=interrupt, chunk_size=getattr(method, "chunk_size", None),
                                     finished=is_done)
    state, start = work[0].state, work[0].start
    if final_out[0] is None:  # interrupted, or resumed after the last step: the fit so far
        state, final_out[0] = run_chunk(0, state, steps(start, 0, length, True))
    run_s = time.perf_counter() - t0
    if ckpt is not None and not interrupted:
        ckpt.save_result(final_out[0])
        ckpt.finish({"iterations": start})
    return FitRun(state, final_out[0], start, compile_s, run_s, executable.source, interrupted)


def _final_shapes(method, key, ld, state0, length):
    shape = jax.eval_shape(lambda k, l, s, r: method._program(k, l, s, r)[1], key, ld, state0,
                           steps(0, 0, length, True))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shape)
