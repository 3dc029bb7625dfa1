"""The model doctor: `ppl.check(model, *args, **kwargs) -> Report`.

One call looks at every site of a model and says what will go wrong before any method runs:

* per site, whether its log density (for a latent, with the log-Jacobian of its map from
  unconstrained space) is finite at draws from the prior and at initial points (uniform(-2, 2)
  in unconstrained space, where the samplers start), and whether its gradient is finite there;
* whether observed data lie in their distribution's support (and hold no NaN), and whether a
  distribution parameter fixed by the data breaks its constraint (a negative scale);
* shape mismatches between data, parameters and plates;
* which sites are discrete or improper, and so which methods of `ppl.METHODS` apply (each
  method's own `check` decides, with its reason);
* with `guide=fn`, whether the guide's sites match the model's latents in name, shape and
  support.

Every problem names the site (or argument) and the fix. `print(ppl.check(...))` gives a
readable report; `Report.ok`, `Report.problems` and `Report.sites` hold the same facts as
typed records. Unlike `ppl.compile`, which raises at the first problem, the doctor runs the
model once eagerly with its shape checks recorded rather than raised, so that it finds all of
them.

Example:
  >>> report = ppl.check(eight_schools, sigma, y=y)
  >>> print(report)
  >>> report.ok, [p.site for p in report.problems]
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl._keys import as_key
from ppl.compile import _handlers as H
from ppl.compile.errors import NumPyroGuard, model_name, strip_hint
from ppl.compile.init import draw_initial
from ppl.compile.logdensity import LogDensity, compile as compile_model, split_arguments
from ppl.compile.spec import latent_dependence, observed_checks, observed_problems
from ppl.compile.supports import guide_support_problems, parameter_checks, parameter_problems, short_support
from ppl.compile.terms import SCORED, site_terms
from ppl.model import handlers, validation
from ppl.model.primitives import ShapeAudit
from ppl.model.sites import dist_name, user_dist

NOT_COMPILED = "the model does not compile (see the problems)"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with the model.

    Attributes:
      site: the site (or argument) it concerns; None for the model as a whole.
      severity: "error" (a method will fail, or its answer would be wrong) or "warning"
        (worth a look: it may be intended).
      message: what is wrong and the fix.
    """

    site: Optional[str]
    severity: str
    message: str

    def __str__(self):
        return f"[{self.severity}] {self.message}"


@dataclasses.dataclass(frozen=True)
class SiteReport:
    """What the doctor found at one site.

    Attributes:
      name, kind: the site's name and kind ("latent", "observed", "deterministic", "param",
        "factor").
      distribution: the user's distribution's name (None for sites without one).
      shape: the site's value's shape.
      plates: the names of the enclosing plates, outermost first.
      support: the distribution's support, as text (None without a distribution).
      discrete, improper: a discrete distribution; an improper flat prior (ImproperUniform).
      finite_at_prior, finite_at_init: `(finite, tried)`: at how many of the prior draws and
        of the initial points the site's log density was finite (for a deterministic site,
        its value); None where not evaluated.
      grad_finite_at_prior, grad_finite_at_init: the same for its gradient with respect to
        the continuous latents (counted where the density is finite).
      data_in_support: observed sites: whether the data are valid (no NaN, inside the
        support); None for other sites.
      problems: the problems that name this site.
    """

    name: str
    kind: str
    distribution: Optional[str] = None
    shape: Tuple[int, ...] = ()
    plates: Tuple[str, ...] = ()
    support: Optional[str] = None
    discrete: bool = False
    improper: bool = False
    finite_at_prior: Optional[Tuple[int, int]] = None
    finite_at_init: Optional[Tuple[int, int]] = None
    grad_finite_at_prior: Optional[Tuple[int, int]] = None
    grad_finite_at_init: Optional[Tuple[int, int]] = None
    data_in_support: Optional[bool] = None
    problems: Tuple[Problem, ...] = ()


@dataclasses.dataclass(frozen=True)
class Report:
    """The doctor's report on a model (see `ppl.check`).

    Attributes:
      model: the model's name.
      sites: one `SiteReport` per site, in the order the model runs them.
      methods: method name (from `ppl.METHODS`) -> None where it applies, else the reason.
      problems: every problem found, errors first.
      num_points: how many prior draws and initial points were evaluated.
    """

    model: str
    sites: Tuple[SiteReport, ...]
    methods: dict
    problems: Tuple[Problem, ...]
    num_points: int

    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings may remain)."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> Tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> Tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def applicable(self) -> Tuple[str, ...]:
        """The names of the methods that apply to the model."""
        return tuple(name for name, reason in self.methods.items() if reason is None)

    def site(self, name: str) -> SiteReport:
        """The `SiteReport` of site `name`."""
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(f"no site {name!r} in the report; its sites are {[s.name for s in self.sites]}.")

    def __str__(self):
        return _format(self)

    def __repr__(self):
        return _format(self)


# ---------------------------------------------------------------------------- the check

def check(model, *args, guide=None, key=0, num_points: int = 16, **kwargs) -> Report:
    """Examine every site of `model(*args, **kwargs)` and report what will go wrong.

    Args:
      model: a model function, as for `ppl.infer`.
      *args, **kwargs: the model's arguments (as for `ppl.infer`).
      guide: optionally a guide function (as for `ppl.VI(guide=...)`): its sites are checked
        against the model's latents (names, shapes, supports).
      key: an int or a jax random key, for the prior draws and initial points.
      num_points: how many prior draws and how many initial points to evaluate.

    Returns:
      a `Report`: `print` it; `report.ok` is False when a problem would stop a method or
      make its answer wrong.

    Raises:
      TypeError: only when `model` is not callable, or `key` or `num_points` is invalid; every
        problem of the model itself goes into the report.

    Example:
      >>> print(ppl.check(model, x, y=y))
    """
    if not callable(model):
        raise TypeError(f"ppl.check expected a model function, got {type(model).__name__}.")
    if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
        raise TypeError(f"ppl.check: num_points must be a positive int, got {num_points!r}.")
    key = as_key(key)
    problems = _Problems()
    try:
        data, tree, static = split_arguments(args, kwargs)
    except (TypeError, ValueError) as e:
        problems.add(None, "error", strip_hint(str(e)))
        return _report(model, [], {}, problems, num_points, {})

    args_, kwargs_ = LogDensity(model, None, tree, static, data, {}).arguments()
    tr, audit = _audit_run(model, args_, kwargs_, key, problems)
    for name, error in audit.problems:
        problems.add(name, "error", strip_hint(str(error)))
    _data_checks(model, args_, kwargs_, tr, problems)

    ld = None
    try:
        ld = compile_model(model, *args, **kwargs)
    except Exception as e:  # noqa: BLE001 - every failure goes into the report
        problems.add(_named_site(str(e), tr), "error", strip_hint(str(e)))

    numbers = {}
    if ld is not None:
        numbers = _numeric_checks(ld, key, num_points, problems)
        if guide is not None:
            _guide_checks(ld, guide, args_, kwargs_, problems)
    methods = _methods(ld)
    return _report(model, list(tr.values()), methods, problems, num_points, numbers)


class _Problems:
    """The problems found so far, each message once."""

    def __init__(self):
        self.items = []

    def add(self, site, severity, message):
        if all(p.message != message for p in self.items):
            self.items.append(Problem(site, severity, message))


def _named_site(message, tr):
    """The first site of `tr` that `message` names ("site 'y'"), else None."""
    for name in re.findall(r"'([^']+)'", message):
        if name in tr:
            return name
    return None


def _audit_run(model, args, kwargs, key, problems):
    """Run the model once, eagerly, recording shape problems instead of raising; an error
    that stops the run is a model-level problem (the trace keeps the sites before it)."""
    audit = ShapeAudit()
    tr = handlers.trace()
    try:
        with validation.off(), tr as sites, audit, H.InitValues(key), \
                handlers.seed(rng_seed=key), NumPyroGuard():
            model(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported, with the site reached
        where = f" (the model stopped after site '{list(tr.trace)[-1]}')" if len(tr.trace) else ""
        problems.add(_named_site(str(e), tr.trace), "error",
                     f"running the model failed{where}: {type(e).__name__}: {strip_hint(str(e))}")
        return tr.trace, audit
    return sites, audit


def _data_checks(model, args, kwargs, tr, problems):
    """Observed data (NaN, support) and parameters fixed by the data (constraints)."""
    try:
        with validation.off():  # concrete data: NumPyro would raise, unnamed
            dependence = latent_dependence(model, args, kwargs, tr)
            for name, message in observed_problems(tr, observed_checks(tr, dependence.supports)):
                problems.add(name, "error", message)
            meta, arrays = parameter_checks(tr, dependence.parameters)
        for check_, message in parameter_problems(meta, arrays):
            problems.add(check_.site, "error", message)
    except Exception as e:  # noqa: BLE001 - a check that cannot run is itself a finding
        problems.add(_named_site(str(e), tr), "error", f"checking the data failed: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------- numbers

def _site_terms(ld, z, names, kinds):
    """Per site in `names`: its log density summed, a latent's with its log-Jacobian (as
    `ppl.compile.terms.site_terms`), or for a deterministic site 0 where its value is finite
    and NaN where not."""
    scored = [n for n, k in zip(names, kinds) if k in SCORED]
    values = dict(zip(scored, site_terms(ld, z, scored)[1])) if scored else {}
    if len(scored) < len(names):
        tr = ld.run(z)
        for n, k in zip(names, kinds):
            if k not in SCORED:
                leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tr[n].value)
                          if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
                values[n] = jnp.where(jnp.all(jnp.stack(leaves)) if leaves else True, 0.0, jnp.nan)
    dtype = jnp.result_type(float)
    return jnp.stack([jnp.asarray(values[n], dtype) for n in names]) if names else jnp.zeros((0,), dtype)


def _evaluate(ld, zs, names, kinds, continuous):
    """(finite values (P, S), finite gradients (P, S)) of the sites' terms at points `zs`.

    Each site's gradient is taken on its own: in a Jacobian of all terms at once, the zero
    cotangent of one site times another's infinite partial derivative (0 * inf) would make a
    NaN appear in every row.
    """
    def one(z):
        values = _site_terms(ld, z, names, kinds)
        grad_ok = []
        for n, kind in zip(names, kinds):
            if kind not in SCORED:  # a deterministic site: its value only
                grad_ok.append(jnp.asarray(True))
                continue
            g = jax.grad(lambda x, n=n: site_terms(ld, x, [n])[1][0])(z)
            grad_ok.append(jnp.all(jnp.where(continuous, jnp.isfinite(g), True)))
        return jnp.isfinite(values), jnp.stack(grad_ok) if grad_ok else jnp.zeros((0,), bool)

    return jax.vmap(one)(zs)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _numbers(ld, key, names, kinds, num_points, strategies):
    """Per strategy ("prior", "uniform"): `_evaluate` at `num_points` points drawn by it.
    One program (cached by model, shapes, site names and number of points)."""
    continuous = np.ones(ld.dim, bool)
    for lat in ld.spec.discrete:
        continuous[lat.offset: lat.offset + lat.size] = False
    out = []
    for i, strategy in enumerate(strategies):
        keys = jax.random.split(jax.random.fold_in(key, i), num_points)
        zs = jax.vmap(lambda k: draw_initial(ld, k, strategy))(keys)
        out.append(_evaluate(ld, zs, names, kinds, jnp.asarray(continuous)))
    return out


def _numeric_checks(ld, key, num_points, problems):
    """Evaluate every site at prior draws and initial points; record what is not finite."""
    tr = ld.run(jnp.zeros((ld.dim,), jnp.result_type(float)))
    names = tuple(s.name for s in tr.values() if s.kind in SCORED + ("deterministic",))
    kinds = tuple(tr[n].kind for n in names)
    results = {}
    try:
        prior, init = _numbers(ld, key, names, kinds, num_points, ("prior", "uniform"))
        results = {"prior": prior, "init": init}
    except Exception as e:  # noqa: BLE001 - e.g. a prior that cannot be drawn from: initial points only
        problems.add(None, "warning", f"evaluating the model at {_LABEL['prior']} failed: "
                                      f"{type(e).__name__}: {strip_hint(str(e))}")
        try:
            (init,) = _numbers(ld, key, names, kinds, num_points, ("uniform",))
            results = {"init": init}
        except Exception as e2:  # noqa: BLE001 - reported
            problems.add(None, "warning", f"evaluating the model at {_LABEL['init']} failed: "
                                          f"{type(e2).__name__}: {strip_hint(str(e2))}")
    results = {k: tuple(np.asarray(a) for a in v) for k, v in results.items()}
    out = {}
    for j, name in enumerate(names):
        facts = {}
        for label, (finite, grad) in results.items():
            f = finite[:, j]
            g = grad[:, j] & f
            facts[f"finite_at_{label}"] = (int(f.sum()), num_points)
            if tr[name].kind in SCORED:
                facts[f"grad_finite_at_{label}"] = (int(g.sum()), int(f.sum()))
        out[name] = facts
        _numeric_problems(tr[name], facts, num_points, problems)
    return out


_LABEL = {"prior": "draws from the prior", "init": "initial points (uniform(-2, 2) in unconstrained space)"}


def _numeric_problems(site, facts, n, problems):
    name, kind = site.name, site.kind
    init = facts.get("finite_at_init")
    prior = facts.get("finite_at_prior")
    what = "value" if kind == "deterministic" else "log density"
    if kind == "deterministic":
        for label in ("init", "prior"):
            f = facts.get(f"finite_at_{label}")
            if f is not None and f[0] < n:
                problems.add(name, "warning",
                             f"deterministic site '{name}' is not finite at {n - f[0]} of {n} {_LABEL[label]}: "
                             f"look for log(0), division by zero or sqrt of a negative in its expression.")
                break
        return
    fix = _FIX[kind]
    if init is not None and init[0] == 0:
        problems.add(name, "error",
                     f"{kind} site '{name}': the {what} is not finite at any of {n} {_LABEL['init']}, so "
                     f"no method can start; {fix}")
    elif init is not None and init[0] < n:
        problems.add(name, "warning",
                     f"{kind} site '{name}': the {what} is not finite at {n - init[0]} of {n} "
                     f"{_LABEL['init']}: the model has a region of zero or undefined density; samplers "
                     f"retry their starts and reject moves into it (counted in their diagnostics). If "
                     f"that region should "
                     f"have density, {fix}")
    if prior is not None and prior[0] < n and not (init is not None and init[0] == 0):
        problems.add(name, "warning",
                     f"{kind} site '{name}': the {what} is not finite at {n - prior[0]} of {n} "
                     f"{_LABEL['prior']}; importance and rejection sampling (which draw from the prior) "
                     f"give those draws zero weight{', all of them' if prior[0] == 0 else ''}. "
                     f"If the prior should put mass only where the density is finite, {fix}")
    for label in ("init", "prior"):
        g, f = facts.get(f"grad_finite_at_{label}", (0, 0)), facts.get(f"finite_at_{label}", (0, 0))
        if f[0] and g[0] < f[0]:
            problems.add(name, "warning",
                         f"{kind} site '{name}': the gradient of its log density is not finite at "
                         f"{f[0] - g[0]} of the {f[0]} {_LABEL[label]} where the density is finite: "
                         f"gradient methods (nuts, hmc, map, mle, vi) will diverge or stop there. Look for "
                         f"sqrt, log or a fractional power at 0 or below, also in the branch a jnp.where "
                         f"does not take (give it a safe value: jnp.sqrt(jnp.where(x > 0, x, 1.0))), or "
                         f"use a method without gradients (mh, importance).")
            break


_FIX = {
    "latent": "check the prior's parameters (and any value it depends on).",
    "observed": "check that the data are valid for the distribution at the parameters the "
                "latents give (a scale that can reach 0, a rate that can be negative, a "
                "probability outside [0, 1]).",
    "factor": "check the factor's log weight: it is -inf or NaN there (log of 0 or of a "
              "negative, inf - inf).",
}


# ---------------------------------------------------------------------------- guide, methods

def _guide_checks(ld, guide, args, kwargs, problems):
    """The guide's sites against the model's latents: names, shapes and supports."""
    try:
        gtr = handlers.trace(handlers.seed(guide, 0)).get_trace(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported
        problems.add(None, "error", f"running the guide function {getattr(guide, '__name__', guide)!r} on "
                                    f"the model's arguments failed: {type(e).__name__}: {e}")
        return
    guide_sites = {s.name: s for s in gtr.sites("latent")}
    model_sites = {lat.name: lat for lat in ld.spec.latents}
    for name in model_sites:
        if name not in guide_sites:
            problems.add(name, "error", f"latent site '{name}' has no site in the guide; give the guide "
                                        f"a ppl.sample('{name}', ...) site.")
    for name, s in guide_sites.items():
        if name not in model_sites:
            problems.add(name, "error", f"guide site '{name}' is not a latent site of the model (its latents "
                                        f"are {sorted(model_sites)}); rename or remove it.")
        elif tuple(jnp.shape(s.value)) != tuple(model_sites[name].shape):
            problems.add(name, "error",
                         f"guide site '{name}' has shape {tuple(jnp.shape(s.value))} but the model's latent "
                         f"has shape {tuple(model_sites[name].shape)}; make the guide's distribution (and "
                         f"plates) produce the model's shape.")
    if any(p.site in guide_sites for p in problems.items if p.severity == "error"):
        return
    try:
        for name, message in guide_support_problems(ld, gtr):
            problems.add(name, "error", message)
    except Exception as e:  # noqa: BLE001 - reported
        problems.add(None, "error", f"comparing the guide's supports with the model's failed: {type(e).__name__}: {e}")


def _methods(ld) -> dict:
    """Method name -> None where it applies, else the reason (its `check`'s error)."""
    from ppl.infer.registry import METHODS

    out = {}
    for name, factory in METHODS.items():
        if ld is None:
            out[name] = NOT_COMPILED
            continue
        try:
            factory().check(ld)
            out[name] = None
        except Exception as e:  # noqa: BLE001 - the reason is the report
            out[name] = strip_hint(str(e))
    return out


# ---------------------------------------------------------------------------- the report

def _report(model, sites, methods, problems, num_points, numbers) -> Report:
    order = {"error": 0, "warning": 1}
    items = sorted(problems.items, key=lambda p: order[p.severity])
    rows = []
    for s in sites:
        d = s.dist
        facts = numbers.get(s.name, {})
        in_support = None
        if s.kind == "observed":
            in_support = not any(p.site == s.name and ("outside the support" in p.message or "NaN" in p.message)
                                 for p in items)
        rows.append(SiteReport(
            name=s.name, kind=s.kind,
            distribution=dist_name(d) if d is not None else None,
            shape=tuple(np.shape(s.value)) if s.value is not None else (),
            plates=tuple(p.name for p in s.plates),
            support=short_support(d.support) if d is not None else None,
            discrete=s.is_discrete,
            improper=d is not None and type(user_dist(d)).__name__ == "ImproperUniform",
            data_in_support=in_support,
            problems=tuple(p for p in items if p.site == s.name),
            **facts))
    return Report(model_name(model), tuple(rows), methods, tuple(items), num_points)


def _fraction(x):
    return "-" if x is None else f"{x[0]}/{x[1]}"


def _format(r: Report) -> str:
    n_err, n_warn = len(r.errors), len(r.warnings)
    head = (f"ppl.check({r.model}): {'OK' if r.ok else 'PROBLEMS'} - {n_err} error(s), {n_warn} warning(s) "
            f"({r.num_points} prior draws, {r.num_points} initial points)")
    cols = ("site", "kind", "distribution", "shape", "plates", "support",
            "finite@prior", "finite@init", "grad@prior", "grad@init", "data")
    table = []
    for s in r.sites:
        flags = [t for t, on in (("discrete", s.discrete), ("improper", s.improper)) if on]
        table.append((
            s.name, s.kind, (s.distribution or "-") + (f" [{', '.join(flags)}]" if flags else ""),
            str(s.shape), ",".join(s.plates) or "-", s.support or "-",
            _fraction(s.finite_at_prior), _fraction(s.finite_at_init),
            _fraction(s.grad_finite_at_prior), _fraction(s.grad_finite_at_init),
            "-" if s.data_in_support is None else ("ok" if s.data_in_support else "INVALID"),
        ))
    widths = [max(len(c), *(len(row[i]) for row in table)) if table else len(c) for i, c in enumerate(cols)]
    lines = [head, ""]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for row in table:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    if r.methods and all(reason == NOT_COMPILED for reason in r.methods.values()):
        lines += ["", "methods that apply: none until the errors below are fixed (the model does not compile)"]
    elif r.methods:
        lines += ["", "methods that apply: " + (", ".join(r.applicable) or "none")]
        for name, reason in r.methods.items():
            if reason is not None:
                lines.append(f"  {name}: no - {_first_sentence(reason)}")
    if r.problems:
        lines += ["", "problems:"]
        lines += [f"  {p}" for p in r.problems]
    else:
        lines += ["", "no problems found."]
    return "\n".join(lines)


def _first_sentence(text: str) -> str:
    m = re.match(r"(.+?\.)(\s|$)", text)
    return m.group(1) if m else text
