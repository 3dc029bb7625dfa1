"""`compile(model, *args, **kwargs) -> LogDensity`: a pure log joint over one flat vector."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import re
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.compile import _handlers as H
from ppl.compile.errors import (CONCRETE_VALUE_ERRORS, argument_label, data_argument_error, model_name,
                                 pointing_to_check, traced_sources, traced_value_error, user_line)
from ppl.compile.spec import ModelSpec, check_observed, inspect, latent_dependence, observed_checks
from ppl.compile.supports import check_parameters, parameter_checks
from ppl.model import handlers, validation
from ppl.runtime import program


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


def _as_data(leaf, path):
    """The array of a data leaf; an array of strings or objects is an error naming it."""
    if isinstance(leaf, jax.Array):
        return leaf
    value = np.asarray(leaf)
    if value.dtype.kind not in "biufc":
        raise data_argument_error(argument_label(path), value)
    return jnp.asarray(value)


def split_arguments(args, kwargs):
    """Split model arguments into data leaves (arrays) and static leaves (Python values).

    Objects that hold an array (a pandas Series or DataFrame of numbers) are data too.

    An unhashable Python value that is no array is static by identity (`ByIdentity`).

    Raises:
      TypeError: naming the argument, for an array of strings or objects.
    """
    leaves, tree = jax.tree_util.tree_flatten_with_path((args, kwargs))
    data, static = [], []
    for i, (path, leaf) in enumerate(leaves):
        if _is_data(leaf) or _holds_array(leaf):
            data.append(_as_data(leaf, path))
        else:
            try:
                hash(leaf)
            except TypeError:
                leaf = ByIdentity(leaf)  # an options object (argparse.Namespace), as NumPyro's examples pass
            static.append((i, leaf))
    return tuple(data), tree, tuple(static)


def _holds_array(leaf) -> bool:
    """A pandas/xarray-like container of numbers (it has `__array__` and is no Python scalar)."""
    return hasattr(leaf, "__array__") and not isinstance(leaf, (str, bytes, int, float, complex, bool))


def _list_argument_error(args, kwargs, error):
    """A TypeError naming a list or tuple of numbers given as an argument, when the model's
    failure (`error`) is a list or tuple used as an array (`y.shape`); else None."""
    if not re.search(r"'(list|tuple)' object", str(error)):
        return None
    named = [(f"positional argument {i}", a) for i, a in enumerate(args)] + \
        [(f"keyword argument '{k}'", a) for k, a in kwargs.items()]
    for label, a in named:
        if isinstance(a, (list, tuple)) and a and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in a):
            kind = type(a).__name__
            return TypeError(
                f"model {label} is a Python {kind} of numbers, which ppl treats as static Python "
                f"values, not data, so the model received a {kind} ({type(error).__name__}: {error}). "
                f"Pass data as an array: jnp.asarray(the_{kind}).")
    return None


def data_labels(args, kwargs) -> list:
    """The user's names of the data leaves, in order ('positional argument 0', ...)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path((args, kwargs))
    return [argument_label(path) for path, leaf in leaves if _is_data(leaf) or _holds_array(leaf)]


_MISSING = object()


class ByIdentity:
    """An unhashable Python argument that is no array (an `argparse.Namespace` of options):
    a static leaf compared and hashed by identity, so the same object reuses the compiled
    program and another object recompiles (NumPyro's methods close over such arguments)."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, ByIdentity) and other.obj is self.obj

    def __repr__(self):
        return f"ByIdentity({self.obj!r})"


class Constant:
    """A data argument the model needs as a concrete value (`len(np.unique(x))`,
    `int(np.max(x))`): a static leaf, compared and hashed by content, that shadows the data
    leaf (which still travels, so checkpoints' data hashes see it). Each new value
    recompiles."""

    def __init__(self, array):
        self.array = np.asarray(array)
        digest = hashlib.sha256(np.ascontiguousarray(self.array).tobytes()).hexdigest()
        self._key = (self.array.shape, self.array.dtype.str, digest)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, Constant) and other._key == self._key

    def __repr__(self):
        return f"Constant(shape={self.array.shape}, dtype={self.array.dtype})"


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
        """The model's `(args, kwargs)`, rebuilt from data and static leaves (a data leaf
        shadowed by a static `Constant` is given as the constant's concrete array)."""
        static = dict(self._static)
        data = iter(self.data)
        leaves = []
        for i in range(len(self.data) + sum(not isinstance(v, Constant) for v in static.values())):
            value = static.get(i, _MISSING)
            if isinstance(value, Constant):
                next(data)
                value = value.array
            elif isinstance(value, ByIdentity):
                value = value.obj
            leaves.append(next(data) if value is _MISSING else value)
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
        with validation.off(), handlers.trace() as tr, handlers.substitute(data=fixed), \
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
    found inside a support that no latent or param moves) are scored without the
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
            lik = lik + (jnp.sum(s.log_prob_unchecked()) if s.name in checked_supports else s.log_prob_sum())
    return LogJoint(prior, lik, jac)


class _Facts(NamedTuple):
    """What one inspection found besides the spec: per observed site the arrays of its data
    checks (see `observed_checks`), and the parameters fixed by the data with their check
    arrays (see `ppl.compile.supports.parameter_checks`)."""

    observed: list
    parameter_meta: tuple
    parameters: list


def _inspect_once(model, tree, static, data):
    """`(spec, trace, facts, initial param values)` of one run of the model."""
    args_, kwargs_ = LogDensity(model, None, tree, static, data, {}).arguments()
    spec, tr = inspect(model, args_, kwargs_)
    for site in tr.sites("observed"):  # a value the distribution cannot score fails here, named
        site.log_prob  # noqa: B018 - traced only (the jitted inspection drops it)
    dependence = latent_dependence(model, args_, kwargs_, tr)
    checks = observed_checks(tr, dependence.supports)
    meta, arrays = parameter_checks(tr, dependence.parameters)
    spec = dataclasses.replace(spec, checked_supports=tuple(n for n in spec.observed if n not in dependence.supports))
    return spec, tr, _Facts(checks, meta, arrays), {s.name: s.value for s in tr.sites("param")}


@functools.lru_cache(maxsize=64)
def _inspector(model, tree, static):
    """A compiled inspection of `model` for this argument structure (one executable per data
    shapes, compiled as a program run once: `program.ONE_SHOT_EVALUATIONS`), and the box
    where each trace leaves its `ModelSpec`, `Trace` and static facts."""
    box, executables = {}, {}

    def run(data):
        spec, tr, facts, params = _inspect_once(model, tree, static, data)
        box[_shapes(data)] = spec, tr, facts.parameter_meta
        return (facts.observed, facts.parameters), params

    jitted = jax.jit(run)

    def call(data):
        if any(isinstance(leaf, jax.core.Tracer) for leaf in data):  # inside a user's jit
            return jitted(data)
        avals = tuple(program.aval(leaf) for leaf in data)
        executable = executables.get(avals)
        if executable is None:
            executable, _ = program.compile_lowered(jitted.lower(data), avals, evaluations=1)
            executables[avals] = executable
        return executable(data)

    return call, box


def _shapes(data):
    return tuple((tuple(jnp.shape(x)), str(jnp.result_type(x))) for x in data)


def _inspect(model, tree, static, data):
    """`inspect` the model and compute its data checks and initial param values.

    As ONE jitted program: run eagerly, every operation of a new model compiles a small XLA
    program of its own (some 15 for a model of a few lines, ~0.5 s on a CPU). Only static
    facts (names, shapes, supports, plates) are read from the traced `Trace`; the arrays come
    out of the program, which new data of the same shapes reuse. A model whose Python code
    needs concrete values (e.g. `if y.sum() > 0`) is inspected eagerly instead; the last
    element of the result says so (True when the jitted inspection worked).
    """
    try:
        run, box = _inspector(model, tree, tuple(static))
        (observed, parameters), params = run(data)
        spec, tr, meta = box[_shapes(data)]
        return spec, tr, _Facts(observed, meta, parameters), params, True
    except (TypeError, ValueError) as e:
        # TypeError: concrete values needed (jax.errors.JAXTypeError), or an unhashable model.
        # ValueError: NumPyro's own check of a constant parameter, which names no site.
        if isinstance(e, ValueError) and not _NUMPYRO_INVALID.search(str(e)):
            raise
        # Eagerly, NumPyro would validate concrete parameters itself and raise without naming
        # the site; ppl's checks (`check_parameters`) report them instead.
        with validation.off():
            return _inspect_once(model, tree, static, data) + (False,)


_NUMPYRO_INVALID = re.compile(r"distribution got invalid \w+ parameter")


def check_traceable(model, tree, static, data, spec, params, labels=()) -> None:
    """Raise a clear error if the model cannot be traced with abstract data and latents (a
    Python `if`, `float()`, `int()`, ... on a value that every method traces).

    Called when the jitted inspection failed and the model was inspected eagerly: the
    methods trace it all the same, so such a model would fail inside every method's program
    with a raw JAX error. JAX's error names the traced argument the value depends on
    (`latents['mu']` or `data[i]`), which gives the site or argument to name.
    """
    latents = {lat.name: jax.ShapeDtypeStruct(lat.shape, jnp.dtype(lat.dtype)) for lat in spec.latents}
    reached = []

    def run(data, latents):
        args_, kwargs_ = LogDensity(model, None, tree, static, data, {}).arguments()
        with handlers.trace() as tr, handlers.substitute(data={**params, **latents}), handlers.seed(rng_seed=0):
            try:
                model(*args_, **kwargs_)
            finally:
                reached[:] = list(tr)
        return jnp.zeros(())

    try:
        jax.eval_shape(run, tuple(data), latents)
    except CONCRETE_VALUE_ERRORS as e:
        raise traced_value_error(model, e, labels, reached[-1] if reached else None) from e


def constants_for_python(model, tree, static, data, spec, params, labels=()) -> tuple:
    """The static leaves, with each data argument whose concrete value the model's Python
    code needs (`len(np.unique(dept))`, `int(np.max(y))`, `if x.sum() > 0`) added as a
    `Constant`, with one warning per argument naming it and the cost (a recompile for each
    new value). NumPyro's MCMC closes over model arguments, so such models run there; this
    keeps them running unchanged here.

    Raises:
      TypeError: when a latent site's value (which no constant can give) is needed in Python
        (see `check_traceable`).
    """
    static = tuple(static)
    while True:
        try:
            check_traceable(model, tree, static, data, spec, params, labels)
            return static
        except TypeError as err:
            cause = err.__cause__
            sites, needed = traced_sources(cause) if isinstance(cause, CONCRETE_VALUE_ERRORS) else ([], [])
            shadowed = {i for i, v in static if isinstance(v, Constant)}
            plain = {i for i, v in static if not isinstance(v, Constant)}
            positions = [i for i in range(len(data) + len(plain)) if i not in plain]  # leaf index of data[j]
            needed = [j for j in needed if positions[j] not in shadowed]
            if sites or not needed:
                raise
            for j in needed:
                label = labels[j] if j < len(labels) else f"data argument {j}"
                warnings.warn(
                    f"model {model_name(model)!r} needs the concrete value of its {label} in Python"
                    f"{user_line(cause)}; ppl treats that argument as a constant of the compiled program, "
                    f"so each new value of it recompiles. To avoid that, compute the Python value outside "
                    f"the model and pass it as a Python int (static).", stacklevel=3)
            static = tuple(sorted(static + tuple((positions[j], Constant(data[j])) for j in needed)))


def compile(model, *args, **kwargs) -> LogDensity:
    """Trace `model(*args, **kwargs)` once and return its `LogDensity`.

    Arrays among the arguments are data (new values of the same shapes never recompile);
    Python scalars and strings are static.

    Raises:
      ValueError: for invalid observed data (NaN, outside the support, shape vs plate),
        a distribution parameter fixed by the data outside its constraint (a negative scale),
        duplicate site names, and other model errors, naming the site.
      TypeError: for arguments that cannot be data (arrays of strings), Python control flow
        on a traced value, or NumPyro primitives inside the model, naming the site or argument.
      Every error about the model ends with a pointer to `ppl.check`, the model doctor.

    Example:
      >>> ld = ppl.compile(model, x, y=y)
      >>> z = ld.init(0); ld.log_prob(z)
    """
    if not callable(model):
        raise TypeError(f"ppl.compile expected a model function, got {type(model).__name__}.")
    with pointing_to_check(model):
        data, tree, static = split_arguments(args, kwargs)
        try:
            spec, tr, facts, params, jitted = _inspect(model, tree, static, data)
        except (AttributeError, TypeError) as e:
            hint = _list_argument_error(args, kwargs, e)
            if hint is None:
                raise
            raise hint from e
        check_observed(tr, facts.observed)
        check_parameters(facts.parameter_meta, facts.parameters)
        if not jitted:
            static = constants_for_python(model, tree, static, data, spec, params, data_labels(args, kwargs))
    ld = LogDensity(model, spec, tree, static, data, params)
    ld.module_statics = {s.name: s.infer["module_static"] for s in tr.sites("param") if "module_static" in s.infer}
    return ld
