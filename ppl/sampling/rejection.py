"""Exact posterior draws by rejection sampling from the prior, with an evidence estimate.

Propose x ~ p(x) (the prior), accept with probability L(x) / M where L is the likelihood
(observed and factor sites) and M >= sup L. Accepted draws are exact posterior draws, and the
acceptance probability is E_prior[L / M] = p(y) / M, so log p(y) = log(acceptance rate) + log M
(von Neumann 1951; Robert & Casella 2004, "Monte Carlo Statistical Methods", section 2.3).

By default log M is the maximum of the log likelihood found by `ppl.MLE` plus a safety margin;
every proposal's log likelihood is compared with log M, and one above it means the bound was
wrong (raised, never silently biased). Proposals run in vectorised batches inside one
`lax.while_loop` until `num_samples` are accepted or the proposal budget is spent.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np

from numpyro.distributions import constraints

from ppl._keys import as_key
from ppl.method.base import Method, execute_once, require_proper, require_whole_data
from ppl.method.result import Result
from ppl.sampling.importance import MEMORY_BUDGET_BYTES, weighted_particle

EDGE = 15.0  # |unconstrained value| beyond which a constrained site counts as at its boundary


@dataclasses.dataclass(frozen=True)
class Rejection(Method):
    """Rejection sampling from the prior under a bound on the likelihood.

    Args:
      num_samples: accepted draws wanted; `samples[site]` has shape (1, num_samples, ...).
      log_bound: log M, an upper bound of the log likelihood over the prior's support; None
        computes it with `ppl.MLE` (continuous latents only) plus `margin`.
      margin: nats added to the MLE maximum (guards against an optimiser stopping short).
      batch_size: proposals per vectorised batch; None chooses from a memory budget.
      max_proposals: proposal budget; exhausting it raises.

    `log_evidence` is log(accepted / proposed) + log M; `diagnostics` holds
    `log_evidence_se` (delta method: sqrt((1 - a) / accepted)), `acceptance_rate`,
    `num_proposals`, `num_accepted`, `log_bound`, `max_log_likelihood` (seen in proposals).

    Raises:
      ValueError: improper prior (naming the site); discrete latents without `log_bound`;
        an unbounded likelihood (the MLE does not converge; naming the diverging sites); a
        proposal whose likelihood exceeds the bound; an exhausted budget (with the acceptance
        rate seen, suggesting importance sampling or MCMC).

    Example:
      >>> r = ppl.infer(beta_bernoulli, y, method=ppl.Rejection(num_samples=2000), key=0)
      >>> r.samples["p"].shape, r.log_evidence  # (1, 2000)
    """

    num_samples: int = 1000
    log_bound: Optional[float] = None
    margin: float = 0.1
    batch_size: Optional[int] = None
    max_proposals: int = 10_000_000
    name: ClassVar[str] = "rejection"

    def check(self, ld) -> None:
        for name in ("num_samples", "max_proposals"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Rejection: {name} must be a positive int, got {v!r}.")
        if self.batch_size is not None and (not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"Rejection: batch_size must be a positive int or None, got {self.batch_size!r}.")
        if self.log_bound is not None and not np.isfinite(float(self.log_bound)):
            raise ValueError(f"Rejection: log_bound must be a finite number, got {self.log_bound!r}.")
        require_proper(self.name, ld)
        require_whole_data(self.name, ld)
        if self.log_bound is None and ld.spec.discrete:
            raise ValueError(
                f"Rejection: the default likelihood bound maximises the likelihood with ppl.MLE, "
                f"which needs continuous latent sites, but site '{ld.spec.discrete[0].name}' is "
                f"discrete; give log_bound= (an upper bound of the log likelihood), or use "
                f"method=\"gibbs\" or \"importance\"."
            )

    def _batch(self, ld) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        per = 8 * 4 * max(ld.spec.value_size, 1)
        return int(max(1, min(16_384, self.max_proposals, MEMORY_BUDGET_BYTES // per)))

    def bound(self, key, ld) -> float:
        """log M: the given `log_bound`, or the MLE's maximum log likelihood plus `margin`.

        Raises:
          ValueError: if the likelihood appears unbounded, naming the sites that ran off to the
            edge of their support: the maximiser reaches a non-finite value, or ends near the
            edge without converging, or the likelihood still rises when pushed further out.
        """
        if self.log_bound is not None:
            return float(self.log_bound)
        if not (ld.spec.observed or ld.spec.factors):
            return 0.0
        from ppl.optimize.point import MLE

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = MLE(num_steps=2000).run(key, ld)
        z = np.asarray(ld.unconstrain({k: jnp.asarray(v) for k, v in r.params.items() if k in ld.spec.latent_index}))
        losses = np.asarray(r.diagnostics["loss"], float)
        seen = -np.min(losses[np.isfinite(losses)]) if np.isfinite(losses).any() else -np.inf
        max_ll = max(float(ld.log_joint(jnp.asarray(z)).likelihood), seen)
        tr = ld.run(jnp.asarray(z))
        # A constrained site whose optimum lies at the far edge of unconstrained space (a scale
        # below e^-15, a probability within e^-15 of 0 or 1) may mark a likelihood that keeps
        # rising towards the boundary of the support. Push those coordinates further out: a
        # likelihood that still rises (by more than 1 nat) is unbounded; one that levels off
        # (e.g. all-zero Bernoulli data, p -> 0) is bounded by its limit.
        far = [lat for lat in ld.spec.continuous
               if tr[lat.name].dist.support not in (constraints.real, constraints.real_vector)
               and np.any(np.abs(z[lat.offset: lat.offset + lat.size]) > EDGE)]
        rising = bool(far) and not r.diagnostics["converged"]  # still running to the edge
        if far and not rising and np.isfinite(max_ll):
            pushed = z.copy()
            for lat in far:
                u = pushed[lat.offset: lat.offset + lat.size]
                pushed[lat.offset: lat.offset + lat.size] = np.where(np.abs(u) > EDGE, u + 5.0 * np.sign(u), u)
            further = float(ld.log_joint(jnp.asarray(pushed, z.dtype)).likelihood)
            rising = not np.isfinite(further) or further > max_ll + 1.0
            max_ll = max(max_ll, further) if np.isfinite(further) else max_ll
        if rising or not np.isfinite(max_ll):
            names = [lat.name for lat in far]
            raise ValueError(
                f"Rejection: the likelihood appears unbounded — it keeps rising as site(s) "
                f"{names} approach the edge of their support (log likelihood {max_ll:.4g} and "
                f"climbing; e.g. a scale shrinking to 0 on an exactly fitted point), so no bound "
                f"M exists. Give log_bound= if you know one, or use method=\"importance\" or "
                f"\"nuts\"."
            )
        return max_ll + float(self.margin)

    def _program(self, key, ld, log_bound):
        n, batch = self.num_samples, self._batch(ld)
        max_batches = -(-self.max_proposals // batch)
        k_first, k_loop = jax.random.split(key)
        values0, _ = weighted_particle(ld, k_first, "prior")
        buffer = jax.tree.map(lambda v: jnp.zeros((n,) + jnp.shape(v), jnp.asarray(v).dtype), values0)
        dtype = jnp.result_type(float)

        def one_batch(k):
            ks = jax.random.split(k, batch + 1)
            values, log_lik = jax.vmap(lambda kk: weighted_particle(ld, kk, "prior"))(ks[1:])
            u = jax.random.uniform(ks[0], (batch,), dtype)
            return values, log_lik, jnp.log(u) < log_lik - log_bound

        def cond(c):
            i, accepted, _, _ = c
            return (accepted < n) & (i < max_batches)

        def body(c):
            i, accepted, buf, max_ll = c
            values, log_lik, accept = one_batch(jax.random.fold_in(k_loop, i))
            pos = accepted + jnp.cumsum(accept) - 1
            pos = jnp.where(accept & (pos < n), pos, n)  # index n: dropped
            buf = jax.tree.map(lambda b, v: b.at[pos].set(v, mode="drop"), buf, values)
            max_ll = jnp.maximum(max_ll, jnp.max(jnp.where(jnp.isnan(log_lik), -jnp.inf, log_lik)))
            return i + 1, accepted + jnp.sum(accept, dtype=jnp.int32), buf, max_ll

        init = (jnp.int32(0), jnp.int32(0), buffer, jnp.asarray(-jnp.inf, dtype))
        i, total, buf, max_ll = jax.lax.while_loop(cond, body, init)
        samples = jax.tree.map(lambda b: b[:n][None], buf)
        return dict(samples=samples, num_proposals=i * batch, num_accepted=total, max_log_likelihood=max_ll)

    def _execute(self, key, ld, checkpoint):
        key = as_key(key)
        k_bound, k_run = jax.random.split(key)
        log_m = self.bound(k_bound, ld)
        # The bound is an argument of the program, not part of its cache key.
        program = dataclasses.replace(self, log_bound=None, margin=0.0)
        execution = execute_once(program, k_run, ld, jnp.asarray(log_m, jnp.result_type(float)))
        return execution._replace(outputs={**execution.outputs, "log_bound": log_m})

    def _assemble(self, ld, execution) -> Result:
        out = execution.outputs
        log_m = out["log_bound"]
        proposed, accepted = int(out["num_proposals"]), int(out["num_accepted"])
        max_ll = float(out["max_log_likelihood"])
        rate = accepted / proposed if proposed else 0.0
        if max_ll > log_m:
            raise ValueError(
                f"Rejection: a proposal's log likelihood ({max_ll:.6g}) exceeds the bound log M = "
                f"{log_m:.6g}: the bound was wrong, and draws under it would not be exact. "
                + ("Give a larger log_bound." if self.log_bound is not None else
                   "The likelihood maximiser found a local maximum; give log_bound= (a true upper "
                   "bound) or a larger margin=.")
            )
        if accepted < self.num_samples:
            raise ValueError(
                f"Rejection: only {accepted} of {self.num_samples} draws accepted within the budget "
                f"of {proposed} proposals (acceptance rate {rate:.3g}; log M = {log_m:.4g}). The "
                f"posterior is far from the prior: use method=\"importance\" or MCMC "
                f"(\"nuts\", \"gibbs\"), or raise max_proposals."
            )
        se = math.sqrt(max(1.0 - rate, 0.0) / accepted)
        return Result(
            method=self,
            samples=out["samples"],
            log_evidence=math.log(rate) + log_m,
            diagnostics={
                "log_evidence_se": se,
                "acceptance_rate": rate,
                "num_proposals": proposed,
                "num_accepted": accepted,
                "log_bound": log_m,
                "max_log_likelihood": max_ll,
            },
            log_density=ld,
        )
