"""`ppl.infer_discrete`: the discrete sites of a model drawn from their conditional posterior.

Two doors to one computation (`ppl.compile.marginal`):

* `infer_discrete(result, key=0, temperature=1)` takes a `Result` and draws, for each of its
  draws, the discrete sites given that draw's continuous values (temperature 0: their most
  probable values, e.g. the Viterbi path of an HMM), with the deterministic sites that depend
  on them. Methods that sum discrete sites out already do this with temperature 1 (or 0 for
  MAP and MLE); call it to redraw, or for the most probable values.
* `discrete_handler(fn, temperature=1, rng_key=None)` is NumPyro's
  `contrib.funsor.infer_discrete`: a model that, when run, first draws its discrete sites
  from their posterior given everything else the run fixes (data, and sites set by handlers
  such as `condition` or `substitute`), then runs with those values.
"""
from __future__ import annotations

import copy
import functools

import jax.numpy as jnp

from ppl._keys import as_key
from ppl.compile.logdensity import compile as compile_model
from ppl.compile.marginal import marginalize
from ppl.method.discrete import with_discrete
from ppl.model import handlers
from ppl.model._runtime import local_stack


def infer_discrete(result, key=0, temperature=1):
    """A copy of `result` whose samples hold the model's discrete sites, drawn per draw from
    their conditional posterior (temperature 1) or set to their most probable values given
    the draw (temperature 0).

    Raises:
      ValueError: for a temperature other than 0 or 1, a result without its model, or a
        model without discrete latent sites.
    """
    if temperature not in (0, 1):
        raise ValueError(f"infer_discrete: temperature must be 0 (most probable values) or 1 (draws), got {temperature!r}.")
    ld = getattr(result, "log_density", None)
    if ld is None:
        raise ValueError("infer_discrete: this Result holds no compiled model (result.log_density); "
                         "pass a Result returned by ppl.infer.")
    ld = getattr(ld, "full", ld)
    if not ld.spec.discrete:
        raise ValueError("infer_discrete: the model has no discrete latent site to draw.")
    marginal = marginalize(ld, "infer_discrete")
    out = copy.copy(result)
    out.samples = {k: v for k, v in result.samples.items()
                   if k not in marginal.plan.discrete and k not in marginal.plan.deterministic}
    out.params = dict(result.params)
    out.diagnostics = dict(result.diagnostics)
    return with_discrete(out, marginal, as_key(key), temperature)


def discrete_handler(fn=None, first_available_dim=None, temperature=1, rng_key=None):
    """NumPyro's `infer_discrete` handler (see the module docstring); `first_available_dim`
    is accepted and unused (ppl allocates no enumeration dims).

    Raises:
      ValueError: for a temperature other than 0 or 1.
    """
    if fn is None:
        return functools.partial(discrete_handler, first_available_dim=first_available_dim,
                                 temperature=temperature, rng_key=rng_key)
    if temperature not in (0, 1):
        raise ValueError(f"infer_discrete: temperature must be 0 or 1, got {temperature!r}.")

    @functools.wraps(fn)
    def model(*args, **kwargs):
        key = as_key(0 if rng_key is None else rng_key)
        with local_stack():  # the handlers around this model see only its last run
            ld = compile_model(fn, *args, **kwargs)
            if not ld.spec.discrete:
                values = {}
            else:
                marginal = marginalize(ld, "infer_discrete")
                if marginal.dim:
                    raise ValueError(
                        f"infer_discrete: the model still has continuous latent sites "
                        f"{[lat.name for lat in marginal.spec.latents]}; fix them first (e.g. "
                        f"handlers.condition(model, data=draw) or handlers.substitute), or call "
                        f"ppl.infer_discrete(result) on a Result.")
                values = marginal.draw_discrete(jnp.zeros((0,), jnp.result_type(float)), key, temperature)
        return handlers.substitute(fn, data=values)(*args, **kwargs)

    return model
