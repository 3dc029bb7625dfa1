"""Self-normalised importance sampling, with an estimate of the log evidence.

Particles are drawn from the prior (the default proposal) or from a guide function, all as
one `vmap` batch (chunked with `lax.map` when memory demands). The weights are
log p(x, y) - log q(x); with the prior as proposal that is the log likelihood. The log
evidence estimate is log-mean-exp of the weights, an unbiased estimate of p(y) on the
natural scale (Owen 2013, "Monte Carlo theory, methods and examples", ch. 9). Draws are
resampled with systematic resampling (Kitagawa 1996). The Pareto k̂ of the weights (PSIS,
Vehtari et al. 2024; `ppl.method.psis`) says whether the estimates can be trusted: above 0.7
the run is flagged, since more particles would not help.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl.method.flags import flag
from ppl.method.base import Method, execute_once, require_proper, require_whole_data
from ppl.method.psis import K_UNRELIABLE, pareto_k, unreliable
from ppl.method.result import Result
from ppl.model import handlers

MEMORY_BUDGET_BYTES = 1 << 30


def weighted_particle(ld, key, proposal):
    """One particle: (site values incl. deterministic, log weight)."""
    args, kwargs = ld.arguments()
    if proposal == "prior":
        with handlers.trace() as tr, handlers.substitute(data=ld.params), handlers.seed(rng_seed=key):
            ld.model(*args, **kwargs)
        log_w = tr.log_joint(("observed", "factor"))
    else:
        k_guide, k_model = jax.random.split(key)
        with handlers.trace() as gtr, handlers.seed(rng_seed=k_guide):
            proposal(*args, **kwargs)
        values = {s.name: s.value for s in gtr.sites("latent")}
        with handlers.trace() as tr, handlers.substitute(data={**ld.params, **values}), handlers.seed(rng_seed=k_model):
            ld.model(*args, **kwargs)
        log_w = tr.log_joint() - gtr.log_joint(("latent",))
    values = {s.name: s.value for s in tr.sites("latent", "deterministic")}
    return values, jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)


def systematic_resample(key, log_weights, num):
    """Indices of `num` draws by systematic resampling of normalised weights."""
    w = jax.nn.softmax(log_weights)
    cdf = jnp.cumsum(w)
    u = (jax.random.uniform(key, dtype=cdf.dtype) + jnp.arange(num, dtype=cdf.dtype)) / num
    return jnp.clip(jnp.searchsorted(cdf, u * cdf[-1]), 0, log_weights.shape[0] - 1)


def check_guide_sites(ld, guide) -> None:
    """Raise if the guide's latent sites differ from the model's, naming them."""
    args, kwargs = ld.arguments()
    gtr = handlers.trace(handlers.seed(guide, 0)).get_trace(*args, **kwargs)
    guide_sites = {s.name for s in gtr.sites("latent")}
    model_sites = {lat.name for lat in ld.spec.latents}
    missing, extra = sorted(model_sites - guide_sites), sorted(guide_sites - model_sites)
    if missing or extra:
        raise ValueError(
            f"the guide's sample sites must match the model's latent sites: missing from the "
            f"guide {missing}, in the guide but not latent in the model {extra}; name each guide "
            f"sample site after the model latent it proposes."
        )


@dataclasses.dataclass(frozen=True)
class Importance(Method):
    """Self-normalised importance sampling.

    Args:
      num_particles: number of weighted particles (and of resampled draws).
      proposal: "prior", or a guide function taking the model's arguments whose sample
        sites are named like the model's latents.
      batch_size: particles evaluated at once; None chooses from a memory budget.

    The result has `particles[site]` of shape (num_particles, *shape), `log_weights`
    (num_particles,), resampled `samples` (1, num_particles, *shape), `log_evidence`, and
    `diagnostics["ess_weights"]`, `diagnostics["log_evidence_se"]` (delta-method standard
    error, sqrt(1/ESS - 1/N)) and `diagnostics["pareto_k"]` (PSIS k̂ of the weights, a float;
    above 0.7 the estimates are unreliable and the run is flagged).
    """

    num_particles: int = 10_000
    proposal: Any = "prior"
    batch_size: Any = None
    name: ClassVar[str] = "importance"

    def check(self, ld) -> None:
        if not isinstance(self.num_particles, int) or self.num_particles < 1:
            raise ValueError(f"Importance: num_particles must be a positive int, got {self.num_particles!r}.")
        if self.proposal == "prior":
            require_proper(self.name, ld)
        elif callable(self.proposal):
            check_guide_sites(ld, self.proposal)
        else:
            raise ValueError(f"Importance: proposal must be 'prior' or a guide function, got {self.proposal!r}.")
        require_whole_data(self.name, ld)

    def expected_evaluations(self):
        return self.num_particles  # one model run per particle

    def _batch(self, ld) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        per_particle = 8 * 4 * max(ld.spec.value_size, 1)
        return int(max(1, min(self.num_particles, MEMORY_BUDGET_BYTES // per_particle)))

    def _program(self, key, ld):
        k_draw, k_resample = jax.random.split(key)
        keys = jax.random.split(k_draw, self.num_particles)
        one = lambda k: weighted_particle(ld, k, self.proposal)
        batch = self._batch(ld)
        values, log_w = jax.vmap(one)(keys) if batch >= self.num_particles else jax.lax.map(one, keys, batch_size=batch)
        n = self.num_particles
        lse = logsumexp(log_w)
        log_z = lse - math.log(n)
        ess = jnp.exp(2 * lse - logsumexp(2 * log_w))
        idx = systematic_resample(k_resample, log_w, n)
        samples = jax.tree.map(lambda v: v[idx][None], values)
        return dict(samples=samples, particles=values, log_weights=log_w, log_evidence=log_z, ess=ess)

    def _execute(self, key, ld, checkpoint):
        return execute_once(self, key, ld)

    def _assemble(self, ld, execution) -> Result:
        out = execution.outputs
        ess = float(out["ess"])
        n = self.num_particles
        log_z = float(out["log_evidence"])
        diagnostics = {
            "ess_weights": ess,
            "log_evidence_se": float(np.sqrt(max(1.0 / ess - 1.0 / n, 0.0))) if ess > 0 else float("inf"),
            "num_finite_weights": int(np.isfinite(out["log_weights"]).sum()),
            "pareto_k": pareto_k(out["log_weights"]),
        }
        _flag_weights(diagnostics, ld, out, n, log_z)
        return Result(
            method=self,
            samples=out["samples"],
            log_evidence=log_z,
            log_weights=out["log_weights"],
            particles=out["particles"],
            diagnostics=diagnostics,
            log_density=ld,
        )


def _flag_weights(diagnostics, ld, out, n, log_z) -> None:
    """Flag weights that carry no reliable estimate: none finite, a Pareto k̂ above 0.7
    (Vehtari et al. 2024: then more particles do not help; 0.5 < k̂ <= 0.7 is usable and
    says nothing; nearly uniform weights are exempt, see `ppl.method.psis.unreliable`), else
    an effective sample size below 10 (e.g. too few particles for k̂)."""
    ess, k = diagnostics["ess_weights"], diagnostics["pareto_k"]
    if diagnostics["num_finite_weights"] == 0:
        flag(diagnostics, "importance",
             f"none of the {n} particles has a finite weight (the log density is -inf or NaN at "
             f"site(s) {_nonfinite_sites(ld, out['particles'])} for the first one), so the samples "
             f"are not posterior draws and log_evidence is {log_z}. Check the data against those "
             f"sites' supports, or use a proposal that reaches the posterior", stacklevel=4)
    elif unreliable(k, out["log_weights"]):
        flag(diagnostics, "importance",
             f"Pareto k̂ = {k:.2f} > {K_UNRELIABLE} (weights' effective sample size {ess:.3g} of {n}): "
             f"the weights are so heavy-tailed that the estimates and log_evidence are unreliable, "
             f"and more particles will not fix it. Use a proposal closer to the posterior (a guide "
             f"function as Importance(proposal=guide); method=\"vi\" with guide=\"full_rank\" or "
             f"\"flow\" reports the same k̂ for its fitted guide) or MCMC (method=\"nuts\")", stacklevel=4)
    elif not ess >= 10:
        flag(diagnostics, "importance",
             f"the weights' effective sample size is {ess:.3g} of {n} particles; the estimates are "
             f"unreliable. Use more particles, a proposal closer to the posterior (a fitted guide), "
             f"or MCMC", stacklevel=4)


def _nonfinite_sites(ld, particles) -> list:
    """Sites with a non-finite log density at the first particle (for the warning)."""
    from ppl.compile.init import nonfinite_sites

    try:
        values = {lat.name: jnp.asarray(particles[lat.name][0]) for lat in ld.spec.latents}
        return nonfinite_sites(ld, ld.unconstrain(values)) or ["<none identified>"]
    except Exception:  # noqa: BLE001 - naming is best effort; the warning is given regardless
        return ["<not identified>"]
