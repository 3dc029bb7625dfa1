"""`VI`: variational inference by stochastic optimisation of an ELBO or IWAE bound.

All optimiser steps run in one compiled program (`lax.scan`), with the particles of each
step a `vmap` axis. Gradients are reparameterised (Kingma and Welling 2014) except through
sites that cannot be (discrete ones in a guide function), which get a score-function term
with a moving-average baseline (Ranganath et al. 2014). A step whose objective or gradient
is not finite is skipped (the parameters and optimiser state are kept) and counted in
`diagnostics["num_nonfinite_steps"]`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

from ppl.runtime.program import initial_shapes, when
from ppl.method.flags import flag
from ppl.method.base import Method, param_values, summed_out, to_numpy, with_modules
from ppl.method.psis import K_UNRELIABLE, pareto_k, unreliable
from ppl.method.result import Result
from ppl.runtime.fit import blank, run_fit, steps
from ppl.compile.subsample import subsampled_plates
from ppl.vi.families import AutoFamily, FunctionFamily, check_guide_function
from ppl.vi.guides import AUTO_GUIDE_TYPES, GUIDES, Flow
from ppl.vi.objectives import ELBO, IWAE, OBJECTIVE_TYPES

MEMORY_BUDGET_BYTES = 1 << 30


class FitState(NamedTuple):
    """What the fit carries from one chunk of steps to the next: the learnable ``params``
    (the guide's and the model's), the optimiser's state, the score-function ``baseline``,
    the guide's ``frame`` (automatic guides), the ``losses`` and ``good`` flags of every
    step so far, whether the start point was finite (``ok``), and ``started``."""

    params: Any
    opt: Any
    baseline: Any
    frame: Any
    losses: Any
    good: Any
    ok: Any
    started: Any


class Final(NamedTuple):
    """The fitted guide's outputs: draws (latents and deterministic sites, (1, num_draws,
    ...)), the learned values, the bound and its standard error, the ELBO, the importance
    estimate of log p(x), the joint log weights of the evaluation draws, and whether the
    model subsamples."""

    draws: Any
    named: Any
    bound: Any
    se: Any
    elbo: Any
    log_evidence_is: Any
    log_weights: Any
    keyed: Any


def default_optimizer(num_steps: int):
    """Adam (Kingma and Ba 2015) with a learning rate decaying from 3e-2 to 1e-3 along a
    cosine over `num_steps` (large early steps, small final noise around the optimum).
    For neural networks (VAE encoders and decoders) pass e.g. `optax.adam(1e-3)`."""
    return optax.adam(optax.cosine_decay_schedule(3e-2, num_steps, alpha=1 / 30))


def surrogate_and_value(fam, objective, params, key, baseline, plate=None):
    """`(surrogate, objective value)` of one step's particles of the family `fam` at
    `params` (one minibatch per step); the surrogate's gradient estimates the objective's."""
    n = objective.particles_per_step
    k_batch, key = jax.random.split(key) if fam.keyed else (None, key)
    if n == 1:  # no batch axis of size 1: plain (not batched) matrix products
        ps = jax.tree.map(lambda v: v[None], fam.particle(params, key, plate, k_batch))
    else:
        batch_keys = None if k_batch is None else jnp.broadcast_to(k_batch, (n,) + k_batch.shape)
        ps = fam.particles(params, key, n, plate, batch_keys)
    return objective.surrogate(ps, baseline)


def fit_step(fam, objective, opt, params, opt_state, baseline, key, plate=None):
    """One optimiser step of a variational fit (used by `VI` and by `ppl.infer.SVI`):
    `(params, opt_state, baseline, objective value, good)`.

    The objective is estimated by `surrogate_and_value`, its surrogate differentiated and the
    optax transformation `opt` applied. A step whose objective or gradient is not finite is
    skipped (params, optimiser state and baseline kept) and `good` is False; the
    score-function baseline is a moving average of the objective.
    """
    def loss(p):
        surrogate, value = surrogate_and_value(fam, objective, p, key, baseline, plate)
        return -surrogate, value

    (_, value), grad = jax.value_and_grad(loss, has_aux=True)(params)
    updates, new_opt = opt.update(grad, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    good = jnp.isfinite(value) & jnp.isfinite(optax.tree.norm(grad))
    if fam.has_score:  # the score-function baseline: a moving average of the objective
        d = objective.baseline_decay
        new_baseline = jnp.where(jnp.isnan(baseline), value, d * baseline + (1 - d) * value)
        baseline = jnp.where(good, new_baseline, baseline)
    # One branch for the whole state rather than a select per array: the same values, and
    # a smaller program to compile (a network's params and optimiser state are many arrays).
    params, opt_state = jax.lax.cond(good, lambda: (new_params, new_opt), lambda: (params, opt_state))
    return params, opt_state, baseline, value, good


TREND_MIN_WINDOW = 25  # steps in each of the two final windows, at least
TREND_BATCHES = 5  # batch means per window, for the noise of a window's mean
TREND_Z = 4.0  # a change beyond this many standard errors is not noise
TREND_MIN_CHANGE = 0.1  # nats: a smaller change of the mean loss is negligible, significant or not


class LossTrend(NamedTuple):
    """`change`: mean loss over the window before the last minus over the last (> 0: still
    falling); `se`: its standard error; `window`: steps per window; `moving`: whether the
    change is beyond both TREND_Z standard errors and TREND_MIN_CHANGE nats."""

    change: float
    se: float
    window: int
    moving: bool


def loss_trend(losses) -> Optional[LossTrend]:
    """Whether the loss is still moving at the end of a fit, judged against its own noise.

    Compares the mean loss over the last W = max(TREND_MIN_WINDOW, S // 10) steps with the
    mean over the W before (S steps in all; W a multiple of TREND_BATCHES). The noise comes
    from batch means (TREND_BATCHES per window; batches absorb the steps' autocorrelation, as
    in Flegal and Jones 2010): the scatter of the 2 TREND_BATCHES batch means about a straight
    line through them, so that a steady trend does not count as noise. Non-finite losses
    (skipped steps) are left out. None when the run is shorter than two windows or more than
    half of some batch is not finite.
    """
    losses = np.asarray(losses, np.float64)
    window = max(TREND_MIN_WINDOW, losses.shape[0] // 10) // TREND_BATCHES * TREND_BATCHES
    if losses.shape[0] < 2 * window:
        return None
    halves = losses[losses.shape[0] - 2 * window:].reshape(2, TREND_BATCHES, -1)  # (window, batch, steps)
    halves = np.where(np.isfinite(halves), halves, np.nan)
    if np.isnan(halves).mean(axis=-1).max() > 0.5:
        return None
    batch_means = np.nanmean(halves, axis=-1).ravel()  # 2 B batch means, in order
    t = np.arange(batch_means.shape[0], dtype=np.float64)
    residuals = batch_means - np.polyval(np.polyfit(t, batch_means, 1), t)
    var = np.sum(residuals**2) / (batch_means.shape[0] - 2)  # noise of one batch mean
    se = float(np.sqrt(2 * var / TREND_BATCHES))
    change = float(batch_means[:TREND_BATCHES].mean() - batch_means[TREND_BATCHES:].mean())
    moving = abs(change) > max(TREND_Z * se, TREND_MIN_CHANGE)
    return LossTrend(change, se, window, bool(moving))


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"VI: {name} must be a positive int, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class VI(Method):
    """Variational inference: fit a guide q to the posterior by maximising a bound.

    Args:
      guide: "mean_field", "full_rank", "low_rank", "flow", "delta" (see `ppl.vi.guides`;
        pass e.g. `ppl.vi.LowRank(rank=3)` or `ppl.vi.Flow(num_layers=8)` for options), or
        a guide function taking the model's arguments, with one `ppl.sample` site per model
        latent (same name and shape) and `ppl.param`/`ppl.module` for its parameters.
      objective: `ppl.ELBO(beta=1.0, num_particles=1)` or `ppl.IWAE(k=10)`.
      optimizer: an optax `GradientTransformation`; None means `default_optimizer(num_steps)`
        (Adam, learning rate cosine-decayed from 3e-2 to 1e-3). For automatic guides it
        acts in the frame's units (about one posterior sd), for guide functions on their
        params as written.
      num_steps: optimiser steps.
      num_draws: draws from the fitted guide in `Result.samples` (shape (1, num_draws, ...)).
      num_eval_particles: particles for the final estimate of the bound (>= 1000 advised).
      progress_bar: None (on in a terminal), True or False.
      chunk_size: optimiser steps per chunk (None: about a second of work); the fit runs
        chunk by chunk (Ctrl-C returns the fit so far; `checkpoint=` saves it).

    Minibatches: a plate with `subsample_size` scales its sites' log densities by
    size / subsample_size in model and guide alike, so each step's objective is unbiased
    for the full data; a guide function's plate indices are replayed into the model's
    plate of the same name (write the guide with the same plate); the particles of one step
    (and each group of k in the final IWAE estimate) share one minibatch. Automatic guides need
    every latent outside subsampled plates (global latents); local latents call for an
    amortised guide function (an encoder registered with `ppl.module`).

    The result has `samples` (latents and deterministic sites drawn from the fitted guide),
    `params` (learned model params and guide params: a guide function's by its names, an
    automatic guide's as `auto_loc`, `auto_scale`, `auto_scale_tril`, `auto_cov_factor`,
    `auto_cov_diag`, `auto_flow`; `module` params as Equinox modules), `log_evidence` (the
    objective's bound re-estimated with `num_eval_particles`), and `diagnostics`: `loss`
    (negative objective per step), `log_evidence_se`, `elbo`, `log_evidence_is` (log-mean-exp
    of all final weights, per element with `IWAE(plate=...)`: the importance-sampling
    estimate, a tighter stochastic bound), `num_nonfinite_steps`, `converged` (False when the
    loss was still moving over the last tenth of the steps, judged against its own noise:
    `loss_trend`), and `pareto_k` (PSIS k̂ of the final draws' importance weights
    p(x, z) / q(z), the guide as proposal as in Yao et al. 2018, "Yes, but did it work?";
    None for a point mass or a subsampling model). Each problem is also flagged (a warning,
    kept in `diagnostics["warnings"]`): skipped steps, a fit not converged, k̂ above 0.7.

    Automatic guides start at a mode of the target found by a short L-BFGS climb and are
    fitted in the units of the curvature there (`ppl.vi.families.find_frame`), so the
    defaults work wherever the posterior sits and whatever its scale; the optimiser's
    learning rate is then in posterior sds.

    Point-mass guides give no evidence bound: with guide="delta", or a guide function with a
    `dist.Delta` site on a continuous latent, `log_evidence`, `log_evidence_se`, `elbo` and
    `log_evidence_is` are None. Fitting such a guide is MAP (Stan's `optimize`): its `loss` is
    -log p(x, z) at the point, and log p(x, z*) is no bound on log p(x) (a point mass has
    entropy -inf). For an evidence estimate use another guide, `ppl.IWAE`, or
    method="importance".

    Raises:
      ValueError: an unknown guide or objective; an automatic guide on a model with
        discrete latents or with latents inside a subsampled plate (use a guide function);
        a guide function whose sample sites miss or add a model latent (named).

    Example:
      >>> r = ppl.infer(model, x, method=ppl.VI(guide="full_rank", num_steps=3000), key=0)
      >>> r.samples["mu"].shape, r.log_evidence
      >>> r = ppl.infer(model, x, method=ppl.VI(objective=ppl.IWAE(k=50)))
    """

    guide: Any = "mean_field"
    objective: Any = ELBO()
    optimizer: Any = None
    num_steps: int = 2000
    num_draws: int = 1000
    num_eval_particles: int = 1000
    progress_bar: Any = None
    chunk_size: Optional[int] = None
    name: ClassVar[str] = "vi"
    checkpoints: ClassVar[bool] = True

    # -- options --------------------------------------------------------------------------
    def _guide(self):
        if isinstance(self.guide, str):
            if self.guide not in GUIDES:
                raise ValueError(f"VI: unknown guide {self.guide!r}; choose one of {sorted(GUIDES)} or pass a guide function.")
            return GUIDES[self.guide]()
        if isinstance(self.guide, AUTO_GUIDE_TYPES) or callable(self.guide):
            return self.guide
        raise ValueError(f"VI: guide must be one of {sorted(GUIDES)}, a ppl.vi guide object or a guide function; got {self.guide!r}.")

    def _is_auto(self) -> bool:
        return isinstance(self._guide(), AUTO_GUIDE_TYPES)

    def check(self, ld) -> None:
        self._check(self.model_for(ld))

    def model_for(self, ld):
        """An automatic guide is continuous: the model's finite discrete sites are summed
        out of its log density (as NumPyro's TraceEnum_ELBO does) and drawn afterwards; a
        guide function gives them a guide of its own (fitted with a score-function term)."""
        if self._is_auto() and ld.spec.discrete:
            if subsampled_plates(ld):
                raise ValueError(
                    f"VI: the model's discrete site '{ld.spec.discrete[0].name}' is summed out of the "
                    f"log density, which needs the whole data set at each step; drop subsample_size "
                    f"or write a guide function with a discrete ppl.sample site for it.")
            return summed_out(ld, self.name)
        return ld

    def _check(self, ld) -> tuple[dict, bool]:
        """Validate options and model; return the guide function's module statics and whether
        the guide is a point mass on a continuous latent (then it gives no evidence bound)."""
        if not isinstance(self.objective, OBJECTIVE_TYPES):
            raise ValueError(f"VI: objective must be ppl.ELBO(...) or ppl.IWAE(...), got {self.objective!r}.")
        self.objective.check()
        for name in ("num_steps", "num_draws", "num_eval_particles"):
            _positive_int(name, getattr(self, name))
        guide = self._guide()
        if not self._is_auto():
            statics, points = check_guide_function(ld, guide)
            return statics, bool(points)
        if getattr(self.objective, "plate", None) is not None:
            raise ValueError(
                f"VI: IWAE(plate={self.objective.plate!r}) computes the bound per plate element, which "
                f"needs a guide function whose density factorises over it; the automatic guide "
                f"{type(guide).__name__} is one joint density. Use plate=None or a guide function."
            )
        for lat in ld.spec.latents:
            sub = [p.name for p in lat.plates if p.subsample_size < p.size]
            if sub:
                raise ValueError(
                    f"VI: latent site '{lat.name}' is inside subsampled plate '{sub[0]}', so each run "
                    f"sees different elements of it; an automatic guide over a fixed vector cannot "
                    f"follow them. Write an amortised guide function (e.g. an encoder registered "
                    f"with ppl.module) or drop subsample_size."
                )
        return {}, bool(getattr(guide, "point", False)) and bool(ld.spec.continuous)

    # -- flags ------------------------------------------------------------------------------
    def _flag(self, diagnostics, bad, trend, heavy: bool) -> None:
        """Flag skipped steps, a fit still moving at its end, and (`heavy`) a guide whose
        importance weights have a Pareto k̂ above 0.7 (`ppl.method.psis.unreliable`), each
        through `ppl.method.flags.flag`."""
        name = "iwae" if isinstance(self.objective, IWAE) else "vi"
        if bad > 0.1 * self.num_steps:
            flag(diagnostics, name, f"{bad} of {self.num_steps} steps had a non-finite objective or "
                 f"gradient and were skipped; lower the learning rate or check the model", stacklevel=4)
        if trend is not None and trend.moving:
            if trend.change > 0:
                how, where = "still falling", "below"
                advice = ("raise num_steps, or the learning rate (e.g. optimizer=optax.adam("
                          "optax.cosine_decay_schedule(1e-1, num_steps, alpha=0.01)))")
            else:
                how, where = "rising", "above"
                advice = "lower the learning rate (e.g. optimizer=optax.adam(1e-3)) or raise num_steps"
            flag(diagnostics, name,
                 f"not converged: the loss (the negative objective) was {how} at the end of the fit "
                 f"(its mean over the last {trend.window} of {self.num_steps} steps is "
                 f"{abs(trend.change):.3g} {where} that over the {trend.window} before, noise se "
                 f"{trend.se:.2g}), so the guide and log_evidence are not those of the optimum; {advice}",
                 stacklevel=4)
        if heavy:
            flag(diagnostics, name,
                 f"Pareto k̂ = {diagnostics['pareto_k']:.2f} > {K_UNRELIABLE} for the importance weights "
                 f"p(x, z) / q(z) of draws from the fitted guide: the guide misses part of the "
                 f"posterior (too narrow or the wrong shape), so its draws and log_evidence are "
                 f"unreliable, and more draws will not fix it. Use a richer guide (guide=\"full_rank\" or \"flow\") or MCMC "
                 f"(method=\"nuts\")", stacklevel=4)

    # -- the compiled program ---------------------------------------------------------------
    def _family(self, ld):
        keyed = subsampled_plates(ld)
        cls = AutoFamily if self._is_auto() else FunctionFamily
        return cls(self._guide(), ld, keyed)

    def expected_evaluations(self):
        # Model runs: the particles of every step, the final bound's particles, the draws.
        return self.num_steps * self.objective.particles_per_step + self._eval_particles() + self.num_draws

    def _eval_particles(self) -> int:
        if isinstance(self.objective, IWAE):
            return self.objective.eval_particles(self.num_eval_particles)
        return self.num_eval_particles

    def _batch(self, ld, n) -> int:
        per_particle = 8 * 4 * max(ld.spec.value_size, ld.dim, 1)
        return int(max(1, min(n, MEMORY_BUDGET_BYTES // per_particle)))

    def _opt(self):
        return self.optimizer if self.optimizer is not None else default_optimizer(self.num_steps)

    def _initial(self, key, ld, fam=None):
        """The fit's state at its start (the guide's initial values, in its frame)."""
        fam = self._family(ld) if fam is None else fam
        opt = self._opt()
        k_init = jax.random.split(key, 3)[0]
        params, ok = fam.init(k_init)
        dtype = jnp.result_type(float)
        return FitState(params, opt.init(params), jnp.asarray(jnp.nan, dtype), getattr(fam, "frame", None),
                        jnp.full((self.num_steps,), jnp.nan, dtype), jnp.zeros((self.num_steps,), bool),
                        jnp.asarray(ok), jnp.asarray(True))

    def _program(self, key, ld, state, chunk):
        """The steps `chunk` of the fit from `state` (initialised first if not `started`), and,
        when `chunk.last`, the final outputs: draws from the fitted guide and the bound."""
        fam = self._family(ld)
        obj = self.objective
        plate = getattr(obj, "plate", None)
        _, k_fit, k_out = jax.random.split(key, 3)
        opt = self._opt()
        state = jax.lax.cond(state.started, lambda s: s, lambda s: self._initial(key, ld, fam), state)
        if isinstance(fam, AutoFamily):
            fam.frame = state.frame
        fam = fam.hoisted(state.params)  # the model's data-only work: once per program, here

        def step(j, s: FitState) -> FitState:
            i = chunk.i[j]
            params, opt_state, baseline, value, good = fit_step(fam, obj, opt, s.params, s.opt, s.baseline,
                                                                jax.random.fold_in(k_fit, i), plate)
            return s._replace(params=params, opt=opt_state, baseline=baseline,
                              losses=s.losses.at[i].set(-value), good=s.good.at[i].set(good))

        state = jax.lax.fori_loop(0, jnp.sum(chunk.active), step, state)
        final = when(chunk.last == 1, lambda p: self._final(ld, fam, p, k_out), state.params)
        return state, final

    def _final(self, ld, fam, params, k_out):
        """One pass of particles from the fitted guide: the draws and the bound."""
        obj = self.objective
        n = obj.particles_per_step
        plate = getattr(obj, "plate", None)
        m_eval = self._eval_particles()
        m = max(m_eval, self.num_draws)

        # Minibatches: one per group of particles that form one bound (k for IWAE, 1 for ELBO);
        # particles in chunks of whole groups, each chunk's noise from one random call.
        group = n if isinstance(obj, IWAE) else 1
        chunk = max(group, self._batch(ld, m) // group * group)
        num_chunks = -(-m // chunk)
        k_part, k_batch = jax.random.split(k_out)
        batch_keys = jnp.repeat(jax.random.split(k_batch, num_chunks * chunk // group), group, axis=0)
        batch_keys = batch_keys.reshape((num_chunks, chunk) + batch_keys.shape[1:])

        def one(keys):
            k, b = keys
            p, values = fam.particles_values(params, k, chunk, plate, b if fam.keyed else None)
            return p.log_weight, p.scale, values

        out = jax.lax.map(one, (jax.random.split(k_part, num_chunks), batch_keys))
        log_w, scale, values = jax.tree.map(lambda v: v.reshape((num_chunks * chunk,) + v.shape[2:])[:m], out)
        draws = jax.tree.map(lambda v: v[None, : self.num_draws], values)
        log_w = log_w[:m_eval]  # the draws may outnumber the particles that estimate the bound
        log_w = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
        bound, se = obj.bound(log_w, scale)
        if scale is None:  # joint weights: the ELBO and the importance-sampling estimate
            joint, is_ = log_w, logsumexp(log_w) - jnp.log(m_eval)
        else:  # per element: sum over elements of scale * (mean, log-mean-exp) over particles
            joint = jnp.sum(log_w * scale[0], axis=-1)
            is_ = jnp.sum(scale[0] * (logsumexp(log_w, axis=0) - jnp.log(m_eval)))
        return Final(draws, fam.named(params), bound, se, jnp.mean(joint), is_, joint, jnp.bool_(fam.keyed))

    def _execute(self, key, ld, checkpoint):
        return run_fit(self, key, ld, checkpoint, blank(initial_shapes(self, key, ld)), self.num_steps)

    def _whole(self, key, ld):
        """The whole fit as ONE chunk, pure and vmappable (simulation-based calibration runs
        it over simulated data sets): ``(final, state)``."""
        shapes = jax.eval_shape(lambda k: self._initial(k, ld), key)
        state = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)._replace(started=jnp.asarray(False))
        rows = jax.tree.map(jnp.asarray, steps(0, self.num_steps, self.num_steps, True))
        state, final = self._program(key, ld, state, rows)
        return final, state

    def _postfix(self, state) -> dict:
        losses = np.asarray(state.losses)
        seen = losses[np.isfinite(losses)]
        return {"loss": f"{seen[-1]:.4g}"} if seen.size else {}

    def _assemble(self, ld, run) -> Result:
        guide = self._guide()
        guide_statics, point = self._check(ld)
        statics = {**getattr(ld, "module_statics", {}), **guide_statics}
        state, final = run.state, run.final
        if self._is_auto() and not bool(state.ok):
            ld.init(0)  # raises, naming the sites whose density is not finite
        done = run.iterations
        losses = np.asarray(state.losses)[:done]
        good = np.asarray(state.good)[:done]
        bad = int((~good).sum())
        if done and bad == done:
            raise ValueError(
                "VI: the objective or its gradient was not finite at every step; check that the "
                "guide's support matches the model's (a guide function's draws must lie in each "
                "latent's support) and that the model's log density is finite there."
            )
        final = to_numpy(final)
        named = with_modules(final.named, statics)
        fixed = {k: v for k, v in ld.params.items() if k not in ld.spec.params and k not in named}
        named = {**param_values(ld, to_numpy(fixed)), **named}  # params a handler held fixed
        if isinstance(guide, Flow):
            named["auto_flow"] = guide.modules({"loc": named["auto_loc"], "flow": named["auto_flow"]})
        # A point mass on a continuous latent has no evidence bound (see the class docstring):
        # None, not the number its objective computed.
        bound, se, elbo, is_ = [None if point else float(getattr(final, k))
                                for k in ("bound", "se", "elbo", "log_evidence_is")]
        tail = losses[-max(1, done // 10):] if done else losses
        trend = loss_trend(losses) if not run.interrupted else None
        # The guide as an importance proposal: PSIS k̂ of its final draws' weights. None for a
        # point mass (no density) and for a subsampling model (minibatch weights are noisy).
        k_hat = None if point or bool(final.keyed) else pareto_k(final.log_weights)
        diagnostics = {
            "loss": losses,
            "final_loss": float(np.mean(tail[np.isfinite(tail)])) if np.isfinite(tail).any() else float("nan"),
            "log_evidence_se": se,
            "elbo": elbo,
            "log_evidence_is": is_,
            "num_nonfinite_steps": bad,
            "num_steps": done,
            "converged": (trend is None or not trend.moving) and not run.interrupted,
            "pareto_k": k_hat,
        }
        self._flag(diagnostics, bad, trend, k_hat is not None and unreliable(k_hat, final.log_weights))
        return Result(method=self, samples=final.draws, params=named, log_evidence=bound,
                      diagnostics=diagnostics, log_density=ld)

