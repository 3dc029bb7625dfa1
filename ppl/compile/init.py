"""Initial points: finite starting values in unconstrained space, with retries."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ppl import _counter_rng
from ppl._keys import as_key
from ppl.compile import _handlers as H
from ppl.model import handlers


def draw_initial(ld, key, strategy="uniform", radius=2.0, values=None):
    """One candidate `z`: uniform(-radius, radius) in unconstrained space, or a prior draw;
    sites named in `values` take those (constrained) values."""
    if strategy == "uniform" and not values and not ld.spec.discrete:
        return jax.random.uniform(key, (ld.dim,), jnp.result_type(float), -radius, radius)
    recorder = H.ToFlat()
    args, kwargs = ld.arguments()
    k_init, k_seed = jax.random.split(key)
    with recorder, handlers.substitute(data=ld.params), H.InitValues(k_init, strategy, radius, values), handlers.seed(rng_seed=k_seed):
        ld.model(*args, **kwargs)
    return ld.flatten(recorder.latents)


def _is_finite(ld, z):
    lp, g = jax.value_and_grad(lambda x: ld.log_joint(x).total)(z)  # NaN fails isfinite anyway
    cont = np.ones(ld.dim, bool)
    for lat in ld.spec.discrete:
        cont[lat.offset: lat.offset + lat.size] = False
    return jnp.isfinite(lp) & jnp.all(jnp.where(cont, jnp.isfinite(g), True))


def first_finite(ld, key, evaluate=None, strategy="uniform", radius=2.0, values=None, num_tries=100):
    """The first of up to `num_tries` candidate points at which `evaluate` accepts.

    `evaluate(z) -> (ok, aux)`; by default `ok` says the log joint and its gradient are
    finite and `aux` is None. A sampler passes its kernel's `init`, so that the state it
    starts from is computed here once (one compiled copy of the gradient, not two).
    Jittable. Returns `(z, ok, aux)` of the last candidate tried.
    """
    evaluate = evaluate or (lambda z: (_is_finite(ld, z), None))
    dtype = jnp.result_type(float)
    uniform = strategy == "uniform" and not values and not ld.spec.discrete
    words = _counter_rng.key_words(key)

    def draw(i):
        if uniform:  # counter-based: one fused cipher, no jax.random loop to compile
            counter = i.astype(jnp.uint32) * jnp.uint32(ld.dim) + jnp.arange(ld.dim, dtype=jnp.uint32)
            u = _counter_rng.uniform(words, counter, _counter_rng.INIT, dtype)
            return (2.0 * u - 1.0) * jnp.asarray(radius, dtype)
        return draw_initial(ld, jax.random.fold_in(key, i), strategy, radius, values)

    # The next candidate is drawn at the end of each trip and carried: its one consumer is
    # the loop state, so XLA computes the draw once rather than copying the cipher into
    # every fusion of the log density that reads it.
    def body(c):
        i, z, _, _, _ = c
        ok, aux = evaluate(z)
        return i + 1, draw(i + 1), ok, aux, z

    z0 = draw(jnp.int32(0))
    aux0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(lambda z: evaluate(z)[1], z0))
    _, _, ok, aux, z = jax.lax.while_loop(lambda c: (c[0] < num_tries) & ~c[2], body,
                                          (jnp.int32(0), z0, jnp.bool_(False), aux0, z0))
    return z, ok, aux


def initial_points(ld, key, num_points, strategy="uniform", radius=2.0, values=None, num_tries=100):
    """`num_points` starting points, each the first finite one of up to `num_tries` draws.

    Jittable. Returns `(z, ok)` with `z` of shape `(num_points, dim)` and `ok` a boolean
    per point (False when every try had a non-finite log density or gradient).
    """

    def one(k):
        return first_finite(ld, k, None, strategy, radius, values, num_tries)[:2]

    if num_points == 1:  # no batching to trace (the retry loop's batching rule is costly)
        return jax.tree.map(lambda x: x[None], one(key))
    return jax.vmap(one)(jax.random.split(key, num_points))


def nonfinite_sites(ld, z):
    """Names of the sites whose log density (or Jacobian, or gradient) is not finite at `z`."""
    names = []

    def site_terms(ld, z):
        sites = [s for s in ld.run(z).values() if s.kind in ("latent", "observed", "factor")]
        names[:] = [s.name for s in sites]
        return [(s.log_prob_sum(), jnp.zeros(()) if s.log_jacobian is None else s.log_jacobian) for s in sites]

    # Traced, not eager: eager numpyro would raise on the invalid parameters we look for.
    terms = jax.jit(site_terms)(ld, z)
    bad = [name for name, t in zip(names, terms) if not all(np.isfinite(np.asarray(x)) for x in t)]
    if not bad:
        g = np.asarray(jax.jit(jax.grad(ld.log_prob))(z))
        for lat in ld.spec.continuous:
            if not np.isfinite(g[lat.offset: lat.offset + lat.size]).all():
                bad.append(f"{lat.name} (gradient)")
    return bad


def init_error(ld, z, num_tries) -> ValueError:
    bad = nonfinite_sites(ld, z) or ["<none identified>"]
    names = [b.split(" ")[0] for b in bad]
    latent = next((n for n in names if n in ld.spec.latent_index), ld.spec.latents[0].name if ld.spec.latents else None)
    hint = f", e.g. method=ppl.NUTS(init={{'{latent}': ...}})" if latent else ""
    return ValueError(
        f"no finite starting point found in {num_tries} tries: the log density is not finite "
        f"at site(s) {bad}. Check that the data are valid for those sites, that the priors' "
        f"supports contain the data-implied values, or give init values{hint}."
    )


def find_initial(ld, key, num_points, strategy="uniform", radius=2.0, values=None, num_tries=100):
    """Eager wrapper of `initial_points` that raises `init_error` if any point failed."""
    key = as_key(key)
    z, ok = jax.jit(initial_points, static_argnums=(2, 3, 4, 6))(ld, key, num_points, strategy, radius, values, num_tries)
    if not bool(np.all(ok)):
        raise init_error(ld, z[int(np.argmin(np.asarray(ok)))], num_tries)
    return z
