"""Point estimates with optax: maximum likelihood (`MLE`) and maximum a posteriori (`MAP`).

Latent sites are optimised in unconstrained space without the log-Jacobian, so `MAP` is
the mode of the posterior density of the original (constrained) parameters, as Stan's
`optimize` default; `MLE` drops the prior terms too. `param` sites are learned alongside.
The default optimiser is L-BFGS with a zoom line search (Nocedal & Wright 2006, Alg. 7.5
and 3.6), run to a gradient or relative-decrease tolerance inside one `lax.while_loop`.
The point returned is the best one seen (the lowest finite loss, up to rounding), as from
scipy's and Stan's optimisers, not the last iterate: a failed line search or a too-large step
on an unbounded or badly conditioned objective can end the run worse than it was.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.compile.hoist import hoist
from ppl.compile.init import init_error, initial_points
from ppl.infer._program import run_program
from ppl.infer.method import Method, draws_from_flat, param_values, require_continuous, to_numpy
from ppl.infer.result import Result

STALL_STEPS = 50  # consecutive steps without relative progress above 10 eps before stopping
# Reported `converged`, at the point returned (the best seen): the predicted decrease of the
# step from it (for the last iterate, of the step into it) <= 1e-4 nats and |grad| <= 1e-4 *
# max(1, |loss|) there, or no progress above rounding for STALL_STEPS steps.
DECREASE_CONVERGED = 1e-4
GRADIENT_CONVERGED = 1e-4


class _Point(NamedTuple):
    """An iterate with what the stop rule judges it by: its loss, gradient norm, the
    predicted decrease |grad . step| of the step taken from it (for the last iterate, which
    no step left, of the step into it; inf where that step's start had raised the loss), and
    its index (the starting point is 0)."""

    x: Any
    loss: jax.Array
    grad_norm: jax.Array
    decrease: jax.Array
    step: jax.Array


def _keep_better(best: _Point, lowest, candidate: _Point, finite, ftol) -> tuple[_Point, Any]:
    """The best point after seeing `candidate`, and the lowest finite loss seen so far.

    `candidate` takes over where it is finite and its loss is within rounding (`ftol`
    relative) of the lowest seen: of points equal up to rounding the latest is kept (float32
    losses jitter by ~eps |loss| near an optimum, where the later point has the smaller
    gradient), and the loss returned is never above the lowest by more than rounding. A
    non-finite loss never becomes the best. Elementwise, so it works under `vmap`.
    """
    take = finite & (candidate.loss <= lowest + ftol * jnp.maximum(1.0, jnp.abs(lowest)))
    best = jax.tree.map(lambda c, b: jnp.where(take, c, b), candidate, best)
    return best, jnp.where(finite, jnp.minimum(lowest, candidate.loss), lowest)


@dataclasses.dataclass(frozen=True)
class MLE(Method):
    """Maximum likelihood: maximise the log density of observed (and factor) sites.

    Args:
      optimizer: an optax `GradientTransformation`; None means `optax.lbfgs()`.
      num_steps: maximum number of optimiser steps.
      tolerance: stop when a step's predicted decrease of the loss, |grad . step| (in nats:
        for L-BFGS about the Newton decrement g' H^-1 g), is at most `tolerance`, the loss
        did not rise, and the gradient norm is at most `tolerance * max(1, |loss|)`; L-BFGS
        also stops when the loss no longer decreases above rounding. (The gradient test
        alone would stop at once far from an optimum whose loss has a large offset; the
        decrease test alone would stop at a stuck line search.)
      init: "uniform" (uniform(-2, 2) in unconstrained space) or "prior", or a dict of
        initial values for some sites.

    Example:
      >>> r = ppl.infer(model, x, y=y, method=ppl.MLE(optimizer=optax.adam(1e-2), num_steps=3000))
      >>> r.params["w"]
    """

    optimizer: Any = None
    num_steps: int = 1000
    tolerance: float = 1e-6
    init: Any = "uniform"
    name: ClassVar[str] = "mle"
    include_prior: ClassVar[bool] = False

    def check(self, ld) -> None:
        require_continuous(self.name, ld)
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"{type(self).__name__}: num_steps must be a positive int, got {self.num_steps!r}.")

    def expected_evaluations(self):
        # L-BFGS's line search tries about one to three points a step; other optimisers one.
        return self.num_steps * (3 if self.optimizer is None else 1)

    def _objective(self, ld):
        def loss(x):
            z, uparams = x
            lj = ld.log_joint(z, uparams)
            value = lj.likelihood + (lj.prior if self.include_prior else 0.0)
            return -value

        return loss

    def _program(self, key, ld):
        strategy, values = (self.init, None) if isinstance(self.init, str) else ("uniform", dict(self.init))
        z0, ok = initial_points(ld, key, 1, strategy=strategy, values=values)
        x0 = (z0[0], ld.unconstrained_params(z0[0]))
        loss = hoist(lambda x, ld: self._objective(ld)(x), x0, ld)  # data-only terms once
        lbfgs = self.optimizer is None
        opt = optax.lbfgs() if lbfgs else self.optimizer
        value_and_grad = optax.value_and_grad_from_state(loss) if lbfgs else jax.value_and_grad(loss)
        dtype = z0.dtype
        ftol = 10 * jnp.finfo(dtype).eps

        def cond(c):
            i, done = c[0], c[-1]
            return (i < self.num_steps) & ~done

        def body(c):
            i, x, state, losses, prev, stalls, _, (best, lowest), _ = c
            value, grad = value_and_grad(x, state=state) if lbfgs else value_and_grad(x)
            updates, new_state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss) if lbfgs \
                else opt.update(grad, state, x)
            x_new = optax.apply_updates(x, updates)
            gnorm = optax.tree.norm(grad)
            decrease = jnp.abs(optax.tree.vdot(grad, updates))
            finite = jnp.isfinite(value) & jnp.isfinite(gnorm) & jnp.isfinite(decrease)
            # Both a small predicted decrease and a small gradient: alone, the first is also
            # met by a stuck line search (a tiny step with a large gradient), the second far
            # from the optimum when the loss is large (a big constant offset).
            small_grad = gnorm <= self.tolerance * jnp.maximum(1.0, jnp.abs(value))
            small_step = (decrease <= self.tolerance) & (value <= prev) & small_grad
            # tolerance=0 runs every step; only L-BFGS stops on a long stall (its line search
            # can make no more progress in this precision).
            no_progress = (self.tolerance > 0) & lbfgs & (i > 0) & \
                (jnp.abs(prev - value) <= ftol * jnp.maximum(1.0, jnp.abs(value)))
            stalls = jnp.where(no_progress, stalls + 1, 0)
            x_keep = jax.tree.map(lambda a, b: jnp.where(finite, a, b), x_new, x)
            losses = losses.at[i].set(value)
            done = small_step | (stalls >= STALL_STEPS) | ~finite
            decrease = jnp.where(value <= prev, decrease, jnp.inf)
            best = _keep_better(best, lowest, _Point(x, value, gnorm, decrease, i),
                                jnp.isfinite(value) & jnp.isfinite(gnorm), ftol)
            return i + 1, x_keep, new_state, losses, value, stalls, decrease, best, done

        state0 = opt.init(x0)
        losses0 = jnp.full((self.num_steps,), jnp.nan, dtype)
        inf = jnp.asarray(jnp.inf, dtype)
        best0 = _Point(x0, inf, inf, inf, jnp.int32(0))
        carry = (jnp.int32(0), x0, state0, losses0, inf, jnp.int32(0), inf, (best0, inf), jnp.bool_(False))
        steps, x_last, _, losses, _, stalls, decrease, (best, lowest), _ = jax.lax.while_loop(cond, body, carry)
        # The last iterate was never scored inside the loop: score it, and keep it only if it
        # is as good as the best point the loop saw, up to rounding (never if not finite).
        value, grad = jax.value_and_grad(loss)(x_last)
        last = _Point(x_last, value, optax.tree.norm(grad), decrease, steps)
        point, _ = _keep_better(best, lowest, last, jnp.isfinite(last.loss) & jnp.isfinite(last.grad_norm), ftol)
        z, uparams = point.x
        tr = ld.run(z, uparams)
        params = {s.name: s.value for s in tr.sites("param")}
        draws = draws_from_flat(ld, z[None, None])
        # Converged, judged at the point returned: the step taken from it predicted a negligible
        # decrease and its gradient is small, or it lies on the final plateau of STALL_STEPS or
        # more steps without progress above rounding (the precision floor: float32 losses
        # jitter by ~eps |loss| at the optimum). A best point left before the run stalled
        # elsewhere is not converged.
        on_plateau = (stalls >= STALL_STEPS) & (point.step >= steps - stalls - 1)
        converged = ((point.decrease <= DECREASE_CONVERGED)
                     & (point.grad_norm <= GRADIENT_CONVERGED * jnp.maximum(1.0, jnp.abs(point.loss)))) \
            | on_plateau
        return dict(draws=draws, params=params, losses=losses, steps=steps, converged=converged,
                    loss=point.loss, grad_norm=point.grad_norm, ok=ok[0], z=z, z0=z0[0])

    def run(self, key, ld) -> Result:
        self.check(ld)
        out, compile_s, run_s, source = run_program(self, key, ld)
        if not bool(out["ok"]):
            raise init_error(ld, out["z0"], 100)
        out = to_numpy(out)
        steps = int(out["steps"])
        if not bool(out["converged"]):
            warnings.warn(
                f"{self.name}: not converged after {steps} of {self.num_steps} steps (gradient norm "
                f"{float(out['grad_norm']):.3g}); raise num_steps, try another optimizer, or check "
                f"that the objective is bounded (an unbounded likelihood has no maximum).",
                stacklevel=3,
            )
        latents = {lat.name: out["draws"][lat.name][0, 0] for lat in ld.spec.latents}
        return Result(
            method=self,
            samples=out["draws"],
            params={**latents, **param_values(ld, out["params"])},
            diagnostics={
                "loss": out["losses"][:steps],
                "final_loss": float(out["loss"]),
                "num_steps": steps,
                "converged": bool(out["converged"]) and bool(np.isfinite(out["loss"]))
                and bool(np.isfinite(out["grad_norm"])),
                "grad_norm": float(out["grad_norm"]),
            },
            timing={"compile_s": compile_s, "run_s": run_s, "compile_source": source},
            log_density=ld,
        )


@dataclasses.dataclass(frozen=True)
class MAP(MLE):
    """Maximum a posteriori: maximise log prior + log likelihood of the constrained values
    (no Jacobian term, as Stan's `optimize`). Options as `MLE`."""

    name: ClassVar[str] = "map"
    include_prior: ClassVar[bool] = True
