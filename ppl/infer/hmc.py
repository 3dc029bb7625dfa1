"""NumPyro's functional HMC driver, `numpyro.infer.hmc.hmc`, on ppl's kernels and warmup.

    model_info = initialize_model(init_key, model, model_args=(returns,))      # ppl.infer.util
    init_kernel, sample_kernel = hmc(model_info.potential_fn, algo="NUTS")
    hmc_state = init_kernel(model_info.param_info, num_warmup, rng_key=sample_key)
    hmc_states = fori_collect(num_warmup, num_warmup + num_samples, sample_kernel, hmc_state,
                              transform=lambda state: model_info.postprocess_fn(state.z))  # ppl.util

`sample_kernel` is ONE iteration of ppl's chain driver (`ppl.mcmc.driver.advance` over a plan
of one row, `driver.plan`): the first `num_warmup` calls adapt the step size and the mass
matrix exactly as `ppl.infer(..., method="nuts")` does (Stan's windows, dual averaging, the
step-size heuristic at the start and at each window's end), then the step size and mass
matrix stay fixed. The transitions are ppl's NUTS (`ppl.mcmc.nuts`) or HMC (`ppl.mcmc.hmc`)
kernels. Iteration ``i``'s random numbers come from the chain's key (`rng_key`, kept in the
state unchanged) and ``i``, as in ppl's chains: with a potential from
`ppl.infer.util.initialize_model`, `init_kernel(..., rng_key=k)` followed by `sample_kernel`
gives the draws of a ppl chain whose run key is ``k`` and whose start is the same.

Driver order (ppl's): the adaptation owed to transition ``i - 1`` (dual averaging, Welford,
a window's new mass matrix, the final step size) is applied at the start of call ``i``, so
the state after a call holds the step size and inverse mass matrix its transition used
(`adapt_state`); the first sampling call uses the final ones.

Design: `HMCState` carries what the driver's `ChainState` holds, under NumPyro's names: the
position, potential energy and its gradient (the kernel's state, rebuilt at each call from
`z`, `potential_energy` and `z_grad`), `adapt_state` (the driver's `Tuning`: `step_size`,
`inverse_mass_matrix`, dual averaging and Welford states) and `tally` (warmup divergences and
numerical failures). Nothing is kept outside the state but the static options, so both
kernels are pure and jittable, and `vmap` over chains applies.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ppl import _counter_rng
from ppl.infer.util import ParamInfo, Potential
from ppl.mcmc import driver, nuts
from ppl.mcmc import hmc as hmc_kernel


class HMCState(NamedTuple):
    """A chain after ``i`` transitions (NumPyro's `HMCState` fields, then ppl's ``tally``).

    Fields:
      i: transitions done (the next one is a warmup one while ``i < num_warmup``).
      z: the position, in the structure of ``init_params`` (a dict site -> unconstrained value).
      z_grad: the gradient of the potential energy at ``z`` (same structure).
      potential_energy: minus the log density at ``z``.
      energy: the Hamiltonian at the last transition's returned point.
      r: None (each transition draws its momentum from the key).
      trajectory_length: NaN (NUTS chooses it; ppl's HMC takes a number of steps).
      num_steps: leapfrog steps of the last transition.
      accept_prob: its acceptance statistic (Stan's accept_stat).
      mean_accept_prob: running mean of ``accept_prob`` over warmup, restarted at sampling.
      diverging: whether it diverged.
      adapt_state: the driver's `Tuning`: ``step_size``, ``inverse_mass_matrix`` (those the
        last transition used), ``dual_averaging``, ``welford``, ``last_accept``.
      rng_key: the chain's key (unchanged: transition ``i`` derives its numbers from it and i).
      tally: the driver's `Tally` (warmup gradient evaluations, divergences, numerical failures).
    """

    i: Any
    z: Any
    z_grad: Any
    potential_energy: Any
    energy: Any
    r: Any
    trajectory_length: Any
    num_steps: Any
    accept_prob: Any
    mean_accept_prob: Any
    diverging: Any
    adapt_state: Any
    rng_key: Any
    tally: Any


class _Layout(NamedTuple):
    """How the potential's argument lies in the flat vector the kernels move
    (``ravel``/``unravel``), and ``log_density(example) -> (flat -> log density)``, the
    function they sample."""

    ravel: Any
    unravel: Any
    log_density: Any


def _layout(potential, z) -> _Layout:
    """A :class:`ppl.infer.util.Potential` keeps ppl's layout and hoisted log density (the
    draws of `ppl.infer`'s chains); any other potential is flattened by `ravel_pytree`."""
    if isinstance(potential, Potential):
        return _Layout(potential.ravel, potential.unravel, potential.log_density)
    _, unravel = ravel_pytree(z)

    def log_density(example):
        return lambda x: -potential(unravel(x))

    return _Layout(lambda tree: ravel_pytree(tree)[0], unravel, log_density)


class _Config(NamedTuple):
    """The static options `init_kernel` fixes for `sample_kernel`."""

    move: Any
    state_type: Any
    settings: driver.Settings
    num_warmup: int
    rows: driver.Rows          # the plan of iterations 0 .. num_warmup + 1 (numpy)
    thinned: Any               # the shapes of the driver's thinning sums (zeros at every call)
    trajectory_length: float


_UNSUPPORTED = {  # init_kernel option -> (the value ppl takes, why)
    "forward_mode_differentiation": (False, "ppl differentiates in reverse mode"),
    "regularize_mass_matrix": (True, "ppl always regularises the estimated mass matrix (Stan's shrinkage)"),
}


def hmc(potential_fn=None, potential_fn_gen=None, kinetic_fn=None, algo="NUTS"):
    """NumPyro's functional HMC/NUTS (`numpyro.infer.hmc.hmc`) on ppl's kernels and warmup.

    Args:
      potential_fn: ``z -> potential energy`` (minus the log density) over any pytree ``z``;
        `initialize_model`'s (a `ppl.infer.util.Potential`) gives ppl's own chains.
      potential_fn_gen: instead, ``(*model_args, **model_kwargs) -> potential_fn`` (from
        `initialize_model(..., dynamic_args=True)`): the kernels then take the model's
        arguments at every call.
      kinetic_fn: only None (ppl's kinetic energy is the Euclidean one).
      algo: "NUTS" (ppl's multinomial NUTS) or "HMC" (ppl's HMC: `num_steps` leapfrog steps,
        jittered as `ppl.HMC`'s; 16 by default).

    Returns:
      ``(init_kernel, sample_kernel)``:

      ``init_kernel(init_params, num_warmup, step_size=1.0, inverse_mass_matrix=None,
      adapt_step_size=True, adapt_mass_matrix=True, dense_mass=False, target_accept_prob=0.8,
      *, num_steps=None, trajectory_length=2*pi, max_tree_depth=10,
      find_heuristic_step_size=False, forward_mode_differentiation=False,
      regularize_mass_matrix=True, model_args=(), model_kwargs=None, rng_key=None) -> HMCState``:
      ``init_params`` is a `ParamInfo` or the position itself; ``step_size`` is where the
      step-size heuristic starts; ``inverse_mass_matrix`` the starting one (flat, in the order
      of the flattened position); ``dense_mass`` a bool; ``max_tree_depth`` an int (or a pair
      of equal ints); ``find_heuristic_step_size`` is accepted and has no effect (ppl's warmup
      always runs the heuristic at its start and at each window's end); ``trajectory_length``
      is NUTS's to choose (ignored), and for HMC give ``num_steps``. ``rng_key`` defaults to
      ``PRNGKey(0)``.

      ``sample_kernel(hmc_state, model_args=(), model_kwargs=None) -> HMCState``: one
      transition (see the module docstring).

    Raises:
      ValueError: for an unknown `algo`, a `kinetic_fn`, both or neither of `potential_fn`
        and `potential_fn_gen`; `init_kernel` for an option ppl does not offer, naming it.

    Example:
      >>> info = initialize_model(jax.random.PRNGKey(0), model, model_args=(x,))
      >>> init_kernel, sample_kernel = hmc(info.potential_fn, algo="NUTS")
      >>> state = init_kernel(info.param_info, 500, rng_key=jax.random.PRNGKey(1))
      >>> draws = fori_collect(500, 1500, sample_kernel, state,
      ...                      transform=lambda s: info.postprocess_fn(s.z))
    """
    if algo not in ("NUTS", "HMC"):
        raise ValueError(f"hmc(algo={algo!r}): algo must be 'NUTS' or 'HMC'.")
    if kinetic_fn is not None:
        raise ValueError("hmc(kinetic_fn=...): not supported; ppl's kinetic energy is the Euclidean one "
                         "(with the adapted mass matrix); drop kinetic_fn.")
    if (potential_fn is None) == (potential_fn_gen is None):
        raise ValueError("hmc: give exactly one of potential_fn and potential_fn_gen.")
    config = None

    def potential_for(model_args, model_kwargs):
        if potential_fn is not None:
            return potential_fn
        return potential_fn_gen(*model_args, **({} if model_kwargs is None else model_kwargs))

    def init_kernel(init_params, num_warmup, step_size=1.0, inverse_mass_matrix=None, adapt_step_size=True,
                    adapt_mass_matrix=True, dense_mass=False, target_accept_prob=0.8, *, num_steps=None,
                    trajectory_length=2 * math.pi, max_tree_depth=10, find_heuristic_step_size=False,
                    forward_mode_differentiation=False, regularize_mass_matrix=True, model_args=(),
                    model_kwargs=None, rng_key=None) -> HMCState:
        nonlocal config
        for name, value in (("forward_mode_differentiation", forward_mode_differentiation),
                            ("regularize_mass_matrix", regularize_mass_matrix)):
            taken, why = _UNSUPPORTED[name]
            if bool(value) != taken:
                raise ValueError(f"init_kernel({name}={value!r}): not supported ({why}); drop {name}=.")
        if not isinstance(num_warmup, (int, np.integer)) or isinstance(num_warmup, bool) or num_warmup < 0:
            raise ValueError(f"init_kernel: num_warmup must be an int >= 0, got {num_warmup!r}.")
        if not 0.0 < float(target_accept_prob) < 1.0:
            raise ValueError(f"init_kernel: target_accept_prob must lie in (0, 1), got {target_accept_prob!r}.")
        dense_mass = _dense(dense_mass)
        kernel = _kernel(algo, num_steps, trajectory_length, max_tree_depth)
        move = driver.single(kernel)
        if isinstance(init_params, ParamInfo):
            z, pe, z_grad = init_params
        else:
            z, pe, z_grad = init_params, None, None
        layout = _layout(potential_for(model_args, model_kwargs), z)
        dim = int(np.sum([np.size(leaf) for leaf in jax.tree.leaves(z)]))
        if inverse_mass_matrix is not None:
            inverse_mass_matrix = _inverse_mass_matrix(inverse_mass_matrix, dim, dense_mass)
        settings = driver.Settings(float(target_accept_prob), dense_mass, bool(adapt_mass_matrix),
                                   bool(adapt_step_size), float(step_size))
        state_type = nuts.State if algo == "NUTS" else hmc_kernel.State
        length = float("nan") if trajectory_length is None or algo == "NUTS" else float(trajectory_length)

        def build(z, pe, z_grad, inverse_mass_matrix, key):  # one program: no op-by-op dispatch
            position = jnp.asarray(layout.ravel(z), jnp.result_type(float))
            if pe is not None and z_grad is not None:
                move_state = _kernel_state(state_type, position, pe, layout.ravel(z_grad))
            else:
                move_state = move.init(position, layout.log_density(position))
            chain = driver.new_chain_state(move, position, None, settings, move_state, True, inverse_mass_matrix)
            dtype, zero = position.dtype, jnp.zeros((), jnp.int32)
            state = HMCState(zero, layout.unravel(position), layout.unravel(-move_state.grad),
                             -move_state.log_density, -move_state.log_density, None, jnp.asarray(length, dtype), zero,
                             jnp.zeros((), dtype), jnp.zeros((), dtype), jnp.zeros((), bool), chain.tuning[0], key,
                             chain.tally)
            return state, chain.thinned

        key = jax.random.PRNGKey(0) if rng_key is None else rng_key
        state, thinned = jax.jit(build)(z, pe, z_grad, inverse_mass_matrix, key)
        rows = driver.plan(0, num_warmup + 2, num_warmup + 2, int(num_warmup), 1, bool(adapt_mass_matrix),
                           bool(adapt_step_size), move.restart_at_windows)  # rows 0 .. num_warmup + 1: later ones as the last
        thinned = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), x.dtype), thinned)  # no tracer kept
        config = _Config(move, state_type, settings, int(num_warmup), rows, thinned, length)
        return state

    def sample_kernel(hmc_state: HMCState, model_args=(), model_kwargs=None) -> HMCState:
        if config is None:
            raise RuntimeError("sample_kernel: call init_kernel(init_params, num_warmup, ...) first.")
        layout = _layout(potential_for(model_args, model_kwargs), hmc_state.z)
        position = layout.ravel(hmc_state.z)
        move_state = _kernel_state(config.state_type, position, hmc_state.potential_energy,
                                   layout.ravel(hmc_state.z_grad))
        thinned = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), config.thinned)  # one transition per call
        chain = driver.ChainState(move_state, (hmc_state.adapt_state,), hmc_state.tally, thinned, jnp.asarray(True))
        i = jnp.asarray(hmc_state.i, jnp.int32)
        row = jnp.minimum(i, config.num_warmup + 1)
        rows = driver.Rows(*(jnp.asarray(column)[row][None] for column in config.rows))._replace(i=i[None])
        chain, record = driver.advance(_counter_rng.key_words(hmc_state.rng_key), chain, rows, config.move,
                                       layout.log_density(position), config.settings)
        info = record.infos[0]
        accept = info.acceptance_rate[0]
        n = jnp.where(i < config.num_warmup, i + 1, i + 1 - config.num_warmup).astype(accept.dtype)
        steps = info.num_steps[0] if hasattr(info, "num_steps") else info.num_grad_evals[0]
        new = chain.move
        return HMCState(i + 1, layout.unravel(new.position), layout.unravel(-new.grad), -new.log_density,
                        info.energy[0], None, hmc_state.trajectory_length, steps, accept,
                        hmc_state.mean_accept_prob + (accept - hmc_state.mean_accept_prob) / n,
                        info.is_divergent[0], chain.tuning[0], hmc_state.rng_key, chain.tally)

    return init_kernel, sample_kernel


def _kernel_state(state_type, position, potential_energy, potential_grad):
    """The kernel's state at ``position`` from NumPyro's potential energy and its gradient
    (a non-finite one reads as a log density of -inf, as the kernels' own ``init``)."""
    log_density = -jnp.asarray(potential_energy, position.dtype)
    grad = -jnp.asarray(potential_grad, position.dtype)
    ok = jnp.isfinite(log_density) & jnp.all(jnp.isfinite(grad))
    return state_type(position, jnp.where(ok, log_density, -jnp.inf), jnp.where(ok, grad, 0.0))


def _kernel(algo, num_steps, trajectory_length, max_tree_depth):
    """ppl's NUTS or HMC kernel for NumPyro's options."""
    if algo == "NUTS":
        depth = max_tree_depth
        if isinstance(depth, tuple):
            if len(depth) != 2 or depth[0] != depth[1]:
                raise ValueError(f"init_kernel(max_tree_depth={depth!r}): ppl's NUTS takes one depth for warmup "
                                 f"and sampling; give one int.")
            depth = depth[0]
        if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or not 1 <= depth <= 30:
            raise ValueError(f"init_kernel(max_tree_depth={depth!r}): give an int in [1, 30].")
        return nuts.build_kernel(max_tree_depth=int(depth))
    from ppl.mcmc.sampler import HMC

    if num_steps is None and trajectory_length is not None and trajectory_length != 2 * math.pi:
        raise ValueError(f"init_kernel(trajectory_length={trajectory_length!r}): ppl's HMC takes num_steps "
                         f"leapfrog steps (jittered, as ppl.HMC); give num_steps= instead.")
    steps = HMC.num_steps if num_steps is None else num_steps
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"init_kernel(num_steps={num_steps!r}): give a positive int.")
    return hmc_kernel.build_kernel(num_steps=int(steps), jitter=HMC.jitter)


def _dense(dense_mass) -> bool:
    if isinstance(dense_mass, (bool, np.bool_)):
        return bool(dense_mass)
    if isinstance(dense_mass, (list, tuple)) and len(dense_mass) == 0:
        return False
    raise ValueError(f"init_kernel(dense_mass={dense_mass!r}): ppl's mass matrix is diagonal (False) or dense over "
                     f"every coordinate (True); structured blocks are not supported.")


def _inverse_mass_matrix(imm, dim, dense):
    if isinstance(imm, dict):
        raise TypeError("init_kernel(inverse_mass_matrix={...}): block mass matrices by site are not supported; "
                         "give one array over the flattened position.")
    imm = jnp.asarray(imm, jnp.result_type(float))
    shape = (dim, dim) if dense else (dim,)
    if imm.shape != shape:
        raise ValueError(f"init_kernel(inverse_mass_matrix=...): shape {imm.shape}; with dense_mass={dense} and "
                         f"{dim} unconstrained coordinates it must be {shape}.")
    return imm


__all__ = ["HMCState", "hmc"]
