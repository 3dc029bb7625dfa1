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
             batch_ndims=None)(rng_key, *args, **kwargs)   -> dict site -> draws
  log_likelihood(model, posterior_samples, *args, batch_ndims=None, **kwargs)
                                                      -> dict observed site -> log p(y_i | draw)
  NUTS, HMC, MH: ppl's method objects (use them as `method=` of `ppl.infer`; NumPyro's
  `MCMC` driver has no twin: importing it is an error that says what to write instead).

Both take draws as NumPyro gives them (a dict of arrays with `batch_ndims` leading sample
dims, default 1) or a ppl `Result` (draws `(num_chains, num_draws, ...)`, learned params
included); outputs keep those leading dims. They are doors to `ppl.predictive`
(`ppl.evaluate`): every observed site is drawn anew, params come from `params` or the Result.
"""
from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import numpy as np

from ppl._keys import as_key
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

    Calling it with `(rng_key, *args, **kwargs)` runs the model on those arguments once per
    draw (vectorised, jitted), with every observed site drawn anew; returns dict site ->
    array `(*sample dims, *site_shape)`.

    Example:
      >>> r = ppl.infer(model, x, y=y, method="nuts")
      >>> yrep = Predictive(model, r)(0, x)["y"]                   # (chains, draws, n)
      >>> prior = Predictive(model, num_samples=100)(jax.random.PRNGKey(0), x)
    """

    def __init__(self, model, posterior_samples=None, *, params=None, num_samples=None, return_sites=None,
                 batch_ndims=None, guide=None, parallel=True):
        if guide is not None:
            raise NotImplementedError(
                "Predictive(guide=...): ppl draws from a fitted guide through its Result: run "
                "r = ppl.infer(model, ..., method=ppl.VI(guide=...)) and pass Predictive(model, r).")
        if posterior_samples is None and num_samples is None:
            raise ValueError("Predictive: give posterior_samples (a dict of draws or a Result) or num_samples "
                             "(for prior draws).")
        self.model, self.posterior_samples, self.params = model, posterior_samples, params
        self.num_samples, self.return_sites, self.batch_ndims = num_samples, return_sites, batch_ndims

    def __call__(self, rng_key, *args, **kwargs) -> dict:
        flat, lead, params = _draws(self.posterior_samples, self.batch_ndims, self.params)
        if not flat:
            lead = lead or (self.num_samples,)
        n = math.prod(lead)
        result = types.SimpleNamespace(samples={k: v[None] for k, v in flat.items()}, num_chains=1, num_draws=n,
                                       params=params)
        out = predictive(self.model, result, *args, key=as_key(rng_key), sites=self.return_sites, **kwargs)
        given = set() if isinstance(self.posterior_samples, Result) else set(flat)
        return {k: v.reshape(lead + v.shape[2:]) for k, v in out.items()
                if self.return_sites is not None or k not in given}


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
