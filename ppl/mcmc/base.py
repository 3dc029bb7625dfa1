"""The kernel record shared by every MCMC transition in ``ppl.mcmc``.

Every kernel module (``hmc``, ``nuts``, ``mh``) exports ``State``, ``Info``, ``init`` and
``build_kernel``; ``build_kernel(...)`` returns a :class:`Kernel`, which is called as the
step function ``step(key, state, logdensity_fn, step_size, inverse_mass_matrix, trial=False)``
and also carries the kernel's ``init`` and ``probe`` so that a driver never special-cases a
kernel.
Every ``Info`` starts with the core fields ``acceptance_rate, is_divergent, num_grad_evals,
is_nonfinite`` and ends with ``nonfinite_position``: ``is_divergent`` is an energy error above
the threshold; ``is_nonfinite`` a numerical failure of the model (a NaN or +inf log density, or
a non-finite gradient, at a point the transition computed; see
``ppl.mcmc.integrators.is_nonfinite``), counted apart because its cause and its fix differ;
``nonfinite_position`` is such a point (zeros when there is none), so that a driver can name
the site whose term fails there.
"""
import dataclasses
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp


class Resumable(NamedTuple):
    """A kernel's transition cut at its gradient evaluations, so that a schedule can advance
    each chain by one evaluation at a time and start a chain's next transition as soon as
    its last one ends (``ppl.mcmc.lanes``). Run as ``c = begin(...)``, then ``c = tick(c,
    ...)`` until ``done(c)``, then ``end(c)``: the same ``(State, Info)``, bit for bit, as
    the kernel's ``step`` with the same arguments.

    Fields:
      begin: ``(words, state, step_size, inverse_mass_matrix, trial, previous=None, go=None)
        -> carry`` (``words``: a ``_counter_rng`` key, what ``step`` derives from its key).
        With ``previous`` (a carry) its buffers are reused, and with ``go`` (a bool, given
        with ``previous``) the transition begins only where it is true: elsewhere
        ``previous`` is returned unchanged. A batch of chains then begins some of them without selecting every
        buffer (a kernel makes this cheap where it knows which buffers matter);
      tick: ``(carry, logdensity_fn, inverse_mass_matrix, go=None) -> carry``, one gradient
        evaluation (where ``go``; elsewhere the carry unchanged);
      done: ``carry -> bool``;
      end: ``carry -> (State, Info)``.
    """

    begin: Callable
    tick: Callable
    done: Callable
    end: Callable


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A pure MCMC transition; calling it performs one step.

    Fields:
      step: ``(key, state, logdensity_fn, step_size, inverse_mass_matrix, trial=False) ->
        (State, Info)``. ``trial`` (a bool, may be traced) asks for one elementary move only
        (one leapfrog for HMC/NUTS, one proposal for MH) whose ``Info.acceptance_rate`` is
        min(1, exp(H0 - H)): the step-size heuristic's trial, run through the same compiled
        kernel as the transitions (its returned state is discarded).
      init: ``(position, logdensity_fn) -> State``.
      probe: ``(key, state, logdensity_fn, step_size, inverse_mass_matrix) -> log ratio``: the
        log acceptance ratio of one elementary move, NaN mapped to -inf, for a step-size
        search outside the kernel (``find_reasonable_step_size``, for drivers written by
        users; this package's samplers use trial moves, ``driver.search_then_move``).
      name: a short label, e.g. ``"nuts"``.
      restart_at_windows: when a slow warmup window ends and the mass matrix changes,
        re-initialise the step size by the heuristic and restart dual averaging (Stan's
        HMC/NUTS warmup). False keeps one dual-averaging run over the whole warmup, which
        suits the noisy 0/1-like acceptance of random-walk Metropolis.
      info_type: the kernel's ``Info`` class, whose ``KINDS`` gives each field's dtype,
        "float" meaning the position's (a scalar), "position" a vector like the position. It
        lets a driver lay out its records without tracing the kernel an extra time; None: the
        driver traces it (``jax.eval_shape``).
      resumable: the same transition as a :class:`Resumable` (one gradient evaluation at a
        time), for schedules that interleave many chains' transitions (``ppl.mcmc.lanes``);
        None when the kernel offers none.
    """

    step: Callable
    init: Callable
    probe: Callable
    name: str
    restart_at_windows: bool = True
    info_type: Optional[type] = None
    resumable: Optional["Resumable"] = None

    def info_shapes(self, state, key, logdensity_fn, step_size, inverse_mass_matrix, dtype):
        """The ``Info`` of one step as ``jax.ShapeDtypeStruct``s."""
        if self.info_type is None:
            return jax.eval_shape(lambda s, k: self(k, s, logdensity_fn, step_size, inverse_mass_matrix)[1],
                                  state, key)
        def shape(kind):
            if kind == "position":
                return jax.ShapeDtypeStruct(jnp.shape(state.position), dtype)
            return jax.ShapeDtypeStruct((), dtype if kind == "float" else jnp.dtype(kind))

        return self.info_type(*(shape(kind) for kind in self.info_type.KINDS))

    def __call__(self, key, state, logdensity_fn, step_size, inverse_mass_matrix, trial=False):
        return self.step(key, state, logdensity_fn, step_size, inverse_mass_matrix, trial)


@dataclasses.dataclass(frozen=True)
class Move:
    """What the chain driver (``ppl.mcmc.driver``) advances: one transition of a chain made of
    one or more ADAPTED BLOCKS, each moved with its own step size and inverse mass matrix
    (NUTS, HMC, MH: one block of every coordinate, ``driver.single(kernel)``; Gibbs: one block
    per continuous kernel block of its sweep, the discrete updates in between).

    Fields:
      blocks: per adapted block, the indices (a numpy int array) of the flat coordinates its
        mass matrix covers, or None for all of them.
      init: ``(z, logdensity_fn) -> state``.
      step: ``(key, state, logdensity_fn, params, search) -> (state, infos, step_sizes)``:
        ``params`` holds ``(step_size, inverse_mass_matrix)`` per block; with ``search`` (a
        traced bool) each block first re-runs the initial step-size heuristic from its step
        size; returns each block's ``Info`` and the step size it used.
      position: ``state -> z``, the flat vector (for adaptation and the record).
      info_shapes: ``(state, logdensity_fn, params, dtype) -> tuple of Info`` of
        ``jax.ShapeDtypeStruct`` per block.
      name: a short label.
      restart_at_windows: re-run the step-size heuristic and restart dual averaging when a
        slow window changes the mass matrix (Stan's HMC/NUTS warmup; not for random walks).
      target_accept: per block, a dual-averaging target fixed by the move (None: the
        method's option for every block).
      kernel: the one kernel the move applies to every coordinate (``driver.single``), or
        None (Gibbs): a schedule may then run the kernel's ``resumable`` form.
    """

    blocks: tuple
    init: Callable
    step: Callable
    position: Callable
    info_shapes: Callable
    name: str
    restart_at_windows: bool = True
    target_accept: Optional[float] = None
    kernel: Optional[Kernel] = None
