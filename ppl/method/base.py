"""The interface every inference method implements, and shared post-processing."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import numpy as np
from jax.extend import core as jex_core

from ppl.compile.marginal import marginalize
from ppl.compile.subsample import subsampled_plates
from ppl.method.discrete import with_discrete
from ppl.runtime.program import jaxpr_calls_linalg, run_program
from ppl.method.flags import flag
from ppl.method.result import Result
from ppl.runtime import blas_threads


class Execution(NamedTuple):
    """What a method's `_execute` hands to its `_assemble`: the program's `outputs`, how long
    compiling (or loading) and running took, where the program came from, whether Ctrl-C
    ended the run early, and the iterations done (None for a single program)."""

    outputs: Any
    compile_s: float
    run_s: float
    source: str
    interrupted: bool = False
    iterations: Any = None


def execute_once(method, *args) -> Execution:
    """Run `type(method)._program(method, *args)` once (compiled, or reused) and wait."""
    out, compile_s, run_s, source = run_program(method, *args)
    return Execution(to_numpy(out), compile_s, run_s, source)


@dataclasses.dataclass(frozen=True)
class Method:
    """Base of all methods: a frozen record of options (hashable: a compile-cache key).

    Every method runs the same way (:meth:`run`): `check` the model and options, `_execute`
    the method's compiled program (one call, or chunk after chunk through
    `ppl.runtime.chunks`), `_assemble` the `Result` (diagnostics, flags), then the timing
    and, if Ctrl-C ended the run early, `diagnostics["interrupted"]` and its warning.

    A subclass sets `name` and implements:

    - `_program(self, *args)`: the pure function compiled into the method's program
      (`ppl.runtime.program.prepare(method, *args)` traces `type(method)._program`); its
      arguments are the key, the `LogDensity` and, for chunked methods, the run state and the
      chunk's plan;
    - `_execute(self, key, ld, checkpoint) -> execution`: runs the program; the execution
      record has `compile_s`, `run_s`, `source`, `interrupted` and `iterations`;
    - `_assemble(self, ld, execution) -> Result`;

    and may override `check` to reject models it cannot handle (raised before compiling).
    """

    name: ClassVar[str] = ""
    # The method can write and resume checkpoints (`ppl.infer(..., checkpoint=path)`).
    checkpoints: ClassVar[bool] = False
    # The method runs on continuous latents: finite discrete ones are summed out of the log
    # density (`ppl.compile.marginal`) and drawn afterwards from their conditional posterior
    # given each draw (at temperature 0: their most probable values, for point estimates).
    sums_out_discrete: ClassVar[bool] = False
    discrete_temperature: ClassVar[int] = 1

    def check(self, ld) -> None:
        """Raise a clear error if this method cannot run on the compiled model `ld`."""

    def model_for(self, ld):
        """The log density this method runs on: `ld`, or `ld` with its discrete sites summed
        out when the method `sums_out_discrete`."""
        if self.sums_out_discrete and ld.spec.discrete:
            return summed_out(ld, self.name)
        return ld

    def run(self, key, ld, checkpoint=None) -> Result:
        """Check, execute, assemble: the `Result` of this method on the compiled model `ld`."""
        self.check(ld)
        if checkpoint is not None and not self.checkpoints:
            raise ValueError(f"method '{self.name}' does not write checkpoints; drop checkpoint= or use one "
                             f"of the MCMC, VI, MLE or MAP methods.")
        summed = self.model_for(ld)
        with blas_threads.run_scope():  # a BLAS limit its groups set is kept to the run's end
            execution = self._execute(key, summed, checkpoint)
        result = self._assemble(summed, execution)
        if summed is not ld:
            result = with_discrete(result, summed, key, self.discrete_temperature)
        result.timing.update(compile_s=execution.compile_s, run_s=execution.run_s,
                             compile_source=execution.source)
        if execution.interrupted:
            result.diagnostics["interrupted"] = True
            flag(result.diagnostics, self.name,
                 f"interrupted (Ctrl-C) after {execution.iterations} iterations; the result holds what "
                 f"was done by then" + (" (run the same call again to resume from the checkpoint)"
                                        if checkpoint is not None else ""), stacklevel=3)
        return result

    def _program(self, *args):  # pragma: no cover - abstract
        raise NotImplementedError

    def _execute(self, key, ld, checkpoint):  # pragma: no cover - abstract
        raise NotImplementedError

    def _assemble(self, ld, execution) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    def expected_evaluations(self):
        """Roughly how many log-density evaluations the method's program runs, or None when
        unknown. Only compile choices use it (see `ppl.runtime.program`)."""
        return None

    def evaluation_elements(self, *args):
        """How many elements of the program's inputs ``args`` (shapes) one log-density
        evaluation works over, or None: all of them. Only compile choices use it (see
        `ppl.runtime.program`)."""
        return None


def summed_out(ld, method_name: str):
    """`ld` with its discrete sites summed out (`marginalize`) for the method
    ``method_name``, which runs on continuous latents: an error where none is left (nor a
    param), for the run would return no draws."""
    summed = marginalize(ld, method_name)
    if summed.dim == 0 and not ld.params:
        sites = ", ".join(f"'{lat.name}'" for lat in ld.spec.discrete)
        raise ValueError(
            f"method '{method_name}' runs on continuous latent sites, and this model has none once its "
            f"discrete site(s) {sites} are summed out. Their posterior is exact by enumeration: use "
            f"method='gibbs' (exact conditional draws), 'importance' (with the log evidence) or "
            f"'rejection'.")
    return summed


def require_continuous(method_name: str, ld) -> None:
    """Gradient and optimisation methods run on continuous latents: the discrete ones must
    be summable out of the log density (finite supports, a structure `marginalize` handles).

    Raises:
      ValueError: naming the site and the fix, when they are not.
    """
    marginalize(ld, method_name)


def require_whole_data(method_name: str, ld) -> None:
    """Methods that evaluate the whole data set refuse a subsampled plate: each of their
    model runs would see another random subsample (only stochastic VI is built for that)."""
    if subsampled_plates(ld):
        raise ValueError(
            f"method '{method_name}' needs the whole data set, but the model subsamples a plate "
            f"(plate(..., subsample_size=...)); drop subsample_size, or use method='vi', which draws a "
            f"new subsample at each step and scales its terms to the whole data set.")


def require_proper(method_name: str, ld) -> None:
    """Methods that draw from the prior cannot handle improper flat priors."""
    improper = [lat.name for lat in ld.spec.latents if lat.improper]
    if improper:
        raise ValueError(
            f"method '{method_name}' draws from the prior, but site '{improper[0]}' has an improper "
            f"flat prior (ImproperUniform) that cannot be drawn from; give it a proper prior or "
            f"use nuts, hmc, mh, map or vi."
        )


def draws_from_flat(ld, z):
    """Constrained draws (latents and deterministic sites) from flat `z` of shape (C, S, dim).

    Batched with `vmap`, except on a CPU when the model's forward pass takes a LAPACK-backed
    factorisation: one draw at a time then (`lax.map`), since a batched factorisation may
    block XLA's CPU pool and stop the program from running beside another (see
    `ppl.runtime.program.blocks_the_pool`)."""
    c, s = z.shape[:2]
    flat = z.reshape((c * s, -1))
    # The model's forward pass, traced once: its jaxpr is checked and then evaluated.
    closed, shape = jax.make_jaxpr(lambda zi: ld.constrain(zi, deterministic=True), return_shape=True)(flat[0])
    tree = jax.tree.structure(shape)
    constrain = lambda zi: jax.tree.unflatten(tree, jex_core.jaxpr_as_fun(closed)(zi))  # noqa: E731
    if jax.default_backend() == "cpu" and c * s > 1 and jaxpr_calls_linalg(closed.jaxpr):
        values = jax.lax.map(constrain, flat)
    else:
        values = jax.vmap(constrain)(flat)
    return jax.tree.map(lambda v: v.reshape((c, s) + v.shape[1:]), values)


def to_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def with_modules(params: dict, statics: dict) -> dict:
    """``params`` with each `module` param (a name in ``statics``: its network's non-array
    part) rebuilt into its Equinox module. Equinox is imported only for a model that has
    modules (it adds 0.2 s to an ``import``)."""
    if not any(k in statics for k in params):
        return dict(params)
    import equinox as eqx

    return {k: eqx.combine(v, statics[k]) if k in statics else v for k, v in params.items()}


def param_values(ld, params: dict) -> dict:
    """Learned params as users expect them: `module` params rebuilt into their modules."""
    return with_modules(params, getattr(ld, "module_statics", {}))
