"""Automatic guides: variational families over the model's flat unconstrained vector `z`.

Each family is a frozen (hashable) record of options with pure functions (`VI` uses them
in a frame, z = shift + unit * u, with u the family's variable: see `AutoFamily`; so
`init_scale` is in units of the frame's scale, about a posterior sd, and `in_frame` maps the
learned values back to z):

    init(key, z0) -> params            a pytree of arrays, started at the point z0
    noise_size(params) -> int          length of the standard-normal noise of one draw
    transform(params, eps) -> (z, log_q)  the reparameterised draw from noise eps and its log
                                       density in unconstrained space (log q(z) of the same z)
    named(params) -> dict              user-facing values for `Result.params`

`sample(guide, params, key, n)` draws n at once from one call of the random generator.

Families (D = `LogDensity.dim`):
  `MeanField`  N(loc, diag(scale^2)): 2D parameters.
  `FullRank`   N(loc, L L^T), L lower-triangular with a softplus diagonal: D + D^2.
  `LowRank`    N(loc, W W^T + diag(d^2)), W of shape (D, rank): D (rank + 2).
  `Flow`       a RealNVP normalising flow (Dinh, Sohl-Dickstein and Bengio 2017, "Density
               estimation using Real NVP", eq. 6-9): affine coupling layers with Equinox MLP
               conditioners acting on standard-normal noise, then a diagonal affine map; the
               coupling nets start at zero, so the flow starts as `MeanField`.
  `Delta`      a point mass at loc (`point = True`): the objective then uses the model's
               density of the *constrained* values, without the log-Jacobian, so fitting it
               is MAP as in `ppl.MAP` (Stan's `optimize`), with no evidence bound
               (`Result.log_evidence` is None).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _softplus_inv(y):
    return y + jnp.log(-jnp.expm1(-y))


def _std_normal_log_prob(eps):
    return -0.5 * jnp.sum(eps**2) - eps.size * _HALF_LOG_2PI


def sample(guide, params, key, n=None):
    """`n` draws (z (n, D), log_q (n,)), or one (z (D,), log_q ()) when n is None."""
    dtype = params["loc"].dtype
    size = guide.noise_size(params)
    if n is None:
        return guide.transform(params, jax.random.normal(key, (size,), dtype))
    eps = jax.random.normal(key, (n, size), dtype)
    return jax.vmap(guide.transform, in_axes=(None, 0))(params, eps)


@dataclasses.dataclass(frozen=True)
class MeanField:
    """Diagonal normal in unconstrained space. `init_scale` is every initial sd (in the
    frame's units)."""

    init_scale: float = 0.1
    point: ClassVar[bool] = False

    def init(self, key, z0):
        return {"loc": z0, "scale": jnp.full_like(z0, _softplus_inv(jnp.asarray(self.init_scale, z0.dtype)))}

    def noise_size(self, params):
        return params["loc"].shape[0]

    def transform(self, params, eps):
        loc, scale = params["loc"], jax.nn.softplus(params["scale"])
        return loc + scale * eps, _std_normal_log_prob(eps) - jnp.sum(jnp.log(scale))

    def named(self, params):
        return {"auto_loc": params["loc"], "auto_scale": jax.nn.softplus(params["scale"])}

    def from_named(self, named):
        """The params whose `named` values (in z, no frame) are `named` (the inverse of `named`)."""
        return {"loc": named["auto_loc"], "scale": _softplus_inv(named["auto_scale"])}


def _tril(raw):
    diag = jax.nn.softplus(jnp.diagonal(raw))
    return jnp.tril(raw, -1) + jnp.diag(diag), diag


@dataclasses.dataclass(frozen=True)
class FullRank:
    """Multivariate normal N(loc, L L^T) in unconstrained space (Cholesky factor L)."""

    init_scale: float = 0.1
    point: ClassVar[bool] = False

    def init(self, key, z0):
        d = z0.shape[0]
        raw = jnp.eye(d, dtype=z0.dtype) * _softplus_inv(jnp.asarray(self.init_scale, z0.dtype))
        return {"loc": z0, "scale_tril": raw}

    def noise_size(self, params):
        return params["loc"].shape[0]

    def transform(self, params, eps):
        L, diag = _tril(params["scale_tril"])
        return params["loc"] + L @ eps, _std_normal_log_prob(eps) - jnp.sum(jnp.log(diag))

    def named(self, params):
        return {"auto_loc": params["loc"], "auto_scale_tril": _tril(params["scale_tril"])[0]}

    def from_named(self, named):
        L = named["auto_scale_tril"]
        return {"loc": named["auto_loc"], "scale_tril": jnp.tril(L, -1) + jnp.diag(_softplus_inv(jnp.diagonal(L)))}


@dataclasses.dataclass(frozen=True)
class LowRank:
    """N(loc, W W^T + diag(d^2)) with W of shape (D, rank); rank None means ceil(sqrt(D))."""

    rank: Optional[int] = None
    init_scale: float = 0.1
    point: ClassVar[bool] = False

    def _rank(self, d):
        return max(1, min(d, self.rank if self.rank is not None else math.ceil(math.sqrt(d))))

    def init(self, key, z0):
        d = z0.shape[0]
        w = 0.01 * jax.random.normal(key, (d, self._rank(d)), z0.dtype)
        return {"loc": z0, "cov_factor": w,
                "scale": jnp.full_like(z0, _softplus_inv(jnp.asarray(self.init_scale, z0.dtype)))}

    def noise_size(self, params):
        return sum(params["cov_factor"].shape)

    def transform(self, params, eps):
        from numpyro.distributions import LowRankMultivariateNormal

        loc, w, d = params["loc"], params["cov_factor"], jax.nn.softplus(params["scale"])
        z = loc + w @ eps[loc.shape[0]:] + d * eps[: loc.shape[0]]
        return z, LowRankMultivariateNormal(loc, w, d**2).log_prob(z)

    def named(self, params):
        return {"auto_loc": params["loc"], "auto_cov_factor": params["cov_factor"],
                "auto_cov_diag": jax.nn.softplus(params["scale"]) ** 2}

    def from_named(self, named):
        return {"loc": named["auto_loc"], "cov_factor": named["auto_cov_factor"],
                "scale": _softplus_inv(jnp.sqrt(named["auto_cov_diag"]))}


def _coupling_net(key, d, hidden, depth, dtype):
    import equinox as eqx

    mlp = eqx.nn.MLP(d, 2 * d, hidden, depth, activation=jax.nn.tanh, key=key, dtype=dtype)
    last = mlp.layers[-1]
    zero = lambda m: (jnp.zeros_like(m.weight), jnp.zeros_like(m.bias))
    return eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp, zero(last))


@dataclasses.dataclass(frozen=True)
class Flow:
    """RealNVP-style flow: `num_layers` affine couplings (alternating masks) on N(0, I)
    noise, each conditioned by an Equinox MLP (`depth` hidden layers of `hidden` units),
    followed by x = loc + scale * y. Log-scales are bounded by tanh for stability."""

    num_layers: int = 4
    hidden: int = 32
    depth: int = 2
    init_scale: float = 0.1
    point: ClassVar[bool] = False

    def _nets(self, key, d, dtype):
        keys = jax.random.split(key, self.num_layers)
        return [_coupling_net(k, d, self.hidden, self.depth, dtype) for k in keys]

    @functools.lru_cache(maxsize=16)
    def _statics(self, d, dtype):
        import equinox as eqx

        shapes = eqx.filter_eval_shape(self._nets, jax.random.PRNGKey(0), d, dtype)
        return [eqx.partition(n, eqx.is_array_like)[1] for n in shapes]

    def _masks(self, d, dtype):
        return [jnp.asarray((np.arange(d) + i) % 2 == 0, dtype) for i in range(self.num_layers)]

    def init(self, key, z0):
        import equinox as eqx

        nets = [eqx.partition(n, eqx.is_inexact_array)[0] for n in self._nets(key, z0.shape[0], z0.dtype)]
        return {"loc": z0, "scale": jnp.full_like(z0, _softplus_inv(jnp.asarray(self.init_scale, z0.dtype))),
                "flow": nets}

    def modules(self, params):
        """The coupling networks as Equinox modules."""
        import equinox as eqx

        loc = params["loc"]
        statics = self._statics(loc.shape[0], jnp.dtype(loc.dtype))
        return [eqx.combine(a, s) for a, s in zip(params["flow"], statics)]

    def noise_size(self, params):
        return params["loc"].shape[0]

    def transform(self, params, eps):
        loc, scale = params["loc"], jax.nn.softplus(params["scale"])
        log_q = _std_normal_log_prob(eps)
        y = eps
        for net, m in zip(self.modules(params), self._masks(loc.shape[0], loc.dtype)):
            s, t = jnp.split(net(y * m), 2)
            s = jnp.tanh(s) * (1 - m)
            y = m * y + (1 - m) * (y * jnp.exp(s) + t)
            log_q = log_q - jnp.sum(s)
        return loc + scale * y, log_q - jnp.sum(jnp.log(scale))

    def named(self, params):
        """`auto_flow` holds the coupling nets' arrays; `modules` rebuilds the Equinox nets."""
        return {"auto_loc": params["loc"], "auto_scale": jax.nn.softplus(params["scale"]),
                "auto_flow": params["flow"]}


@dataclasses.dataclass(frozen=True)
class Delta:
    """A point mass at `loc`: VI with it is MAP on the constrained density.

    It gives no evidence bound (a point mass has entropy -inf; log p(x, z*) at the point is
    not a bound on log p(x)), so the result's `log_evidence` is None.
    """

    point: ClassVar[bool] = True

    def init(self, key, z0):
        return {"loc": z0}

    def noise_size(self, params):
        return 0

    def transform(self, params, eps):
        return params["loc"], jnp.zeros((), params["loc"].dtype)

    def named(self, params):
        return {"auto_loc": params["loc"]}

    def from_named(self, named):
        return {"loc": named["auto_loc"]}


@dataclasses.dataclass(frozen=True)
class UnconstrainedDelta(Delta):
    """A point mass at `loc` fitted to the mode of the *unconstrained* density (log-Jacobian
    included), where a Laplace approximation in unconstrained space is centred (NumPyro's
    AutoLaplaceApproximation); `Delta` fits the constrained density's mode (MAP)."""

    point: ClassVar[bool] = False


def in_frame(named: dict, frame) -> dict:
    """A guide's `named` values for u mapped to z = shift + unit * u (`frame` = (shift,
    unit); None: unchanged). Every family is closed under that diagonal affine map: the loc
    moves and scales, the scale-like factors scale by `unit` (covariances by its square);
    a flow's coupling nets act before its final affine map and are unchanged."""
    if frame is None:
        return named
    shift, unit = frame
    maps = {
        "auto_loc": lambda v: shift + unit * v,
        "auto_scale": lambda v: unit * v,
        "auto_scale_tril": lambda v: unit[:, None] * v,
        "auto_cov_factor": lambda v: unit[:, None] * v,
        "auto_cov_diag": lambda v: unit**2 * v,
    }
    return {k: maps[k](v) if k in maps else v for k, v in named.items()}


GUIDES = {"mean_field": MeanField, "full_rank": FullRank, "low_rank": LowRank, "flow": Flow, "delta": Delta}
AUTO_GUIDE_TYPES = (MeanField, FullRank, LowRank, Flow, Delta)  # UnconstrainedDelta is a Delta
