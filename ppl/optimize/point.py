"""Point estimates with optax: maximum likelihood (`MLE`) and maximum a posteriori (`MAP`).

Latent sites are optimised in unconstrained space without the log-Jacobian, so `MAP` is
the mode of the posterior density of the original (constrained) parameters, as Stan's
`optimize` default; `MLE` drops the prior terms too. `param` sites are learned alongside.
The default optimiser is L-BFGS with a zoom line search (Nocedal & Wright 2006, Alg. 7.5
and 3.6), run to a gradient or relative-decrease tolerance inside one `lax.while_loop`.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.compile.init import init_error, initial_points
from ppl.infer._program import run_program
from ppl.infer.method import Method, draws_from_flat, param_values, require_continuous, to_numpy
from ppl.infer.result import Result

STALL_STEPS = 50  # consecutive steps without relative progress above 10 eps before stopping
# Reported `converged`: the last step's predicted decrease <= 1e-4 nats and |grad| <= 1e-4 *
# max(1, |loss|) at the end, or no progress above rounding for STALL_STEPS steps.
DECREASE_CONVERGED = 1e-4
GRADIENT_CONVERGED = 1e-4


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
        loss = self._objective(ld)
        lbfgs = self.optimizer is None
        opt = optax.lbfgs() if lbfgs else self.optimizer
        value_and_grad = optax.value_and_grad_from_state(loss) if lbfgs else jax.value_and_grad(loss)
        dtype = z0.dtype
        ftol = 10 * jnp.finfo(dtype).eps

        def cond(c):
            i, done = c[0], c[-1]
            return (i < self.num_steps) & ~done

        def body(c):
            i, x, state, losses, prev, stalls, _, _ = c
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
            return i + 1, x_keep, new_state, losses, value, stalls, decrease, done

        state0 = opt.init(x0)
        losses0 = jnp.full((self.num_steps,), jnp.nan, dtype)
        inf = jnp.asarray(jnp.inf, dtype)
        carry = (jnp.int32(0), x0, state0, losses0, inf, jnp.int32(0), inf, jnp.bool_(False))
        steps, (z, uparams), _, losses, last, stalls, decrease, _ = jax.lax.while_loop(cond, body, carry)
        tr = ld.run(z, uparams)
        params = {s.name: s.value for s in tr.sites("param")}
        draws = draws_from_flat(ld, z[None, None])
        value, grad = jax.value_and_grad(loss)((z, uparams))
        grad_norm = optax.tree.norm(grad)
        # Converged: the last step predicted a negligible decrease with a small gradient, or
        # no progress above rounding for STALL_STEPS steps (the precision floor: float32
        # losses jitter by ~eps |loss| at the optimum).
        converged = ((decrease <= DECREASE_CONVERGED)
                     & (grad_norm <= GRADIENT_CONVERGED * jnp.maximum(1.0, jnp.abs(value)))) | (stalls >= STALL_STEPS)
        return dict(draws=draws, params=params, losses=losses, steps=steps, converged=converged,
                    grad_norm=grad_norm, ok=ok[0], z=z, z0=z0[0])

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
                "final_loss": float(out["losses"][steps - 1]) if steps else float("nan"),
                "num_steps": steps,
                "converged": bool(out["converged"]) and bool(np.isfinite(out["grad_norm"])),
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
