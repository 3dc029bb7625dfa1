"""NumPyro's `numpyro.infer.autoguide` names as doors to ppl's automatic guide families
(`ppl.vi.guides`), for `ppl.infer.SVI`.

    from ppl.infer.autoguide import AutoNormal
    guide = AutoNormal(model)
    svi = SVI(model, guide, ppl.optim.Adam(0.01), Trace_ELBO())
    result = svi.run(jax.random.PRNGKey(0), 2000, x, y=y)
    draws = guide.sample_posterior(jax.random.PRNGKey(1), result.params, sample_shape=(1000,))

  AutoNormal, AutoDiagonalNormal        ppl.vi.MeanField   N(loc, diag(scale^2)) in unconstrained space
  AutoMultivariateNormal                ppl.vi.FullRank    N(loc, L L^T)
  AutoLowRankMultivariateNormal(rank=)  ppl.vi.LowRank     N(loc, W W^T + diag(scale^2))
  AutoDelta                             ppl.vi.Delta       a point at the MAP (constrained density)
  AutoLaplaceApproximation              a point at the mode of the unconstrained density, then
                                        N(mode, H^-1) with H the Hessian of its negative there

Each guide starts as NumPyro's does: at `init_loc_fn`'s point (0 in unconstrained space when
none is given), with sds of `init_scale` in unconstrained space, and its step size is in those
units; so a ported script's fit after its number of steps is NumPyro's. (`ppl.VI` starts its
automatic guides at a mode instead, in posterior-sd units: `ppl.vi.families.find_frame`.) The
params `SVI.get_params` gives are NumPyro's, in unconstrained space:
`auto_loc`, `auto_scale` (AutoDiagonalNormal), `auto_scale_tril` (AutoMultivariateNormal),
`auto_cov_factor` and `auto_scale` (AutoLowRankMultivariateNormal), `{site}_auto_loc` and
`{site}_auto_scale` per site (AutoNormal), `{site}_auto_loc` constrained values (AutoDelta).

Methods (NumPyro's signatures): `sample_posterior(rng_key, params, *args, sample_shape=(),
**kwargs)` (constrained draws of every latent and deterministic site, leading dims
`sample_shape`), `median(params)` (constrained), `quantiles(params, quantiles)` (per site,
leading dim the quantiles; the normal families), `get_posterior(params)` (AutoLaplace's and
the continuous guides' normal in unconstrained space, as a numpyro distribution).

A guide serves the model it was made with; `SVI.init` binds it to the model's arguments.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from ppl._keys import as_key
from ppl.vi import guides as families


def _as_tuple(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)


class AutoGuide:
    """An automatic guide for `model`: a ppl guide family over the model's flat unconstrained
    vector (see the module docstring). `init_loc_fn`: where the fit starts, one of
    `ppl.infer`'s `init_to_*` strategies or ppl's `init=` options ("uniform", "prior", or a
    dict of constrained values); None: ppl's start (0, else uniform draws)."""

    family_type = families.MeanField
    continuous = True  # has a normal posterior in unconstrained space

    def __init__(self, model, *, prefix="auto", init_loc_fn=None, init_scale=0.1, **options):
        if not callable(model):
            raise TypeError(f"{type(self).__name__}(model): model must be the model function, got {model!r}.")
        if prefix != "auto":
            raise ValueError(f"{type(self).__name__}(prefix={prefix!r}): ppl's automatic guides name their params "
                             f"auto_*; drop prefix=.")
        if not (isinstance(init_scale, (int, float)) and init_scale > 0):
            raise ValueError(f"{type(self).__name__}(init_scale={init_scale!r}): give a positive number.")
        self.model, self.prefix, self.init_loc_fn, self.init_scale = model, prefix, init_loc_fn, float(init_scale)
        self.family = self._family(**options)
        self._ld = None  # the model's (marginal) log density, bound by SVI.init

    def _family(self, **options):
        if options:
            raise TypeError(f"{type(self).__name__}: unknown keyword(s) {sorted(options)}.")
        return self.family_type(init_scale=self.init_scale)

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} is not run as a function in ppl: fit it with SVI(model, guide, ...), then "
            f"draw with guide.sample_posterior(rng_key, params) or Predictive(model, guide=guide, params=params, "
            f"num_samples=...).")

    # -- binding to the model's arguments (by SVI) -----------------------------------------
    def bind(self, ld) -> None:
        self._ld = ld

    def _bound(self, what):
        if self._ld is None:
            raise RuntimeError(f"{type(self).__name__}.{what}: fit the guide first (svi.init or svi.run binds it to "
                               f"the model's arguments).")
        return self._ld

    def initial_point(self, ld, key, args, kwargs):
        """The start of the fit (flat unconstrained), or None for ppl's default (0)."""
        if self.init_loc_fn is None:
            return None
        from ppl.infer.numpyro_names import InitStrategy, _ppl_init

        init = self.init_loc_fn
        if isinstance(init, InitStrategy):
            init = _ppl_init(init, self.model, key, args, kwargs)
        if isinstance(init, dict):
            return ld.init(key, values=init)
        if init in ("uniform", "prior"):
            return ld.init(key, strategy=init)
        raise TypeError(f"{type(self).__name__}(init_loc_fn={self.init_loc_fn!r}): give one of ppl.infer's "
                        f"init_to_* strategies, 'uniform', 'prior' or a dict of initial values.")

    # -- params: NumPyro's names <-> the family's values in z ------------------------------
    def to_params(self, named: dict) -> dict:
        """NumPyro's params from the family's `named` values in z (frame applied)."""
        return dict(named)

    param_names = ("auto_loc", "auto_scale")

    def to_named(self, params: dict) -> dict:
        """The family's `named` values in z from NumPyro's params (the inverse of `to_params`)."""
        missing = [k for k in self.param_names if k not in params]
        if missing:
            raise ValueError(f"{type(self).__name__}: params lack {missing}; pass the params SVI gave "
                             f"(svi_result.params).")
        return {k: jnp.asarray(params[k]) for k in self.param_names}

    def _z_draws(self, params, key, n):
        phi = self.family.from_named(self.to_named(params))
        z, _ = families.sample(self.family, phi, key, n)
        return z

    def _loc(self, params):
        return self.to_named(params)["auto_loc"]

    def _marginal_sd(self, params):
        raise NotImplementedError(f"{type(self).__name__}.quantiles: not defined for this guide.")

    # -- NumPyro's methods -------------------------------------------------------------------
    def sample_posterior(self, rng_key, params, *args, sample_shape=(), **kwargs):
        """Constrained draws of every latent (and deterministic) site, with leading dims
        `sample_shape` (NumPyro's signature; the model's arguments default to those the
        guide was fitted on)."""
        ld = self._ld_for(args, kwargs, "sample_posterior")
        shape = _as_tuple(sample_shape)
        n = int(np.prod(shape)) if shape else 1
        z = self._z_draws(params, as_key(rng_key), n)
        values = jax.vmap(lambda zi: ld.constrain(zi, deterministic=True))(z)
        return {k: v.reshape(shape + v.shape[1:]) for k, v in values.items()}

    def median(self, params) -> dict:
        """The guide's median, constrained: each site's value at `auto_loc`."""
        ld = self._bound("median")
        return ld.constrain(self._loc(params))

    def quantiles(self, params, quantiles) -> dict:
        """Per site, the constrained values at the marginal quantiles `quantiles` of the
        guide (a leading axis over them)."""
        ld = self._bound("quantiles")
        q = jnp.asarray(quantiles, jnp.result_type(float))
        if q.ndim != 1 or not bool(jnp.all((q > 0) & (q < 1))):
            raise ValueError(f"{type(self).__name__}.quantiles: give a list of numbers in (0, 1), got {quantiles!r}.")
        z = self._loc(params) + ndtri(q)[:, None] * self._marginal_sd(params)
        return jax.vmap(ld.constrain)(z)

    def get_posterior(self, params):
        """The guide's normal distribution over the flat unconstrained vector."""
        import numpyro.distributions as dist

        return dist.Normal(self._loc(params), self._marginal_sd(params)).to_event(1)

    def _ld_for(self, args, kwargs, what):
        ld = self._bound(what)
        if not args and not kwargs:
            return ld
        from ppl.infer.svi import rebind

        return rebind(ld, args, kwargs, what)


class AutoDiagonalNormal(AutoGuide):
    """N(auto_loc, diag(auto_scale^2)) over the flat unconstrained vector (ppl.vi.MeanField)."""

    def _marginal_sd(self, params):
        return jnp.asarray(params["auto_scale"])


class AutoNormal(AutoGuide):
    """A normal per site in unconstrained space (`{site}_auto_loc`, `{site}_auto_scale`): the
    same family as AutoDiagonalNormal (ppl.vi.MeanField), its params named per site."""

    def to_params(self, named):
        ld = self._bound("get_params")
        out = {}
        for lat in ld.spec.latents:
            for key in ("loc", "scale"):
                v = jax.lax.dynamic_slice_in_dim(named[f"auto_{key}"], lat.offset, lat.size)
                out[f"{lat.name}_auto_{key}"] = jnp.reshape(v, lat.unconstrained_shape)
        return out

    def to_named(self, params):
        ld = self._bound("to_named")
        missing = [f"{lat.name}_auto_loc" for lat in ld.spec.latents if f"{lat.name}_auto_loc" not in params]
        if missing:
            raise ValueError(f"AutoNormal: params lack {missing}; pass the params SVI gave (svi_result.params).")
        cat = lambda key: jnp.concatenate([jnp.reshape(params[f"{lat.name}_auto_{key}"], (-1,))  # noqa: E731
                                           for lat in ld.spec.latents]) if ld.spec.latents else jnp.zeros((0,))
        return {"auto_loc": cat("loc"), "auto_scale": cat("scale")}

    def _marginal_sd(self, params):
        return self.to_named(params)["auto_scale"]


class AutoMultivariateNormal(AutoGuide):
    """N(auto_loc, L L^T), L = auto_scale_tril, over the flat unconstrained vector (ppl.vi.FullRank)."""

    family_type = families.FullRank
    param_names = ("auto_loc", "auto_scale_tril")

    def _marginal_sd(self, params):
        L = jnp.asarray(params["auto_scale_tril"])
        return jnp.sqrt(jnp.sum(L**2, axis=-1))


class AutoLowRankMultivariateNormal(AutoGuide):
    """N(auto_loc, W W^T + diag(auto_scale^2)), W = auto_cov_factor (ppl.vi.LowRank)."""

    family_type = families.LowRank

    def __init__(self, model, *, prefix="auto", init_loc_fn=None, init_scale=0.1, rank=None):
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, init_scale=init_scale, rank=rank)

    def _family(self, rank=None):
        if rank is not None and (not isinstance(rank, int) or rank < 1):
            raise ValueError(f"AutoLowRankMultivariateNormal(rank={rank!r}): give a positive int.")
        return families.LowRank(rank=rank, init_scale=self.init_scale)

    def to_params(self, named):
        return {"auto_loc": named["auto_loc"], "auto_cov_factor": named["auto_cov_factor"],
                "auto_scale": jnp.sqrt(named["auto_cov_diag"])}

    def to_named(self, params):
        return {"auto_loc": jnp.asarray(params["auto_loc"]), "auto_cov_factor": jnp.asarray(params["auto_cov_factor"]),
                "auto_cov_diag": jnp.asarray(params["auto_scale"]) ** 2}

    def _marginal_sd(self, params):
        w = jnp.asarray(params["auto_cov_factor"])
        return jnp.sqrt(jnp.sum(w**2, axis=-1) + jnp.asarray(params["auto_scale"]) ** 2)


class AutoDelta(AutoGuide):
    """A point mass per site at the MAP, the mode of the constrained posterior density
    (ppl.vi.Delta, as `ppl.MAP`); params `{site}_auto_loc` are constrained values."""

    family_type = families.Delta
    continuous = False

    def _family(self, **options):
        if options:
            raise TypeError(f"AutoDelta: unknown keyword(s) {sorted(options)}.")
        return families.Delta()

    def to_params(self, named):
        ld = self._bound("get_params")
        values = ld.constrain(named["auto_loc"])
        return {f"{k}_auto_loc": v for k, v in values.items()}

    def to_named(self, params):
        ld = self._bound("to_named")
        values = {}
        for lat in ld.spec.latents:
            key = f"{lat.name}_auto_loc"
            if key not in params:
                raise ValueError(f"AutoDelta: params lack {key!r}; pass the params SVI gave (svi_result.params).")
            values[lat.name] = params[key]
        return {"auto_loc": ld.unconstrain(values)}

    def median(self, params) -> dict:
        ld = self._bound("median")
        return {lat.name: jnp.asarray(params[f"{lat.name}_auto_loc"]) for lat in ld.spec.latents}

    def quantiles(self, params, quantiles) -> dict:
        q = jnp.asarray(quantiles)
        return {k: jnp.broadcast_to(v, q.shape + jnp.shape(v)) for k, v in self.median(params).items()}


class AutoLaplaceApproximation(AutoGuide):
    """A point fitted to the mode of the unconstrained posterior density (log-Jacobian
    included), then the normal N(auto_loc, H^-1) with H the Hessian of the negative
    unconstrained log density at it (NumPyro's AutoLaplaceApproximation). Params: `auto_loc`."""

    def _family(self, **options):
        if options:
            raise TypeError(f"AutoLaplaceApproximation: unknown keyword(s) {sorted(options)}.")
        return families.UnconstrainedDelta()

    def to_params(self, named):
        return {"auto_loc": named["auto_loc"]}

    def to_named(self, params):
        return {"auto_loc": jnp.asarray(params["auto_loc"])}

    def _scale_tril(self, params):
        """The Cholesky factor of H^-1 at auto_loc (model params held at the ld's values)."""
        ld = self._bound("the Laplace approximation")
        loc = self._loc(params)
        hess = jax.hessian(lambda z: -ld.log_joint(z).total)(loc)
        chol = jnp.linalg.cholesky(hess)
        if not bool(jnp.all(jnp.isfinite(chol))):
            raise ValueError("AutoLaplaceApproximation: the Hessian of the negative log density at auto_loc is not "
                             "positive definite (the fit did not reach a mode); run more steps or lower the step "
                             "size.")
        eye = jnp.eye(loc.shape[0], dtype=loc.dtype)
        inv_chol = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)  # L^-1: H^-1 = L^-T L^-1
        return jnp.linalg.cholesky(inv_chol.T @ inv_chol)

    def _z_draws(self, params, key, n):
        full = families.FullRank()
        phi = full.from_named({"auto_loc": self._loc(params), "auto_scale_tril": self._scale_tril(params)})
        z, _ = families.sample(full, phi, key, n)
        return z

    def _marginal_sd(self, params):
        return jnp.sqrt(jnp.sum(self._scale_tril(params) ** 2, axis=-1))

    def get_posterior(self, params):
        import numpyro.distributions as dist

        return dist.MultivariateNormal(self._loc(params), scale_tril=self._scale_tril(params))


__all__ = ["AutoGuide", "AutoNormal", "AutoDiagonalNormal", "AutoMultivariateNormal", "AutoLowRankMultivariateNormal",
           "AutoDelta", "AutoLaplaceApproximation"]
