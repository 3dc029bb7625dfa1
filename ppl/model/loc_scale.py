"""`LocScaleReparam`: (partial) non-centring of a location-scale latent site.

For a site ``x ~ F(loc, scale)`` of a location-scale family (``x = loc + scale * z`` with
``z ~ F(0, 1)``: Normal, StudentT, Cauchy, Laplace, Logistic, Gumbel, SoftLaplace, the
asymmetric Laplaces, ...), with centredness ``c`` in [0, 1]:

    x_decentered ~ F(c * loc, scale ** c)                     (a new latent site)
    x = loc + scale ** (1 - c) * (x_decentered - c * loc)     (the site, now deterministic)

so that ``x ~ F(loc, scale)`` still, for every ``c``: the model's distribution is unchanged,
only the coordinates the inference method works in. ``c = 1`` is the model as written
(centred), ``c = 0`` the non-centred form ``x = loc + scale * z``, which removes the funnel
between a scale and the values it scales. A transformed distribution of such a family with
elementwise transforms (``LogNormal``: ``exp`` of a Normal) is reparameterised through its
base and the transforms applied to the result.

Reference: M. Gorinova, D. Moore, M. Hoffman (2019), "Automatic Reparameterisation of
Probabilistic Programs", arXiv:1906.03028, section 3 (the partially non-centred form).
"""
from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import (
    Distribution,
    ExpandedDistribution,
    Independent,
    TransformedDistribution,
    constraints,
)

from ppl.model.primitives import param, sample


def _real(support) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _unwrap(d):
    """``(core, expand_shape, event_dim)``: ``d`` under its `expand`/`to_event` wrappers, the
    shape those wrappers broadcast it to (NumPyro's convention), and ``d``'s event dims."""
    shape, event_dim = tuple(d.shape()), d.event_dim
    while isinstance(d, (Independent, ExpandedDistribution)):
        d = d.base_dist
    return d, shape[: len(shape) - d.event_dim], event_dim


def _wrap(d, expand_shape, event_dim):
    d = d.expand(expand_shape)
    return d.to_event(event_dim - d.event_dim) if d.event_dim < event_dim else d


class LocScaleReparam:
    """Decentre a location-scale latent site (NumPyro's `numpyro.infer.reparam.LocScaleReparam`).

    Args:
      centered: the centredness ``c`` in [0, 1]: 0 fully non-centred, 1 the model unchanged,
        in between partially. None (the default) learns it: a `param` named
        ``{name}_centered`` in [0, 1] of the site's event shape, starting at 0.5 (learned by
        MLE, MAP and VI; MCMC holds a param fixed, and every ``c`` gives the same posterior).
      shape_params: names of the family's other parameters, copied to the decentred
        distribution unchanged (StudentT's ``df``). Default: every parameter but ``loc`` and
        ``scale``.

    The reparameterised site ``name`` becomes a deterministic site (same name, same value in
    draws) and the new latent site is ``{name}_decentered``.

    Raises:
      ValueError: for ``centered`` outside [0, 1]; when the model runs, for a site whose
        distribution is not a location-scale family on the real line (naming the site).

    Example:
      >>> model = ppl.handlers.reparam(funnel, config={"x": LocScaleReparam(centered=0)})
    """

    def __init__(self, centered=None, shape_params=None):
        if centered is not None:
            if isinstance(centered, (str, bytes)) or not isinstance(
                    centered, (numbers.Number, np.ndarray, np.generic, jax.Array)):
                raise TypeError(f"LocScaleReparam: centered must be None or a number (or array) in [0, 1], "
                                f"got {type(centered).__name__}.")
            try:
                inside = np.all((np.asarray(centered) >= 0) & (np.asarray(centered) <= 1))
            except jax.errors.TracerArrayConversionError:  # a traced value: checked by nobody
                inside = True
            if not inside:
                raise ValueError(f"LocScaleReparam: centered must lie in [0, 1] (0 non-centred, 1 centred), "
                                 f"got {centered!r}.")
        if shape_params is not None and (isinstance(shape_params, str) or
                                         not all(isinstance(k, str) for k in shape_params)):
            raise TypeError(f"LocScaleReparam: shape_params must be a list of parameter names, "
                            f"got {shape_params!r}.")
        self.centered = centered
        self.shape_params = None if shape_params is None else tuple(shape_params)

    def __call__(self, name: str, fn: Distribution, obs):
        if obs is not None:
            raise ValueError(f"LocScaleReparam: site '{name}' is observed; it applies to latent sites only. "
                             f"Remove '{name}' from the reparam config.")
        if isinstance(self.centered, numbers.Number) and self.centered == 1:
            return fn, None  # centred: the model as written
        core, expand_shape, event_dim = _unwrap(fn)
        family, transforms = core, []
        if isinstance(core, TransformedDistribution):
            family, transforms = core.base_dist, list(core.transforms)
            while isinstance(family, (Independent, ExpandedDistribution)):
                family = family.base_dist
            if any(t.domain.event_dim != 0 for t in transforms):
                raise _family_error(name, fn, "its transforms are not elementwise")
        if not {"loc", "scale"} <= set(getattr(family, "arg_constraints", {})):
            raise _family_error(name, fn, "it has no loc and scale parameters")
        if not _real(family.support):
            raise _family_error(name, fn, f"its support is {family.support}, not the real line")
        keys = self.shape_params if self.shape_params is not None else tuple(
            k for k in family.arg_constraints if k not in ("loc", "scale"))
        loc, scale = family.loc, family.scale
        centered = self.centered
        if centered is None:
            centered = param(f"{name}_centered", jnp.full(tuple(fn.event_shape), 0.5),
                             constraint=constraints.unit_interval)
        if isinstance(centered, numbers.Number) and centered == 0:
            new = {"loc": jnp.zeros_like(loc), "scale": jnp.ones_like(scale)}
        else:
            new = {"loc": loc * centered, "scale": scale ** centered}
        try:
            new.update({k: getattr(family, k) for k in keys})
            decentered = type(family)(**new)
        except (AttributeError, TypeError) as e:
            raise ValueError(
                f"LocScaleReparam: site '{name}': cannot build the decentred {type(family).__name__} from "
                f"loc, scale and {list(keys)} ({e}); pass its other parameters as "
                f"LocScaleReparam(..., shape_params=[...]).") from e
        z = sample(f"{name}_decentered", _wrap(decentered, expand_shape, event_dim))
        value = loc + scale ** (1 - centered) * (z - centered * loc)
        for t in transforms:
            value = t(value)
        return None, value


def _family_error(name, fn, why) -> ValueError:
    from ppl.model.sites import dist_name

    return ValueError(
        f"LocScaleReparam: site '{name}' has a {dist_name(fn)} distribution, which it cannot decentre: "
        f"{why}. It applies to location-scale families on the real line (Normal, StudentT, Cauchy, "
        f"Laplace, Logistic, Gumbel, ...) and to elementwise transforms of them (LogNormal); remove "
        f"'{name}' from the reparam config, or write the non-centred form by hand.")


__all__ = ["LocScaleReparam"]
