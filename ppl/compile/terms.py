"""The log joint term by term: which sites' terms (or their gradients) fail at a point.

A sampler that meets a NaN log density or gradient knows the point, not the cause; this
names the sites whose own term is not finite there, or whose term's gradient is not (each
gradient taken alone: in a Jacobian of all terms at once, one NaN can leak into the others'
rows through shared intermediate values).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SCORED = ("latent", "observed", "factor")


def site_terms(ld, z, names=None):
    """``(names, terms)``: each scored site's log density at ``z`` summed over its elements
    (a latent's with its log-Jacobian), as a vector; ``names`` selects and orders them."""
    tr = ld.run(z)
    sites = [s for s in tr.values() if s.kind in SCORED and (names is None or s.name in names)]
    if names is not None:
        sites.sort(key=lambda s: list(names).index(s.name))
    terms = [s.log_prob_sum() + (0.0 if s.log_jacobian is None else s.log_jacobian) for s in sites]
    return [s.name for s in sites], jnp.stack(terms) if terms else jnp.zeros((0,))


def _names(ld, z) -> list:
    box = []
    jax.eval_shape(lambda x: box.append(site_terms(ld, x)[0]) or jnp.zeros(()), z)
    return box[0]


@jax.jit
def _evaluate(ld, z):
    names, values = site_terms(ld, z)
    continuous = np.ones(ld.dim, bool)
    for lat in ld.spec.discrete:
        continuous[lat.offset: lat.offset + lat.size] = False
    grads_ok = [jnp.all(jnp.where(continuous, jnp.isfinite(jax.grad(lambda x, n=n: site_terms(ld, x, [n])[1][0])(z)), True))
                for n in names]
    return jnp.isfinite(values), jnp.stack(grads_ok) if grads_ok else jnp.zeros((0,), bool)


def nonfinite_terms(ld, z) -> list:
    """Descriptions of the sites whose term fails at ``z`` (a flat unconstrained point):
    ``"k (log density)"`` where the term itself is NaN or infinite, ``"k (gradient)"`` where
    the term is finite but its gradient is not. Empty when every term is finite there."""
    z = jnp.asarray(z, jnp.result_type(float))
    names = _names(ld, z)
    finite, grad_ok = (np.asarray(a) for a in _evaluate(ld, z))
    out = []
    for name, f, g in zip(names, finite, grad_ok):
        if not f:
            out.append(f"{name} (log density)")
        elif not g:
            out.append(f"{name} (gradient)")
    return out
