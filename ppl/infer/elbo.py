"""NumPyro's ELBO names as doors to ppl's objectives (`ppl.vi.objectives`), for `ppl.infer.SVI`.

  Trace_ELBO(num_particles=1)          ppl.ELBO(num_particles=...): the Monte Carlo ELBO,
                                       reparameterised (score-function terms for guide sites
                                       that cannot be), particles a vmap axis.
  TraceMeanField_ELBO(num_particles=1) the same objective. NumPyro uses closed-form KL terms
                                       where it has them (lower variance, same expectation and
                                       optimum); ppl estimates every term by Monte Carlo.
  TraceEnum_ELBO(num_particles=1, max_plate_nesting=inf)
                                       ppl.ELBO with the model's finite discrete sites summed
                                       out exactly (`ppl.compile.marginal`, no funsor), as
                                       NumPyro's parallel enumeration does; the guide covers the
                                       continuous sites.
  RenyiELBO(alpha=0, num_particles=2)  alpha = 0 is the importance-weighted bound: ppl.IWAE(k=
                                       num_particles). Other alphas are refused (ppl's objectives
                                       have no Renyi divergence of another order).

Each is a named record with `objective` (the ppl objective) and `sums_out` (whether the
model's discrete sites are summed out of its density).
"""
from __future__ import annotations

import dataclasses
import math

from ppl.vi.objectives import ELBO, IWAE


def _particles(owner, n):
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{owner}(num_particles={n!r}): num_particles must be a positive int.")
    return n


@dataclasses.dataclass(frozen=True)
class Trace_ELBO:
    """The ELBO, estimated with `num_particles` draws of the guide per step."""

    num_particles: int = 1
    vectorize_particles: bool = True  # accepted: ppl's particles are always a vmap axis
    sums_out = False

    def __post_init__(self):
        _particles(type(self).__name__, self.num_particles)

    @property
    def objective(self):
        return ELBO(num_particles=self.num_particles)


@dataclasses.dataclass(frozen=True)
class TraceMeanField_ELBO(Trace_ELBO):
    """The ELBO (ppl estimates its KL terms by Monte Carlo as well; see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class TraceGraph_ELBO(Trace_ELBO):
    """The ELBO; ppl's score-function terms use a moving-average baseline (no Rao-Blackwellisation)."""


@dataclasses.dataclass(frozen=True)
class TraceEnum_ELBO(Trace_ELBO):
    """The ELBO with the model's enumerable discrete sites summed out exactly."""

    max_plate_nesting: float = math.inf  # accepted: ppl finds the plates itself
    sums_out = True


@dataclasses.dataclass(frozen=True)
class RenyiELBO:
    """Renyi's alpha-divergence bound; ppl offers alpha = 0, the importance-weighted bound
    with `num_particles` draws (Burda et al. 2016), as `ppl.IWAE(k=num_particles)`."""

    alpha: float = 0.0
    num_particles: int = 2
    sums_out = False

    def __post_init__(self):
        _particles("RenyiELBO", self.num_particles)
        if self.alpha != 0:
            raise NotImplementedError(
                f"RenyiELBO(alpha={self.alpha!r}): ppl offers alpha=0 only (the importance-weighted bound, "
                f"ppl.IWAE); use RenyiELBO(alpha=0, num_particles=k) or Trace_ELBO() (alpha=1).")

    @property
    def objective(self):
        return IWAE(k=self.num_particles)


ELBO_TYPES = (Trace_ELBO, RenyiELBO)
