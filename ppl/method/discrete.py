"""Discrete sites drawn after a run on their summed-out model: `with_discrete`.

A method that ran on a `MarginalLogDensity` (the model's finite discrete sites summed out)
returns draws of the continuous sites only. Each draw's discrete sites are then drawn from
their conditional posterior given that draw's continuous values (exact: see
`ppl.compile.marginal`), so the pairs are draws from the joint posterior, and the
deterministic sites that depend on them are computed with them. At temperature 0 each draw
gets the most probable discrete values instead (for point estimates: MAP, MLE).

Draw (c, s) uses the key `fold_in(fold_in(fold_in(key, DISCRETE_STREAM), c), s)`, so the
same key gives the same discrete draws whatever the chain layout.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ppl._memo import Memo

DISCRETE_STREAM = 0x0D15C
_BUDGET_BYTES = 1 << 28  # all draws at once below this estimate of the memory, else in batches


def _draw_all(marginal, values, key, shape, temperature):
    """Every site of each of the ``shape = (chains, draws)`` draws (flattened in ``values``),
    the discrete ones drawn with the keys of the module docstring."""
    c, s = shape
    base = jax.random.fold_in(key, DISCRETE_STREAM)
    keys = jax.vmap(lambda i: jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(base, i), j))(
        jnp.arange(s)))(jnp.arange(c))
    keys = keys.reshape((c * s,) + keys.shape[2:])

    def one(args):
        v, k = args
        return marginal.complete(marginal.unconstrain(v), k, temperature)

    n = keys.shape[0]
    per_draw = 8 * marginal.plan.size * max(marginal.full_spec.value_size, 1)
    if n * per_draw <= _BUDGET_BYTES:
        return jax.vmap(one)((values, keys))
    return jax.lax.map(one, (values, keys), batch_size=max(1, _BUDGET_BYTES // per_draw))


_PROGRAMS = Memo(32)  # one program per model structure, shapes and temperature


def _program(marginal, values, key, shape, temperature):
    """`_draw_all` compiled as ppl's own programs are (`ppl.runtime.program.compile_lowered`:
    its CPU compiler options, here for a program run once over ``chains x draws`` draws, and
    its disk cache), once per model structure and shapes. Measured (NumPyro's hmm_enum model
    1, one chain of 100 draws, 2-core CPU): XLA's compile 2.5 s as a plain `jax.jit` -> 0.47 s;
    the first call of NUTS on it 13.6 -> 10.6 s."""
    from ppl.runtime import program

    def make():
        lowered = jax.jit(_draw_all, static_argnums=(3, 4)).lower(marginal, values, key, shape, temperature)
        return program.compile_lowered(lowered, jax.tree.leaves(values), evaluations=shape[0] * shape[1])[0]

    leaves, tree = jax.tree.flatten((marginal, values, key))
    shapes = tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)
    return _PROGRAMS.get((tree, shapes, shape, temperature), make)


def discrete_draws(marginal, samples, key, temperature=1, shape=None) -> dict:
    """Every latent and deterministic site for each draw of `samples` (site -> array
    (chains, draws, *shape) holding at least the continuous latents of `marginal`), the
    discrete sites drawn from their conditional posterior (see the module docstring).
    ``shape`` (chains, draws) where `samples` is empty (a model with no continuous latent)."""
    names = [lat.name for lat in marginal.spec.latents]
    c, s = shape if shape is not None else np.shape(next(iter(samples.values())))[:2]
    values = {n: jnp.asarray(np.asarray(samples[n])).reshape((c * s,) + np.shape(samples[n])[2:]) for n in names}
    out = _program(marginal, values, key, (c, s), temperature)(marginal, values, key)
    return {k: np.asarray(v).reshape((c, s) + np.shape(v)[1:]) for k, v in out.items()}


def with_discrete(result, marginal, key, temperature=1):
    """`result` (a run on `marginal`) with the discrete sites, and the deterministic sites
    that depend on them, added to its samples (and to its params, for a point estimate);
    its `log_density` becomes the model's own, and `diagnostics["summed_out"]` says how the
    discrete sites were summed."""
    result.diagnostics["summed_out"] = marginal.plan.describe()
    # A point estimate of a model whose only continuous unknowns are params (MLE): one draw,
    # the most probable discrete values given them.
    point = not result.samples and temperature == 0 and marginal.dim == 0 and bool(result.params)
    if result.samples or point:
        drawn = discrete_draws(_with_fitted_params(marginal, result.params), result.samples, key, temperature,
                               shape=(1, 1) if point else None)
        added = {k: v for k, v in drawn.items() if k in marginal.plan.discrete or k in marginal.plan.deterministic}
        samples = result.samples if isinstance(result.samples, dict) else {k: result.samples[k] for k in result.samples}
        samples.update(added)
        result.samples = samples
        if result.params and all(lat.name in result.params for lat in marginal.spec.latents):
            result.params.update({k: v[0, 0] for k, v in added.items()})
    result.log_density = marginal.full
    return result


def _with_fitted_params(marginal, params):
    """``marginal`` with the model's ``param`` sites at the values a run fitted (MLE, MAP and
    VI learn them; ``params``, the result's): the discrete sites' conditional posterior
    depends on them, and the compiled model holds their initial values."""
    fitted = {k: v for k, v in (params or {}).items()
              if k in marginal.params and np.shape(v) == np.shape(marginal.params[k])}
    if not fitted:
        return marginal
    (data, old), aux = marginal.tree_flatten()
    new = {**old, **{k: jnp.asarray(v, jnp.result_type(old[k])) for k, v in fitted.items()}}
    out = type(marginal).tree_unflatten(aux, (data, new))
    out.module_statics = getattr(marginal, "module_statics", {})
    return out
