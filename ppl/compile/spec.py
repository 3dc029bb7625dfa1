"""Inspection: run a model once and describe its sites in a static, hashable `ModelSpec`."""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core
import numpy as np
from numpyro.distributions import ImproperUniform

from ppl.compile._handlers import InitValues, ToFlat
from ppl.compile.errors import NumPyroGuard
from ppl.compile.supports import distribution_parameters
from ppl.model import handlers
from ppl.model.sites import Plate, Trace, dist_name, user_dist


@dataclasses.dataclass(frozen=True)
class LatentSpec:
    """Where one latent site lives in the flat unconstrained vector."""

    name: str
    shape: Tuple[int, ...]
    unconstrained_shape: Tuple[int, ...]
    offset: int
    size: int
    is_discrete: bool
    dtype: str
    improper: bool
    plates: Tuple[Plate, ...]
    event_dim: int


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Static description of a model: latents (in flat order), params, observed,
    deterministic sites. Hashable, so it can be part of a jit cache key.

    ``checked_supports`` names the observed sites whose data were found inside a support that
    depends on no latent or param (so it holds at every point; see
    the `supports` of :func:`latent_dependence`)."""

    latents: Tuple[LatentSpec, ...]
    params: Tuple[str, ...]
    observed: Tuple[str, ...]
    deterministic: Tuple[str, ...]
    factors: Tuple[str, ...]
    dim: int
    value_size: int = 0
    draw_size: int = 0
    checked_supports: Tuple[str, ...] = ()

    @property
    def latent_index(self):
        return {lat.name: i for i, lat in enumerate(self.latents)}

    def latent(self, name: str) -> LatentSpec:
        """The `LatentSpec` of the latent site `name`."""
        return self.latents[self.latent_index[name]]

    @property
    def discrete(self) -> Tuple[LatentSpec, ...]:
        return tuple(lat for lat in self.latents if lat.is_discrete)

    @property
    def continuous(self) -> Tuple[LatentSpec, ...]:
        return tuple(lat for lat in self.latents if not lat.is_discrete)


def inspect(model, args, kwargs, key=0):
    """Run `model` once (eagerly) and return its `ModelSpec` and `Trace`.

    Latent values come from `InitValues` (uniform in unconstrained space), so improper
    priors are never drawn from. A latent whose value a handler inside the model already
    sets (``substitute``, ``replay``) is fixed: it keeps its log density term but gets no
    coordinates in the flat vector. Likewise a param set so is not learned (not in
    ``ModelSpec.params``).
    """
    recorder, init = ToFlat(), InitValues(jax.random.PRNGKey(key))
    with handlers.trace() as tr, recorder, init, handlers.seed(rng_seed=key), NumPyroGuard():
        model(*args, **kwargs)
    latents, offset = [], 0
    for site in tr.sites("latent"):
        if site.name in init.preset:
            continue
        u = jnp.asarray(recorder.latents[site.name])
        size = int(math.prod(u.shape))
        latents.append(
            LatentSpec(
                name=site.name,
                shape=tuple(jnp.shape(site.value)),
                unconstrained_shape=tuple(u.shape),
                offset=offset,
                size=size,
                is_discrete=site.is_discrete,
                dtype=str(jnp.asarray(site.value).dtype),
                improper=isinstance(user_dist(site.dist), ImproperUniform),
                plates=site.plates,
                event_dim=len(site.dist.event_shape),
            )
        )
        offset += size
    spec = ModelSpec(
        latents=tuple(latents),
        params=tuple(s.name for s in tr.sites("param") if s.name not in init.preset),
        observed=tuple(s.name for s in tr.sites("observed")),
        deterministic=tuple(s.name for s in tr.sites("deterministic")),
        factors=tuple(s.name for s in tr.sites("factor")),
        dim=offset,
        value_size=int(sum(np.size(s.value) for s in tr.values() if s.kind in ('latent', 'observed', 'deterministic'))),
        draw_size=int(sum(np.size(s.value) for s in tr.values() if s.kind in ('latent', 'deterministic'))),
    )
    return spec, tr


class Dependence(NamedTuple):
    """What moves with the latent and param values: the observed sites whose support does
    (`supports`), and the distribution parameters that do (`parameters`, `(site, arg)`)."""

    supports: frozenset
    parameters: frozenset


def latent_dependence(model, args, kwargs, tr: Trace) -> Dependence:
    """Which supports and distribution parameters depend on a latent or a param value.

    An observed site whose support so depends (``y ~ Uniform(0, a)`` with ``a`` latent) can
    hold data outside that support at some latent values: that is a zero density there, not
    an error in the data. A parameter that so depends can leave its constraint at some
    points (a divergence, not a data error); one that does not is checked once (see
    :mod:`ppl.compile.supports`).

    Found by tracing the support checks and the parameters as functions of the latent and
    param values and following the dependencies through the jaxpr (conservatively: an
    equation with a dependent input makes every output dependent). A model that cannot be
    re-traced so is taken to depend on them everywhere: nothing is checked once, and every
    support check stays in the density (trusting a support that does move would let the
    density be finite, even huge, outside it: MAP on ``y ~ Uniform(0, a)`` ran ``a`` to 0).
    """
    observed = [s.name for s in tr.sites("observed")]
    params = [(s.name, name) for s in tr.sites("latent", "observed") for name, _, _ in distribution_parameters(s.dist)]
    values = {s.name: s.value for s in tr.values() if s.kind in ("latent", "param")}
    if not values or not (observed or params):
        return Dependence(frozenset(), frozenset())

    def outputs(values):
        with handlers.trace() as t, handlers.substitute(data=values), handlers.seed(rng_seed=0):
            model(*args, **kwargs)
        supports = [t[n].dist.support(t[n].value) for n in observed]
        stored = {(s.name, name): v for s in t.sites("latent", "observed")
                  for name, v, _ in distribution_parameters(s.dist)}
        return supports + [jnp.asarray(stored[p]) for p in params]

    try:
        closed = jax.make_jaxpr(outputs)(values)
    except Exception:  # noqa: BLE001 - a model that cannot be re-traced: trust nothing
        return Dependence(frozenset(observed), frozenset(params))
    dependent = set(closed.jaxpr.invars)
    for eqn in closed.jaxpr.eqns:
        if any(not isinstance(v, jex_core.Literal) and v in dependent for v in eqn.invars):
            dependent.update(eqn.outvars)
    moves = [not isinstance(v, jex_core.Literal) and v in dependent for v in closed.jaxpr.outvars]
    return Dependence(frozenset(n for n, m in zip(observed, moves) if m),
                      frozenset(p for p, m in zip(params, moves[len(observed):]) if m))


def observed_checks(tr: Trace, skip_support=frozenset()):
    """Per observed site, the arrays its checks need: ``(value, mask or None, in_support)``;
    sites named in ``skip_support`` (see the `supports` of :func:`latent_dependence`) get True.

    Computed inside the jitted inspection (:func:`ppl.compile.logdensity.compile`), so they
    come out concrete; :func:`check_observed` reads them.
    """
    return [(site.value, site.mask,
             jnp.asarray(True) if site.name in skip_support else site.dist.support(site.value))
            for site in tr.sites("observed")]


def observed_problems(tr: Trace, checks=None) -> list:
    """`(site name, message)` for each observed site whose data contain NaN or lie outside
    the distribution's support (masked-out elements excepted).

    ``checks``: what :func:`observed_checks` gave for ``tr`` (computed now when None)."""
    checks = observed_checks(tr) if checks is None else checks
    out = []
    for site, (value, mask, ok) in zip(tr.sites("observed"), checks):
        value = np.asarray(value)
        if mask is None:
            where = np.ones(value.shape, bool)
        else:  # the mask is batch-shaped: broadcast it over the event dims too
            mask = np.asarray(mask)
            where = np.broadcast_to(mask.reshape(mask.shape + (1,) * len(site.dist.event_shape)), value.shape)
        if np.issubdtype(value.dtype, np.floating) and np.isnan(value[where]).any():
            out.append((site.name,
                f"observed site '{site.name}' contains NaN at {int(np.isnan(value[where]).sum())} "
                f"position(s); remove them, impute them as latent sites, or mask them with "
                f"ppl.handlers.mask."
            ))
            continue
        ok = np.asarray(ok)
        event_dim = site.dist.support.event_dim
        mask_b = where if event_dim == 0 else where.reshape(where.shape[: where.ndim - event_dim] + (-1,)).all(-1)
        ok = np.broadcast_to(ok, mask_b.shape) if ok.shape != mask_b.shape else ok
        if not ok[mask_b].all():
            bad = np.argwhere(~ok & mask_b)[:3].tolist()
            where_bad = f" (first bad indices {bad})" if mask_b.ndim else ""  # a scalar has no index
            out.append((site.name,
                f"observed site '{site.name}' has values outside the support {site.dist.support} "
                f"of {dist_name(site.dist)}{where_bad}; fix the data or choose "
                f"a distribution whose support contains them."
            ))
    return out


def check_observed(tr: Trace, checks=None) -> None:
    """Raise if observed data contain NaN or lie outside their distribution's support (the
    first of :func:`observed_problems`, a ValueError naming the site).

    ``checks``: what :func:`observed_checks` gave for ``tr`` (computed now when None)."""
    problems = observed_problems(tr, checks)
    if problems:
        raise ValueError(problems[0][1])
