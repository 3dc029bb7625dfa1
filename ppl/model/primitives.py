"""The modelling language: `sample`, `observe`, `plate`, `deterministic`, `factor`, `param`, `module`
(and NumPyro's `prng_key` and `subsample`).

Each primitive builds a `Message` and sends it through the handler stack
(`ppl.model._runtime.apply_stack`); with no handler installed a primitive still runs, so a
model is an ordinary Python function (sampling then needs `handlers.seed`).
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, ExpandedDistribution, constraints

from ppl.model._runtime import Message, Messenger, active_handlers, apply_stack
from ppl.model.sites import Plate, dist_name


def _default(msg: Message) -> None:
    """Bottom of the stack: draw, initialise or check whatever no handler settled."""
    if msg.kind == "observed":
        try:
            _check_observed_shape(msg)
        except ValueError as e:
            if not _audited(msg.name, e):
                raise
        return
    if msg.value is not None:
        return
    if msg.kind == "latent":
        if msg.key is None:
            raise RuntimeError(
                f"sample site '{msg.name}' needs a random key but no seed handler is active; "
                f"wrap the model: ppl.handlers.seed(model, rng_seed=0)(*args) "
                f"(ppl.infer and ppl.compile do this for you)."
            )
        try:
            msg.value = msg.dist.sample(msg.key)
        except NotImplementedError as e:
            raise ValueError(
                f"site '{msg.name}': cannot draw from {type(msg.dist).__name__} (an improper "
                f"or sampler-less distribution). Use a method that starts from unconstrained "
                f"initial values (nuts, hmc, mh, map, vi) or give the site a proper prior."
            ) from e
    elif msg.kind == "param":
        init = msg.init
        if has_initialiser(msg):
            if msg.key is None:
                raise RuntimeError(
                    f"param '{msg.name}' has a callable initialiser that needs a random key; "
                    f"wrap the model in ppl.handlers.seed."
                )
            init = init(msg.key)
        msg.value = init
    elif msg.kind == "plate":
        size, m = msg.init
        if msg.key is None:
            raise RuntimeError(
                f"plate '{msg.name}' subsamples {m} of {size} elements and needs a random key. Under "
                f"ppl.infer only method='vi' subsamples (a new subsample each step, its terms scaled to "
                f"the whole data set); MCMC, MAP, MLE and the samplers need every data point: drop "
                f"subsample_size. Running the model by hand, wrap it in ppl.handlers.seed."
            )
        msg.value = jax.random.permutation(msg.key, size)[:m]


class ShapeAudit(Messenger):
    """Record shape problems (observed data vs plates, parameters vs plates) instead of
    raising them, so that one run of a model finds them all (the model doctor, `ppl.check`).

    `problems` holds `(site name, error)` in the order met. The model then runs on with the
    data or distribution as given, which may fail later; the caller decides what to do.
    """

    def __init__(self):
        super().__init__(None)
        self.problems = []


def _audited(name, error) -> bool:
    """Hand a shape problem to an active `ShapeAudit` (True), or say there is none (False)."""
    audit = next((h for h in reversed(active_handlers()) if isinstance(h, ShapeAudit)), None)
    if audit is None:
        return False
    audit.problems.append((name, error))
    return True


def has_initialiser(msg: Message) -> bool:
    """Whether a param's `init` is an initialiser `init(key)` (a module's arrays, though
    callable as an Equinox module, are values)."""
    return callable(msg.init) and "module_static" not in msg.infer


def _check_observed_shape(msg: Message) -> None:
    """Each enclosing plate's dim of the observed value must match the plate size."""
    shape = jnp.shape(msg.value)
    event_dim = len(msg.dist.event_shape)
    batch = shape[: len(shape) - event_dim] if event_dim else shape
    for p in msg.plates:
        if -p.dim <= len(batch) and batch[p.dim] not in (1, p.subsample_size):
            fix = "check the data or the plate's size and dim"
            if p.subsample_size < p.size and batch[p.dim] == p.size:
                fix = (f"the plate subsamples {p.subsample_size} of {p.size} elements: index the data "
                       f"with its indices, `with ppl.plate('{p.name}', {p.size}, subsample_size="
                       f"{p.subsample_size}) as idx: ppl.observe('{msg.name}', ..., y[idx])`")
            raise ValueError(
                f"observed site '{msg.name}': its value has shape {tuple(shape)}, whose dim "
                f"{p.dim} (size {batch[p.dim]}) should match plate '{p.name}' of size "
                f"{p.subsample_size}; {fix}."
            )
    dist_shape = tuple(msg.dist.shape())  # batch (plates included) + event shape
    try:
        full = tuple(jnp.broadcast_shapes(tuple(shape), dist_shape))
    except ValueError:
        full = None
    if full != tuple(shape):
        problem = ("does not broadcast with it" if full is None else
                   "would be broadcast to it, each datum counted several times")
        if len(shape) > len(dist_shape) and shape[-1] == 1 and full is not None:
            problem += " (a trailing dimension of size 1? use jnp.squeeze(y, -1))"
        raise ValueError(
            f"observed site '{msg.name}': its value has shape {tuple(shape)} but its distribution "
            f"({dist_name(msg.dist)}, with the enclosing plates) has shape {dist_shape} (batch "
            f"{tuple(msg.dist.batch_shape)} + event {tuple(msg.dist.event_shape)}); the value "
            f"{problem}. Give data of shape {dist_shape}, or check the distribution's "
            f"parameters and the plates."
        )


def _check_dist(name, d):
    if isinstance(name, Distribution) and isinstance(d, str):
        raise TypeError(
            f"site '{d}': the arguments are swapped; the name comes first: "
            f"ppl.sample('{d}', {type(name).__name__}(...)).")
    if not isinstance(name, str) or not name:
        raise TypeError(f"a site name must be a non-empty string, got {name!r}.")
    if isinstance(d, type) and issubclass(d, Distribution):
        raise TypeError(
            f"site '{name}': got the distribution class {d.__name__}, not a distribution; create "
            f"one with its parameters, e.g. dist.{d.__name__}(...).")
    if not isinstance(d, Distribution):
        raise TypeError(
            f"site '{name}': expected a distribution from ppl.dist (numpyro.distributions), "
            f"got {type(d).__name__}."
        )


def sample(name: str, d: Distribution, obs=None, rng_key=None, sample_shape=(), infer=None, obs_mask=None):
    """A latent random variable `name ~ d`; returns its value. NumPyro's signature:

    Args:
      obs: observed data: `sample(name, d, obs=y)` is `observe(name, d, y)`.
      rng_key: a key to draw this site with, instead of one from the `seed` handler.
      sample_shape: iid copies: the value has shape `sample_shape + batch + event` (plates
        broadcast the batch shape, as in NumPyro) and its log density sums over all of them.
      infer: a dict kept on the site (`site.infer`) for handlers and methods.
      obs_mask: a boolean array of the batch shape: `obs` is observed where True and missing
        (imputed) where False. As in NumPyro the model gets sites `{name}_observed` (the
        data, masked), `{name}_unobserved` (a latent of the full shape) and the
        deterministic `{name}` (data where observed, the latent where missing). Unlike
        NumPyro's, the latent keeps its whole prior where the data are observed (those
        entries are auxiliary draws that integrate to one), so the density stays proper and
        the posterior of every other site is unchanged.

    Raises:
      TypeError: for a keyword sample does not take (Python names it), a name that is not a
        string, or something that is not a distribution.
      ValueError: for a bad `sample_shape`, or `obs_mask` without `obs`.

    Example:
      >>> mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
      >>> x = ppl.sample("x", dist.Normal(0.0, 1.0), sample_shape=(3,))   # 3 iid latents
    """
    _check_dist(name, d)
    shape = _sample_shape(name, sample_shape)
    if obs_mask is not None:
        return _impute(name, d, obs, obs_mask, rng_key, shape, infer)
    if obs is not None:
        return _observe(name, d, obs, shape, infer)
    msg = Message(name=name, kind="latent", dist=_with_sample_shape(d, shape), key=rng_key,
                  sample_shape=shape, infer=dict(infer or {}))
    return apply_stack(msg, _default).value


def observe(name: str, d: Distribution, value):
    """Condition on `value ~ d`; with `value=None` this is `sample(name, d)`.

    Raises:
      ValueError: if the value's shape disagrees with an enclosing plate.
    """
    if value is None:
        return sample(name, d)
    _check_dist(name, d)
    return _observe(name, d, value)


def _observe(name, d, value, shape=(), infer=None):
    if not hasattr(value, "shape"):
        value = jnp.asarray(value)
    msg = Message(name=name, kind="observed", dist=_with_sample_shape(d, shape), value=value,
                  sample_shape=shape, infer=dict(infer or {}))
    return apply_stack(msg, _default).value


def _sample_shape(name, sample_shape) -> tuple:
    try:
        shape = tuple(int(n) for n in sample_shape) if not isinstance(sample_shape, (int, np.integer)) \
            else (int(sample_shape),)
    except TypeError:
        shape = None
    if shape is None or any(n < 0 for n in shape):
        raise ValueError(f"site '{name}': sample_shape must be a tuple of ints >= 0 (e.g. (3,)), "
                         f"got {sample_shape!r}.")
    return shape


def _with_sample_shape(d, shape):
    """`d` with `shape` iid copies in front of its batch shape."""
    return d.expand(shape + tuple(d.batch_shape)) if shape else d


def _impute(name, d, obs, obs_mask, rng_key, shape, infer):
    """`sample(..., obs=obs, obs_mask=mask)`: observed where `mask`, latent where not."""
    from ppl.model import handlers

    if obs is None:
        raise ValueError(f"site '{name}': obs_mask marks which entries of obs are observed; give "
                         f"obs=<data> too (or drop obs_mask for a latent site).")
    mask = jnp.asarray(obs_mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"site '{name}': obs_mask must be a boolean array, got dtype {mask.dtype}.")
    with handlers.mask(mask=mask):
        observed = _observe(f"{name}_observed", d, obs, shape, infer)
    missing = sample(f"{name}_unobserved", d, rng_key=rng_key, sample_shape=shape, infer=infer)
    keep = jnp.reshape(mask, mask.shape + (1,) * len(d.event_shape))
    return deterministic(name, jnp.where(keep, observed, missing))


def prng_key():
    """A fresh random key from the enclosing `seed` handler (NumPyro's `numpyro.prng_key`).

    Returns None when no `seed` handler supplies one; with no handler active at all it also
    warns, as NumPyro does.

    Example:
      >>> k = ppl.handlers.seed(ppl.prng_key, rng_seed=0)()
    """
    if not active_handlers():
        warnings.warn("ppl.prng_key() was called with no handler active, so there is no key to "
                      "give; it returns None. Wrap the model in ppl.handlers.seed(model, rng_seed=0).",
                      stacklevel=2)
        return None
    return apply_stack(Message(name="prng_key", kind="prng_key"), lambda msg: None).key


def subsample(data, event_dim: int):
    """The elements of `data` that the enclosing subsampling plates use (NumPyro's
    `numpyro.subsample`): along each such plate's dim (counted left of `event_dim` trailing
    event dims), `data` is indexed with the plate's indices. Outside subsampling plates (or
    where a dim is already of the subsample size) `data` is returned unchanged.

    Example:
      >>> with ppl.plate("n", 1000, subsample_size=100):
      ...     batch = ppl.subsample(y, event_dim=0)       # shape (100,)
    """
    for h in active_handlers():
        if isinstance(h, plate) and h.subsample_size < h.size:
            axis = h.dim - event_dim
            if -axis <= jnp.ndim(data) and jnp.shape(data)[axis] == h.size:
                data = jnp.take(data, h.indices, axis=axis)
    return data


def deterministic(name: str, value):
    """Record a derived quantity `value` under `name` (reported with the draws); returns it.

    Raises:
      TypeError: if `value` (or a leaf of it) is not numeric (a string, an object).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a site name must be a non-empty string, got {name!r}.")
    for leaf in jax.tree.leaves(value):
        kind = getattr(getattr(leaf, "dtype", None), "kind", None)
        if isinstance(leaf, (str, bytes)) or (kind is not None and kind not in "biufc") or \
                (kind is None and not isinstance(leaf, (int, float, complex, bool, jax.Array))):
            raise TypeError(
                f"deterministic site '{name}': its value must be numeric (an array, a number or a "
                f"pytree of them), got {type(leaf).__name__} {leaf!r:.60}; record numbers only, and "
                f"keep labels outside the model.")
    return apply_stack(Message(name=name, kind="deterministic", value=value), _default).value


def factor(name: str, log_weight):
    """Add `log_weight` (a scalar or an array, summed) to the log joint."""
    return apply_stack(Message(name=name, kind="factor", value=jnp.asarray(log_weight)), _default).value


def param(name: str, init_value=None, constraint=constraints.real):
    """A learnable point parameter (learned by MLE/MAP/VI, held fixed by MCMC).

    Args:
      init_value: initial (constrained) value: an array, a pytree of arrays, or a callable
        `init(key)` returning one.
      constraint: the support of the value (a numpyro constraint).
    """
    if init_value is None:
        msg = Message(name=name, kind="param", constraint=constraint)
        msg = apply_stack(msg, _param_default_missing)
        return msg.value
    return apply_stack(Message(name=name, kind="param", init=init_value, constraint=constraint), _default).value


def _param_default_missing(msg):
    if msg.value is None:
        raise ValueError(f"param '{msg.name}' has no init_value and no substituted value; give init_value.")


def module(name: str, network, input_shape=None):
    """Register a network's learnable arrays as the param `name`; returns the network with
    the current (possibly learned) arrays.

    `network` is an Equinox module (its floating-point arrays are the param), or, as in
    NumPyro, a stax-style pair `(init_fn, apply_fn)` with `init_fn(rng_key, input_shape) ->
    (output_shape, params)`: the param is initialised by `init_fn` (a key from `seed`) and
    the function `x -> apply_fn(params, x)` is returned.

    Example:
      >>> from jax.example_libraries import stax
      >>> net = ppl.module("net", stax.serial(stax.Dense(8), stax.Tanh, stax.Dense(1)), (-1, 3))
      >>> mean = net(x)[..., 0]
    """
    if isinstance(network, tuple) and len(network) == 2 and all(callable(f) for f in network):
        return _stax_module(name, network, input_shape)
    if input_shape is not None:
        raise TypeError(f"module '{name}': input_shape is for a stax-style (init_fn, apply_fn) pair; "
                        f"an Equinox module is already initialised, so drop it.")
    import equinox as eqx

    arrays, static = eqx.partition(network, eqx.is_inexact_array)
    msg = Message(name=name, kind="param", init=arrays, constraint=constraints.real, infer={"module_static": static})
    return eqx.combine(apply_stack(msg, _default).value, static)


def _stax_module(name, pair, input_shape):
    init_fn, apply_fn = pair
    if input_shape is None:
        raise TypeError(f"module '{name}': a stax-style (init_fn, apply_fn) pair needs input_shape, "
                        f"e.g. ppl.module('{name}', net, (-1, x.shape[-1])).")
    # NumPyro names the pair's parameters "<name>$params" (its examples read them back so).
    params = param(f"{name}$params", lambda key: init_fn(key, tuple(input_shape))[1])
    return functools.partial(apply_fn, params)


class plate(Messenger):
    """`size` conditionally independent copies along batch dimension `dim`.

    `plate(name, size, subsample_size=None, dim=None)`: NumPyro's signature and order; a
    negative third argument is a `dim`, as in ppl's `plate(name, size, dim)`.

    Used as a context manager (`with plate("N", 100):`), it returns the indices of the
    elements in use (`arange(size)`, or a random subset of `subsample_size` of them, whose
    sites' log densities are then scaled by size / subsample_size). Sample sites inside are
    broadcast to the plate size; observed values must match it. Nested plates take dims -1,
    -2, ... from the outermost unless `dim` is given, and need distinct names; plates side by
    side may reuse a name (one plate entered twice), as in NumPyro. A plate of size 0 (an
    empty data set) holds no elements: its sites add nothing to the log density.

    Raises:
      TypeError: for a size that is not a Python int (an array, a float).
      ValueError: on a negative size, a bad dim or subsample_size, a dim already used by an enclosing
        plate, or a name already used by an enclosing plate.
    """

    def __init__(self, name: str, size: int, subsample_size: int | None = None, dim: int | None = None):
        super().__init__(None)
        if isinstance(size, (np.integer,)):
            size = int(size)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _size_error(name, size)
        if dim is None and isinstance(subsample_size, (int, np.integer)) and not isinstance(subsample_size, bool) \
                and subsample_size < 0:
            # ppl's first order, plate(name, size, dim) (DESIGN.md section 1): a dim is negative
            # and a subsample size is not, so the third argument says which it is.
            subsample_size, dim = None, int(subsample_size)
        if dim is not None and (not isinstance(dim, int) or dim >= 0):
            raise ValueError(f"plate '{name}': dim must be a negative int (e.g. -1), got {dim!r}.")
        if subsample_size is not None and not (isinstance(subsample_size, int) and 1 <= subsample_size <= size):
            raise ValueError(f"plate '{name}': subsample_size must be an int in [1, {size}], got {subsample_size!r}.")
        self.name, self.size, self._dim = name, size, dim
        self.subsample_size = size if subsample_size is None else subsample_size

    def __enter__(self):
        enclosing = [h for h in active_handlers() if isinstance(h, plate)]
        same = next((h for h in enclosing if h.name == self.name), None)
        if same is not None:
            raise ValueError(
                f"plate '{self.name}' (size {self.size}) is nested inside a plate of the same name "
                f"(size {same.size}); give nested plates distinct names, e.g. "
                f"plate('{self.name}_inner', {self.size}). (Reusing a name for plates side by side, "
                f"not nested, is fine.)"
            )
        used = {h.dim for h in enclosing}
        if self._dim is None:
            dim = -1
            while dim in used:
                dim -= 1
        elif self._dim in used:
            raise ValueError(f"plate '{self.name}': dim {self._dim} is already used by an enclosing plate.")
        else:
            dim = self._dim
        self.dim = dim
        self.frame = Plate(self.name, self.size, dim, self.subsample_size)
        if self.subsample_size < self.size:
            msg = Message(name=self.name, kind="plate", init=(self.size, self.subsample_size))
            self.indices = apply_stack(msg, _default).value
        else:
            self.indices = jnp.arange(self.size)
        super().__enter__()
        return self.indices

    def process(self, msg: Message) -> None:
        if msg.kind not in ("latent", "observed", "factor", "deterministic"):
            return
        msg.plates = (self.frame,) + tuple(msg.plates)
        if self.subsample_size < self.size and msg.kind != "deterministic":
            ratio = self.size / self.subsample_size
            msg.scale = ratio if msg.scale is None else msg.scale * ratio
        if msg.dist is not None:
            try:
                msg.dist = _expand_to_plate(msg.name, msg.dist, self.frame, msg.sample_shape)
            except ValueError as e:
                if not _audited(msg.name, e):
                    raise


def _size_error(name, size) -> Exception:
    """A plate size that is not a Python int >= 0: say where it should come from."""
    if hasattr(size, "shape"):
        return TypeError(
            f"plate '{name}': size must be a Python int, got an array ({size!r}); use a shape, "
            f"e.g. plate('{name}', y.shape[0]), or pass the size as a Python int (static).")
    if isinstance(size, float) and size.is_integer():
        return TypeError(f"plate '{name}': size must be a Python int, got the float {size!r}; use int({size!r}).")
    return ValueError(f"plate '{name}': size must be a Python int >= 0, got {size!r}.")


def _expand_to_plate(name, d, frame: Plate, sample_shape=()):
    """`d` with its batch shape broadcast along the plate's dim; the leading `sample_shape`
    dims (iid copies a `sample` asked for) stay in front of every plate dim, as in NumPyro."""
    if sample_shape:
        batch = tuple(d.batch_shape)[len(sample_shape):]
        core = d.base_dist.expand(batch) if isinstance(d, ExpandedDistribution) else d
        core = _expand_to_plate(name, core, frame)
        return core.expand(tuple(sample_shape) + tuple(core.batch_shape))
    batch = list(d.batch_shape)
    if len(batch) < -frame.dim:
        batch = [1] * (-frame.dim - len(batch)) + batch
    current = batch[frame.dim]
    if current == frame.subsample_size:
        return d if tuple(batch) == tuple(d.batch_shape) else d.expand(tuple(batch))
    if current != 1:
        raise ValueError(
            f"site '{name}': its distribution has batch shape {tuple(d.batch_shape)}, whose dim "
            f"{frame.dim} (size {current}) conflicts with plate '{frame.name}' of size "
            f"{frame.subsample_size}; make the parameters' shapes match the plate."
        )
    batch[frame.dim] = frame.subsample_size
    return d.expand(tuple(batch))
