"""NumPyro's `numpyro.infer` names that ppl offers under `ppl.infer` (see `ppl/infer/__init__.py`).

    r = ppl.infer(model, x, y=y, method="nuts", key=0)       # ppl's entry point (a call)
    from ppl.infer import Predictive, log_likelihood, NUTS   # what NumPyro users type
    ppl.infer.Predictive(model, samples)(key, x)

Design: `ppl.infer` is the package `ppl/infer/` (so `from ppl.infer import X` and
`import ppl.infer` work), and that module object is callable: its class is switched to
`CallableModule`, whose `__call__` is `ppl.infer.api.infer`. The alternatives were worse:
the function `infer` as `ppl.infer` makes `ppl.infer.Predictive` fail and `from ppl.infer
import X` read another object than `ppl.infer`; attributes on the function would not make
`ppl.infer` an import path. `ppl.infer.api.infer` stays the plain function.

NumPyro names given here:
  Predictive(model, posterior_samples=None, *, params=None, num_samples=None, return_sites=None,
             batch_ndims=None, guide=None)(rng_key, *args, **kwargs)   -> dict site -> draws
  log_likelihood(model, posterior_samples, *args, batch_ndims=None, **kwargs)
                                                      -> dict observed site -> log p(y_i | draw)
  MCMC(NUTS(model, ...), num_warmup=, num_samples=, num_chains=1).run(rng_key, *args, **kwargs);
  .get_samples(), .get_extra_fields(), .print_summary(): NumPyro's driver as a door to
  `ppl.infer(model, *args, method=ppl.NUTS(...), key=rng_key)` (the sampler is ppl's).
  NUTS(model, ...), HMC(model, ...): the kernels MCMC takes; without a model, `ppl.NUTS(...)`
  and `ppl.HMC(...)` themselves (method objects for `ppl.infer`).
  init_to_uniform, init_to_sample, init_to_median, init_to_mean, init_to_feasible,
  init_to_value: NumPyro's init strategies, turned into ppl's `init=` option per run.

Both take draws as NumPyro gives them (a dict of arrays with `batch_ndims` leading sample
dims, default 1) or a ppl `Result` (draws `(num_chains, num_draws, ...)`, learned params
included); outputs keep those leading dims. They are doors to `ppl.predictive`
(`ppl.evaluate`): every observed site is drawn anew, params come from `params` or the Result.
"""
from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ppl._keys import as_key
from ppl.compile.logdensity import compile as compile_model
from ppl.compile.marginal import marginalize
from ppl.method.discrete import discrete_draws
from ppl.evaluate import _param_arrays, _SubstituteDraw, predictive
from ppl.method.result import Result
from ppl.model import handlers


def _draws(posterior_samples, batch_ndims, params):
    """`(flat draws, leading shape, params)` from a dict of draws or a `Result`."""
    if isinstance(posterior_samples, Result):
        samples, batch_ndims = posterior_samples.samples, 2
        params = {**_param_arrays(posterior_samples.params), **(params or {})}
    else:
        samples = dict(posterior_samples or {})
        batch_ndims = 1 if batch_ndims is None else batch_ndims
    leaves = [jnp.asarray(v) for v in samples.values()]
    lead = tuple(leaves[0].shape[:batch_ndims]) if leaves else ()
    for name, v in zip(samples, leaves):
        if tuple(v.shape[:batch_ndims]) != lead:
            raise ValueError(f"posterior_samples: site '{name}' has leading shape {tuple(v.shape[:batch_ndims])}, "
                             f"the other sites {lead}; give every site the same {batch_ndims} sample dim(s).")
    flat = {k: v.reshape((-1,) + v.shape[batch_ndims:]) for k, v in zip(samples, leaves)}
    return flat, lead, _param_arrays(params or {})


class Predictive:
    """Draws of a model's sites given posterior draws (NumPyro's `numpyro.infer.Predictive`).

    Args:
      model: the model function.
      posterior_samples: dict site -> draws with `batch_ndims` leading dims, or a ppl `Result`;
        None draws from the prior (then give `num_samples`).
      params: values of `param` sites (a Result's learned params are used by default).
      num_samples: number of prior draws when `posterior_samples` is None.
      return_sites: names to return (default: every site not in `posterior_samples`).
      batch_ndims: the number of leading sample dims of `posterior_samples` (default 1).
      infer_discrete: draw the model's discrete sites from their conditional posterior given
        each draw (they are summed out of the runs of gradient methods), then the rest.
      guide: a fitted guide (an automatic guide of `ppl.infer.autoguide` or a guide function)
        with `params` (`svi_result.params`) and `num_samples`: the latents are drawn from it
        (an automatic guide draws on the arguments it was fitted on), then the model's other
        sites given them; both are returned.

    Calling it with `(rng_key, *args, **kwargs)` runs the model on those arguments once per
    draw (vectorised, jitted), with every observed site drawn anew; returns dict site ->
    array `(*sample dims, *site_shape)`.

    Example:
      >>> r = ppl.infer(model, x, y=y, method="nuts")
      >>> yrep = Predictive(model, r)(0, x)["y"]                   # (chains, draws, n)
      >>> prior = Predictive(model, num_samples=100)(jax.random.PRNGKey(0), x)
      >>> post = Predictive(model, guide=guide, params=svi_result.params, num_samples=500)(key, x)
    """

    def __init__(self, model, posterior_samples=None, *, params=None, num_samples=None, return_sites=None,
                 batch_ndims=None, guide=None, parallel=True, infer_discrete=False):
        if guide is not None and posterior_samples is not None:
            raise ValueError("Predictive: give posterior_samples or guide (with params), not both.")
        if guide is not None and num_samples is None:
            raise ValueError("Predictive(model, guide=...): give num_samples, the number of draws from the guide.")
        if posterior_samples is None and num_samples is None:
            raise ValueError("Predictive: give posterior_samples (a dict of draws or a Result) or num_samples "
                             "(for prior draws).")
        self.model, self.posterior_samples, self.params = model, posterior_samples, params
        self.num_samples, self.return_sites, self.batch_ndims = num_samples, return_sites, batch_ndims
        self.infer_discrete, self.guide = infer_discrete, guide

    def __call__(self, rng_key, *args, **kwargs) -> dict:
        if self.guide is not None:
            return self._from_guide(as_key(rng_key), args, kwargs)
        flat, lead, params = _draws(self.posterior_samples, self.batch_ndims, self.params)
        if not flat:
            lead = lead or (self.num_samples,)
        n = math.prod(lead)
        given = set() if isinstance(self.posterior_samples, Result) else set(flat)
        if self.infer_discrete and flat:
            flat = _with_discrete_draws(self.model, flat, n, as_key(rng_key), args, kwargs)
        result = types.SimpleNamespace(samples={k: v[None] for k, v in flat.items()}, num_chains=1, num_draws=n,
                                       params=params)
        out = predictive(self.model, result, *args, key=as_key(rng_key), sites=self.return_sites, **kwargs)
        return {k: v.reshape(lead + v.shape[2:]) for k, v in out.items()
                if self.return_sites is not None or k not in given}


    def _from_guide(self, key, args, kwargs) -> dict:
        """Draws of the latents from the guide at `params` (an automatic guide of
        `ppl.infer.autoguide` through its `sample_posterior`, on the arguments it was fitted
        on; a guide function run on these arguments), then the model's sites given them."""
        from ppl.infer.autoguide import AutoGuide

        k_guide, k_model = jax.random.split(key)
        params = dict(self.params or {})
        if isinstance(self.guide, AutoGuide):
            draws = self.guide.sample_posterior(k_guide, params, sample_shape=(self.num_samples,))
            latents = {lat.name for lat in self.guide._bound("Predictive").spec.latents}
            draws = {k: v for k, v in draws.items() if k in latents}
            params = {k: v for k, v in params.items() if not k.startswith("auto_") and "_auto_" not in k}
        else:
            def one(k):
                with handlers.trace() as tr, handlers.substitute(data=params), handlers.seed(rng_seed=k):
                    self.guide(*args, **kwargs)
                return {s.name: s.value for s in tr.sites("latent")}

            draws = jax.vmap(one)(jax.random.split(k_guide, self.num_samples))
        out = Predictive(self.model, draws, params=params, return_sites=self.return_sites,
                         infer_discrete=self.infer_discrete)(k_model, *args, **kwargs)
        if self.return_sites is None:
            out = {**draws, **out}
        return out


def _with_discrete_draws(model, flat, n, key, args, kwargs) -> dict:
    """`flat` (site -> (n, ...) draws of the continuous latents) with the model's discrete
    sites drawn from their conditional posterior given each draw (`Predictive(...,
    infer_discrete=True)`, as NumPyro's): see `ppl.compile.marginal`."""
    ld = compile_model(model, *args, **kwargs)
    if not ld.spec.discrete:
        return flat
    marginal = marginalize(ld, "Predictive(infer_discrete=True)")
    drawn = discrete_draws(marginal, {k: jnp.reshape(v, (1, n) + jnp.shape(v)[1:]) for k, v in flat.items()},
                           jax.random.fold_in(key, 1))
    added = {k: v[0] for k, v in drawn.items() if k in marginal.plan.discrete or k in marginal.plan.deterministic}
    return {**flat, **added}


def log_likelihood(model, posterior_samples, *args, batch_ndims=None, parallel=True, **kwargs) -> dict:
    """Log-likelihood of each observed site under each posterior draw (NumPyro's
    `numpyro.infer.log_likelihood`), e.g. for WAIC or PSIS-LOO.

    Args:
      posterior_samples: dict site -> draws with `batch_ndims` leading dims (default 1), or a
        ppl `Result`.
      *args, **kwargs: the model's arguments (with the data to score).

    Returns:
      dict observed site -> array `(*sample dims, *site batch shape)` of log p(y_i | draw),
      with masks and scales applied.

    Raises:
      ValueError: if the model on these arguments has a latent site without draws.

    Example:
      >>> ll = log_likelihood(model, r, x, y=y)["y"]              # (chains, draws, n)
      >>> ll = log_likelihood(model, {"mu": mu_draws}, x, y=y)["y"]  # (num_draws, n)
    """
    flat, lead, params = _draws(posterior_samples, batch_ndims, None)

    def one(draw):
        with handlers.trace() as tr, _SubstituteDraw(draw, params, strict=True):
            model(*args, **kwargs)
        return {s.name: s.log_prob for s in tr.sites("observed")}

    out = jax.jit(jax.vmap(one))(flat)
    return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in out.items()}


# -- NumPyro's MCMC driver: MCMC(NUTS(model), ...).run(key, *args) as a door to ppl.infer ----
@dataclasses.dataclass(frozen=True)
class InitStrategy:
    """NumPyro's `init_to_*` strategies as a record (see `init_to_uniform` and the others).

    kind: "uniform" (uniform(-radius, radius) in unconstrained space), "sample" (a prior
    draw), "median"/"mean" (the median/mean of `num_samples` prior draws), "feasible" (0 in
    unconstrained space) or "value" (`values`, the rest uniform)."""

    kind: str
    radius: float = 2.0
    num_samples: int = 15
    values: Any = None


def init_to_uniform(site=None, radius=2):
    """Start each chain uniformly in (-radius, radius) in unconstrained space (NumPyro's
    default; ppl's `init="uniform"`, whose radius is 2, or `init=radius`)."""
    _no_site("init_to_uniform", site)
    return InitStrategy("uniform", radius=float(radius))


def init_to_sample(site=None):
    """Start each chain at a draw from the prior (ppl's `init="prior"`)."""
    _no_site("init_to_sample", site)
    return InitStrategy("sample")


def init_to_median(site=None, num_samples=15):
    """Start at the median of `num_samples` prior draws of each latent site."""
    _no_site("init_to_median", site)
    return InitStrategy("median", num_samples=int(num_samples))


def init_to_mean(site=None, num_samples=15):
    """Start at the mean of `num_samples` prior draws of each latent site."""
    _no_site("init_to_mean", site)
    return InitStrategy("mean", num_samples=int(num_samples))


def init_to_feasible(site=None):
    """Start at 0 in unconstrained space (the "centre" of every support)."""
    _no_site("init_to_feasible", site)
    return InitStrategy("feasible")


def init_to_value(site=None, values=None):
    """Start at the given constrained `values` (dict site -> value); other sites uniformly."""
    _no_site("init_to_value", site)
    return InitStrategy("value", values=dict(values or {}))


def _no_site(name, site):
    if site is not None:
        raise TypeError(f"{name}(site=...): ppl's init strategies apply to the whole model; call {name}() "
                        f"with keywords only and pass it as NUTS(model, init_strategy=...).")


def _ppl_init(strategy, model, key, args, kwargs):
    """ppl's `init=` option ("uniform", "prior", a radius or a dict of constrained values)
    for a NumPyro init strategy on this model and data."""
    if strategy is None:
        return "uniform"
    if not isinstance(strategy, InitStrategy):
        raise TypeError(f"init_strategy must be one of ppl.infer's init_to_uniform, init_to_sample, init_to_median, "
                        f"init_to_mean, init_to_feasible or init_to_value, got {strategy!r}.")
    if strategy.kind == "uniform":
        return "uniform" if strategy.radius == 2.0 else strategy.radius
    if strategy.kind == "sample":
        return "prior"
    if strategy.kind == "value":
        return strategy.values
    from ppl.compile.logdensity import compile as compile_model

    ld = compile_model(model, *args, **kwargs)
    names = [lat.name for lat in ld.spec.latents]
    if strategy.kind == "feasible":
        point = ld.constrain(jnp.zeros(ld.dim))
        return {k: point[k] for k in names}
    draws = Predictive(model, num_samples=strategy.num_samples, return_sites=names)(key, *args, **kwargs)
    reduce = jnp.median if strategy.kind == "median" else jnp.mean
    return {k: reduce(jnp.asarray(draws[k], jnp.result_type(float)), axis=0).astype(jnp.asarray(draws[k]).dtype)
            for k in names}


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A model with the sampler NumPyro's `NUTS(model, ...)` / `HMC(model, ...)` asked for:
    `method` is the ppl method object (its warmup, draws and chains are set by `MCMC`)."""

    model: Callable
    method: Any
    init_strategy: Optional[InitStrategy] = None


_UNSUPPORTED = {  # NumPyro kernel keyword -> (its default, why ppl cannot take another value)
    "potential_fn": (None, "ppl samples models: give the model function"),
    "kinetic_fn": (None, "ppl's kinetic energy is the Euclidean one"),
    "inverse_mass_matrix": (None, "ppl adapts the mass matrix in warmup, from the identity"),
    "adapt_step_size": (True, "ppl always adapts the step size in warmup"),
    "adapt_mass_matrix": (True, "ppl always adapts the mass matrix in warmup"),
    "regularize_mass_matrix": (True, "ppl always regularises the mass matrix (Stan's shrinkage)"),
    "forward_mode_differentiation": (False, "ppl differentiates in reverse mode"),
}
_IGNORED = ("step_size", "find_heuristic_step_size")  # ppl always finds the initial step size itself


def _numpyro_kernel(method_cls, sampler_name, model, options, own):
    for name, value in options.items():
        if name in _IGNORED:
            continue
        if name in _UNSUPPORTED:
            default, why = _UNSUPPORTED[name]
            if value is not default and value != default:
                raise ValueError(f"{sampler_name}(model, {name}={value!r}): not supported ({why}); drop {name}=.")
            continue
        raise TypeError(f"{sampler_name}(model, ...) got an unknown keyword {name!r}.")
    if not callable(model):
        raise TypeError(f"{sampler_name}(model, ...): model must be the model function, got {type(model).__name__}.")
    init_strategy = own.pop("init_strategy", None)
    if not isinstance(own.get("dense_mass", False), bool):
        raise ValueError(f"{sampler_name}(model, dense_mass={own['dense_mass']!r}): ppl's mass matrix is diagonal "
                         f"(False) or dense over all latents (True); structured blocks are not supported.")
    return Kernel(model, method_cls(**own), init_strategy)


def NUTS(*args, **kwargs):
    """NumPyro's `NUTS(model, ...)` kernel for `MCMC`, or ppl's `ppl.NUTS(...)` method object.

    With a model (NumPyro's form) the keywords are NumPyro's: `target_accept_prob`,
    `max_tree_depth`, `dense_mass` (bool), `init_strategy` (`init_to_uniform()`, ...);
    `step_size` and `find_heuristic_step_size` are accepted and ignored (ppl finds the
    initial step size itself); options ppl does not have are an error naming them.
    Without one, the arguments are ppl's (`ppl.infer.NUTS(num_samples=500)` is `ppl.NUTS(...)`).

    Example:
      >>> mcmc = MCMC(NUTS(model, target_accept_prob=0.9), num_warmup=500, num_samples=500)
    """
    from ppl.mcmc.sampler import NUTS as PplNUTS

    model, kwargs = _model_argument(args, kwargs)
    if model is None:
        return PplNUTS(*args, **kwargs)
    own = {"target_accept": kwargs.pop("target_accept_prob", 0.8), "max_tree_depth": kwargs.pop("max_tree_depth", 10),
           "dense_mass": kwargs.pop("dense_mass", False), "init_strategy": kwargs.pop("init_strategy", None)}
    if not isinstance(own["max_tree_depth"], int):
        raise ValueError(f"NUTS(model, max_tree_depth={own['max_tree_depth']!r}): ppl takes one int (a tuple of "
                         f"warmup and sampling depths is not supported).")
    if kwargs.pop("trajectory_length", None) is not None:
        raise ValueError("NUTS(model, trajectory_length=...): NUTS chooses its trajectory length; drop it.")
    return _numpyro_kernel(PplNUTS, "NUTS", model, kwargs, own)


def HMC(*args, **kwargs):
    """NumPyro's `HMC(model, ...)` kernel for `MCMC`, or ppl's `ppl.HMC(...)` method object.

    NumPyro's HMC keeps a trajectory length (2 pi by default) and adapts the number of
    leapfrog steps to the step size; ppl's HMC takes `num_steps` leapfrog steps, jittered
    (see `ppl.HMC`). `num_steps=` is passed on; without it ppl's default (16) is used.
    Other keywords as `NUTS`.
    """
    from ppl.mcmc.sampler import HMC as PplHMC

    model, kwargs = _model_argument(args, kwargs)
    if model is None:
        return PplHMC(*args, **kwargs)
    own = {"target_accept": kwargs.pop("target_accept_prob", 0.8), "dense_mass": kwargs.pop("dense_mass", False),
           "init_strategy": kwargs.pop("init_strategy", None)}
    num_steps = kwargs.pop("num_steps", None)
    if num_steps is not None:
        own["num_steps"] = int(num_steps)
    length = kwargs.pop("trajectory_length", 2 * math.pi)
    if num_steps is None and length != 2 * math.pi:
        raise ValueError(f"HMC(model, trajectory_length={length!r}): ppl's HMC takes num_steps leapfrog steps; "
                         f"give num_steps= instead.")
    return _numpyro_kernel(PplHMC, "HMC", model, kwargs, own)


def _model_argument(args, kwargs):
    """`(model, NumPyro keywords)` when called NumPyro's way, else `(None, kwargs)`."""
    if "model" in kwargs or "potential_fn" in kwargs:
        kwargs = dict(kwargs)
        model = kwargs.pop("model", None)
        if model is None:
            raise ValueError("NUTS/HMC(potential_fn=...): ppl samples models: give the model function.")
        return model, kwargs
    if args and callable(args[0]):
        if len(args) > 1:
            raise TypeError("NUTS/HMC(model, ...): give the options after the model as keywords.")
        return args[0], dict(kwargs)
    return None, kwargs


_CHAIN_METHODS = {"parallel": "auto", "sequential": "sequential", "vectorized": "vectorized"}
_EXTRA_FIELDS = {"diverging": "diverging", "num_steps": "n_steps", "accept_prob": "acceptance_rate",
                 "energy": "energy", "adapt_state.step_size": "step_size", "tree_depth": "tree_depth"}


def _bind_python_objects(model, kwargs):
    """`(model, kwargs)` with the keyword arguments that are neither arrays nor hashable
    Python values (hmm_enum.py passes its `argparse.Namespace` as `args=`) bound into the
    model, as NumPyro's driver takes any Python object: `ppl.infer` takes data and hashable
    static values only. Each `run` then compiles its model afresh (NumPyro retraces too)."""
    def plain(v):
        for leaf in jax.tree.leaves(v):
            if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float, complex, bool, str)):
                try:
                    hash(leaf)
                except TypeError:
                    return False
        return True

    bound = {k: v for k, v in kwargs.items() if not plain(v)}
    if not bound:
        return model, kwargs
    rest = {k: v for k, v in kwargs.items() if k not in bound}

    def model_with_objects(*a, **k):
        return model(*a, **bound, **k)

    model_with_objects.__name__ = getattr(model, "__name__", "model")
    return model_with_objects, rest


class MCMC:
    """NumPyro's `MCMC` driver, a door to `ppl.infer`: `MCMC(NUTS(model), num_warmup=...,
    num_samples=..., num_chains=...).run(rng_key, *args, **kwargs)` runs
    `ppl.infer(model, *args, method=ppl.NUTS(...), key=rng_key, **kwargs)`.

    Args (NumPyro's):
      sampler: `NUTS(model, ...)` or `HMC(model, ...)` from `ppl.infer`.
      num_warmup, num_samples, num_chains (default 1), thinning: as ppl's.
      chain_method: "parallel" (ppl's "auto"), "sequential" or "vectorized".
      progress_bar: bool.
      jit_model_args: accepted (ppl never recompiles for new data of the same shapes).

    After `run`: `get_samples(group_by_chain=False)` (dict site -> `(num_chains * num_samples,
    ...)`, or `(num_chains, num_samples, ...)`; deterministic sites included),
    `get_extra_fields()` (per-draw `diverging`, `num_steps`, `accept_prob`, `energy`,
    `adapt_state.step_size`), `print_summary()`, and `result`, the ppl `Result`.

    Raises:
      TypeError: for a sampler that is not `NUTS(model)`/`HMC(model)`.
      NotImplementedError: for `postprocess_fn` or `init_params` (give `init_strategy=
        init_to_value(values=...)` to the kernel instead).

    Example:
      >>> mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=500, num_chains=2)
      >>> mcmc.run(jax.random.PRNGKey(0), x, y=y)
      >>> mcmc.get_samples()["mu"].shape       # (1000,)
    """

    def __init__(self, sampler, *, num_warmup, num_samples, num_chains=1, thinning=1, postprocess_fn=None,
                 chain_method="parallel", progress_bar=True, jit_model_args=False):
        if not isinstance(sampler, Kernel):
            raise TypeError(f"MCMC(sampler, ...): sampler must be NUTS(model, ...) or HMC(model, ...) from ppl.infer, "
                            f"got {sampler!r}.")
        if postprocess_fn is not None:
            raise NotImplementedError("MCMC(postprocess_fn=...): not supported; ppl's draws are constrained values, "
                                      "deterministic sites included.")
        if chain_method not in _CHAIN_METHODS:
            raise ValueError(f"MCMC(chain_method={chain_method!r}): use one of {sorted(_CHAIN_METHODS)}.")
        self.sampler = sampler
        self.method = dataclasses.replace(sampler.method, num_warmup=int(num_warmup), num_samples=int(num_samples),
                                          num_chains=int(num_chains), thinning=int(thinning),
                                          chain_method=_CHAIN_METHODS[chain_method], progress_bar=bool(progress_bar))
        self.result = None

    @property
    def num_samples(self):
        return self.method.num_samples

    @property
    def num_chains(self):
        return self.method.num_chains

    def run(self, rng_key, *args, extra_fields=(), init_params=None, **kwargs):
        """Run the chains on `model(*args, **kwargs)` (NumPyro's `MCMC.run`)."""
        from ppl.infer.api import infer

        if init_params is not None:
            raise NotImplementedError("MCMC.run(init_params=...): not supported; give NUTS(model, init_strategy="
                                      "init_to_value(values={...})) with constrained values.")
        unknown = [f for f in extra_fields if f not in _EXTRA_FIELDS]
        if unknown:
            raise ValueError(f"MCMC.run(extra_fields={unknown}): ppl records {sorted(_EXTRA_FIELDS)}.")
        key = as_key(rng_key)
        model, kwargs = _bind_python_objects(self.sampler.model, kwargs)
        init = _ppl_init(self.sampler.init_strategy, model, jax.random.fold_in(key, 1), args, kwargs)
        method = dataclasses.replace(self.method, init=init)
        self.result = infer(model, *args, method=method, key=key, **kwargs)

    def _ran(self, what):
        if self.result is None:
            raise RuntimeError(f"MCMC.{what}(): call MCMC.run(rng_key, *args) first.")
        return self.result

    def get_samples(self, group_by_chain=False) -> dict:
        """Draws of every latent and deterministic site (NumPyro's `MCMC.get_samples`). As
        in NumPyro, discrete sites summed out of the run are left out (`ppl.infer`'s
        `Result` has them; here `Predictive(..., infer_discrete=True)` draws them)."""
        result = self._ran("get_samples")
        summed = set()
        if "summed_out" in result.diagnostics and result.log_density is not None:
            summed = {lat.name for lat in result.log_density.spec.discrete}
        samples = {k: v for k, v in result.samples.items() if k not in summed}
        if group_by_chain:
            return {k: jnp.asarray(v) for k, v in samples.items()}
        return {k: jnp.asarray(v).reshape((-1,) + v.shape[2:]) for k, v in samples.items()}

    def get_extra_fields(self, group_by_chain=False) -> dict:
        """Per-draw sampler statistics: `diverging`, `num_steps`, `accept_prob`, `energy`,
        `adapt_state.step_size` (where the sampler records them)."""
        stats = self._ran("get_extra_fields").diagnostics.get("sample_stats", {})
        out = {name: jnp.asarray(stats[ours]) for name, ours in _EXTRA_FIELDS.items() if ours in stats}
        if group_by_chain:
            return out
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in out.items()}

    def print_summary(self, prob=0.9, exclude_deterministic=True):
        """Print ppl's summary table (mean, sd, 5/50/95% quantiles, R-hat, ESS per scalar)."""
        print(self._ran("print_summary").summary().to_string())


class Unavailable:
    """A NumPyro `numpyro.infer` name ppl does not offer (`SA`, `HMCECS`, ...):
    importing it works, so that a ported file which imports it but runs another path (the
    examples' `--algo NUTS`) runs; calling it, or reading an attribute (`autoguide.AutoDelta`),
    raises NotImplementedError naming it and what to use instead."""

    def __init__(self, name: str, advice: str):
        self._name, self._advice = name, advice

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(f"ppl.infer.{self._name} (NumPyro's) is not in ppl: {self._advice}.")

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise NotImplementedError(f"ppl.infer.{self._name}.{attr} (NumPyro's) is not in ppl: {self._advice}.")

    def __repr__(self):
        return f"<ppl.infer.{self._name}: not in ppl ({self._advice})>"


UNAVAILABLE = {
    "SA": "use NUTS(model) or HMC(model) with MCMC, or ppl.MH", "HMCECS": "use NUTS(model) with MCMC",
    "BarkerMH": "use NUTS(model) or ppl.MH", "MixedHMC": "use ppl.Gibbs (discrete sites enumerated)",
    "DiscreteHMCGibbs": "use ppl.Gibbs (discrete sites by exact enumeration, continuous ones by NUTS)",
}
