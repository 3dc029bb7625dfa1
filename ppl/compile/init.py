"""Initial points: finite starting values in unconstrained space, with retries; and the
check of user-given initial values (a method's `init=` option)."""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ppl import _counter_rng
from ppl._keys import as_key
from ppl.compile import _handlers as H
from ppl.compile.errors import check_hint
from ppl.compile.supports import describe_support
from ppl.model import handlers, validation


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
        f"supports contain the data-implied values, or give init values{hint}. {check_hint(ld.model)}"
    )


def find_initial(ld, key, num_points, strategy="uniform", radius=2.0, values=None, num_tries=100):
    """Eager wrapper of `initial_points` that raises `init_error` if any point failed."""
    check_init_values(ld, strategy if values is None else values)
    key = as_key(key)
    z, ok = jax.jit(initial_points, static_argnums=(2, 3, 4, 6))(ld, key, num_points, strategy, radius, values, num_tries)
    if not bool(np.all(ok)):
        raise init_error(ld, z[int(np.argmin(np.asarray(ok)))], num_tries)
    return z


# ---------------------------------------------------------------------------- user init values

STRATEGIES = ("uniform", "prior")
SUPPORT_TRIES = 8  # draws of the other latents under which a given value must fit its support
DEFAULT_RADIUS = 2.0


def _is_radius(init) -> bool:
    return isinstance(init, (int, float, np.integer, np.floating)) and not isinstance(init, bool)


def init_option(init):
    """A method's checked ``init=`` option as ``(strategy, radius, values)`` for
    :func:`first_finite` and :func:`initial_points`: a strategy name, a radius (a number
    r: uniform(-r, r) in unconstrained space, Stan's ``init=r``) or a dict of values (the
    other latents uniform(-2, 2))."""
    if isinstance(init, str):
        return init, DEFAULT_RADIUS, None
    if _is_radius(init):
        return "uniform", float(init), None
    return "uniform", DEFAULT_RADIUS, dict(init)


def check_init_values(ld, init) -> None:
    """Raise unless `init` is a valid `init=` option for the compiled model `ld`.

    `init` is a strategy name (`"uniform"`, `"prior"`), a radius r >= 0 (uniform(-r, r) in
    unconstrained space, as Stan's ``init=r``; 0 starts every chain at 0) or a dict latent
    site name -> initial (constrained) value. Each name must be a latent site of the model, each value
    numeric, of the site's shape, finite and inside the site's support (for a support set by
    other latents, inside it for at least one of `SUPPORT_TRIES` draws of them).
    Every method with an `init=` option calls this from its `check`.

    Raises:
      ValueError: naming the site and what to give instead (an unknown name lists the latent
        sites; a wrong shape gives the expected one; a value outside the support names it).
      TypeError: for an `init` that is neither a strategy name, a number nor a dict.
    """
    if _is_radius(init):
        if not (np.isfinite(init) and init >= 0):
            raise ValueError(f"init={init!r}: a number is the radius r of uniform(-r, r) in unconstrained space "
                             f"and must be finite and >= 0, e.g. init=0.5.")
        return
    if isinstance(init, str):
        if init not in STRATEGIES:
            raise ValueError(
                f"unknown init strategy {init!r}; use 'uniform' (uniform(-2, 2) in unconstrained "
                f"space), a radius r (uniform(-r, r)), 'prior' (a draw from the prior), or a dict of initial values, e.g. "
                f"init={{'{ld.spec.latents[0].name if ld.spec.latents else 'mu'}': 0.5}}.")
        return
    if not isinstance(init, Mapping):
        raise TypeError(
            f"init must be 'uniform', 'prior', a radius r (uniform(-r, r) in unconstrained space) or a dict "
            f"latent site name -> initial value, got "
            f"{type(init).__name__} {init!r}.")
    latents = [lat.name for lat in ld.spec.latents]
    for name, value in init.items():
        if name not in ld.spec.latent_index:
            raise ValueError(
                f"init names {name!r}, which is not a latent site of the model{_kind_of(ld, name)}; "
                f"its latent sites are {latents}. Give initial values for those only.")
        lat = ld.spec.latent(name)
        try:
            arr = np.asarray(value)
        except Exception as e:  # noqa: BLE001 - e.g. a traced value: say what is accepted
            raise TypeError(f"init value for site '{name}' must be a number or an array, got "
                            f"{type(value).__name__}.") from e
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"init value for site '{name}' must be numeric, got dtype {arr.dtype} ({value!r}).")
        if arr.shape != tuple(lat.shape):
            plates = f" (plates {[p.name for p in lat.plates]})" if lat.plates else ""
            give = ("a scalar" if not lat.shape else
                    f"an array of shape {tuple(lat.shape)}, e.g. jnp.full({tuple(lat.shape)}, value)")
            raise ValueError(
                f"init value for site '{name}' has shape {arr.shape}, but the site has shape "
                f"{tuple(lat.shape)}{plates}; give {give}.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"init value for site '{name}' is not finite ({arr if arr.size <= 4 else '...'}); "
                             f"give finite values inside the site's support.")
    if init:
        _check_init_supports(ld, dict(init))


def _kind_of(ld, name) -> str:
    for kind, names in (("an observed", ld.spec.observed), ("a param", ld.spec.params),
                        ("a deterministic", ld.spec.deterministic), ("a factor", ld.spec.factors)):
        if name in names:
            return f" ({name!r} is {kind} site)"
    return ""


@jax.jit
def _init_supports(ld, keys, values):
    """Per given site and key: whether its value lies in its support, the other latents
    drawn as `InitValues` draws them."""
    def one(key):
        args, kwargs = ld.arguments()
        k_init, k_seed = jax.random.split(key)
        with handlers.trace() as tr, handlers.substitute(data=ld.params), \
                H.InitValues(k_init, "uniform", 2.0, values), handlers.seed(rng_seed=k_seed):
            ld.model(*args, **kwargs)
        return {n: jnp.all(tr[n].dist.support(tr[n].value)) for n in values}

    return jax.vmap(one)(keys)


def _check_init_supports(ld, values) -> None:
    dtype = jnp.result_type(float)
    arrays = {}
    for name, v in values.items():
        lat = ld.spec.latent(name)
        arrays[name] = jnp.asarray(v, lat.dtype if lat.is_discrete else dtype)
    keys = jax.random.split(jax.random.PRNGKey(0), SUPPORT_TRIES)
    inside = _init_supports(ld, keys, arrays)
    for name, ok in inside.items():
        if not np.asarray(ok).any():
            raise ValueError(
                f"init value for site '{name}' ({_show(values[name])}) lies outside the site's "
                f"support {_support_of(ld, name, arrays)}; give a value inside it (initial values "
                f"are constrained values, as the model's draws).")


def _show(value) -> str:
    arr = np.asarray(value)
    return np.array2string(arr, precision=4, threshold=6)


def _support_of(ld, name, values) -> str:
    """The site's support as text (eagerly traced; bounds set by other latents say so)."""
    args, kwargs = ld.arguments()
    try:
        with validation.off(), handlers.trace() as tr, handlers.substitute(data=ld.params), \
                H.InitValues(jax.random.PRNGKey(0), "uniform", 2.0, values), handlers.seed(rng_seed=0):
            ld.model(*args, **kwargs)
        support = tr[name].dist.support
    except Exception:  # noqa: BLE001 - only for the message
        return "(unknown)"
    return describe_support(support)
