"""The chunk loop: advance a run's groups a chunk of iterations at a time, one compiled program.

A chunked method compiles ONE program ``(state, rows) -> (state, outputs)`` and this loop
calls it again and again: per group of chains (on a CPU, groups run at once from their own
threads) it picks the next chunk's length, builds its plan rows, runs the program and hands
the result to the main thread, which stores it, checkpoints it and updates the progress bar
between chunks. Programs only ever run on worker threads, so the main thread waits in short
timed waits and answers Ctrl-C at once (:class:`ppl.runtime.interrupt.Interrupt`).

Chunk length: about ``target_seconds`` of work (measured on the previous chunk; the first is
short), never more than the program's static length, and never less than one iteration;
or a fixed length set by the user.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Callable, List, Optional

TARGET_SECONDS = 1.0
FIRST_CHUNK = 32  # iterations: the first chunk also initialises; it measures the speed
_POLL = 0.05


@dataclasses.dataclass
class Group:
    """One group's progress: its state after ``start`` iterations, up to ``stop``."""

    state: Any
    start: int
    stop: int
    seconds_per_iteration: Optional[float] = None


@dataclasses.dataclass
class Chunk:
    """A finished chunk of group ``group``: iterations ``start .. start + n - 1``, the state
    after them, its ``rows`` (the plan) and the program's ``outputs``."""

    group: int
    start: int
    n: int
    state: Any
    rows: Any
    outputs: Any
    seconds: float


def next_length(group: Group, length: int, chunk_size: Optional[int], target_seconds: float) -> int:
    """The length of a group's next chunk."""
    remaining = group.stop - group.start
    if chunk_size is not None:
        return max(1, min(chunk_size, length, remaining))
    if group.seconds_per_iteration is None:
        return max(1, min(FIRST_CHUNK, length, remaining))
    n = int(target_seconds / max(group.seconds_per_iteration, 1e-9))
    return max(1, min(n, length, remaining))


def run(execute: Callable, groups: List[Group], rows: Callable, length: int, on_chunk: Callable, *,
        concurrent: bool = True, workers: Optional[int] = None, interrupt=None,
        chunk_size: Optional[int] = None, target_seconds: float = TARGET_SECONDS,
        finished: Optional[Callable] = None, agree: Optional[Callable] = None) -> bool:
    """Advance every group to its ``stop`` (or until ``finished``), a chunk at a time.

    Args:
      execute: ``(group_index, state, rows) -> (state, outputs)``, the compiled program of one
        chunk (called from worker threads; it must wait for its result).
      groups: the :class:`Group` s, updated in place as chunks finish.
      rows: ``(group_index, start, n) -> rows`` of a chunk, padded to ``length``.
      length: the program's static number of rows.
      on_chunk: ``(chunk: Chunk) -> None``, called in the calling thread after each chunk (in
        the order chunks finish): store, checkpoint, progress. An exception stops the run.
      concurrent: run the groups at once, one thread each (else one worker thread runs them
        in turn: a program that must not run beside another, see
        ``ppl.runtime.program.blocks_the_pool``).
      workers: with ``concurrent``, at most this many threads, each taking a chunk of its
        groups in turn (group g on thread g mod workers); None: one per group.
      interrupt: an :class:`ppl.runtime.interrupt.Interrupt` (its ``requested`` stops the
        run after the chunks in flight).
      chunk_size: a fixed number of iterations per chunk (None: about ``target_seconds``).
      finished: ``(group_index, state) -> bool``: a group that is done early (an optimiser
        that converged); None: only ``stop`` ends a group.
      agree: ``(n, stop) -> n``: processes that run one program together agree before each
        chunk on its length and on stopping (``ppl.runtime.distributed.agree_on_chunk``; 0:
        every process stops), so that they run the same chunks in step. Called by the
        worker before every chunk, also once the run was asked to stop.

    Returns:
      True when the run stopped early because of an interrupt (here or, with ``agree``, in
      another process).
    """
    events: queue.Queue = queue.Queue(maxsize=2 * max(1, len(groups)))
    stop = threading.Event()
    halted = threading.Event()  # `agree` stopped the run

    def done(g: int) -> bool:
        group = groups[g]
        return group.start >= group.stop or (finished is not None and finished(g, group.state))

    def work(indices):
        pending = [g for g in indices if not done(g)]
        try:
            while pending and (agree is not None or not stop.is_set()):
                for g in list(pending):
                    if agree is None and stop.is_set():
                        break
                    group = groups[g]
                    n = next_length(group, length, chunk_size, target_seconds)
                    if agree is not None:
                        n = agree(n, stop.is_set())
                        if n == 0:
                            halted.set()
                            pending = []
                            break
                    plan = rows(g, group.start, n)
                    t0 = time.perf_counter()
                    state, outputs = execute(g, group.state, plan)
                    seconds = time.perf_counter() - t0
                    chunk = Chunk(g, group.start, n, state, plan, outputs, seconds)
                    # The worker keeps its own view; the main thread's `groups` follow on_chunk.
                    group = dataclasses.replace(group, state=state, start=group.start + n,
                                                seconds_per_iteration=seconds / n)
                    groups[g] = group
                    events.put(("chunk", chunk))
                    if done(g):
                        pending.remove(g)
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread
            events.put(("error", e))
        finally:
            events.put(("exit", None))

    threads = min(len(groups), workers or len(groups)) if concurrent else 1
    parts = [list(range(w, len(groups), threads)) for w in range(threads)]
    pool = [threading.Thread(target=work, args=(p,), daemon=True) for p in parts]
    for w in pool:
        w.start()
    running = len(pool)
    try:
        while running:
            try:
                kind, item = events.get(timeout=_POLL)
            except queue.Empty:
                if interrupt is not None and interrupt.requested:
                    stop.set()
                continue
            if kind == "exit":
                running -= 1
            elif kind == "error":
                stop.set()
                raise item
            else:
                on_chunk(item)
                if interrupt is not None and interrupt.requested:
                    stop.set()
    except BaseException:
        stop.set()
        raise
    return bool(interrupt is not None and interrupt.requested) or halted.is_set()
