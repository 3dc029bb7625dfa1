"""Model evaluation: predictive sampling, held-out likelihood, perplexity, information theory.

    predictive(model, result, *args, key=0, **kwargs)          posterior predictive draws
    held_out_log_likelihood(model, result, *args, **kwargs)    log p(y_new | y), averaged over draws
    marginal_log_likelihood(model, *args, result=..., num_particles=5000, plate=...)
                                                               log p(x) by importance sampling (IWAE-k)
    perplexity(log_likelihood, num_tokens)                     exp(-log_likelihood / num_tokens)
    entropy(p), cross_entropy(p, q), kl_divergence(p, q)       closed form where numpyro has it,
                                                               Monte Carlo otherwise

Every function takes the model and its (new) arguments as `ppl.infer` does: arrays are data,
Python scalars static. Draws and learned params come from a `Result` of any method.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl._keys import as_key
from ppl.model import handlers
from ppl.model._runtime import Message, Messenger

_BUDGET_FLOATS = 1 << 24


# -- draws and params from a Result ----------------------------------------------------------
def _param_arrays(params: dict) -> dict:
    """Learned params as arrays (Equinox modules split into their arrays, as `module` stores them)."""
    import equinox as eqx

    return {k: eqx.filter(v, eqx.is_inexact_array) if isinstance(v, eqx.Module) or isinstance(v, list) else v
            for k, v in params.items()}


def _flat_draws(result):
    c, s = result.num_chains, result.num_draws
    return {k: jnp.asarray(v).reshape((c * s,) + np.shape(v)[2:]) for k, v in result.samples.items()}, (c, s)


class _SubstituteDraw(Messenger):
    """Set latent sites from one posterior draw, checking shapes; params from `params`."""

    def __init__(self, draw: dict, params: dict, strict: bool):
        super().__init__(None)
        self.draw, self.params, self.strict = draw, params, strict

    def process(self, msg: Message) -> None:
        if msg.kind == "param" and msg.name in self.params:
            msg.value = self.params[msg.name]
        elif msg.kind == "latent":
            if msg.name not in self.draw:
                if self.strict:
                    raise ValueError(
                        f"latent site '{msg.name}' has no draws in the result; a held-out likelihood "
                        f"over new latents (e.g. a VAE's per-datapoint codes) is a marginal likelihood: "
                        f"use ppl.evaluate.marginal_log_likelihood."
                    )
                return
            value, want = self.draw[msg.name], tuple(msg.dist.shape())
            if tuple(jnp.shape(value)) != want:
                raise ValueError(
                    f"latent site '{msg.name}': the result's draws have shape {tuple(jnp.shape(value))} "
                    f"but the model on these arguments needs {want}; local latents (inside a plate over "
                    f"the data) cannot be reused for new data: use marginal_log_likelihood."
                )
            msg.value = value


class _Resample(Messenger):
    """Turn observed sites back into sample sites: draw new data."""

    def process(self, msg: Message) -> None:
        if msg.kind == "observed":
            msg.kind, msg.value = "latent", None


def _model_params(result) -> dict:
    return _param_arrays(result.params)


def _structure(model, args, kwargs, params) -> list:
    """(name, kind, plate names) of every site of one run of `model(*args, **kwargs)` from its
    prior, with the learned `params`. Traced abstractly (`jax.eval_shape`: nothing is computed),
    so a check on the model's plates costs one trace and raises before any compilation. Every
    latent appears, also one a sampler summed out and redrew, or one without draws."""
    sites = []

    def run():
        with handlers.trace() as tr, _SubstituteDraw({}, params, strict=False), handlers.seed(rng_seed=0):
            model(*args, **kwargs)
        sites.extend((s.name, s.kind, tuple(p.name for p in s.plates)) for s in tr.values())

    jax.eval_shape(run)
    return sites


def _check_no_local_latents(sites) -> None:
    """Refuse latents inside a plate of the held-out observed sites (local latents).

    Such a latent has one value per element of the plate: per data point (a mixture's
    assignments, a VAE's codes). The result's draws of it belong to the training points, so
    reusing them for new points (which a shape check cannot tell apart when the held-out set
    has the training set's size) conditions each new point on another point's latent, and the
    predictive density must instead integrate over a fresh one. A latent in a plate the
    observed sites are not in (coefficients per feature) is global and may be reused.
    """
    observed = [(n, set(p)) for n, kind, p in sites if kind == "observed"]
    for name, kind, plates in sites:
        if kind != "latent":
            continue
        for plate in plates:
            with_it = [n for n, p in observed if plate in p]
            if with_it:
                obs = ", ".join(f"'{n}'" for n in with_it)
                raise ValueError(
                    f"held_out_log_likelihood: latent site '{name}' is inside plate '{plate}' with the held-out "
                    f"observed site(s) {obs}, so it is a local latent (one value per data point); the result's "
                    f"draws of it belong to the training points and cannot be reused for new ones (the held-out "
                    f"density must integrate over new values of '{name}'). Sum '{name}' out of the model for this "
                    f"call (a discrete one by observing a mixture, e.g. dist.MixtureSameFamily), or, where the "
                    f"global sites are learned params (a VAE fitted by VI), use "
                    f"ppl.evaluate.marginal_log_likelihood(model, ..., result=result, plate='{plate}'). If plate "
                    f"'{plate}' indexes the training run's groups rather than data points, index '{name}' by "
                    f"group outside the data plate instead.")


def _check_factorises(sites, plate) -> None:
    """Every latent, observed and factor site must be inside `plate` for log p(x) to split into
    sum_n log p(x_n). The check reads the model itself, not the terms the estimate adds up:
    with the prior as proposal the latents' densities cancel and are never summed, so a global
    latent would otherwise pass unseen and each element would get its own independent copy
    of it (a wrong estimate, with no error)."""
    if not any(plate in p for _, _, p in sites):
        names = sorted({q for _, _, p in sites for q in p})
        raise ValueError(f"marginal_log_likelihood: the model has no plate '{plate}' (its plates: "
                         f"{', '.join(repr(q) for q in names) or 'none'}); pass one of them, or drop plate=.")
    for name, kind, plates in sites:
        if kind not in ("latent", "observed", "factor") or plate in plates:
            continue
        if kind == "latent":
            raise ValueError(
                f"marginal_log_likelihood: latent site '{name}' is outside plate '{plate}': it is shared by "
                f"all elements of the plate, so log p(x) is not the sum of per-element estimates (each "
                f"element would get its own copy of '{name}'). Drop plate= for one joint estimate of log p(x) "
                f"(a guide function as proposal= keeps it accurate for many data points), or, if '{name}' "
                f"is meant to be one value per element, move it inside the plate.")
        raise ValueError(
            f"marginal_log_likelihood: {kind} site '{name}' is outside plate '{plate}', so the log density "
            f"does not factorise over its elements; every latent, observed and factor site must be inside "
            f"the plate (as a VAE's data plate), or drop plate= for one joint estimate.")


def predictive(model, result, *args, key=0, sites=None, **kwargs) -> dict:
    """Posterior predictive draws: for each draw of `result`, run `model(*args, **kwargs)` with
    the latents set to that draw and the learned params, and draw every observed site anew.

    Args:
      result: any `Result` (MCMC, VI, importance, MLE/MAP: one draw).
      key: int or jax key; the same key gives the same draws.
      sites: names to return (default: all observed, latent and deterministic sites).

    Returns:
      dict site -> array of shape (num_chains, num_draws, *site_shape).

    Example:
      >>> r = ppl.infer(model, x, y=y, method="nuts")
      >>> yrep = ppl.predictive(model, r, x_new)["y"]   # (4, 1000, len(x_new))
    """
    draws, (c, s) = _flat_draws(result)
    params = _model_params(result)
    keys = jax.random.split(as_key(key), c * s)

    def one(draw, k):
        with handlers.trace() as tr, _SubstituteDraw(draw, params, strict=False), handlers.seed(rng_seed=k), _Resample():
            model(*args, **kwargs)
        kinds = ("latent", "deterministic", "observed")
        return {n: st.value for n, st in tr.items() if st.kind in kinds and (sites is None or n in sites)}

    out = jax.jit(jax.vmap(one))(draws, keys)
    return {k: np.asarray(v).reshape((c, s) + v.shape[1:]) for k, v in out.items()}


def held_out_log_likelihood(model, result, *args, pointwise: bool = False, **kwargs):
    """Log-likelihood of held-out data under the posterior predictive of `result`.

    With draws theta_1..theta_S of `result` and new data y (the observed sites of
    `model(*args, **kwargs)`),

        log p(y | data) ≈ log (1/S) sum_s p(y | theta_s)        (log-sum-exp, stable)

    treating the held-out set jointly. With `pointwise=True` it returns, per observed site,
    the elementwise log (1/S) sum_s p(y_i | theta_s), whose total is the log pointwise
    predictive density (lppd, Gelman, Hwang and Vehtari 2014, eq. 5).

    Returns:
      a float, or (pointwise) dict observed site -> array of the site's batch shape.

    Only global latents may be reused for new data. A latent inside a plate of the held-out
    observed sites is local (one value per data point); the result's draws of it belong to the
    training points, whatever the size of the held-out set, so it is refused.

    Raises:
      ValueError: if the model on the new arguments has a latent site inside a plate of its
        observed sites (a local latent, continuous or discrete, also one a sampler summed out:
        sum it out of the model, or use `marginal_log_likelihood`), or latent sites without
        draws, or of other shapes.
    """
    draws, _ = _flat_draws(result)
    params = _model_params(result)
    _check_no_local_latents(_structure(model, args, kwargs, params))

    def one(draw):
        with handlers.trace() as tr, _SubstituteDraw(draw, params, strict=True):
            model(*args, **kwargs)
        return {s.name: s.log_prob for s in tr.sites("observed")}

    ll = jax.jit(jax.vmap(one))(draws)
    n = next(iter(draws.values())).shape[0] if draws else 1
    if pointwise:
        return {k: np.asarray(logsumexp(v, axis=0) - math.log(n)) for k, v in ll.items()}
    total = sum(jnp.sum(v.reshape(v.shape[0], -1), axis=1) for v in ll.values())
    return float(logsumexp(total) - math.log(n))


def _plate_reduce(site, plate):
    """Elementwise log density of `site` summed to one value per element of `plate`."""
    from ppl.vi.plates import per_element

    values, ratio = per_element(site, plate, "marginal_log_likelihood")
    if ratio != 1:
        raise ValueError(f"marginal_log_likelihood: plate '{plate}' subsamples; evaluate on the full plate "
                         f"(pass the model's subsample size as None).")
    return values


def marginal_log_likelihood(model, *args, result=None, proposal=None, num_particles: int = 5000, plate=None,
                            key=0, batch_size=None, pointwise: bool = False, **kwargs):
    """log p(x) of `model(*args, **kwargs)` by importance sampling: the IWAE bound with
    k = `num_particles` (Burda et al. 2016, eq. 8), log (1/k) sum_i p(x, z_i) / q(z_i),
    a lower bound in expectation that tightens as k grows.

    Args:
      result: supplies learned params (model `param`/`module` sites and, for a VI result
        with a guide function, the guide's), and the default proposal.
      proposal: a guide function (named like the model's latents), or "prior"; None means
        the guide function of a VI `result`, else the prior.
      plate: a plate name over which the model factorises (every latent and observed site
        inside it, as the data plate of a VAE): each element gets its own k particles and
        the estimates add up, log p(x) = sum_n log p(x_n). Without it, one joint estimate.
        A latent outside the plate (a global one) is refused, whatever the proposal.
      batch_size: particles evaluated at once (default: from a memory budget).
      pointwise: with `plate`, return the per-element estimates.

    Example:
      >>> ll = ppl.evaluate.marginal_log_likelihood(vae, x_test, result=r, num_particles=5000, plate="data")
    """
    params = _param_arrays(result.params) if result is not None else {}
    if proposal is None:
        guide = getattr(getattr(result, "method", None), "guide", None)
        proposal = guide if callable(guide) else "prior"
    if not (proposal == "prior" or callable(proposal)):
        raise ValueError(f"proposal must be 'prior' or a guide function, got {proposal!r}.")
    if plate is not None:
        _check_factorises(_structure(model, args, kwargs, params), plate)

    def one(k):
        k_g, k_m = jax.random.split(k)
        gtr = None
        values = {}
        if proposal != "prior":
            with handlers.trace() as gtr, _SubstituteDraw({}, params, strict=False), handlers.seed(rng_seed=k_g):
                proposal(*args, **kwargs)
            values = {s.name: s.value for s in gtr.sites("latent")}
        with handlers.trace() as tr, _SubstituteDraw(values, params, strict=False), handlers.seed(rng_seed=k_m):
            model(*args, **kwargs)
        if plate is None:
            lw = tr.log_joint(("observed", "factor") if gtr is None else ("latent", "observed", "factor"))
            return lw if gtr is None else lw - gtr.log_joint(("latent",))
        terms = [_plate_reduce(s, plate) for s in tr.sites(*(("observed", "factor") if gtr is None else ("latent", "observed", "factor")))]
        if gtr is not None:
            terms += [-_plate_reduce(s, plate) for s in gtr.sites("latent")]
        return sum(terms)

    keys = jax.random.split(as_key(key), num_particles)
    if batch_size is None:
        batch_size = max(1, min(num_particles, _BUDGET_FLOATS // max(1, _value_size(model, args, kwargs))))
    log_w = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=batch_size))(keys)
    log_w = jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)
    est = logsumexp(log_w, axis=0) - math.log(num_particles)
    if pointwise:
        return np.asarray(est)
    return float(jnp.sum(est))


def _value_size(model, args, kwargs) -> int:
    tr = jax.eval_shape(lambda: {n: s.value for n, s in handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs).items()
                                 if s.kind in ("latent", "observed", "deterministic")})
    return int(sum(math.prod(v.shape) for v in jax.tree.leaves(tr))) * 8


def perplexity(log_likelihood, num_tokens):
    """exp(-log_likelihood / num_tokens): the effective number of equally likely choices per
    token (or per observation); lower is better. `log_likelihood` in nats, e.g. from
    `held_out_log_likelihood` or `marginal_log_likelihood`."""
    if not num_tokens > 0:
        raise ValueError(f"perplexity: num_tokens must be positive, got {num_tokens!r}.")
    return float(np.exp(-float(log_likelihood) / float(num_tokens)))


# -- information theory ---------------------------------------------------------------------
def _mc(p, f, key, num_samples):
    x = p.sample(as_key(key), (num_samples,))
    return jnp.mean(f(x), axis=0)


def entropy(p, key=0, num_samples: int = 10_000):
    """Differential (or discrete) entropy H(p) = -E_p[log p(x)] in nats, per batch element:
    `p.entropy()` where numpyro implements it, else a Monte Carlo mean over `num_samples`."""
    try:
        return p.entropy()
    except NotImplementedError:
        return _mc(p, lambda x: -p.log_prob(x), key, num_samples)


def kl_divergence(p, q, key=0, num_samples: int = 10_000):
    """KL(p || q) = E_p[log p(x) - log q(x)] in nats: numpyro's closed form
    (`numpyro.distributions.kl.kl_divergence`) where registered, else Monte Carlo."""
    from numpyro.distributions.kl import kl_divergence as closed

    try:
        return closed(p, q)
    except NotImplementedError:
        return _mc(p, lambda x: p.log_prob(x) - q.log_prob(x), key, num_samples)


def cross_entropy(p, q, key=0, num_samples: int = 10_000):
    """H(p, q) = -E_p[log q(x)] = H(p) + KL(p || q) in nats: closed form when both terms are,
    else a Monte Carlo mean of -log q over draws from p."""
    from numpyro.distributions.kl import kl_divergence as closed

    try:
        return p.entropy() + closed(p, q)
    except NotImplementedError:
        return _mc(p, lambda x: -q.log_prob(x), key, num_samples)


__all__ = ["predictive", "held_out_log_likelihood", "marginal_log_likelihood", "perplexity",
           "entropy", "cross_entropy", "kl_divergence"]
