"""Chains of any MCMC method, run by the one driver a chunk at a time.

:class:`ChainMethod` is the base of every MCMC method (`NUTS`, `HMC`, `MH`, and Gibbs's
program): a subclass says what its move is (`_move`) and what it samples (`_log_density`);
this class compiles ONE program that advances a group of chains by a chunk of iterations
(`ppl.mcmc.driver.advance`, chains a `vmap` axis or one after another), runs it chunk after
chunk through `ppl.runtime.chunks` (groups of chains at once on a CPU's cores), keeps the
draws (in memory, or streamed to a checkpoint directory), saves the chains' state after every
chunk when asked, and assembles the draws, sample statistics and tuned values.

Layouts: chain c's keys are `fold_in(key_init, c)` and `fold_in(key_run, c)`, so the same
key gives the same draws whether chains run vectorised, one after another, in concurrent
groups, sharded over devices (those of several processes under `jax.distributed`: see
`ppl.runtime.distributed`), or in chunks of any length.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl import _counter_rng
from ppl.compile.init import check_init_values, first_finite, init_error, init_option
from ppl.runtime.program import (blocks_the_pool, calls_linalg, chain_groups, chain_workers, execute, initial_shapes,
                                 prepare, prepare_in_background, when)
from ppl.method.base import Method, draws_from_flat, require_continuous
from ppl.mcmc import driver, lanes
from ppl.runtime import chunks, distributed, progress
from ppl.runtime.checkpoint import Checkpoint, identity
from ppl.runtime.interrupt import Interrupt
from ppl.runtime.store import DiskStore, LazySamples, MemoryStore

CHUNK_BYTES = 16 << 20  # a chunk's output of draws stays below this (per group)
MAX_AHEAD = 128  # iterations a lane may run ahead past a chunk's end (`Chains._ahead_rows`)
GROUP_FLOATS = 3200  # position-sized numbers per group of vectorised chains on a CPU (`Chains._max_width`)
# The name of the vmap axis over chains: code mapped over the chains may reduce across them
# (`jax.lax.pmean(x, CHAIN_AXIS)`; ChEES-HMC's warmup, `ppl.mcmc.chees`).
CHAIN_AXIS = "chains"
# Options that change neither the draws nor the warmup: a checkpoint may be resumed with new
# values (num_samples: a finished run is extended, or cut).
FREE_OPTIONS = ("num_samples", "progress_bar", "chunk_size", "chain_method")


class ChunkOutput(NamedTuple):
    """What one chunk of a group hands back: ``values`` (site -> (chains, length, *shape),
    constrained draws with deterministic sites; zeros in a chunk that records nothing),
    ``infos`` (per adapted block, its ``Info`` of (chains, length) arrays) and ``work``
    (a `lanes.LaneWork` of (chains,) arrays when the chains run as lanes, else zeros)."""

    values: dict
    infos: tuple
    work: Any


class Layout(NamedTuple):
    """How a group's programs run its chains (`ChainMethod._layout`): the chain indices
    (sharded over devices), the log density and move, the driver's settings, the dtype,
    ``over_chains(f, *a)`` mapping ``f`` over the chain axis, and whether that map runs the
    chains one after another (``sequential``) rather than as one vectorised batch."""

    chains: Any
    log_density: Any
    move: Any
    settings: Any
    dtype: Any
    over_chains: Any
    sequential: bool


class ChainRun(NamedTuple):
    """A finished (or interrupted) run of chains: the draws, sample statistics per block, the
    chains' final states, the iterations done, and how long compiling and running took."""

    samples: Any
    stats: tuple
    states: Any
    iterations: int
    compile_s: float
    run_s: float
    source: str
    interrupted: bool
    lane_utilization: float = float("nan")
    lane_utilization_bound: float = float("nan")


# The chain axis over every device (of every process under jax.distributed), or None on one
# device; and that layout imposed inside a traced program (see `ppl.runtime.distributed`).
_chain_sharding = distributed.chain_sharding
_shard = distributed.constrain


@dataclasses.dataclass(frozen=True)
class ChainMethod(Method):
    """Options and the chunked run shared by every MCMC method (see the module docstring).
    It writes and resumes checkpoints.

    Subclasses define the fields ``num_warmup, num_samples, num_chains, thinning, init,
    progress_bar, chain_method, chunk_size, target_accept, dense_mass`` and the hooks
    ``_move(ld)`` and ``_log_density(ld, z)``.
    """

    # Trajectory lengths differ between chains (NUTS): "auto" runs chains one after another
    # on a single CPU device.
    _varying_trajectories: ClassVar[bool] = False
    # Its kernel can resume a transition one gradient at a time (`Kernel.resumable`): its
    # vectorised chains run as lanes (`ppl.mcmc.lanes`).
    _resumable: ClassVar[bool] = False
    checkpoints: ClassVar[bool] = True

    # -- hooks ---------------------------------------------------------------------------
    def _move(self, ld, log_density) -> driver.Move:  # pragma: no cover - abstract
        """The move the chains make on `log_density` (called while tracing the program)."""
        raise NotImplementedError

    def _restart_at_windows(self) -> bool:
        """Re-run the step-size heuristic when a slow window ends (Stan's HMC/NUTS warmup)."""
        return True

    def _log_density(self, ld, z):
        """The function the chains sample: ``z -> log density`` (hoisted data-only terms)."""
        from ppl.compile.hoist import hoist

        return hoist(lambda x, ld: ld.log_joint(x).total, z, ld)

    def _settings(self) -> driver.Settings:
        return driver.Settings(self.target_accept, self.dense_mass)

    def _evaluations_per_transition(self) -> int:
        return 1

    def expected_evaluations(self):
        total = self.num_warmup + self.num_samples * self.thinning
        return self.num_chains * total * self._evaluations_per_transition()

    def evaluation_elements(self, key, ld, chains, *state):
        """The data, and ONE chain's share of the chains' state (`expected_evaluations`
        counts every chain's evaluations)."""
        def size(tree):
            return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
        return size(ld) + size(state) // max(1, int(np.prod(chains.shape)))

    # -- checks ----------------------------------------------------------------------------
    def check(self, ld) -> None:
        require_continuous(self.name, ld)
        self._check_counts(ld)
        check_init_values(ld, self.init)

    def _check_counts(self, ld) -> None:
        for field in ("num_samples", "num_chains", "thinning"):
            v = getattr(self, field)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{type(self).__name__}: {field} must be a positive int, got {v!r}.")
        if not isinstance(self.num_warmup, int) or isinstance(self.num_warmup, bool) or self.num_warmup < 0:
            raise ValueError(f"{type(self).__name__}: num_warmup must be an int >= 0, got {self.num_warmup!r}.")
        if self.target_accept is not None and not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"{type(self).__name__}: target_accept must be in (0, 1), got {self.target_accept!r}.")
        if ld.dim == 0:
            raise ValueError(f"{type(self).__name__}: the model has no latent sites to sample.")
        if self.chain_method not in ("auto", "vectorized", "sequential"):
            raise ValueError(f"{type(self).__name__}: chain_method must be 'auto', 'vectorized' or "
                             f"'sequential', got {self.chain_method!r}.")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"{type(self).__name__}: chunk_size must be a positive int (iterations per "
                             f"chunk) or None (about a second of work), got {self.chunk_size!r}.")

    # -- layout ----------------------------------------------------------------------------
    def _factorises(self, ld, z, log_density=None) -> bool:
        """Whether the chains' gradient takes a LAPACK-backed factorisation: batched over
        chains, it blocks XLA's CPU pool, so groups of chains could not run at once (see
        `ppl.runtime.program.blocks_the_pool`). The model's log density is traced first as
        it is (hoisting its data-only terms computes them, and the gradient is a second
        trace): with no such primitive there, neither its hoisted form (a part of its
        equations) nor their gradient (JAX's derivative rules of other primitives make none)
        has one. Measured on a first call (eight schools, 256 vectorised chains, 2-core CPU):
        0.33 s for the whole check, 0.05 s for the first trace. ``log_density``: the hoisted
        one (`_log_density`), where the caller has it."""
        if not calls_linalg(lambda x: ld.log_joint(x).total, z):
            return False
        return calls_linalg(jax.grad(self._log_density(ld, z) if log_density is None else log_density), z)

    def _sequential(self, sharding, ld, log_density, z) -> bool:
        """Chains one after another in the program? "auto": on a single CPU device, for
        moves whose trajectories differ between chains (NUTS) and for models that take a
        LAPACK-backed factorisation (batched, it would stop the groups of chains from running
        at once; see `ppl.runtime.program.blocks_the_pool`)."""
        if self.chain_method != "auto":
            return self.chain_method == "sequential"
        if sharding is not None or jax.default_backend() != "cpu":
            return False
        return self._varying_trajectories or self._factorises(ld, z, log_density)

    def _groups(self, ld=None) -> int:
        """How many groups the chains run in on a single CPU device (`chain_groups`: one per
        core, each from its own thread; elsewhere 1). "auto" splits its chains so. So does
        "vectorized" (each group a vectorised batch; a group's draws are the chains' own,
        whatever the layout), in narrower groups where one per core would be wider than
        `_max_width` (one thread per core then takes them in turn), unless the model
        ``ld``'s gradient, batched over a group, makes a LAPACK call over a batch of
        matrices: it blocks XLA's pool, so the groups run one after another (one group, or
        the narrow ones; `_batch_blocks_the_pool`). Measured (eight schools, 256 chains,
        500 + 500, 2-core CPU, lanes, run time without compile): one batch 6.5-10.1 s (3
        runs), two batches of 128 at once 4.0-4.3 s."""
        if self.chain_method == "sequential":
            return 1
        groups = chain_groups(self.num_chains)
        if self.chain_method != "vectorized":
            return groups
        if ld is None:
            if groups > 1:
                raise TypeError(f"{self.name}: internal: vectorised chain groups need the model.")
            return groups
        narrow = chain_groups(self.num_chains, self._max_width(ld))
        if groups > 1:
            z = jnp.zeros(ld.dim, jnp.result_type(float))
            if self._factorises(ld, z) and self._batch_blocks_the_pool(ld, z, self.num_chains // narrow):
                return narrow if narrow > groups else 1  # narrow groups run one after another
        return narrow

    @staticmethod
    def _max_width(ld) -> int:
        """The widest group of vectorised chains on a CPU (`chain_groups`): about
        `GROUP_FLOATS` position-sized numbers per group (a NUTS lane's trajectory carries some
        70 vectors of the position's size), 16 to 256 chains. A batch step reads every
        lane's state: a group whose state outgrows the core's cache slows every step.
        Measured (2-core AMD EPYC, lanes, us per gradient, one run each): eight schools
        (d = 10), 1024 chains, 500 + 500: groups of 512 1.71, 256 1.46, 128 1.40; 4096
        chains: groups of 2048 3.37, 512 1.63, 256 1.49. The 100-d Gaussian, 256 chains,
        100 + 100: groups of 128 7.49, 64 5.68, 32 5.06. The 5000 x 25 logistic regression
        (its gradient's work is the data's), 256 chains, 100 + 100: 128 46.3, 64 44.1.
        Narrower groups wait less for their busiest chain but step dearer: eight schools,
        256 chains, 500 + 500, first call, groups of 128 / 64 / 32 / 16 / 8: lane
        utilisation 0.737 / 0.742 / 0.764 / 0.793 / 0.833, us per gradient 1.52 / 1.60 /
        1.75 / 2.08 / 2.59, ESS per second 7090 / 6440 / 6680 / 6390 / 5820 (2026-12-08)."""
        return int(min(256, max(16, GROUP_FLOATS // max(1, ld.dim))))

    def _batch_blocks_the_pool(self, ld, z, chains: int) -> bool:
        """Whether the gradient batched over ``chains`` chains makes a LAPACK call over a
        batch of matrices (`blocks_the_pool`: such groups would run one after another). A
        solve against a matrix the chains share (a hoisted Cholesky factor of the data, as a
        fixed covariance's) is one call over all the chains' right-hand sides, and does not:
        measured, the 100-dimensional correlated Gaussian of ``benchmarks/many_chains.py``
        (256 chains, 100 + 100, one BLAS thread, 2-core CPU) ran in 191 s as one group and
        in 96 s as two groups at once. The data are the lowered program's arguments, not
        constants in its text."""
        def batched_gradient(ld, zs):
            return jax.vmap(jax.grad(self._log_density(ld, zs[0])))(zs)

        zs = jax.ShapeDtypeStruct((chains,) + z.shape, z.dtype)
        return blocks_the_pool(jax.jit(batched_gradient).lower(ld, zs).as_text())

    def _total(self) -> int:
        return self.num_warmup + self.num_samples * self.thinning

    def _length(self, ld, chains: int) -> int:
        """The program's static number of iterations per chunk: every iteration when the
        chunk's draws fit `CHUNK_BYTES` (or the user's `chunk_size`)."""
        if self.chunk_size is not None:
            return int(self.chunk_size)
        return int(max(1, min(self._total(), CHUNK_BYTES // self._row_bytes(ld, chains))))

    @staticmethod
    def _row_bytes(ld, chains: int) -> int:
        """About what one iteration of `chains` chains writes (draws, position, statistics)."""
        return 8 * chains * (ld.spec.draw_size + ld.dim + 16)

    def _lanes(self, chains: int) -> bool:
        """Whether a batch of ``chains`` chains runs as lanes (`ppl.mcmc.lanes`): vectorised
        (asked, or "auto" on an accelerator or over several devices), two or more of them, a
        resumable kernel. Decided before tracing: a lanes chunk's plan has lookahead rows.
        One chain has no lane to wait for: as a lane it would only be slower (eight schools,
        one chain, 500 + 500: 7.4 us per gradient as a lane, 3.4 us without)."""
        if not (self._resumable and lanes.ENABLED) or chains < 2 or self.chain_method == "sequential":
            return False
        if self.chain_method == "vectorized":
            return True
        return _chain_sharding(chains) is not None or jax.default_backend() != "cpu"

    def _ahead_rows(self, ld, chains: int) -> int:
        """How many iterations past a chunk's end a lane may run ahead into (`lanes.Ahead`):
        as many as a default chunk may have, up to `MAX_AHEAD` (0 when the chains do not run
        as lanes). A batch's fastest chain does its chunk in well under the slowest one's time
        (eight schools, 256 chains, 500 + 500: per-chain gradient evaluations 8.0k to 13.1k,
        step sizes 0.28 to 0.61, as NumPyro's chains 0.24 to 0.70), so it may do most of
        another chunk meanwhile. The rows are carried in the chains' state: at most as much
        memory as a default chunk's draws (`CHUNK_BYTES`), whatever the run's length or
        `chunk_size` (a checkpointed run goes on, or is extended, with the same state).
        Measured (that run, first call, lanes carrying transitions in flight): lane
        utilisation 0.71 with 64 rows, 0.735 with 128, 0.739 with 455; but the chunk
        program's compile grows with the rows (6.6-6.8 s with 64 or 128, 8.0-9.7 s with 455),
        so 128 at most: first call 11.9-12.0 s against 12.0-12.1 (64) and 13.0-15.1 (455)."""
        if not self._lanes(chains):
            return 0
        return int(max(1, min(MAX_AHEAD, CHUNK_BYTES // self._row_bytes(ld, chains))))

    def _plan(self, start, n, length, ahead_rows: int = 0):
        """The rows of iterations ``start .. start + n - 1`` for a program of ``length``, then
        ``ahead_rows`` rows past them that a lane may run ahead into (see `_ahead_rows`)."""
        ahead = min(ahead_rows, max(0, self._total() - start - n))
        return driver.plan(start, n + ahead, length + ahead_rows, self.num_warmup,
                           self.thinning, restart_at_windows=self._restart_at_windows(), ahead=ahead)

    # -- the program -------------------------------------------------------------------------
    def _start(self, key, ld, move, log_density, settings, dtype):
        """A chain's initial state: the first finite of up to 100 candidate points."""
        strategy, radius, values = init_option(self.init)

        def evaluate(z):  # the move's state at z: usable when its log density is finite
            state = move.init(z, log_density)  # (a non-finite gradient reads as -inf)
            value = state.log_density if hasattr(state, "log_density") else log_density(z)
            return jnp.isfinite(value), state

        z0, ok, state = first_finite(ld, key, evaluate, strategy, radius, values)
        return driver.new_chain_state(move, z0.astype(dtype), log_density, settings, state, ok)

    def _with_ahead(self, state, ld, chains: int, move, log_density):
        """A lanes batch's chain state carries the iterations run ahead (none yet)."""
        if not self._lanes(chains):
            return state
        width = driver.steps_of(move, state, log_density, 1, self._settings()).width
        return state._replace(ahead=lanes.no_ahead(state, move, self._ahead_rows(ld, chains), width))

    def _layout(self, ld, chains) -> "Layout":
        """What the group's programs share (a :class:`Layout`)."""
        dtype = jnp.result_type(float)
        z_example = jnp.zeros(ld.dim, dtype)
        log_density = self._log_density(ld, z_example)
        move = self._move(ld, log_density)
        sharding = _chain_sharding(chains.shape[0])
        chains = _shard(chains, sharding)
        sequential = self._sequential(sharding, ld, log_density, z_example)
        if sequential and chains.shape[0] == 1:
            def over_chains(f, *a):  # one chain: no loop
                return jax.tree.map(lambda x: x[None], f(*jax.tree.map(lambda x: x[0], a)))
        elif sequential:
            def over_chains(f, *a):
                return jax.lax.map(lambda x: f(*x), a)
        else:
            def over_chains(f, *a):
                return jax.vmap(f, axis_name=CHAIN_AXIS)(*a)
        settings = self._settings()
        if sharding is not None and settings.chain_axis is None:
            # Chains that never reduce across one another: each device runs its own.
            over_chains = distributed.per_device(over_chains, sharding)
        return Layout(chains, log_density, move, settings, dtype, over_chains, sequential)

    def _init_program(self, key, ld, chains):
        """The chains `chains` (their indices) at their starting points: their
        :class:`driver.ChainState`, each chain's ``ok`` False where no finite start was found.
        A program of its own, compiled beside the chunk program on a first call."""
        k_init, _ = jax.random.split(key)
        lay = self._layout(ld, chains)
        return lay.over_chains(lambda c: self._with_ahead(
            self._start(jax.random.fold_in(k_init, c), ld, lay.move, lay.log_density, lay.settings, lay.dtype),
            ld, chains.shape[0], lay.move, lay.log_density), lay.chains)

    def _program(self, key, ld, chains, state, rows):
        """ONE chunk of iterations for the chains `chains` (their indices): `(state, rows)`
        -> `(state, ChunkOutput)`."""
        _, k_run = jax.random.split(key)
        lay = self._layout(ld, chains)
        state = _shard(state, _chain_sharding(lay.chains.shape[0]))
        # Vectorised chains of a resumable kernel (NUTS) run as lanes, each chain starting
        # its next transition as soon as its last one ends (`ppl.mcmc.lanes`; see `_lanes`).
        as_lanes = self._lanes(lay.chains.shape[0])
        if as_lanes and (lay.sequential or not lanes.supports(lay.move)):
            raise RuntimeError(f"{self.name}: internal: chains planned as lanes cannot run as lanes.")

        def one_chain(c, s):
            words = _counter_rng.key_words(jax.random.fold_in(k_run, c))
            if as_lanes:
                return lanes.advance(words, s, rows, lay.move, lay.log_density, lay.settings, CHAIN_AXIS)
            state, record = driver.advance(words, s, rows, lay.move, lay.log_density, lay.settings)
            return state, record, lanes.LaneWork(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

        state, record, work = lay.over_chains(one_chain, lay.chains, state)
        values = when(jnp.any(rows.record == 1), lambda p: draws_from_flat(ld, p), record.position)
        return state, ChunkOutput(values, record.infos, work)

    def _whole(self, key, ld, chains):
        """The whole run as ONE chunk, pure and vmappable (simulation-based calibration runs
        it over simulated data sets): ``(samples, divergences, ok)`` with samples site ->
        (chains, num_samples, *shape)."""
        total = self._total()
        rows = self._plan(0, total, total)
        state = self._init_program(key, ld, chains)
        if state.ahead is not None:  # one chunk: nothing to run ahead into
            state = state._replace(ahead=state.ahead._replace(rows=state.ahead.rows[:, :0]))
        state, out = self._program(key, ld, chains, state, jax.tree.map(jnp.asarray, rows))
        keep = np.flatnonzero(rows.record)
        samples = {k: v[:, keep] for k, v in out.values.items()}
        divergences = sum((jnp.sum(i.is_divergent[:, keep].astype(jnp.int32)) for i in out.infos), jnp.int32(0))
        return samples, divergences, jnp.all(state.ok)

    def _blank_state(self, key, ld, chains):
        """Zeros shaped as the chains' state (what a chunk program takes). Its shapes are
        traced once per method and argument shapes (`initial_shapes`)."""
        shape = initial_shapes(self, key, ld, chains)
        return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shape)

    def _initial(self, key, ld, chains):
        """The chains' state at a point (for its shapes: `_init_program` finds the real start)."""
        dtype = jnp.result_type(float)
        z = jnp.zeros(ld.dim, dtype)
        log_density = self._log_density(ld, z)
        move = self._move(ld, log_density)
        one = self._with_ahead(driver.new_chain_state(move, z, log_density, self._settings()), ld, chains.shape[0],
                               move, log_density)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, chains.shape + jnp.shape(x)), one)

    # -- the run -------------------------------------------------------------------------------
    def _execute(self, key, ld, checkpoint=None) -> ChainRun:
        """Run (or resume, or extend) the chains; returns a :class:`ChainRun`.

        With several devices the chains are sharded over them (`ppl.runtime.distributed`):
        in a multi-process run (`jax.distributed`) each process computes its devices' chains
        and every process returns every chain; checkpoints are refused there."""
        groups = self._groups(ld)
        per = self.num_chains // groups
        ids = [np.arange(g * per, (g + 1) * per, dtype=np.int32) for g in range(groups)]
        length = self._length(ld, per)
        as_lanes = self._lanes(per)
        ahead_rows = self._ahead_rows(ld, per)
        place = distributed.Placement(_chain_sharding(per))
        many = distributed.processes() > 1
        if many:
            if checkpoint is not None:
                raise ValueError(
                    f"{self.name}: checkpoint= is not supported in a multi-process (jax.distributed) run "
                    f"({distributed.processes()} processes); drop checkpoint=, or run in one process.")
            distributed.require_same_call(identity(ld, self, key, ignore=("progress_bar", "chunk_size")),
                                          f"ppl.infer(method={self.name!r})")
        # The program's inputs: on several devices, global arrays (chains sharded, the rest
        # replicated); on one, as they are.
        g_key, g_ld = place.everywhere((key, ld))
        g_ids = [place.chains(i) for i in ids]
        total = self._total()
        blank = self._blank_state(key, ld, ids[0])
        states, starts = [blank] * groups, [0] * groups
        ckpt = None
        if checkpoint is not None:
            # A lanes run's states hold iterations run ahead (`lanes.Ahead`): only a lanes run
            # can go on from them, so how the chains run is part of what the run is.
            # So is how they are grouped: each group's state and draws are saved apart.
            ckpt = Checkpoint(checkpoint, {**identity(ld, self, key, ignore=FREE_OPTIONS), "lanes": as_lanes,
                                           "groups": groups})
            store = DiskStore(ckpt.path, groups, per)
            for g in range(groups):
                # The newest state whose draws are all on disk: the last good chunk.
                on_disk = store.verify(g)
                loaded = ckpt.load(g, blank, lambda i: self._records_before(i) <= on_disk)
                if loaded is not None:
                    starts[g], states[g], _ = loaded
                store.truncate(g, self._records_before(starts[g]))
        else:
            store = MemoryStore(groups)
        work = [chunks.Group(states[g], starts[g], max(total, starts[g])) for g in range(groups)]
        divergences = [0] * groups
        chain_ticks = [0] * groups  # lanes: each chain's gradient evaluations, per group
        offered = [0]  # lanes: lane slots offered (chains x batched steps)
        compile_s, source, interrupted, run_s = 0.0, "memory", False, 0.0
        if any(w.start < w.stop for w in work):
            fresh = [g for g in range(groups) if starts[g] == 0]
            t0 = time.perf_counter()
            # The initialisation compiles on its own thread while the chunk program is traced
            # and compiled here: on a first call the two compile times overlap.
            pending = prepare_in_background(self, g_key, g_ld, g_ids[0], entry="_init_program", once=True) if fresh else None
            try:
                executable, _ = prepare(self, g_key, g_ld, g_ids[0], place.chains(blank),
                                        place.everywhere(self._plan(0, 0, length, ahead_rows)))
            except BaseException:
                if pending is not None:
                    pending.wait()  # no compile is left running behind the error
                raise
            sources = [executable.source]
            if pending is not None:
                starter, _ = pending.result()
                sources.append(starter.source)
            compile_s = time.perf_counter() - t0
            source = next((s for s in ("compiled", "disk") if s in sources), "memory")
            for g in fresh:
                work[g].state = place.host(execute(starter, (g_key, g_ld, g_ids[g])))
                ok = np.asarray(work[g].state.ok)
                if not ok.all():
                    bad = int(np.argmin(ok))
                    move = work[g].state.move
                    position = move.position if hasattr(move, "position") else move
                    raise init_error(ld, np.asarray(position)[bad], 100)

            workers = chain_workers(groups)
            one_bar = groups > workers  # narrow groups (`_max_width`), taken in turn: one bar for them all
            if one_bar:
                names, totals, initial = [f"{self.name} ({groups} groups of {per} chains)"], [total], [sum(starts) / groups]
            else:
                names = [f"{self.name} chains {i[0]}-{i[-1]}" if groups > 1 else self.name for i in ids]
                totals, initial = [w.stop for w in work], starts

            def run_chunk(g, state, rows):
                args = (g_key, g_ld, g_ids[g], place.chains(state), place.everywhere(rows))
                return place.host(execute(executable, args))

            def on_chunk(c: chunks.Chunk):
                keep = np.flatnonzero(np.asarray(c.rows.record)[: c.n])
                draws = {k: np.asarray(v)[:, keep] for k, v in c.outputs.values.items()}
                stats = _stats(c.outputs.infos, keep, c.state)
                divergences[c.group] += int(stats["diverging"].sum()) if "diverging" in stats else 0
                chain_ticks[c.group] = chain_ticks[c.group] + np.asarray(c.outputs.work.ticks, np.int64)
                offered[0] += int(np.sum(c.outputs.work.offered))
                store.append(c.group, draws, stats)
                if ckpt is not None:
                    ckpt.save(c.group, c.start + c.n, c.state)
                if one_bar:  # the run's divergences, each group's chunk a fraction of the run
                    bars.update(0, c.n / groups, **_postfix(c.state, sum(divergences)))
                else:
                    bars.update(c.group, c.n, **_postfix(c.state, divergences[c.group]))

            if ckpt is not None:
                ckpt.unfinish()
            t0 = time.perf_counter()
            with Interrupt(self.name) as interrupt, \
                    progress.Bars(progress.enabled(self.progress_bar) and jax.process_index() == 0, names,
                                  totals, initial) as bars:
                interrupted = chunks.run(
                    run_chunk, work, lambda g, start, n: self._plan(start, n, length, ahead_rows), length, on_chunk,
                    concurrent=groups > 1 and not executable.blocking, workers=workers, interrupt=interrupt,
                    chunk_size=self.chunk_size, agree=distributed.agree_on_chunk if many else None)
            run_s = time.perf_counter() - t0
        done = min(w.start for w in work)
        limit = min(min(store.count(g) for g in range(groups)), self.num_samples)
        empty = store.no_draws() if ckpt is not None and limit == 0 else None
        if empty is not None:  # no draw on disk (stopped in warmup): nothing to join
            samples, stats = empty
        elif ckpt is not None:
            # Every draw on disk, so draws.nc never shrinks under a result of an earlier call;
            # this one views its first `limit` (`ppl.runtime.store`).
            path = store.consolidate()
            samples, stats = LazySamples(path, draws=limit), LazySamples(path, "sample_stats", draws=limit)
        else:
            samples, stats = store.arrays(limit)
        if ckpt is not None and not interrupted:
            ckpt.finish({"iterations": done, "num_samples": self.num_samples})
        states = jax.tree.map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *[w.state for w in work])
        return ChainRun(samples, stats, states, done, compile_s, run_s, source, interrupted,
                        *_lane_utilization(chain_ticks, offered[0]))

    def _records_before(self, iteration: int) -> int:
        """Draws recorded by the first `iteration` iterations."""
        return max(0, (iteration - self.num_warmup) // self.thinning)


def _lane_utilization(chain_ticks, offered: int):
    """``(utilisation, bound)`` of a lanes run (NaN for chains not run as lanes): gradient
    evaluations made / lane slots ``offered``; and what no schedule of these chains could
    pass: a batch runs until its busiest chain has made its evaluations (each chain's own,
    the same however it is scheduled), so at best sum / (chains x max) per batch."""
    if not offered:
        return float("nan"), float("nan")
    ticks = [np.asarray(t) for t in chain_ticks if np.size(t)]
    made = sum(t.sum() for t in ticks)
    slots = sum(t.size * t.max() for t in ticks)
    return float(made / offered), (float(made / slots) if slots else float("nan"))


def _stats(infos, keep, state) -> dict:
    """Sample statistics of the recorded iterations, per chain and draw (first block's
    kernel fields, named as ArviZ's sample_stats; further blocks suffixed `_<block>`)."""
    names = {"is_divergent": "diverging", "is_nonfinite": "nonfinite", "acceptance_rate": "acceptance_rate",
             "num_grad_evals": "n_steps", "energy": "energy", "tree_depth": "tree_depth"}
    out = {}
    for b, info in enumerate(infos):
        suffix = "" if b == 0 else f"_{b}"
        for field, value in zip(info._fields, info):
            if value is None or field not in names:
                continue
            v = np.asarray(value)[:, keep]
            out[names[field] + suffix] = v.astype(bool) if field.startswith("is_") else v
        step = np.asarray(state.tuning[b].step_size)
        out["step_size" + suffix] = np.broadcast_to(step[:, None], (step.shape[0], len(keep))).copy()
    return out


def _postfix(state, divergences: int) -> dict:
    """What a group's bar shows: divergences so far (warmup and sampling), the step size."""
    warm = int(np.asarray(state.tally.warmup_divergences).sum())
    out = {"divergences": warm + divergences}
    if state.tuning:
        out["step_size"] = f"{float(np.mean(np.asarray(state.tuning[0].step_size))):.3g}"
    return out
