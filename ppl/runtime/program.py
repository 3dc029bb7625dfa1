"""Compiled programs, cached by (program, argument structure, shapes), with timing.

A method's program is a pure function `program(key, log_density)`; the log density is a
pytree of its data, so new data of the same shapes reuse the compiled executable.

Two caches:
- in memory, keyed by the method (by value), the argument tree structure and shapes and the
  device: a second run in the same process neither traces nor compiles;
- on disk (`PPL_COMPILE_CACHE`, see :func:`set_compile_cache`), keyed by a hash of the
  lowered program and of everything that shapes the machine code (compiler options, jax and
  jaxlib versions, device, CPU): a new process traces and lowers the program, then loads
  the executable instead of compiling it. Programs with host callbacks (the progress bar)
  cannot be serialised and are compiled every time.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import re
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from jax.extend import core as jex_core

from ppl.runtime import blas_threads

# On CPU, XLA's newer fusion emitters make loops over large arrays faster but compile more
# slowly. Measured on this project's NUTS program (2-core x86 CPU, benchmarks/bench_mcmc.py):
# they add 0.8-1.2 s to the compile; on a 5000 x 25 logistic regression they save 9-10 us
# of a 33-42 us gradient, about 7.3e-11 s per input element per log-density evaluation.
# The newer emitters are used when (input elements) x (expected evaluations) exceeds the
# break-even point, 1.0 s / 7.3e-11 s; a method that gives no estimate counts as 1e6
# evaluations (inputs of more than ~14k elements get the newer emitters). The elements are
# those one evaluation works over (`Method.evaluation_elements`): for chains, the data and
# one chain's state. Counting every chain's state (lanes keep rows of draws run ahead)
# chose the newer emitters for 256 chains of eight schools (300k input elements), where
# they cost 1.0-2.1 s of compile and saved 0.2-0.7 s of a 3.3-5 s run; at 1024 chains
# about even (measured, 500 + 500, 2-core CPU).
BREAK_EVEN_ELEMENT_EVALUATIONS = 1.4e10
DEFAULT_EVALUATIONS = 10 ** 6
# LLVM at optimisation level 1 instead of 2 takes 0.09-0.17 s off the XLA compile of a NUTS
# program and costs ~0.26 us per log-density evaluation on small models (eight schools one
# chain: +8% per leapfrog; HMC +5%, MH +2%; no loss on a 5000 x 25 logistic regression).
# Runs expected to evaluate the log density fewer times than the break-even (0.09 s /
# 0.26 us) use level 1; unknown work keeps level 2.
QUICK_RUN_EVALUATIONS = 3.5e5
# A program run once (a model's inspection, a sampler's initialisation) is all compile: LLVM
# at level 0 and the older emitters. Measured on the VAE example's inspection (2-core CPU):
# XLA compile 0.55-0.96 s at the defaults, 0.36-0.42 s at level 1, 0.21-0.25 s at level 0,
# and its one run 1 ms -> 5 ms.
ONE_SHOT_EVALUATIONS = 100
# XLA's memory-optimised scheduler orders a CPU program's operations so that an elementwise
# result is rarely written over its own input (when it is, LLVM's runtime alias check sends
# the loop to its scalar version) and fewer operations are handed to other threads. Measured
# on NUTS, 1000 + 1000 iterations, 2-core x86 CPU (us per gradient, default -> this one):
# logistic regression 5000 x 25, one chain 29 -> 20, four chains 12-14 -> 10; eight schools
# 2.5-3.5 -> 2.2; kidiq 2.5-2.9 -> 2.2. Compile times unchanged.
CPU_SCHEDULER = "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"
# XLA:CPU hands floating-point reductions (and dots) of large enough arrays to YNNPACK
# ("ynn fusions"), which pays off for long reductions and costs a hand-off per call for short
# ones. Measured (2-core x86 CPU, jax 0.10): a NUTS leapfrog batched over 256 chains of eight
# schools (reductions over 10 coordinates or tree levels) ran 1.7-2.5x slower with them; a
# 5000 x 25 logistic regression (sums over 5000 terms) 3.5x faster; kidiq (sums over 434
# terms) no faster. A program whose longest floating-point reduction sums fewer than
# YNN_REDUCE_MIN_EXTENT terms keeps YNNPACK for its dots only.
YNN_REDUCE_MIN_EXTENT = 2048
YNN_DOTS_ONLY = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
CACHE_MAX_BYTES = 2 << 30
_cache_dir: list = []  # [Path or None] once resolved


def aval(leaf):
    """The leaf's shape, dtype and weak type; and its sharding when it is a global array laid
    out over several devices (`ppl.runtime.distributed`): the program is compiled for it."""
    dtype = leaf.dtype if hasattr(leaf, "dtype") else jax.numpy.asarray(leaf).dtype
    sharding = leaf.sharding if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1 else None
    return jax.ShapeDtypeStruct(np.shape(leaf), dtype, weak_type=bool(getattr(leaf, "weak_type", False)),
                                sharding=sharding)


_REDUCE = re.compile(r"stablehlo\.reduce\(.*?across dimensions = \[([\d, ]*)\] : \(tensor<([^>]*)>")


def longest_reduction(text: str):
    """The most terms any floating-point reduction of a lowered program (StableHLO text)
    sums into one value; None when a reduction cannot be read."""
    longest = 0
    for line in text.splitlines():
        if "stablehlo.reduce(" not in line:
            continue
        match = _REDUCE.search(line)
        if match is None:
            return None
        *dims, dtype = match.group(2).split("x")
        if not dtype.startswith(("f", "bf")):
            continue
        try:
            axes = [int(a) for a in match.group(1).replace(" ", "").split(",") if a]
            longest = max(longest, int(np.prod([int(dims[a]) for a in axes])))
        except (ValueError, IndexError):  # a dynamic dimension ("?")
            return None
    return longest


def _compiler_options(avals, platform_name, evaluations=None, reduction=None, elements=None):
    """XLA options for a program over inputs `avals` that evaluates its log density about
    `evaluations` times (None: unknown), each over `elements` of its inputs (None: all of
    them), and whose longest floating-point reduction sums `reduction` terms (None:
    unknown; see :func:`longest_reduction`)."""
    if platform_name != "cpu":
        return {}
    options = {"xla_cpu_scheduler_type": CPU_SCHEDULER}
    if reduction is not None and reduction < YNN_REDUCE_MIN_EXTENT:
        options["xla_cpu_experimental_ynn_fusion_type"] = YNN_DOTS_ONLY
    if evaluations is not None and evaluations < QUICK_RUN_EVALUATIONS:
        options["xla_backend_optimization_level"] = 0 if evaluations <= ONE_SHOT_EVALUATIONS else 1
    if elements is None:
        elements = sum(int(np.prod(a.shape)) for a in avals)
    work = elements * (DEFAULT_EVALUATIONS if evaluations is None else evaluations)
    if work <= BREAK_EVEN_ELEMENT_EVALUATIONS:
        options["xla_cpu_use_fusion_emitters"] = False
    return options


def _compile(lowered, options):
    """Compile with `options`; an option this XLA does not know is dropped (the others are
    kept), and if that fails too, XLA's defaults are used."""
    while True:  # each failure drops at least one option
        try:
            return lowered.compile(compiler_options=options or None)
        except Exception as err:  # noqa: BLE001 - XLA names an unknown option in its message
            if not options:
                raise
            known = {k: v for k, v in options.items() if k not in str(err)}
            options = known if len(known) < len(options) else {}


# ---------------------------------------------------------------------------- disk cache

def set_compile_cache(path) -> None:
    """Where compiled programs are kept between processes: a directory, or None/False to
    switch the disk cache off. The default comes from the environment variable
    ``PPL_COMPILE_CACHE`` (a directory, or ``0``/``off``), else
    ``$XDG_CACHE_HOME/ppl/executables`` (``~/.cache/ppl/executables``). The cache keeps at
    most ``CACHE_MAX_BYTES`` (2 GiB), dropping the least recently used programs first.
    """
    _cache_dir[:] = [Path(path).expanduser() if path else None]


def compile_cache_dir():
    """The disk cache's directory, or None when it is off."""
    if not _cache_dir:
        env = os.environ.get("PPL_COMPILE_CACHE")
        if env is not None and env.strip().lower() in ("", "0", "off", "false", "no"):
            set_compile_cache(None)
        elif env:
            set_compile_cache(env)
        else:
            base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
            set_compile_cache(Path(base) / "ppl" / "executables")
    return _cache_dir[0]


@functools.lru_cache(maxsize=1)
def _machine_fingerprint() -> str:
    """What, besides the program, decides the machine code: versions, device, CPU features."""
    import jaxlib

    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = "".join(line for line in fh if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        cpu = platform.processor()
    return "|".join([jax.__version__, jaxlib.__version__, platform.machine(), cpu,
                     os.environ.get("XLA_FLAGS", "")])


def _disk_key(text, options, device) -> str:
    h = hashlib.sha256()
    for part in (_machine_fingerprint(), str(device), getattr(device, "device_kind", ""),
                 repr(sorted(options.items())), text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _load(path: Path, lowered):
    from jax.experimental import serialize_executable

    try:
        payload = path.read_bytes()
        executable = serialize_executable.deserialize_and_load(payload, lowered.in_tree, lowered.out_tree)
        os.utime(path)  # least recently used goes first when pruning
        return executable
    except Exception:  # noqa: BLE001 - unreadable, truncated, or from an incompatible build
        return None


def _store(path: Path, executable) -> None:
    from jax.experimental import serialize_executable

    try:
        payload, _, _ = serialize_executable.serialize(executable)
    except Exception:  # noqa: BLE001 - host callbacks (progress bar) cannot be serialised
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)  # atomic: a concurrent reader sees all or nothing
        _prune(path.parent)
    except OSError as err:
        warnings.warn(f"ppl: could not write the compile cache in {path.parent} ({err}); "
                      f"set PPL_COMPILE_CACHE=0 to switch it off.", stacklevel=3)


def _prune(directory: Path) -> None:
    files = sorted(directory.glob("*.xla"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    for p in files:
        if total <= CACHE_MAX_BYTES:
            break
        total -= p.stat().st_size
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- compiling

# jaxlib's CPU LAPACK kernels (Cholesky, eigh, ... : custom calls named lapack_*) split a
# batch of matrices into tasks on XLA's intra-op thread pool and then BLOCK the calling thread
# until those tasks finish (jax 0.10's `ParallelBatchMap`). An XLA:CPU execution migrates onto
# that pool's threads (an asynchronous loop resumes on whichever worker completed its body),
# so once as many executions as the pool has threads (one per core) each wait in such a
# kernel, no thread is left to run the tasks they wait for: the process hangs with an idle
# CPU. Measured: default NUTS (two groups of chains on a 2-core CPU) on a Gaussian-process
# model whose deterministic site takes a Cholesky factor hung in the batched factorisation of
# its draws. One execution at a time cannot starve the pool this way, so a program that
# makes such a call is never run beside another one (see `run_program_concurrently`).
_POOL_LOCK = threading.Lock()
_CUSTOM_CALL = re.compile(r"custom_call @(\w+)\((.*?)\).*?num_batch_dims = \"(\d+)\".*?: \((tensor<[^>]*>)",
                          re.DOTALL)
# Custom calls that never wait on XLA's intra-op pool: host callbacks (the progress bar) and
# sharding annotations.
_PASSIVE_TARGETS = ("xla_ffi_python_cpu_callback", "xla_python_cpu_callback", "Sharding",
                    "SPMDFullToShardShape", "SPMDShardToFullShape")


def _batch_size(tensor_type: str, num_batch_dims: int) -> int:
    dims = tensor_type[len("tensor<"):-1].split("x")[:-1]  # the last field is the dtype
    return int(np.prod([int(d) for d in dims[:num_batch_dims]] or [1]))


def blocks_the_pool(text: str) -> bool:
    """Whether a lowered program (StableHLO text) calls a library kernel that may block a
    thread of XLA's CPU pool waiting on the pool: a LAPACK kernel over a batch of more than one
    matrix, or any custom call this module does not know (conservatively). Unbatched LAPACK
    calls run on the calling thread."""
    for line in text.splitlines():
        if "custom_call @" not in line:
            continue
        target = line.split("custom_call @", 1)[1].split("(", 1)[0]
        if target.startswith(_PASSIVE_TARGETS):
            continue
        match = _CUSTOM_CALL.search(line)
        if target.startswith("lapack_") and match is not None \
                and _batch_size(match.group(4), int(match.group(3))) <= 1:
            continue
        return True
    return False


def calls_lapack(text: str) -> bool:
    """Whether a lowered program (StableHLO text) calls one of jaxlib's LAPACK kernels."""
    return "custom_call @lapack_" in text


# The linear-algebra primitives that XLA:CPU hands to LAPACK (see `blocks_the_pool`).
LINALG_PRIMITIVES = frozenset({
    "cholesky", "eig", "eigh", "lu", "lu_pivots_to_permutation", "qr", "geqrf", "geqp3",
    "householder_product", "svd", "schur", "hessenberg", "tridiagonal", "tridiagonal_solve",
    "triangular_solve"})


def calls_linalg(fn, *example_args) -> bool:
    """Whether `fn` (traced at `example_args`) uses a LAPACK-backed primitive; under `vmap`
    such a call becomes a batched one, which may block XLA's CPU pool."""
    return jaxpr_calls_linalg(jax.make_jaxpr(fn)(*example_args).jaxpr)


def jaxpr_calls_linalg(jaxpr) -> bool:
    """:func:`calls_linalg` of a traced jaxpr."""

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in LINALG_PRIMITIVES:
                return True
            for sub in jex_core.jaxprs_in_params(eqn.params):
                if walk(sub):
                    return True
        return False

    return walk(jaxpr)


def when(pred, fn, *args):
    """``fn(*args)`` where the traced bool ``pred`` holds, zeros of the same shapes where it
    does not: a real branch (``lax.cond``) whose function is traced once (``lax.cond``
    traces its true branch first, and the other branch reads the shapes that trace found;
    tested)."""
    shapes = []

    def run(*a):
        out = fn(*a)
        shapes.append(jax.tree.map(lambda x: jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x)), out))
        return out

    def skip(*a):
        shape = shapes[0] if shapes else jax.eval_shape(fn, *a)
        return jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), shape)

    return jax.lax.cond(pred, run, skip, *args)


class Executable(NamedTuple):
    """A compiled program: ``run(*args)``; ``source`` ("compiled", "disk", "memory");
    ``blocking``: it may block a thread of XLA's CPU pool (:func:`blocks_the_pool`), so it
    is never run beside another execution; and ``lapack``: it calls LAPACK (:func:`calls_lapack`),
    so beside another such execution it runs with one BLAS thread (`ppl.runtime.blas_threads`)."""

    run: Any
    source: str
    blocking: bool
    lapack: bool


def compile_lowered(lowered, avals, evaluations=None, device=None, text=None, elements=None):
    """Compile a lowered program as ppl's own programs are: with the CPU compiler options
    chosen from its inputs ``avals``, the expected number of log-density ``evaluations``
    (None: unknown) over ``elements`` of the inputs each (None: all) and its longest
    reduction, and through the disk cache of executables. ``text``: ``lowered.as_text()``
    where the caller already has it. Returns ``(executable, source)``, source "compiled"
    or "disk"."""
    device = _device() if device is None else device
    text = lowered.as_text() if text is None else text
    options = _compiler_options(avals, getattr(device, "platform", jax.default_backend()),
                                evaluations, longest_reduction(text), elements)
    directory = compile_cache_dir()
    # A multi-process program (jax.distributed) is compiled in every process; a serialised
    # one holds its own process's devices, so it is never shared through the disk cache.
    if directory is None or jax.process_count() > 1:
        return _compile(lowered, options), "compiled"
    path = directory / f"{_disk_key(text, options, device)}.xla"
    if path.exists():
        executable = _load(path, lowered)
        if executable is not None:
            return executable, "disk"
    executable = _compile(lowered, options)
    _store(path, executable)
    return executable, "compiled"


def _build(program, method, args, avals, device, once=False):
    """Trace, lower and compile (or load from the disk cache); ``once``: a program run once
    per run (compiled as `ONE_SHOT_EVALUATIONS`), else the method's expected evaluations.

    Returns ``Executable(run, source, blocking, lapack)`` (see :func:`blocks_the_pool`, :func:`calls_lapack`)."""
    lowered = jax.jit(functools.partial(program, method)).lower(*args)
    text = lowered.as_text()  # printed once: it is read for the options, the cache key and the pool check
    evaluations = ONE_SHOT_EVALUATIONS if once else method.expected_evaluations()
    elements = None if once else method.evaluation_elements(*args)
    executable, source = compile_lowered(lowered, avals, evaluations, device, text, elements)
    return Executable(executable, source, blocks_the_pool(text), calls_lapack(text))


@functools.lru_cache(maxsize=32)
def _executable(program, method, tree, avals, device, once):
    return _build(program, method, jax.tree.unflatten(tree, avals), avals, device, once)


def _device():
    """The device a new program compiles for (the default device, or the one set by
    `jax.default_device`), so programs compiled for one device are not reused on another."""
    device = jax.config.jax_default_device or jax.devices()[0]
    return device if not isinstance(device, str) else jax.devices(device)[0]


def clear_cache() -> None:
    """Forget every compiled program held in memory (the disk cache is kept; see
    :func:`set_compile_cache`)."""
    _executable.cache_clear()
    _shapes.cache_clear()


@functools.lru_cache(maxsize=64)
def _shapes(method, name, tree, avals, x64):
    return jax.eval_shape(lambda *a: getattr(method, name)(*a), *jax.tree.unflatten(tree, avals))


def shapes_of(method, name: str, *args):
    """`jax.eval_shape(getattr(method, name), *args)`, traced once per method, argument
    structure and shapes (as `prepare`: a second run on new data of the same shapes traces
    nothing)."""
    leaves, tree = jax.tree.flatten(args)
    avals = tuple(aval(leaf) for leaf in leaves)
    try:
        return _shapes(method, name, tree, avals, jax.config.jax_enable_x64)
    except TypeError:  # unhashable options: trace now
        return jax.eval_shape(lambda *a: getattr(method, name)(*a), *args)


def initial_shapes(method, *args):
    """The shapes of a run's initial state, `method._initial(*args)` (see `shapes_of`)."""
    return shapes_of(method, "_initial", *args)


def prepare(method, *args, entry: str = "_program", once: bool = False):
    """Compile (or reuse) the method's program `type(method).<entry>` for `args`' structure
    and shapes. ``once``: the program runs once per run (a sampler's initialisation), so it
    is compiled for a quick compile rather than a quick run (see `ONE_SHOT_EVALUATIONS`).

    The cache key holds the program, the method object by value (methods are frozen
    dataclasses), the argument tree structure (which holds the model and its static
    arguments) and shapes.
    Returns `(executable, compile_s)`: an :class:`Executable` whose `source` says where it
    came from ("memory", "disk" or "compiled"), and `compile_s`, 0 on an in-memory hit.
    """
    program = getattr(type(method), entry)
    leaves, tree = jax.tree.flatten(args)
    avals = tuple(aval(leaf) for leaf in leaves)
    t0 = time.perf_counter()
    try:
        hash((method, tree))
        cacheable = True
    except TypeError:  # an unhashable option (e.g. a dict of init values): compile uncached
        cacheable = False
    device = _device()
    if cacheable:
        hits = _executable.cache_info().hits
        executable = _executable(program, method, tree, avals, device, once)
        if _executable.cache_info().hits > hits:
            executable = executable._replace(source="memory")
    else:
        executable = _build(program, method, args, avals, device, once)
    return executable, time.perf_counter() - t0


# Prepare a sampler's initialisation program on a thread of its own (see
# `prepare_in_background`); False prepares it in the caller's thread, when asked for.
BACKGROUND_PREPARE = True


class Pending:
    """A program being prepared on a thread of its own (:func:`prepare_in_background`);
    `result()` waits for it and returns what :func:`prepare` returns, or raises its error."""

    def __init__(self, method, args, entry, once=False):
        self._out, self._error = None, None
        self._thread = threading.Thread(target=self._work, args=(method, args, entry, once), daemon=True,
                                        name=f"ppl-prepare-{entry}")
        self._started = BACKGROUND_PREPARE
        if self._started:
            self._thread.start()

    def _work(self, method, args, entry, once):
        try:
            self._out = prepare(method, *args, entry=entry, once=once)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread by result()
            self._error = err

    def wait(self) -> None:
        """Wait for the thread, whatever its outcome."""
        if not self._started:  # BACKGROUND_PREPARE off: prepare here, now
            self._started = True
            self._thread.run()
        else:
            self._thread.join()

    def result(self):
        self.wait()
        if self._error is not None:
            raise self._error
        return self._out


def prepare_in_background(method, *args, entry: str = "_program", once: bool = False) -> Pending:
    """Start :func:`prepare` on its own thread. XLA compiles without holding Python's lock,
    so a small program (a sampler's initialisation) compiles while the caller traces and
    compiles a large one: on a first call the two compile times overlap instead of adding up
    (tracing, which holds the lock, still takes its turn). Measured on a first call of NUTS
    on eight schools (2-core CPU): the initialisation's 0.3 s of tracing and compiling hidden
    behind the chunk program's tracing. Each program is traced under its own thread's
    handler stack; nothing is run. With `BACKGROUND_PREPARE` off, the program is prepared
    when its result is asked for."""
    return Pending(method, args, entry, once)


def execute(executable: Executable, args):
    """Run and wait; a pool-blocking program holds the process-wide lock while it runs, so
    two of them (from ppl's chain groups or from a user's threads) never run at once; programs
    that call LAPACK run with one BLAS thread each while several run at once
    (`ppl.runtime.blas_threads`)."""
    with contextlib.ExitStack() as stack:
        if executable.lapack:
            stack.enter_context(blas_threads.lapack_execution())
        if executable.blocking:
            stack.enter_context(_POOL_LOCK)
        return jax.block_until_ready(executable.run(*args))


def run_program(method, *args):
    """Compile (or reuse, see :func:`prepare`) the method's program for `args` and run it.

    Returns `(outputs, compile_s, run_s, source)`.
    """
    executable, compile_s = prepare(method, *args)
    t1 = time.perf_counter()
    out = execute(executable, args)
    return out, compile_s, time.perf_counter() - t1, executable.source


def run_program_concurrently(method, arg_sets):
    """Run the method's program once per argument set (all of one structure and shapes),
    each from its own thread, so that on a CPU the runs proceed on different cores at once.

    The program is compiled once. A program that may block XLA's CPU pool
    (:func:`blocks_the_pool`) runs the sets one after another instead: run side by side, such
    programs can wait on each other for ever. Returns `(list of outputs, compile_s, run_s,
    source)`, `run_s` being the wall time of all the runs together.
    """
    executable, compile_s = prepare(method, *arg_sets[0])
    outs = [None] * len(arg_sets)
    errors = []

    def run(k):
        try:
            outs[k] = execute(executable, arg_sets[k])
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(e)

    t1 = time.perf_counter()
    if executable.blocking:
        for k in range(len(arg_sets)):
            run(k)
    else:
        threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(1, len(arg_sets))]
        for t in threads:
            t.start()
        run(0)
        for t in threads:
            t.join()
    run_s = time.perf_counter() - t1
    if errors:
        raise errors[0]
    return outs, compile_s, run_s, executable.source


def _cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chain_groups(num_chains: int, max_width: Optional[int] = None) -> int:
    """How many groups of chains to run: on a single CPU device, the largest divisor of
    `num_chains` not above the number of cores; elsewhere 1: one vectorised program, on an
    accelerator, or sharded over several devices (`jax.device_count()` counts every process's
    devices under `jax.distributed`; see `ppl.runtime.distributed`).

    ``max_width`` (vectorised chains on a CPU): where one group per core would be wider than
    this, the smallest divisor of `num_chains` that makes the groups no wider, provided they
    stay at least ``max_width // 4`` wide (else one per core). The groups then outnumber the
    cores: `chain_workers` threads take them in turn."""
    if jax.device_count() > 1 or jax.default_backend() != "cpu":
        return 1
    cores = min(_cpu_cores(), num_chains)
    groups = max(g for g in range(1, cores + 1) if num_chains % g == 0)
    if max_width is not None and num_chains // groups > max_width:
        narrow = [g for g in range(groups, num_chains + 1)
                  if num_chains % g == 0 and max_width // 4 <= num_chains // g <= max_width]
        groups = narrow[0] if narrow else groups
    return groups


def chain_workers(groups: int) -> int:
    """How many threads run `groups` groups of chains at once: one per core at most."""
    return max(1, min(groups, _cpu_cores()))


def run_chain_groups(method, key, ld, num_chains: int, groups: int):
    """Run `method`'s program `program(key, ld, chains)` over the chain indices 0..num_chains-1
    split into `groups` equal groups: one compiled program (for one group's shape), the
    groups at once from their own threads (an XLA executable runs on the calling thread, so
    on a CPU they use different cores), or one after another where that is unsafe (see
    :func:`run_program_concurrently`). Outputs must have the chain axis first; they are
    joined along it. Returns `(outputs, compile_s, run_s, source)` as `run_program`."""
    ids = np.arange(num_chains, dtype=np.int32).reshape(groups, -1)
    if groups == 1:
        return run_program(method, key, ld, jax.numpy.asarray(ids[0]))
    outs, compile_s, run_s, source = run_program_concurrently(
        method, [(key, ld, jax.numpy.asarray(g)) for g in ids])
    out = jax.tree.map(lambda *parts: np.concatenate([np.asarray(p) for p in parts]), *outs)
    return out, compile_s, run_s, source
