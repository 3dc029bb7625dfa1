"""NumPyro's `numpyro.infer.util.initialize_model` under ppl: a model's potential energy over a
dict of unconstrained values, a finite starting point, and the map back to constrained values.

    model_info = initialize_model(rng_key, model, model_args=(returns,))
    model_info.param_info.z                      # dict site -> unconstrained value (the start)
    model_info.potential_fn(z)                   # minus the log joint at z (Jacobians included)
    model_info.postprocess_fn(z)                 # dict site -> constrained value, deterministic sites too

It is a door to ppl's model compiler (`ppl.compile`): the potential is minus the compiled
`LogDensity.log_prob` of the flat vector the dict spells out site by site, the start is ppl's
initialisation (`ppl.compile.init.first_finite`: uniform(-2, 2) in unconstrained space by
default, retried until the log density and its gradient are finite), and the potential
carries the compiled model (:class:`Potential`), so that `ppl.infer.hmc.hmc` samples it
exactly as `ppl.infer(model, ..., method="nuts")` does: the same flat layout, the same log
density, the same draws for the same keys (see `ppl.infer.hmc`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl._keys import as_key
from ppl.compile.hoist import hoist
from ppl.compile.init import first_finite, init_error
from ppl.compile.logdensity import Constant, LogDensity, split_arguments
from ppl.compile.logdensity import compile as compile_model


class ParamInfo(NamedTuple):
    """A starting point: ``z`` (dict site -> unconstrained value), its ``potential_energy``
    (minus the log joint) and ``z_grad`` (the potential's gradient, a dict like ``z``)."""

    z: Any
    potential_energy: Any
    z_grad: Any


class ModelInfo(NamedTuple):
    """What :func:`initialize_model` returns (NumPyro's fields): ``param_info``
    (:class:`ParamInfo`), ``potential_fn`` (a :class:`Potential`; with ``dynamic_args`` a
    function of the model's arguments returning one), ``postprocess_fn`` (``z -> dict`` of
    constrained latent and deterministic values; with ``dynamic_args`` a function of the
    model's arguments returning one) and ``model_trace`` (the model's trace at the starting
    point, ``ppl.handlers.trace``'s ordered mapping name -> Site)."""

    param_info: ParamInfo
    potential_fn: Callable
    postprocess_fn: Callable
    model_trace: Any


class Potential:
    """Minus a compiled model's log joint over a dict of unconstrained values:
    ``potential(z) = -ld.log_prob(ld.flatten(z))`` (Jacobians included; NaN reads as +inf).

    It also says how the dict lies in ppl's flat vector (``ravel``/``unravel``, the model's
    site order) and gives the flat log density ppl's own samplers run (``log_density``), so
    that `ppl.infer.hmc.hmc` given a Potential samples as `ppl.infer(..., method="nuts")`."""

    def __init__(self, ld: LogDensity):
        self.ld = ld

    def __call__(self, z):
        return -self.ld.log_prob(self.ravel(z))

    def ravel(self, z):
        """The flat unconstrained vector of ``z`` (dict site -> unconstrained value)."""
        missing = [lat.name for lat in self.ld.spec.latents if lat.name not in z]
        if missing:
            raise ValueError(f"potential_fn: no unconstrained value given for latent site(s) {missing}; z must "
                             f"hold every latent site of the model (as param_info.z does).")
        return self.ld.flatten(z)

    def unravel(self, flat) -> dict:
        """The dict site -> unconstrained value of the flat vector ``flat``."""
        return {lat.name: jnp.reshape(flat[lat.offset: lat.offset + lat.size], lat.unconstrained_shape)
                for lat in self.ld.spec.latents}

    def log_density(self, example):
        """``flat -> log joint``: the function ppl's chains sample, with its data-only terms
        computed once (`ppl.compile.hoist`); ``example`` gives the flat vector's shape."""
        return hoist(lambda x, ld: ld.log_joint(x).total, example, self.ld)

    def postprocess(self, z) -> dict:
        """Constrained values of the latent and deterministic sites at ``z``."""
        return self.ld.constrain(self.ravel(z), deterministic=True)


def _with_arguments(ld: LogDensity, model, args, kwargs) -> LogDensity:
    """``ld`` on new model arguments: the same compiled model with the new data when the
    arguments have the same structure and static values (traced arrays allowed), else the
    model compiled afresh (concrete arguments only)."""
    data, tree, static = split_arguments(tuple(args), dict(kwargs))
    (old_data, params), aux = ld.tree_flatten()
    same = tree == ld._tree and len(data) == len(old_data) and \
        all(jnp.shape(a) == jnp.shape(b) for a, b in zip(data, old_data))
    if same:
        kept = dict(ld._static)
        same = all(kept.get(i) == v for i, v in static)
    concrete = not any(isinstance(leaf, jax.core.Tracer) for leaf in data)
    if same and concrete and any(isinstance(v, Constant) for _, v in ld._static):
        same = False  # an argument the model reads as a Python value (a compile-time constant): new values recompile
    if same:
        return LogDensity.tree_unflatten(aux, (data, params))
    return compile_model(model, *args, **kwargs)


def _init_values(init_strategy, model, key, args, kwargs):
    """``(strategy, values)`` of ppl's initialisation for a NumPyro init strategy."""
    from ppl.infer.numpyro_names import _ppl_init

    if callable(init_strategy) and not hasattr(init_strategy, "kind"):
        name = getattr(init_strategy, "__name__", repr(init_strategy))
        if name.startswith("init_to_"):
            init_strategy = init_strategy()  # NumPyro's `init_strategy=init_to_median` (the function itself)
    init = _ppl_init(init_strategy, model, jax.random.fold_in(key, 1), args, kwargs)
    return (init, None) if isinstance(init, str) else ("uniform", dict(init))


def initialize_model(rng_key, model, *, init_strategy=None, dynamic_args=False, model_args=(), model_kwargs=None,
                     forward_mode_differentiation=False, validate_grad=True) -> ModelInfo:
    """A model's potential energy, a finite start and the map back to constrained values
    (NumPyro's `numpyro.infer.util.initialize_model`), on ppl's model compiler.

    Args:
      rng_key: a `jax.random.PRNGKey`, a typed `jax.random.key` or an int (one chain; a batch
        of keys is refused).
      model: the model function.
      init_strategy: `ppl.infer.init_to_uniform()` (default), `init_to_sample()`,
        `init_to_median()`, `init_to_mean()`, `init_to_feasible()` or `init_to_value(values=...)`
        (the functions themselves are taken too).
      dynamic_args: when True, `potential_fn(*model_args, **model_kwargs)` and
        `postprocess_fn(*model_args, **model_kwargs)` return the functions for those arguments
        (for `hmc(potential_fn_gen=...)`): new data of the same shapes reuse the compiled model.
      model_args, model_kwargs: the model's arguments.
      forward_mode_differentiation: only False (ppl differentiates in reverse mode).
      validate_grad: accepted; ppl always requires a finite gradient at the start.

    Returns:
      :class:`ModelInfo`; ``param_info.z`` is a dict site -> unconstrained value (shaped as
      the site's unconstrained value), ``param_info.potential_energy`` minus the log joint
      there and ``param_info.z_grad`` its gradient (a dict like ``z``).

    Raises:
      ValueError: for a batch of keys, forward-mode differentiation, a discrete latent site
        (named), or no finite start in 100 tries (naming the failing sites).

    Example:
      >>> info = initialize_model(jax.random.PRNGKey(0), model, model_args=(x,))
      >>> init_kernel, sample_kernel = ppl.infer.hmc.hmc(info.potential_fn, algo="NUTS")
    """
    if forward_mode_differentiation:
        raise ValueError("initialize_model(forward_mode_differentiation=True): not supported; ppl differentiates "
                         "in reverse mode; drop the option.")
    key = _one_key(rng_key)
    model_kwargs = {} if model_kwargs is None else dict(model_kwargs)
    model_args = tuple(model_args)
    ld = compile_model(model, *model_args, **model_kwargs)
    if ld.spec.discrete:
        raise ValueError(
            f"initialize_model: latent site '{ld.spec.discrete[0].name}' is discrete; hmc/NUTS move continuous "
            f"latents only. Use ppl.infer(model, ..., method='nuts'), which sums finite discrete sites out, "
            f"or method='gibbs'.")
    if ld.dim == 0:
        raise ValueError("initialize_model: the model has no latent sites to sample.")
    potential = Potential(ld)
    strategy, values = _init_values(init_strategy, model, key, model_args, model_kwargs)
    z_flat, ok, param_info = _start(potential, key, strategy, values)
    if not bool(ok):
        raise init_error(ld, z_flat, 100)
    model_trace = LazyTrace(ld, z_flat)
    if not dynamic_args:
        return ModelInfo(param_info, potential, potential.postprocess, model_trace)

    def potential_fn(*args, **kwargs):
        return Potential(_with_arguments(ld, model, args, kwargs))

    def postprocess_fn(*args, **kwargs):
        return Potential(_with_arguments(ld, model, args, kwargs)).postprocess

    return ModelInfo(param_info, potential_fn, postprocess_fn, model_trace)


def _start(potential: Potential, key, strategy, values):
    """``(z, ok, ParamInfo)`` at the first finite of up to 100 candidates (``z`` flat): ONE
    compiled program (the model's gradient compiled once), the candidates those of ppl's
    chains (``first_finite``: the same key gives the same start as chain 0 of
    ``ppl.infer`` given that chain's initialisation key)."""
    from ppl.util import _compiled

    def run(ld, key):
        def evaluate(z):
            lp, g = jax.value_and_grad(lambda x: ld.log_joint(x).total)(z)
            return jnp.isfinite(lp) & jnp.all(jnp.isfinite(g)), (lp, g)

        z, ok, (lp, g) = first_finite(ld, key, evaluate, strategy, 2.0, values)
        unravel = Potential(ld).unravel
        return z, ok, ParamInfo(unravel(z), -lp, unravel(-g))

    ld = potential.ld
    # About 100 evaluations at most: ppl's compiler options for a short run (`_compiled`).
    return _compiled(run, (ld, key), inputs=ld, evaluations=100)(ld, key)


class LazyTrace(Mapping):
    """The model's trace at a point (``ppl.handlers.trace``'s ordered mapping name -> Site),
    run when first read: the model runs op by op outside a compiled program, which costs
    about half a second on a first call that seldom reads it."""

    def __init__(self, ld: LogDensity, z):
        self._ld, self._z, self._trace = ld, z, None

    def _get(self):
        if self._trace is None:
            self._trace = self._ld.run(self._z)
        return self._trace

    def __getitem__(self, name):
        return self._get()[name]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())

    def __getattr__(self, attr):  # the Trace's own methods (`sites(...)`, ...)
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._get(), attr)

    def __repr__(self):
        return f"LazyTrace({list(self._ld.spec.latent_index)} at the starting point)"


def _one_key(rng_key):
    if hasattr(rng_key, "shape") and not isinstance(rng_key, int):
        typed = jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key)
        if (typed and rng_key.ndim > 0) or (not typed and rng_key.ndim > 1):
            raise ValueError(f"initialize_model(rng_key=...): one key per call (got a batch of shape "
                             f"{tuple(rng_key.shape)}); call it once per chain, or use ppl.infer(..., "
                             f"method=ppl.NUTS(num_chains=...)).")
    return as_key(rng_key)


__all__ = ["ModelInfo", "ParamInfo", "Potential", "initialize_model"]
