"""NumPyro's `SVI` driver as a thin door onto ppl's variational inference (`ppl.vi`).

    from ppl.infer import SVI, Trace_ELBO
    from ppl.infer.autoguide import AutoNormal
    svi = SVI(model, AutoNormal(model), ppl.optim.Adam(0.01), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(0), 2000, x, y=y)    # SVIRunResult(params, state, losses)
    state = svi.init(key, x, y=y); state, loss = svi.update(state, x, y=y)   # a loop by hand

The machinery is ppl's: the model is compiled once per argument structure
(`ppl.compile`; new data of the same shapes reuse it, inside a user's `jit` too), the guide
is one of ppl's families (`ppl.vi.families`: `AutoFamily` for `ppl.infer.autoguide`,
`FunctionFamily` for a guide function with `ppl.param`/`ppl.sample`/`ppl.module` sites),
the objective one of ppl's (`ppl.infer.elbo` maps NumPyro's ELBOs), and each step is
`ppl.vi.method.fit_step`, the step `ppl.VI` takes. The loss is the negative objective.

Semantics that differ from NumPyro's, by ppl's rules: a step whose loss or gradient is
not finite is skipped (params and optimiser state kept) and counted in
`state.optim_state.num_nonfinite`; `run` warns when its steps had any, so `update` and
`stable_update` are the same step. Automatic guides start at a mode and are fitted in the
units of the curvature there (see `ppl.infer.autoguide`). `run` is one compiled loop over
the steps (in up to 20 chunks when the progress bar is shown).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to

from ppl._keys import as_key
from ppl.compile.logdensity import compile as compile_model
from ppl.compile.logdensity import split_arguments
from ppl.compile.marginal import MarginalLogDensity, marginalize
from ppl.infer.autoguide import AutoGuide
from ppl.infer.elbo import ELBO_TYPES
from ppl.method.base import with_modules
from ppl.method.flags import PplWarning
from ppl.optim import as_optax
from ppl.runtime import chunks, progress
from ppl.runtime.interrupt import Interrupt
from ppl.compile.subsample import subsampled_plates
from ppl.vi.families import AutoFamily, FunctionFamily
from ppl.vi.method import VI, fit_step, surrogate_and_value
from ppl.vi.objectives import OBJECTIVE_TYPES

MAX_CHUNKS = 20  # chunks of `run` when its progress bar is shown


class FitCarry(NamedTuple):
    """SVI's optimiser state: the steps taken, the family's learnable ``params``
    (unconstrained), optax's state, the score-function ``baseline``, an automatic guide's
    ``frame`` (None for a guide function) and the number of skipped non-finite steps."""

    step: Any
    params: Any
    opt_state: Any
    baseline: Any
    frame: Any
    num_nonfinite: Any


class SVIState(NamedTuple):
    """NumPyro's SVIState: ``optim_state`` (a `FitCarry`), ``mutable_state`` (always None:
    ppl has no mutable sites) and ``rng_key``."""

    optim_state: FitCarry
    mutable_state: Any
    rng_key: Any


class SVIRunResult(NamedTuple):
    """What `SVI.run` returns: the fitted ``params`` (constrained; NumPyro's names), the last
    ``state`` and the ``losses`` of every step."""

    params: dict
    state: SVIState
    losses: Any


class Bound(NamedTuple):
    """The model compiled on one structure of arguments: its log density (discrete sites
    summed out where the objective or guide asks), whether it subsamples, and a guide
    function's module statics."""

    ld: Any
    keyed: bool
    statics: dict


def rebind(ld, args, kwargs, who="SVI"):
    """`ld` over new arguments: the same compiled model with new data when the arguments'
    structure and static values are those `ld` was compiled on, else compiled anew."""
    data, tree, static = split_arguments(args, kwargs)
    if tree == ld._tree and static == ld._static and len(data) == len(ld.data):
        return type(ld).tree_unflatten(ld.tree_flatten()[1], (data, ld.params))
    new = compile_model(ld.model, *args, **kwargs)
    return marginalize(new, who) if isinstance(ld, MarginalLogDensity) else new


class SVI:
    """Stochastic variational inference (NumPyro's `numpyro.infer.SVI`) on ppl's machinery.

    Args:
      model: the model function.
      guide: a guide function (`ppl.param` and `ppl.sample` sites, one per model latent, same
        names) or an automatic guide from `ppl.infer.autoguide`.
      optim: a `ppl.optim` optimiser (`ppl.optim.Adam(0.01)`) or an optax transformation.
      loss: `Trace_ELBO()`, `TraceMeanField_ELBO()`, `TraceEnum_ELBO()` or `RenyiELBO(alpha=0)`
        from `ppl.infer` (or ppl's `ppl.ELBO()` / `ppl.IWAE()` objects).
      **static_kwargs: keyword arguments given to the model and guide at every call.

    Methods: `init`, `update`, `stable_update`, `run`, `evaluate`, `get_params` (NumPyro's).

    Raises:
      TypeError: for a model, guide, optimiser or loss of the wrong kind.
      ValueError (at `init`): a guide function whose sample sites miss or add a model latent,
        or differ in shape or support (named), as `ppl.VI`.
    """

    def __init__(self, model, guide, optim, loss, **static_kwargs):
        if not callable(model):
            raise TypeError(f"SVI(model, ...): model must be the model function, got {model!r}.")
        if not (isinstance(guide, AutoGuide) or callable(guide)):
            raise TypeError(f"SVI(model, guide, ...): guide must be a guide function or an automatic guide from "
                            f"ppl.infer.autoguide, got {guide!r}.")
        if isinstance(loss, ELBO_TYPES):
            objective, self._sums_out = loss.objective, bool(loss.sums_out)
        elif isinstance(loss, OBJECTIVE_TYPES):
            objective, self._sums_out = loss, False
        else:
            raise TypeError(f"SVI(..., loss=...): loss must be Trace_ELBO(), TraceMeanField_ELBO(), TraceEnum_ELBO() "
                            f"or RenyiELBO() from ppl.infer, got {loss!r}.")
        objective.check()
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss
        self.static_kwargs = static_kwargs
        self.objective = objective
        self._tx = as_optax(optim)
        self._auto = isinstance(guide, AutoGuide)
        self._vi = VI(guide=guide.family if self._auto else guide, objective=objective, optimizer=self._tx)
        self._bound = {}  # (tree, static) -> Bound, compiled on concrete arguments
        self._first = None  # the Bound of `init`, for `get_params`
        self._step_jit = jax.jit(self._step, static_argnums=(1,))
        self._chunk_jit = jax.jit(self._chunk, static_argnums=(1, 3))
        self._eval_jit = jax.jit(self._evaluate, static_argnums=(1,))
        self._init_jit = jax.jit(self._init, static_argnums=(1,))

    # -- the model on these arguments ---------------------------------------------------------
    def _bind(self, args, kwargs) -> Bound:
        kwargs = {**self.static_kwargs, **kwargs}
        _, tree, static = split_arguments(args, kwargs)
        cached = self._bound.get((tree, static))
        if cached is not None:
            ld = rebind(cached.ld, args, kwargs)
            if ld._tree == cached.ld._tree and ld._static == cached.ld._static:
                return cached._replace(ld=ld)
        ld = compile_model(self.model, *args, **kwargs)
        if self._auto:
            ld = self._vi.model_for(ld)  # discrete sites summed out of an automatic guide's density
        elif self._sums_out and ld.spec.discrete:
            ld = marginalize(ld, "TraceEnum_ELBO")
        elif ld.spec.discrete and not self._sums_out:
            self._check_discrete_guided(ld)
        statics, _ = self._vi._check(ld)
        bound = Bound(ld, subsampled_plates(ld), {**getattr(ld, "module_statics", {}), **statics})
        try:
            hash((tree, static))
            self._bound[(tree, static)] = bound
        except TypeError:
            pass
        if self._auto:
            self.guide.bind(ld)
        return bound

    def _check_discrete_guided(self, ld):
        from ppl.vi.families import guide_trace

        guided = {s.name for s in guide_trace(ld, self.guide).sites("latent")}
        missing = [lat.name for lat in ld.spec.discrete if lat.name not in guided]
        if missing:
            raise ValueError(f"SVI: the model's discrete site '{missing[0]}' has no site in the guide; use "
                             f"loss=TraceEnum_ELBO() to sum it out of the model exactly (mark it "
                             f"infer={{'enumerate': 'parallel'}} or use config_enumerate), or give the guide a "
                             f"discrete ppl.sample site '{missing[0]}'.")

    def _family(self, ld, keyed, frame=None):
        if self._auto:
            return AutoFamily(self.guide.family, ld, keyed, frame)
        return FunctionFamily(self.guide, ld, keyed)

    # -- compiled pieces ----------------------------------------------------------------------
    def _init(self, ld, keyed, key, z0):
        fam = self._family(ld, keyed)
        # NumPyro's start: the guide at init_loc_fn's point with sds of init_scale in
        # unconstrained space, fitted in those units (no climb to a mode: ppl.VI's start).
        params, ok = fam.init(key, z0, climb=False) if self._auto else fam.init(key)
        return params, ok, getattr(fam, "frame", None)

    def _step(self, ld, keyed, state: SVIState):
        return self._step_with(self._hoisted_family(ld, keyed, state), state)

    def _hoisted_family(self, ld, keyed, state):
        """The family at the state's frame, the model's data-only work computed once, here."""
        carry = state.optim_state
        return self._family(ld, keyed, carry.frame).hoisted(carry.params)

    def _step_with(self, fam, state: SVIState):
        carry = state.optim_state
        rng_key, key = jax.random.split(state.rng_key)
        params, opt_state, baseline, value, good = fit_step(fam, self.objective, self._tx, carry.params,
                                                            carry.opt_state, carry.baseline, key)
        carry = FitCarry(carry.step + 1, params, opt_state, baseline, carry.frame,
                         carry.num_nonfinite + jnp.where(good, 0, 1).astype(carry.num_nonfinite.dtype))
        return SVIState(carry, None, rng_key), -value

    def _chunk(self, ld, keyed, state, length, active):
        fam = self._hoisted_family(ld, keyed, state)

        def body(i, c):
            s, losses = c
            s, loss = self._step_with(fam, s)
            return s, losses.at[i].set(loss)

        losses = jnp.full((length,), jnp.nan, jnp.result_type(float))
        return jax.lax.fori_loop(0, active, body, (state, losses))

    def _evaluate(self, ld, keyed, state):
        carry = state.optim_state
        fam = self._family(ld, keyed, carry.frame)
        _, key = jax.random.split(state.rng_key)
        return -surrogate_and_value(fam, self.objective, carry.params, key, carry.baseline)[1]

    # -- NumPyro's methods --------------------------------------------------------------------
    def init(self, rng_key, *args, init_params=None, **kwargs) -> SVIState:
        """The state before the first step: the guide's (and the model's) params at their
        initial values (`init_params`: dict param name -> constrained value, to start
        elsewhere)."""
        key = as_key(rng_key)
        bound = self._bind(args, kwargs)
        self._first = bound
        k_init, k_loc, k_run = jax.random.split(key, 3)
        z0 = None
        if self._auto:
            z0 = self.guide.initial_point(bound.ld, k_loc, args, {**self.static_kwargs, **kwargs})
        # A guide function's start runs eagerly, as NumPyro's does: its operations were just
        # compiled one by one by the check of the guide (`_bind`), so this reuses them, where
        # one program of the guide and model runs compiles anew (0.8 s of the VAE example's
        # 7 s first call). An automatic guide's start is one compiled program.
        init = self._init_jit if self._auto else self._init
        params, ok, frame = init(bound.ld, bound.keyed, k_init, z0)
        if self._auto and not bool(ok):
            bound.ld.init(0)  # raises, naming the sites whose density is not finite
        if init_params:
            params = self._with_init_params(bound, params, init_params)
        dtype = jnp.result_type(float)
        carry = FitCarry(jnp.int32(0), params, self._tx.init(params), jnp.asarray(jnp.nan, dtype), frame,
                         jnp.int32(0))
        return SVIState(carry, None, k_run)

    def _with_init_params(self, bound, params, init_params):
        fam = self._family(bound.ld, bound.keyed)
        constraints = fam._constraints()
        unknown = sorted(set(init_params) - set(constraints))
        if unknown:
            raise ValueError(f"SVI.init(init_params=...): {unknown} are not param sites of the model or guide "
                             f"(they are {sorted(constraints)}); for an automatic guide's start use "
                             f"init_loc_fn=init_to_value(values=...).")
        given = {k: jax.tree.map(lambda v, c=constraints[k]: biject_to(c).inv(jnp.asarray(v)), init_params[k])
                 for k in init_params}
        if self._auto:
            phi, model_u = params
            return phi, {**model_u, **given}
        return {**params, **given}

    def update(self, svi_state: SVIState, *args, **kwargs):
        """One step: `(new state, loss)`, the loss the negative objective at the step's start.
        A step with a non-finite loss or gradient is skipped and counted (see the module
        docstring). Works inside `jax.jit` and `lax.fori_loop`."""
        bound = self._bind(args, kwargs)
        return self._step_jit(bound.ld, bound.keyed, svi_state)

    def stable_update(self, svi_state: SVIState, *args, **kwargs):
        """As `update` (ppl's steps always skip non-finite losses and gradients)."""
        return self.update(svi_state, *args, **kwargs)

    def evaluate(self, svi_state: SVIState, *args, **kwargs):
        """The loss (negative objective) at the state's params, without a step."""
        bound = self._bind(args, kwargs)
        return self._eval_jit(bound.ld, bound.keyed, svi_state)

    def get_params(self, svi_state: SVIState) -> dict:
        """The learned params, constrained: the model's and the guide's (an automatic guide's
        under NumPyro's names, see `ppl.infer.autoguide`; a module's arrays as it gave them)."""
        if self._first is None:
            raise RuntimeError("SVI.get_params: call svi.init(rng_key, *args) (or svi.run) first.")
        bound = self._first
        carry = svi_state.optim_state
        fam = self._family(bound.ld, bound.keyed, carry.frame)
        named = fam.named(carry.params)
        if self._auto:
            guide_keys = [k for k in named if k.startswith("auto_")]
            model = {k: v for k, v in named.items() if k not in guide_keys}
            named = {**model, **self.guide.to_params({k: named[k] for k in guide_keys})}
        return with_modules(named, bound.statics)

    def run(self, rng_key, num_steps, *args, progress_bar=True, stable_update=False, init_state=None,
            init_params=None, **kwargs) -> SVIRunResult:
        """`num_steps` steps from `init_state` (default: `init(rng_key, ...)`), compiled as one
        loop run a chunk of about a second at a time (at least 20 chunks with the progress
        bar): `SVIRunResult(params, state, losses)`. Warns when steps were skipped for a
        non-finite loss or gradient. Ctrl-C stops it after the chunk in flight and returns the
        fit so far, with a warning (a second Ctrl-C aborts at once)."""
        if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
            raise ValueError(f"SVI.run: num_steps must be a positive integer, got {num_steps!r}.")
        num_steps = int(num_steps)
        if init_state is None:
            state = self.init(rng_key, *args, init_params=init_params, **kwargs)
        else:
            if not isinstance(init_state, SVIState):
                raise TypeError(f"SVI.run(init_state=...): give the SVIState of svi.init or of an earlier run, "
                                f"got {type(init_state).__name__}.")
            state = init_state
            if self._first is None:
                self._first = self._bind(args, kwargs)
        bound = self._bind(args, kwargs)
        before = int(state.optim_state.num_nonfinite)
        show = bool(progress_bar) and num_steps >= MAX_CHUNKS
        length = math.ceil(num_steps / MAX_CHUNKS) if show else num_steps
        losses = []

        def run_chunk(g, state, active):  # on the chunk loop's worker thread
            return jax.block_until_ready(self._chunk_jit(bound.ld, bound.keyed, state, length, active))

        def on_chunk(c: chunks.Chunk):
            losses.append(np.asarray(c.outputs)[: c.n])
            bar.update(0, c.n, loss=f"{float(losses[-1][-1]):.4g}")

        # A chunk of about a second at a time (at most `length` steps), so that Ctrl-C stops
        # the run after the chunk in flight and returns the fit so far (a second Ctrl-C aborts).
        work = [chunks.Group(state, 0, num_steps)]
        with Interrupt("svi") as interrupt, progress.Bars(show, ["SVI"], [num_steps]) as bar:
            interrupted = chunks.run(run_chunk, work, lambda g, start, n: n, length, on_chunk, concurrent=False,
                                     interrupt=interrupt)
        state, done = work[0].state, work[0].start
        if interrupted:
            warnings.warn(f"svi: interrupted after {done} of {num_steps} steps; the result holds the fit so far "
                          f"(continue with svi.run(..., init_state=result.state)).", PplWarning, stacklevel=2)
        losses = np.concatenate(losses) if losses else np.zeros((0,), np.float32)
        skipped = int(state.optim_state.num_nonfinite) - before
        if skipped:
            warnings.warn(f"svi: {skipped} of {done} steps had a non-finite loss or gradient and were skipped "
                          f"(params kept); lower the step size or check the model and guide (the count is in "
                          f"state.optim_state.num_nonfinite).", PplWarning, stacklevel=2)
        return SVIRunResult(self.get_params(state), state, jnp.asarray(losses))


__all__ = ["SVI", "SVIState", "SVIRunResult", "FitCarry"]
