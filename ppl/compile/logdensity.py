"""`compile(model, *args, **kwargs) -> LogDensity`: a pure log joint over one flat vector."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.distribution import validation_enabled

from ppl.compile import _handlers as H
from ppl.compile.spec import ModelSpec, check_observed, inspect, latent_dependent_supports, observed_checks
from ppl.model import handlers


class LogJoint(NamedTuple):
    """The log joint at a point, by part: log prior (latent sites), log likelihood
    (observed and factor sites), and the log-Jacobian of the unconstrained map."""

    prior: Any
    likelihood: Any
    jacobian: Any

    @property
    def total(self):
        return self.prior + self.likelihood + self.jacobian


def _is_data(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


def split_arguments(args, kwargs):
    """Split model arguments into data leaves (arrays) and static leaves (Python values)."""
    leaves, tree = jax.tree.flatten((args, kwargs))
    data, static = [], []
    for i, leaf in enumerate(leaves):
        if _is_data(leaf):
            data.append(jnp.asarray(leaf))
        else:
            try:
                hash(leaf)
            except TypeError as e:
                raise TypeError(
                    f"model argument leaf #{i} of type {type(leaf).__name__} is neither an array "
                    f"nor a hashable Python value; pass arrays, pytrees of arrays, or scalars/strings."
                ) from e
            static.append((i, leaf))
    return tuple(data), tree, tuple(static)


@jax.tree_util.register_pytree_node_class
class LogDensity:
    """A compiled model: the log joint density over a flat unconstrained vector `z`.

    A pytree whose leaves are the data and the current param values, so `jax.jit(f)(ld, z)`
    does not recompile for new data of the same shapes.

    Attributes:
      dim: length of `z`.
      spec: the static `ModelSpec`.
      params: dict of param values (constrained), held fixed by `log_prob`.
    """

    def __init__(self, model, spec: ModelSpec, tree, static, data, params):
        self.model, self.spec, self._tree, self._static = model, spec, tree, static
        self.data, self.params = data, params

    def tree_flatten(self):
        return (self.data, self.params), (self.model, self.spec, self._tree, self._static)

    @classmethod
    def tree_unflatten(cls, aux, children):
        model, spec, tree, static = aux
        return cls(model, spec, tree, static, *children)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def arguments(self):
        """The model's `(args, kwargs)`, rebuilt from data and static leaves."""
        static = dict(self._static)
        data = iter(self.data)
        leaves = [static[i] if i in static else next(data) for i in range(len(self.data) + len(static))]
        return jax.tree.unflatten(self._tree, leaves)

    def run(self, z, uparams=None, extra=()):
        """Run the model with latents set from `z`; return its `Trace`.

        Args:
          z: flat unconstrained vector of length `dim`.
          uparams: optional dict of *unconstrained* param values overriding `self.params`.
          extra: further handlers, installed inside (they see sites first).
        """
        args, kwargs = self.arguments()
        # Fixed params only where `uparams` gives no value (the outer substitute would win).
        fixed = self.params if uparams is None else {k: v for k, v in self.params.items() if k not in uparams}
        # Points outside a parameter's support give -inf, not numpyro's eager validation error.
        with validation_enabled(False), handlers.trace() as tr, handlers.substitute(data=fixed), \
                contextlib.ExitStack() as inner:
            if uparams is not None:
                inner.enter_context(H.ParamsFromFlat(uparams))
            inner.enter_context(H.FromFlat(jnp.asarray(z), self.spec))
            for h in extra:
                inner.enter_context(h)
            self.model(*args, **kwargs)
        return tr

    def log_joint(self, z, uparams=None) -> LogJoint:
        """The log joint at `z`, split into prior, likelihood and Jacobian terms."""
        return log_joint_of(self.run(z, uparams), self.spec.checked_supports)

    def log_prob(self, z):
        """Log joint density of the unconstrained `z`, Jacobian included (NaN -> -inf)."""
        lp = self.log_joint(z).total
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    def constrain(self, z, deterministic: bool = False) -> dict:
        """Map `z` to a dict of constrained latent values (and deterministic sites if asked)."""
        kinds = ("latent", "deterministic") if deterministic else ("latent",)
        return {s.name: s.value for s in self.run(z).sites(*kinds)}

    def unconstrain(self, values: dict):
        """Map a dict of constrained latent values to the flat vector `z`."""
        missing = [lat.name for lat in self.spec.latents if lat.name not in values]
        if missing:
            raise ValueError(f"unconstrain: no value given for latent site(s) {missing}.")
        recorder = H.ToFlat()
        args, kwargs = self.arguments()
        sub = {k: v for k, v in values.items() if k in self.spec.latent_index}
        with recorder, handlers.substitute(data={**self.params, **sub}):
            self.model(*args, **kwargs)
        return self.flatten(recorder.latents)

    def flatten(self, pieces: dict):
        """Concatenate per-site unconstrained arrays into `z`, in spec order."""
        if not self.spec.latents:
            return jnp.zeros((0,), jnp.result_type(float))
        parts = [jnp.reshape(pieces[lat.name], (-1,)).astype(jnp.result_type(float)) for lat in self.spec.latents]
        return jnp.concatenate(parts)

    def unconstrained_params(self, z=None) -> dict:
        """The current params in unconstrained form (their constraints come from the model)."""
        z = jnp.zeros((self.dim,), jnp.result_type(float)) if z is None else z
        recorder = H.ToFlat()
        args, kwargs = self.arguments()
        with recorder, handlers.substitute(data=self.params), H.FromFlat(z, self.spec):
            self.model(*args, **kwargs)
        return {k: v for k, v in recorder.params.items() if k in self.spec.params}

    def init(self, key, strategy: str = "uniform", radius: float = 2.0, values=None, num_tries: int = 100):
        """One finite starting point `z` (see `ppl.compile.init.initial_points`).

        Raises:
          ValueError: naming the sites whose log density is not finite, when no try works.
        """
        from ppl.compile.init import find_initial

        return find_initial(self, key, 1, strategy=strategy, radius=radius, values=values, num_tries=num_tries)[0]

    def __repr__(self):
        names = ", ".join(f"{lat.name}{list(lat.shape)}" for lat in self.spec.latents)
        return f"LogDensity(model={getattr(self.model, '__name__', self.model)!s}, dim={self.dim}, latents=[{names}])"


def log_joint_of(tr, checked_supports=()) -> LogJoint:
    """The `LogJoint` of a trace. Observed sites named in `checked_supports` (data already
    found inside a support that no latent or param moves) are scored without NumPyro's
    per-evaluation support mask, which would only select every element again: on a 5000 x 25
    logistic regression it is a quarter of the gradient's time on a CPU."""
    zero = jnp.zeros(())
    prior, lik, jac = zero, zero, zero
    for s in tr.values():
        if s.kind == "latent":
            prior = prior + s.log_prob_sum()
            if s.log_jacobian is not None:
                jac = jac + s.log_jacobian
        elif s.kind in ("observed", "factor"):
            checked = validation_enabled(False) if s.name in checked_supports else contextlib.nullcontext()
            with checked:
                lik = lik + s.log_prob_sum()
    return LogJoint(prior, lik, jac)


def _inspect_once(model, tree, static, data):
    """`(spec, trace, observed checks, initial param values)` of one run of the model."""
    args_, kwargs_ = LogDensity(model, None, tree, static, data, {}).arguments()
    spec, tr = inspect(model, args_, kwargs_)
    for site in tr.sites("observed"):  # a value the distribution cannot score fails here, named
        site.log_prob  # noqa: B018 - traced only (the jitted inspection drops it)
    dependent = latent_dependent_supports(model, args_, kwargs_, tr)
    checks = observed_checks(tr, dependent)
    spec = dataclasses.replace(spec, checked_supports=tuple(n for n in spec.observed if n not in dependent))
    return spec, tr, checks, {s.name: s.value for s in tr.sites("param")}


@functools.lru_cache(maxsize=64)
def _inspector(model, tree, static):
    """A jitted inspection of `model` for this argument structure, and the box where each
    trace (one per data shapes) leaves its `ModelSpec` and `Trace`."""
    box = {}

    def run(data):
        spec, tr, checks, params = _inspect_once(model, tree, static, data)
        box[_shapes(data)] = spec, tr
        return checks, params

    return jax.jit(run), box


def _shapes(data):
    return tuple((tuple(jnp.shape(x)), str(jnp.result_type(x))) for x in data)


def _inspect(model, tree, static, data):
    """`inspect` the model and compute its observed-data checks and initial param values.

    As ONE jitted program: run eagerly, every operation of a new model compiles a small XLA
    program of its own (some 15 for a model of a few lines, ~0.5 s on a CPU). Only static
    facts (names, shapes, supports, plates) are read from the traced `Trace`; the arrays come
    out of the program, which new data of the same shapes reuse. A model whose Python code
    needs concrete values (e.g. `if y.sum() > 0`) is inspected eagerly instead.
    """
    try:
        run, box = _inspector(model, tree, tuple(static))
        checks, params = run(data)
        spec, tr = box[_shapes(data)]
        return spec, tr, checks, params
    except TypeError:  # concrete values needed (jax.errors.JAXTypeError), or an unhashable model
        return _inspect_once(model, tree, static, data)


def compile(model, *args, **kwargs) -> LogDensity:
    """Trace `model(*args, **kwargs)` once and return its `LogDensity`.

    Arrays among the arguments are data (new values of the same shapes never recompile);
    Python scalars and strings are static.

    Raises:
      ValueError: for invalid observed data (NaN, outside the support, shape vs plate),
        duplicate site names, and other model errors, naming the site.

    Example:
      >>> ld = ppl.compile(model, x, y=y)
      >>> z = ld.init(0); ld.log_prob(z)
    """
    if not callable(model):
        raise TypeError(f"ppl.compile expected a model function, got {type(model).__name__}.")
    data, tree, static = split_arguments(args, kwargs)
    spec, tr, checks, params = _inspect(model, tree, static, data)
    check_observed(tr, checks)
    ld = LogDensity(model, spec, tree, static, data, params)
    ld.module_statics = {s.name: s.infer["module_static"] for s in tr.sites("param") if "module_static" in s.infer}
    return ld
