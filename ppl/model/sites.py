"""Typed records of a model run: `Plate`, `Site` and the ordered `Trace`."""
from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from typing import Any, NamedTuple

import jax.numpy as jnp
from numpyro.distributions import ExpandedDistribution, Independent, MaskedDistribution

from ppl.model import fast_log_prob, validation
from ppl.model.site_keys import NumPyroKeys

KINDS = ("latent", "observed", "deterministic", "param", "factor")


class Plate(NamedTuple):
    """A conditionally independent batch dimension: `size` copies along batch dim `dim`.

    `subsample_size` is the number of elements used in this run (equal to `size` unless the
    plate subsamples).
    """

    name: str
    size: int
    dim: int
    subsample_size: int


@dataclasses.dataclass(frozen=True)
class Site(NumPyroKeys):
    """One named site of a model run.

    Attributes:
      name: the site's unique name.
      kind: "latent", "observed", "deterministic", "param" or "factor".
      dist: the numpyro distribution (None for deterministic, param and factor sites).
      value: the site's value (for a factor, its log weight).
      plates: the `Plate`s enclosing the site, outermost first.
      scale, mask: the weight and boolean mask applied to its log density (None if unset).
      log_jacobian: log |det J| of the unconstrained-to-constrained map, when the site was
        set from an unconstrained value (compiled log densities), else None.

    NumPyro's dict keys read it too: `site["value"]`, `site["type"]`, `site["fn"]`,
    `site["is_observed"]`, ... (see `ppl.model.site_keys`).
    """

    name: str
    kind: str
    dist: Any
    value: Any
    plates: tuple = ()
    scale: Any = None
    mask: Any = None
    constraint: Any = None
    log_jacobian: Any = None
    infer: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def is_discrete(self) -> bool:
        return self.dist is not None and bool(getattr(self.dist, "is_discrete", False))

    @functools.cached_property
    def log_prob(self):
        """Elementwise log density of `value` (-inf outside the distribution's support), with
        scale and mask applied (0 where none)."""
        return self._log_prob(check_support=True)

    def log_prob_unchecked(self):
        """`log_prob` without the support mask: for data already found inside a support that
        no latent or param moves (checked once; the mask would select every element again)."""
        return self._log_prob(check_support=False)

    def _log_prob(self, check_support: bool):
        # ppl applies the support mask itself: NumPyro's (under its process-wide validation
        # flag, which a user or another thread may have turned off) never decides a result.
        if self.kind in ("latent", "observed"):
            value = self.value
            if self.kind == "observed" and self.mask is not None:
                # Masked-out data may be invalid (NaN, outside the support): evaluate there at a
                # feasible value instead, so gradients stay finite (0 * NaN would be NaN).
                try:
                    fill = self.dist.support.feasible_like(value)
                except NotImplementedError:  # a dependent support: keep the data as they are
                    fill = value
                keep = jnp.reshape(self.mask, jnp.shape(self.mask) + (1,) * len(self.dist.event_shape))
                value = jnp.where(keep, value, fill)
            try:
                with validation.off():
                    lp = fast_log_prob.log_prob(self.dist, value)
            except (TypeError, ValueError) as e:
                raise _log_prob_error(self, value, e) from e
            if check_support:
                lp = _in_support(self.dist, value, lp)
        elif self.kind == "factor":
            lp = jnp.asarray(self.value)
        else:
            return jnp.zeros(())
        if self.mask is not None:
            lp = jnp.where(self.mask, lp, 0.0)
        if self.scale is not None:
            lp = lp * self.scale
        return lp

    def log_prob_sum(self):
        return jnp.sum(self.log_prob)


def _in_support(d, value, lp):
    """`lp` where `value` lies in `d`'s support, -inf elsewhere (a support that cannot be
    evaluated, as a `dependent` one, leaves `lp` as it is)."""
    try:
        inside = d.support(value)
    except (NotImplementedError, ValueError, TypeError):
        return lp
    return jnp.where(inside, lp, -jnp.inf)


def user_dist(d):
    """The user's distribution under the plate/`expand`/`to_event`/`mask` wrappers (not under
    a transformed distribution's base: a LogNormal stays a LogNormal)."""
    while isinstance(d, (ExpandedDistribution, Independent, MaskedDistribution)):
        d = d.base_dist
    return d


def dist_name(d) -> str:
    """The name of the user's distribution (see `user_dist`); for a site inside `ppl.scan`,
    the name of its step distribution."""
    d = user_dist(d)
    facts = getattr(d, "facts", None) if getattr(d, "scanned", False) else None
    return f"{facts.dist_name} (per step of ppl.scan)" if facts is not None else type(d).__name__


def _log_prob_error(site, value, error) -> ValueError:
    """A distribution that cannot score the site's value: say which site, and the usual fix."""
    hint = ""
    if jnp.issubdtype(jnp.result_type(value), jnp.floating) and getattr(site.dist.support, "is_discrete", False):
        hint = (f" {dist_name(site.dist)} needs integer values here: pass them as integers "
                f"(e.g. y.astype(int)).")
    return ValueError(f"{site.kind} site '{site.name}': {dist_name(site.dist)}.log_prob cannot "
                      f"score a value of shape {tuple(jnp.shape(value))} and dtype "
                      f"{jnp.result_type(value)} ({error}).{hint}")


class Trace(OrderedDict):
    """An ordered mapping name -> `Site`, in execution order."""

    def add(self, site: Site) -> None:
        if site.name in self:
            raise ValueError(
                f"site name '{site.name}' is used twice in one run of the model "
                f"(first as {_a(self[site.name].kind)} site, then as {_a(site.kind)} site); "
                f"give every sample/observe/param/deterministic/factor call a unique name, "
                f"e.g. f'{site.name}_{{i}}' inside a loop."
            )
        self[site.name] = site

    def sites(self, *kinds: str):
        """The sites of the given kinds, in order."""
        return [s for s in self.values() if s.kind in kinds]

    def log_joint(self, kinds=("latent", "observed", "factor")):
        """Sum of the log densities of the sites of the given kinds."""
        total = jnp.zeros(())
        for s in self.sites(*kinds):
            total = total + s.log_prob_sum()
        return total


def site_from_message(msg) -> Site:
    return Site(
        name=msg.name,
        kind=msg.kind,
        dist=msg.dist,
        value=msg.value,
        plates=tuple(msg.plates),
        scale=msg.scale,
        mask=msg.mask,
        constraint=msg.constraint,
        log_jacobian=msg.log_jacobian,
        infer=dict(msg.infer),
    )


def _a(word: str) -> str:
    """``word`` with its indefinite article."""
    return ("an " if word[:1] in "aeiou" else "a ") + word
