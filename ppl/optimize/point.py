"""Point estimates with optax: maximum likelihood (`MLE`) and maximum a posteriori (`MAP`).

Latent sites are optimised in unconstrained space without the log-Jacobian, so `MAP` is
the mode of the posterior density of the original (constrained) parameters, as Stan's
`optimize` default; `MLE` drops the prior terms too. `param` sites are learned alongside.
The default optimiser is L-BFGS with a zoom line search (Nocedal & Wright 2006, Alg. 7.5
and 3.6), run to a gradient or relative-decrease tolerance inside one `lax.while_loop`.
The point returned is the best one seen (the lowest finite loss, up to rounding), as from
scipy's and Stan's optimisers, not the last iterate: a failed line search or a too-large step
on an unbounded or badly conditioned objective can end the run worse than it was. A site
whose unconstrained value runs off to infinity while the objective keeps improving is
reported by name (`boundary_sites`), not passed off as converged.

`mode_and_curvature` (a short L-BFGS climb and the Hessian by differences of the gradient,
one compiled copy of the gradient) starts VI's automatic guides.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from ppl.compile.hoist import hoist
from ppl.compile.init import check_init_values, init_error, init_option, initial_points
from ppl.runtime.program import initial_shapes, when
from ppl.method.flags import flag
from ppl.method.base import Method, draws_from_flat, param_values, require_continuous, to_numpy
from ppl.method.result import Result
from ppl.runtime.fit import blank, run_fit

BOUNDARY_FAR = 15.0  # |unconstrained value| from which a site may be running to its support's edge
BOUNDARY_PROBES = (1.0, 2.0, 4.0, 8.0)  # steps further out at which the objective must keep improving
STALL_STEPS = 50  # consecutive steps without relative progress above 10 eps before stopping
# Reported `converged`, at the point returned (the best seen): the predicted decrease of the
# step from it (for the last iterate, of the step into it) <= 1e-4 nats and |grad| <= 1e-4 *
# max(1, |loss|) there, or no progress above rounding for STALL_STEPS steps.
DECREASE_CONVERGED = 1e-4
GRADIENT_CONVERGED = 1e-4


class OptState(NamedTuple):
    """What an optimisation carries from one chunk of steps to the next: the steps done
    (``i``), the iterate ``x`` = (z, unconstrained params), the optimiser's state, the loss
    of every step, the last loss (``prev``), consecutive steps without progress
    (``stalls``), the last predicted decrease, the best point seen and the lowest finite
    loss, ``done`` (stopped), whether the start was finite (``ok``, with the start ``z0``),
    and ``started``."""

    i: Any
    x: Any
    opt: Any
    losses: Any
    prev: Any
    stalls: Any
    decrease: Any
    best: Any
    lowest: Any
    done: Any
    ok: Any
    z0: Any
    started: Any


class PointFinal(NamedTuple):
    """At the point returned: the draws (one chain, one draw), the params, whether it
    converged, its loss and gradient norm, the point itself and the gradient there."""

    draws: Any
    params: Any
    converged: Any
    loss: Any
    grad_norm: Any
    x: Any
    grad: Any


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


MODE_MEMORY = 8  # L-BFGS pairs kept by `mode_and_curvature`
MODE_STALL_STEPS = 10  # accepted steps in a row without progress above rounding that end the climb
EXACT_DIAGONAL_DIM = 128  # up to this dimension the Hessian's diagonal is computed exactly
DIAGONAL_PROBES = 32  # beyond it: Rademacher probes (Hutchinson's estimator, Bekas et al. 2007)


class Climb(NamedTuple):
    """The loop state of `mode_and_curvature`: where it is (`x`, `value`, `grad`), the L-BFGS
    memory (`s`, `y`, `rho`, `count` pairs stored), the step being tried (`direction`,
    `step`), the `phase` (0 climbing, 1 measuring curvature, 2 done), the evaluations spent
    (`i`, and `j` of the curvature phase), `stalls`, and the curvature sums `hess` (the
    Hessian's columns up to EXACT_DIAGONAL_DIM coordinates, else its diagonal)."""

    x: jax.Array
    value: jax.Array
    grad: jax.Array
    s: jax.Array
    y: jax.Array
    rho: jax.Array
    count: jax.Array
    direction: jax.Array
    step: jax.Array
    phase: jax.Array
    i: jax.Array
    j: jax.Array
    stalls: jax.Array
    hess: jax.Array


class Mode(NamedTuple):
    """What `mode_and_curvature` found: the point `x`, the loss `value` and `grad` there, the
    Hessian's diagonal `hess_diag`, and the whole Hessian `hess` (symmetrised) up to
    EXACT_DIAGONAL_DIM coordinates (None beyond)."""

    x: jax.Array
    value: jax.Array
    grad: jax.Array
    hess_diag: jax.Array
    hess: Any


def _lbfgs_direction(g, s, y, rho, count):
    """-H g by the L-BFGS two-loop recursion (Nocedal and Wright 2006, Alg. 7.4) over the
    `count` newest of the stored pairs (a ring buffer, the newest at (count - 1) % m); with
    none stored, a steepest-descent step of length 1. Both loops are `lax.scan`s: an
    unrolled loop costs XLA several times the compile time."""
    m = s.shape[0]
    order = (count - 1 - jnp.arange(m)) % m  # newest to oldest
    valid = jnp.arange(m) < count

    def backward(q, jk):
        k, ok = jk
        a = jnp.where(ok, rho[k] * jnp.dot(s[k], q), 0.0)
        return q - a * y[k], a

    q, alphas = jax.lax.scan(backward, g, (order, valid))
    newest = order[0]
    gamma = jnp.where(count > 0, jnp.dot(s[newest], y[newest]) / jnp.dot(y[newest], y[newest]),
                      1.0 / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(g.dtype).tiny))

    def forward(r, jka):
        k, ok, a = jka
        b = rho[k] * jnp.dot(y[k], r)
        return r + jnp.where(ok, a - b, 0.0) * s[k], None

    r, _ = jax.lax.scan(forward, gamma * q, (order, valid, alphas), reverse=True)
    return -r


def mode_and_curvature(loss, x0, key, max_evaluations: int) -> Mode:
    """Climb to a minimum of `loss` (a function of a flat vector) from `x0`, then measure
    its Hessian there (`Mode`). Jittable.

    One `lax.while_loop` whose every trip evaluates `loss` and its gradient once, at a point
    chosen by its phase, so that the model's gradient is compiled once:
      0. L-BFGS (Nocedal and Wright 2006, Alg. 7.5, memory MODE_MEMORY) with a backtracking
         (Armijo) line search, for at most `max_evaluations` evaluations; it stops early when
         a step's predicted decrease -g.d falls below 1e-7, after MODE_STALL_STEPS accepted
         steps without progress above rounding, or when the line search fails;
      1. forward differences of the gradient: column i of the Hessian is
         (g(x + h_i e_i) - g(x)) / h_i, for each coordinate up to EXACT_DIAGONAL_DIM (the
         result is symmetrised); beyond, only the diagonal, by Hutchinson's estimate
         E[v * H v] over DIAGONAL_PROBES Rademacher vectors v (H v by a difference along
         h * v); h = sqrt(eps) max(1, |x_i|). One evaluation per column or probe, and no
         forward-mode derivative of the model.
    `x0` must have a finite loss and gradient; the point returned is the lowest seen.
    """
    d = x0.shape[0]
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps
    exact = d <= EXACT_DIAGONAL_DIM
    probes = None if exact else jax.random.rademacher(key, (DIAGONAL_PROBES, d), dtype)
    num_curvature = d if exact else DIAGONAL_PROBES
    value_and_grad = jax.value_and_grad(loss)
    value0, grad0 = value_and_grad(x0)
    m = MODE_MEMORY

    def h_of(x):
        return jnp.sqrt(eps) * jnp.maximum(1.0, jnp.abs(x))

    def offset(j):  # the direction of curvature evaluation j
        return jax.nn.one_hot(j, d, dtype=dtype) if exact else probes[jnp.minimum(j, DIAGONAL_PROBES - 1)]

    def curvature_point(c):
        return c.x + h_of(c.x) * offset(c.j)

    def cond(c):
        return c.phase < 2

    def body(c):
        point = jnp.where(c.phase == 0, c.x + c.step * c.direction, curvature_point(c))
        value, grad = value_and_grad(point)
        return jax.lax.cond(c.phase == 0, climb, measure, c, point, value, grad)

    def climb(c, point, value, grad):
        slope = jnp.dot(c.grad, c.direction)
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & (value <= c.value + 1e-4 * c.step * slope)
        # accepted: store the pair (if it has positive curvature) and take the new direction
        sk, yk = point - c.x, grad - c.grad
        sy = jnp.dot(sk, yk)
        keep = ok & (sy > eps * jnp.linalg.norm(sk) * jnp.linalg.norm(yk))
        slot = c.count % m
        s = jnp.where(keep, c.s.at[slot].set(sk), c.s)
        y = jnp.where(keep, c.y.at[slot].set(yk), c.y)
        rho = jnp.where(keep, c.rho.at[slot].set(1.0 / jnp.where(keep, sy, 1.0)), c.rho)
        count = c.count + keep.astype(c.count.dtype)
        x = jnp.where(ok, point, c.x)
        new_value = jnp.where(ok, value, c.value)
        g = jnp.where(ok, grad, c.grad)
        direction = _lbfgs_direction(g, s, y, rho, count)
        descent = jnp.dot(g, direction) < 0  # else (rounding in the pairs) steepest descent
        direction = jnp.where(descent, direction, -g / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(dtype).tiny))
        direction = jnp.where(ok, direction, c.direction)
        step = jnp.where(ok, jnp.ones((), dtype), 0.5 * c.step)
        stalled = ok & (c.value - value <= 10 * eps * jnp.maximum(1.0, jnp.abs(value)))
        stalls = jnp.where(ok, jnp.where(stalled, c.stalls + 1, 0), c.stalls)
        i = c.i + 1
        done = (i >= max_evaluations) | (stalls >= MODE_STALL_STEPS) | (step < 1e-10) \
            | (ok & (-jnp.dot(g, direction) <= 1e-7))
        return c._replace(x=x, value=new_value, grad=g, s=s, y=y, rho=rho, count=count,
                          direction=direction, step=step, i=i, stalls=stalls,
                          phase=jnp.where(done, 1, 0).astype(c.phase.dtype))

    def measure(c, point, value, grad):
        diff = grad - c.grad  # H (h * offset), to first order
        if exact:  # column j: (g(x + h_j e_j) - g(x)) / h_j
            hess = c.hess.at[:, c.j].set(diff / h_of(c.x)[c.j])
        else:  # probe j: v * H (h v) / h / P
            hess = c.hess + offset(c.j) * diff / (h_of(c.x) * DIAGONAL_PROBES)
        j = c.j + 1
        return c._replace(hess=hess, j=j, i=c.i + 1, phase=jnp.where(j >= num_curvature, 2, 1).astype(c.phase.dtype))

    zeros = jnp.zeros((m, d), dtype)
    c0 = Climb(x=x0, value=value0, grad=grad0, s=zeros, y=zeros, rho=jnp.zeros((m,), dtype),
               count=jnp.int32(0), direction=_lbfgs_direction(grad0, zeros, zeros, jnp.zeros((m,), dtype), 0),
               step=jnp.ones((), dtype), phase=jnp.int32(0), i=jnp.int32(0), j=jnp.int32(0),
               stalls=jnp.int32(0), hess=jnp.zeros((d, d) if exact else (d,), dtype))
    c = jax.lax.while_loop(cond, body, c0)
    if not exact:
        return Mode(c.x, c.value, c.grad, c.hess, None)
    hess = (c.hess + c.hess.T) / 2
    return Mode(c.x, c.value, c.grad, jnp.diagonal(hess), hess)


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
      init: "uniform" (uniform(-2, 2) in unconstrained space), a radius r (uniform(-r, r)),
        "prior", or a dict of initial values for some sites.
      progress_bar: None (on in a terminal), True or False.
      chunk_size: steps per chunk (None: about a second of work); Ctrl-C returns the best
        point so far, and `checkpoint=` saves the optimisation after each chunk.

    Diagnostics: `loss` (per step), `final_loss`, `num_steps`, `grad_norm`, `converged`, and
    `boundary_sites`: the sites whose unconstrained value ran off towards the boundary of
    their support while the objective kept improving (an unbounded likelihood, e.g. a
    normal scale fitted to one point); each is flagged by name and makes `converged` False.

    Example:
      >>> r = ppl.infer(model, x, y=y, method=ppl.MLE(optimizer=optax.adam(1e-2), num_steps=3000))
      >>> r.params["w"]
    """

    sums_out_discrete: ClassVar[bool] = True
    discrete_temperature: ClassVar[int] = 0  # the most probable discrete values at the optimum

    optimizer: Any = None
    num_steps: int = 1000
    tolerance: float = 1e-6
    init: Any = "uniform"
    progress_bar: Any = None
    chunk_size: Optional[int] = None
    name: ClassVar[str] = "mle"
    include_prior: ClassVar[bool] = False
    checkpoints: ClassVar[bool] = True

    def check(self, ld) -> None:
        require_continuous(self.name, ld)
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"{type(self).__name__}: num_steps must be a positive int, got {self.num_steps!r}.")
        check_init_values(ld, self.init)

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

    def _loss(self, ld, x_example):
        return hoist(lambda x, ld: self._objective(ld)(x), x_example, ld)  # data-only terms once

    def _optimizer(self):
        return optax.lbfgs() if self.optimizer is None else self.optimizer

    def _initial(self, key, ld) -> OptState:
        strategy, radius, values = init_option(self.init)
        z0, ok = initial_points(ld, key, 1, strategy=strategy, radius=radius, values=values)
        x0 = (z0[0], ld.unconstrained_params(z0[0]))
        dtype = z0.dtype
        inf = jnp.asarray(jnp.inf, dtype)
        zero = jnp.zeros((), jnp.int32)
        return OptState(zero, x0, self._optimizer().init(x0), jnp.full((self.num_steps,), jnp.nan, dtype), inf,
                        zero, inf, _Point(x0, inf, inf, inf, zero), inf, jnp.asarray(False), ok[0], z0[0],
                        jnp.asarray(True))

    def _program(self, key, ld, state, chunk):
        """The steps of `chunk` (fewer if the optimiser stops) from `state` (initialised first
        if not `started`); when `chunk.last` or stopped, the final outputs at the point
        returned (the best seen)."""
        state = jax.lax.cond(state.started, lambda s: s, lambda s: self._initial(key, ld), state)
        loss = self._loss(ld, state.x)
        lbfgs = self.optimizer is None
        opt = self._optimizer()
        value_and_grad = optax.value_and_grad_from_state(loss) if lbfgs else jax.value_and_grad(loss)
        dtype = state.losses.dtype
        ftol = 10 * jnp.finfo(dtype).eps
        n = jnp.sum(chunk.active)

        def cond(c):
            j, s = c
            return (j < n) & (s.i < self.num_steps) & ~s.done

        def body(c):
            j, s = c
            i, x, prev, stalls = s.i, s.x, s.prev, s.stalls
            value, grad = value_and_grad(x, state=s.opt) if lbfgs else value_and_grad(x)
            updates, new_opt = opt.update(grad, s.opt, x, value=value, grad=grad, value_fn=loss) if lbfgs \
                else opt.update(grad, s.opt, x)
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
            done = small_step | (stalls >= STALL_STEPS) | ~finite
            decrease = jnp.where(value <= prev, decrease, jnp.inf)
            best, lowest = _keep_better(s.best, s.lowest, _Point(x, value, gnorm, decrease, i),
                                        jnp.isfinite(value) & jnp.isfinite(gnorm), ftol)
            return j + 1, OptState(i + 1, x_keep, new_opt, s.losses.at[i].set(value), value, stalls, decrease,
                                   best, lowest, done, s.ok, s.z0, s.started)

        _, state = jax.lax.while_loop(cond, body, (jnp.int32(0), state))
        stop = (chunk.last == 1) | state.done | (state.i >= self.num_steps)
        final = when(stop, lambda s: self._final(ld, loss, s, ftol), state)
        return state, final

    def _final(self, ld, loss, s: OptState, ftol) -> PointFinal:
        # The last iterate was never scored inside the loop: score it, and keep it only if it
        # is as good as the best point the loop saw, up to rounding (never if not finite).
        value, grad = jax.value_and_grad(loss)(s.x)
        last = _Point(s.x, value, optax.tree.norm(grad), s.decrease, s.i)
        point, _ = _keep_better(s.best, s.lowest, last, jnp.isfinite(last.loss) & jnp.isfinite(last.grad_norm), ftol)
        z, uparams = point.x
        tr = ld.run(z, uparams)
        params = {site.name: site.value for site in tr.sites("param")}
        draws = draws_from_flat(ld, z[None, None])
        # Converged, judged at the point returned: the step taken from it predicted a negligible
        # decrease and its gradient is small, or it lies on the final plateau of STALL_STEPS or
        # more steps without progress above rounding (the precision floor: float32 losses
        # jitter by ~eps |loss| at the optimum). A best point left before the run stalled
        # elsewhere is not converged.
        on_plateau = (s.stalls >= STALL_STEPS) & (point.step >= s.i - s.stalls - 1)
        converged = ((point.decrease <= DECREASE_CONVERGED)
                     & (point.grad_norm <= GRADIENT_CONVERGED * jnp.maximum(1.0, jnp.abs(point.loss)))) \
            | on_plateau
        return PointFinal(draws, params, converged, point.loss, point.grad_norm, point.x, jax.grad(loss)(point.x))

    def _execute(self, key, ld, checkpoint):
        return run_fit(self, key, ld, checkpoint, blank(initial_shapes(self, key, ld)), self.num_steps,
                       done=lambda s: bool(s.done))

    def _postfix(self, state) -> dict:
        return {"loss": f"{float(state.prev):.6g}"}

    def _assemble(self, ld, run) -> Result:
        state, out = run.state, to_numpy(run.final)
        if not bool(state.ok):
            raise init_error(ld, np.asarray(state.z0), 100)
        steps = int(state.i)
        finite = bool(np.isfinite(out.loss)) and bool(np.isfinite(out.grad_norm))
        diagnostics = {
            "loss": np.asarray(state.losses)[:steps],
            "final_loss": float(out.loss),
            "num_steps": steps,
            "converged": bool(out.converged) and finite and not run.interrupted,
            "grad_norm": float(out.grad_norm),
        }
        boundary = self._boundary(ld, out.x, out.grad, float(out.loss)) if finite else {}
        diagnostics["boundary_sites"] = sorted(boundary)
        if boundary:
            diagnostics["converged"] = False
            for site, u in boundary.items():
                flag(diagnostics, self.name, self._boundary_message(ld, site, u))
        elif not bool(out.converged) and not run.interrupted:
            flag(diagnostics, self.name,
                 f"not converged after {steps} of {self.num_steps} steps (gradient norm "
                 f"{float(out.grad_norm):.3g}); raise num_steps, try another optimizer, or check "
                 f"that the objective is bounded (an unbounded likelihood has no maximum)")
        latents = {lat.name: out.draws[lat.name][0, 0] for lat in ld.spec.latents}
        return Result(method=self, samples=out.draws, params={**latents, **param_values(ld, out.params)},
                      diagnostics=diagnostics, log_density=ld)

    # -- a site running to the boundary of its support ---------------------------------------
    def _boundary(self, ld, x, grad, value) -> dict:
        """Sites whose unconstrained coordinate runs off to infinity at the point returned:
        {site: coordinate}. A coordinate counts when it is far out (|u| >= BOUNDARY_FAR), the
        gradient pulls it further out, and the objective keeps improving along that direction
        at every one of BOUNDARY_PROBES steps (1 to 8 units) or stops being finite there (the
        edge of the floating-point range). The probes, one vmapped loss, run only where some
        coordinate passes the first two tests."""
        flat, unravel = ravel_pytree(x)
        flat, g = np.asarray(flat), np.asarray(ravel_pytree(grad)[0])
        cand = np.flatnonzero((np.abs(flat) >= BOUNDARY_FAR) & (g * flat < 0))
        if cand.size == 0:
            return {}
        loss = self._objective(ld)
        steps = np.asarray(BOUNDARY_PROBES, flat.dtype)
        outward = np.sign(flat[cand])
        points = np.repeat(flat[None, None], cand.size, 0).repeat(steps.size, 1)  # (cand, probe, n)
        points[np.arange(cand.size), :, cand] += outward[:, None] * steps[None]
        values, grads = jax.jit(jax.vmap(jax.vmap(jax.value_and_grad(lambda p: loss(unravel(p))))))(jnp.asarray(points))
        values, grads = np.asarray(values), np.asarray(grads)
        tol = 10 * np.finfo(flat.dtype).eps * max(1.0, abs(value))
        seq = np.concatenate([np.full((cand.size, 1), value), values], axis=1)
        steps_down = np.diff(seq, axis=1)
        # Improving: each probe's objective below the last by more than rounding, or, where the
        # improvements are below the rounding of the objective's value (in float32, a separable
        # logistic regression's loss of 4e-7 improves by 1e-7 a unit: the tolerance is 1.2e-6),
        # no probe above the last and the slope outwards still downhill at every probe.
        slope = grads[np.arange(cand.size), :, cand] * outward[:, None]
        improving = np.all(steps_down < -tol, axis=1) | (np.all(steps_down <= tol, axis=1) & np.all(slope < 0, axis=1))
        off_range = ~np.all(np.isfinite(values), axis=1)
        labels = _coordinate_sites(ld, x)
        return {labels[i]: float(flat[i]) for i in cand[improving | off_range]}

    def _boundary_message(self, ld, site, u) -> str:
        kind = "latent" if site in {lat.name for lat in ld.spec.latents} else "param"
        edge = "+inf" if u > 0 else "-inf"
        fix = ("put a prior on it that vanishes at that boundary and use method=\"map\", add data, or "
               "give it a bounded parameterisation" if self.name == "mle" else
               "give it a prior that vanishes at that boundary (e.g. Gamma(2, rate) or LogNormal for a "
               "scale, not HalfNormal or HalfCauchy), or use a method that averages over it "
               "(method=\"nuts\" or \"vi\")")
        return (f"{kind} site '{site}' ran to the boundary of its support: its unconstrained value "
                f"reached {u:.3g} and the objective still improves towards {edge} (or leaves the "
                f"floating-point range), so the {'likelihood' if self.name == 'mle' else 'posterior density'} "
                f"has no maximum and the point returned is not an estimate; {fix}")


def _coordinate_sites(ld, x) -> list:
    """The site name of each coordinate of `ravel_pytree(x)`, x = (z, unconstrained params)."""
    _, uparams = x
    labels = [None] * ld.dim
    for lat in ld.spec.latents:
        labels[lat.offset: lat.offset + lat.size] = [lat.name] * lat.size
    for path, leaf in jax.tree_util.tree_flatten_with_path(uparams)[0]:
        name = getattr(path[0], "key", jax.tree_util.keystr(path)) if path else "param"
        labels += [name] * int(np.size(leaf))
    return labels


@dataclasses.dataclass(frozen=True)
class MAP(MLE):
    """Maximum a posteriori: maximise log prior + log likelihood of the constrained values
    (no Jacobian term, as Stan's `optimize`). Options as `MLE`."""

    name: ClassVar[str] = "map"
    include_prior: ClassVar[bool] = True
