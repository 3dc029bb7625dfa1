"""The distribution of a site inside `ppl.scan`: one distribution per time step, stacked.

A site in a scan body has a distribution at each step (its parameters come from the carry),
so the one site the handlers outside the scan see, of shape ``(T, *step_shape)``, has a
`ScannedDistribution`: the T step distributions as one pytree whose leaves have a leading
time axis. Its ``log_prob`` and ``support`` evaluate each step's distribution on that step's
value (a `vmap` over time, so the log joint is one vectorised sum over time and not work
inside the loop).

While the handlers around a scan process its sites, before the scan has run, the step
distributions are not known yet: the site then holds a *pending* `ScannedDistribution`
(``steps is None``) that knows only the static facts found by tracing the body once: shapes,
whether it is discrete, the unconstrained shape of its values. Anything that needs the steps
(drawing, scoring) is then an error that names the site.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
from numpyro.distributions import Distribution, constraints

from ppl.model import fast_log_prob


class StepFacts(NamedTuple):
    """Static facts of a scanned site's step distribution (hashable: pytree aux data)."""

    name: str
    length: int
    batch_shape: tuple[int, ...]
    event_shape: tuple[int, ...]
    is_discrete: bool
    has_rsample: bool
    event_dim: int
    unconstrained_shape: tuple[int, ...]  # of one step's value (continuous sites)
    dist_name: str


class ScannedDistribution(Distribution):
    """T step distributions of one site, stacked along a leading time axis.

    Attributes:
      steps: the step distributions as one pytree with leaves ``(T, ...)``; None while pending.
      facts: the `StepFacts`.
    """

    pytree_data_fields = ("steps",)
    pytree_aux_fields = ("facts",)
    scanned = True  # read by handlers that treat sites inside ppl.scan apart (FromFlat, reparam)

    def __init__(self, facts: StepFacts, steps=None):
        self.facts, self.steps = facts, steps
        super().__init__((facts.length,) + tuple(facts.batch_shape), tuple(facts.event_shape), validate_args=False)

    @property
    def pending(self) -> bool:
        return self.steps is None

    @property
    def is_discrete(self) -> bool:
        return self.facts.is_discrete

    @property
    def has_rsample(self) -> bool:
        return self.facts.has_rsample

    @property
    def unconstrained_shape(self) -> tuple[int, ...]:
        return (self.facts.length,) + tuple(self.facts.unconstrained_shape)

    @property
    def support(self):
        return StepwiseSupport(self.facts, self.steps)

    def _need_steps(self, what: str):
        if self.steps is None:
            raise NotImplementedError(
                f"site '{self.facts.name}' is inside ppl.scan, and its distribution at each time step is "
                f"known only as the scan runs; {what} of the whole sequence cannot be asked for before. "
                f"This handler or method does not support sites inside ppl.scan.")

    def log_prob(self, value):
        self._need_steps("the log density")
        return jax.vmap(fast_log_prob.log_prob)(self.steps, value)

    def sample(self, key, sample_shape=()):
        """While pending: a `DeferredDraw` of `key`, which the scan draws step by step (a
        handler that sets a site's value to a draw from its distribution works unchanged)."""
        if self.steps is None and not tuple(sample_shape):
            return DeferredDraw(key)
        raise NotImplementedError(
            f"site '{self.facts.name}' is inside ppl.scan: its steps are drawn one after another as "
            f"the scan runs, not from the stacked distribution (nor several copies at once). This "
            f"handler or method does not support sites inside ppl.scan.")

    @property
    def mean(self):
        self._need_steps("the mean")
        return jax.vmap(lambda d: d.mean)(self.steps)

    @property
    def variance(self):
        self._need_steps("the variance")
        return jax.vmap(lambda d: d.variance)(self.steps)

    def __repr__(self):
        state = "pending" if self.steps is None else f"{self.facts.length} steps"
        return f"ScannedDistribution({self.facts.dist_name}, {state})"


class DeferredDraw(NamedTuple):
    """A draw from a pending `ScannedDistribution`, made by `ppl.scan` as it runs: step t
    draws from its own distribution with ``fold_in(key, t)``."""

    key: Any


class StepwiseSupport(constraints.Constraint):
    """The support of a `ScannedDistribution`: each step's support, on that step's value."""

    def __init__(self, facts: StepFacts, steps):
        self.facts, self.steps = facts, steps
        self.is_discrete, self.event_dim = facts.is_discrete, facts.event_dim

    def tree_flatten(self):
        return (self.steps,), (("steps",), {"facts": self.facts, "is_discrete": self.is_discrete,
                                           "event_dim": self.event_dim})

    def _steps(self):
        if self.steps is None:
            raise NotImplementedError(f"site '{self.facts.name}' is inside ppl.scan: its support at each "
                                      f"step is known only as the scan runs.")
        return self.steps

    def __call__(self, value):
        return jax.vmap(lambda d, v: d.support(v))(self._steps(), value)

    def feasible_like(self, prototype):
        return jax.vmap(lambda d, v: d.support.feasible_like(v))(self._steps(), prototype)

    def __repr__(self):
        return f"Stepwise({self.facts.dist_name} support)"


def pending(facts: StepFacts) -> ScannedDistribution:
    """A pending `ScannedDistribution` (no steps yet)."""
    return ScannedDistribution(facts)


def stacked(facts: StepFacts, steps) -> ScannedDistribution:
    """The `ScannedDistribution` of the step distributions `steps` (leaves with a time axis)."""
    return ScannedDistribution(facts, steps)


def is_scanned(d) -> bool:
    return bool(getattr(d, "scanned", False))


__all__ = ["DeferredDraw", "ScannedDistribution", "StepFacts", "StepwiseSupport", "is_scanned", "pending", "stacked"]
