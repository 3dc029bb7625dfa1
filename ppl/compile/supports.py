"""Supports and parameter constraints: invalid distribution parameters fixed by the data, and
whether two supports (a guide's and the model's) are the same set.

A distribution parameter that depends on no latent or param value (a scale passed in as
data, a constant) holds the same value at every point, so a value outside its constraint
(NumPyro's ``arg_constraints``: a negative scale, probabilities that do not sum to one) makes
the log density NaN or -inf everywhere. :func:`parameter_checks` evaluates those
constraints inside the (jitted) inspection, and :func:`check_parameters` raises, naming the
site, the parameter, where and what it holds, before any method starts.

A guide function's site must have the support of the model's latent of the same name
(:func:`same_support`, :func:`guide_support_problems`): a Normal guide for a positive latent
proposes values the model cannot take.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Delta, constraints as C
from numpyro.distributions.transforms import biject_to

from ppl.model import handlers, validation
from ppl.model.sites import dist_name, user_dist


class ParameterCheck(NamedTuple):
    """Static description of one checked parameter: `site`'s distribution's `arg`, which
    must satisfy `constraint` (its text)."""

    site: str
    kind: str
    distribution: str
    arg: str
    constraint: str


def distribution_parameters(d):
    """`(name, value, constraint)` of the parameters `d`'s user distribution stores (lazy
    ones not yet computed are skipped; `dependent` constraints cannot be checked)."""
    base = user_dist(d)
    stored = vars(base)
    for name, constraint in getattr(base, "arg_constraints", {}).items():
        if name in stored and stored[name] is not None and not isinstance(constraint, C._Dependent):
            yield name, stored[name], constraint


def holds(constraint, name, x):
    """Elementwise `constraint(x)` (over the batch; event dims reduced), as NumPyro checks it
    when validating arguments, with two allowances: logits may be -inf (a category or outcome
    ruled out), and a simplex may miss 1 by rounding (a softmax of many categories in
    float32)."""
    x = jnp.asarray(x)
    base = constraint.base_constraint if isinstance(constraint, C._IndependentConstraint) else constraint
    if name.endswith("logits") and isinstance(base, C._Real):
        ok = ~jnp.isnan(x) & (x != jnp.inf)
        if isinstance(constraint, C._IndependentConstraint):
            ok = jnp.all(ok, axis=tuple(range(-constraint.reinterpreted_batch_ndims, 0)))
        return ok
    if isinstance(constraint, C._Simplex):
        k = x.shape[-1] if x.ndim else 1
        eps = float(jnp.finfo(x.dtype).eps) if jnp.issubdtype(x.dtype, jnp.floating) else 0.0
        tol = 1e-6 + 16 * k * eps
        s = x.sum(-1)
        return (x >= 0).all(-1) & (jnp.abs(s - 1) <= tol)
    return constraint(x)


def parameter_checks(tr, dependent=frozenset()):
    """Per distribution parameter of the trace's latent and observed sites that depends on
    no latent or param (not in `dependent`, a set of `(site, arg)`): its static
    `ParameterCheck`, and the arrays `(ok, value, mask)` that :func:`check_parameters` reads.

    Runs inside the jitted inspection, so the arrays come out concrete.
    """
    meta, arrays = [], []
    for site in tr.sites("latent", "observed"):
        for name, value, constraint in distribution_parameters(site.dist):
            if (site.name, name) in dependent:
                continue
            try:
                ok = holds(constraint, name, value)
            except Exception:  # noqa: BLE001 - a constraint that cannot be evaluated: unchecked
                continue
            meta.append(ParameterCheck(site.name, site.kind, dist_name(site.dist), name, str(constraint)))
            arrays.append((jnp.asarray(ok), jnp.asarray(value), site.mask))
    return tuple(meta), arrays


def parameter_problems(meta, arrays):
    """`(ParameterCheck, message)` for every checked parameter outside its constraint."""
    out = []
    for check, (ok, value, mask) in zip(meta, arrays):
        ok = np.asarray(ok)
        if mask is not None:  # masked-out elements are not scored
            try:
                ok = ok | ~np.broadcast_to(np.asarray(mask), np.broadcast_shapes(ok.shape, np.shape(mask)))
            except ValueError:
                pass
        if ok.all():
            continue
        value = np.asarray(value)
        bad = np.argwhere(~ok)[:3].tolist() if ok.ndim else []
        shown = _show_bad(value, ok)
        where = f" at {int((~ok).sum())} of {ok.size} position(s), first {bad}," if ok.ndim else ""
        out.append((check, (
            f"{check.kind} site '{check.site}': parameter '{check.arg}' of {check.distribution} is outside "
            f"its constraint {check.constraint}{where} (got {shown}). It depends on no latent site, "
            f"so it comes from the data or a constant and the log density is invalid everywhere: fix "
            f"the argument that sets it (e.g. a scale must be > 0, probabilities in [0, 1])."
        )))
    return out


def _show_bad(value, ok):
    """A few of the offending values (the whole value when it is small)."""
    if value.ndim and ok.shape == value.shape:
        return np.array2string(value[~ok][:3], precision=4)
    if value.ndim == 0 or value.size <= 4:
        return np.array2string(value, precision=4, threshold=8)
    if value.shape[: ok.ndim] == ok.shape:  # event dims on the right
        return np.array2string(value[~ok][:1], precision=4, threshold=12)
    return np.array2string(value.ravel()[:4], precision=4) + " ..."


def check_parameters(meta, arrays) -> None:
    """Raise the first of :func:`parameter_problems` (a ValueError naming site and argument)."""
    problems = parameter_problems(meta, arrays)
    if problems:
        raise ValueError(problems[0][1])


# ------------------------------------------------------------------ comparing supports

def describe_support(support) -> str:
    """`str(support)`, with array bounds shortened and traced ones said to move."""
    text = str(support)
    if "Traced" in text or "[" in text:
        return f"{type(support).__name__.lstrip('_')} (its bounds vary by element or are set by other latents)"
    return text


def short_support(c) -> str:
    """A support as a short text: 'real', 'positive', '(0, 1)', 'integers >= 0', ..."""
    while isinstance(c, C._IndependentConstraint):
        c = c.base_constraint
    names = [(C.real, "real"), (C.positive, "positive"), (C.nonnegative, "nonnegative"),
             (C.unit_interval, "(0, 1)"), (C.simplex, "simplex"), (C.boolean, "{0, 1}"),
             (C.nonnegative_integer, "integers >= 0"), (C.positive_integer, "integers >= 1"),
             (C.corr_cholesky, "corr cholesky"), (C.positive_definite, "positive definite"),
             (C.lower_cholesky, "lower cholesky"), (C.ordered_vector, "ordered")]
    for constraint, text in names:
        try:
            if c == constraint:
                return text
        except Exception:  # noqa: BLE001 - array bounds: fall through
            break
    lo, hi = _scalar_bound(c, "lower_bound"), _scalar_bound(c, "upper_bound")
    if isinstance(c, C._IntegerInterval) and lo is not None and hi is not None:
        return f"integers {lo:g}..{hi:g}"
    if isinstance(c, C._Interval) and lo is not None and hi is not None:
        return f"({lo:g}, {hi:g})"
    if isinstance(c, C._GreaterThan) and lo is not None:
        return f"> {lo:g}"
    if isinstance(c, C._LessThan) and hi is not None:
        return f"< {hi:g}"
    text = str(c)
    return text if len(text) <= 40 and "Traced" not in text else type(c).__name__.lstrip("_")


def _scalar_bound(c, name):
    """The constraint's bound `name` as a float, when it is one number (else None)."""
    x = getattr(c, name, None)
    try:
        return float(x) if x is not None and np.ndim(x) == 0 else None
    except Exception:  # noqa: BLE001 - a traced bound
        return None


def _unwrap(c):
    while isinstance(c, C._IndependentConstraint):
        c = c.base_constraint
    return c


def same_support(a, b, shape=(), key=None) -> bool:
    """Whether constraints `a` and `b` are the same set (for values of `shape`).

    Compared by NumPyro's constraint equality after unwrapping `independent` (a plate-expanded
    Normal and a Normal with `to_event` share the support `real`); when that cannot decide
    (different classes, or bounds that are arrays), empirically: points mapped into each
    support by its bijection (`biject_to`) from a spread of unconstrained values must lie in
    the other. Discrete supports compare by equality alone.
    """
    ua, ub = _unwrap(a), _unwrap(b)
    try:
        if ua == ub:
            return True
    except Exception:  # noqa: BLE001 - bounds that are traced arrays: decide below
        pass
    if getattr(ua, "is_discrete", False) or getattr(ub, "is_discrete", False):
        return type(ua) is type(ub) and _same_bounds(ua, ub)
    try:
        ta, tb = biject_to(a), biject_to(b)
    except NotImplementedError:
        return type(ua) is type(ub) and _same_bounds(ua, ub)
    key = jax.random.PRNGKey(0) if key is None else key
    for t, other in ((ta, b), (tb, a)):
        ushape = t.inverse_shape(tuple(shape))
        u = jax.random.uniform(key, (64,) + tuple(ushape), minval=-6.0, maxval=6.0)
        try:
            inside = np.asarray(jax.vmap(lambda v: jnp.all(other(t(v))))(u))
        except Exception:  # noqa: BLE001 - shapes that do not fit: not the same support
            return False
        if not inside.all():
            return False
    return True


def _same_bounds(a, b) -> bool:
    for name in ("lower_bound", "upper_bound"):
        x, y = getattr(a, name, None), getattr(b, name, None)
        if (x is None) != (y is None):
            return False
        try:
            if x is not None and not np.allclose(np.asarray(x), np.asarray(y)):
                return False
        except (TypeError, ValueError):  # shapes that do not broadcast, or traced bounds
            return False
    return True


# ------------------------------------------------------------------ a guide's supports

def guide_support_problems(ld, gtr) -> list:
    """`(site, message)` for each guide site whose support differs from the model's latent
    of the same name (see `check_guide_function`); the model is run at the guide's values."""
    values = {s.name: s.value for s in gtr.sites("latent")}
    args, kwargs = ld.arguments()
    with validation.off(), handlers.trace() as mtr, handlers.substitute(data={**ld.params, **values}), \
            handlers.seed(rng_seed=0):
        ld.model(*args, **kwargs)
    out = []
    for g in gtr.sites("latent"):
        m = mtr.get(g.name)
        if m is None or m.kind != "latent":
            continue
        model_support = m.dist.support
        if isinstance(user_dist(g.dist), Delta):
            continuous = {lat.name for lat in ld.spec.continuous}
            inside = bool(jnp.all(model_support(g.value))) if g.name in continuous else True
            if not inside:
                out.append((g.name, f"guide site '{g.name}' is a point mass (Delta) at a value outside the "
                                    f"model's support {describe_support(model_support)} ({dist_name(m.dist)}); "
                                    f"map its parameter into the support, e.g. dist.Delta(jnp.exp(loc)) for a "
                                    f"positive site."))
            continue
        if same_support(g.dist.support, model_support, tuple(jnp.shape(m.value))):
            continue
        out.append((g.name, (
            f"guide site '{g.name}' has support {describe_support(g.dist.support)} ({dist_name(g.dist)}) "
            f"but the model's latent '{g.name}' has support {describe_support(model_support)} "
            f"({dist_name(m.dist)}): the guide would propose values the model cannot take, or miss "
            f"values it can. Give the guide a distribution with the model's support, "
            f"{_support_fix(model_support)}.")))
    return out


def _support_fix(support) -> str:
    """A distribution to suggest for a guide site on `support`."""
    base = _unwrap(support)
    for constraint, fix in ((C.positive, "e.g. dist.LogNormal(loc, scale) for a positive site"),
                            (C.unit_interval, "e.g. dist.Beta(a, b) for a site in (0, 1)")):
        try:
            if base == constraint:
                return fix
        except Exception:  # noqa: BLE001 - array bounds: not these
            pass
    if getattr(base, "is_discrete", False):
        return "a discrete distribution over the same values (e.g. the model's own family)"
    return ("e.g. dist.TransformedDistribution(dist.Normal(loc, scale), "
            "numpyro.distributions.transforms.biject_to(support)) with the model's support")
