"""Variational objectives: the (beta-)ELBO and the importance-weighted bound (IWAE).

Both consume a batch of `Particle`s, one per draw z_i ~ q, holding the terms of the log
weight  log w_i = log p(x | z_i) + log p(z_i) - log q(z_i):

  log_lik      log-likelihood: observed and `factor` sites (plate subsampling scale applied)
  log_prior    log prior density of the latents, in the space q lives in
  log_q        log guide density of z_i
  log_q_score  the part of log q from sites sampled without reparameterisation (discrete
               ones), or None when there are none: their values carry no gradient, so the gradient of the objective
               through them comes from the score-function (REINFORCE) term
               stop_grad(f - b) * grad log q_score (Williams 1992; Ranganath, Gerrish and
               Blei 2014, "Black box variational inference", eq. 3), where b is a baseline,
               an exponential moving average of the objective (`baseline_decay`).

References: Kingma and Welling (2014), "Auto-encoding variational Bayes" (reparameterised
ELBO); Higgins et al. (2017), "beta-VAE"; Burda, Grosse and Salakhutdinov (2016),
"Importance weighted autoencoders", eq. 8.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

sg = jax.lax.stop_gradient


class Particle(NamedTuple):
    """The terms of one particle's log weight: scalars, or, for a bound per plate element,
    arrays over the elements with `scale` the plate's subsampling scale per element (the
    bound is then sum_n scale_n * bound_n). A particle axis leads when batched."""

    log_lik: Any
    log_prior: Any
    log_q: Any
    log_q_score: Any
    scale: Any = None

    @property
    def log_weight(self):
        """log p(x, z) - log q(z): the beta = 1 importance weight."""
        return self.log_lik + self.log_prior - self.log_q


def _check_positive_int(owner, name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}.")


def _total(x, scale):
    """Per-particle totals: x (n,) as is, or x (n, M) summed over elements with `scale`."""
    if scale is None:
        return x
    return jnp.sum(x * scale[0], axis=-1)


def _mean_se(x):
    """Mean of x (dropping nothing) and its Monte Carlo standard error."""
    n = x.shape[0]
    mean = jnp.mean(x)
    se = jnp.std(x, ddof=1) / jnp.sqrt(n) if n > 1 else jnp.asarray(jnp.nan, x.dtype)
    return mean, se


@dataclasses.dataclass(frozen=True)
class ELBO:
    """The evidence lower bound, weighted as in beta-VAE:

        ELBO_beta = E_q[ log p(x | z) ] - beta * E_q[ log q(z) - log p(z) ]
                  = E_q[ log p(x | z) ] - beta * KL(q(z) || p(z)),

    i.e. `beta` multiplies the whole (log q - log prior) term, the KL from the guide to the
    prior over *all* latent sites (global and local); `factor` sites count as likelihood.
    Each step estimates it with `num_particles` reparameterised draws (a vmap axis).

    - beta = 1: the ELBO, a lower bound on log p(x); its maximiser minimises KL(q || p(z | x)).
    - beta > 1: the maximiser over all q is the posterior of a likelihood tempered to the
      power 1/beta, q*(z) ∝ p(z) p(x | z)^(1/beta): wider and pulled towards the prior
      (for a VAE: codes closer to the prior, worse reconstructions).
    - beta = 0: maximum expected likelihood with no entropy or prior term; q collapses
      to a point at a maximum of the likelihood (its variance shrinks towards 0).
    - 0 < beta < 1: the likelihood is sharpened to the power 1/beta.

    `Result.log_evidence` is always the beta = 1 ELBO (a bound on log p(x)), whatever beta
    was used for fitting; `diagnostics["objective"]` holds the beta-weighted value.
    """

    beta: float = 1.0
    num_particles: int = 1
    baseline_decay: float = 0.9

    def check(self) -> None:
        if not (isinstance(self.beta, (int, float)) and self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"ELBO: beta must be a finite number >= 0, got {self.beta!r}.")
        _check_positive_int("ELBO", "num_particles", self.num_particles)

    @property
    def particles_per_step(self) -> int:
        return self.num_particles

    def surrogate(self, p: Particle, baseline):
        """(surrogate to maximise, objective estimate) for a batch of particles; the
        surrogate's gradient is an unbiased estimate of the objective's."""
        f = _total(p.log_lik + self.beta * (p.log_prior - p.log_q), p.scale)
        value = jnp.mean(f)
        if p.log_q_score is None:
            return value, value
        b = jnp.where(jnp.isnan(baseline), sg(value), baseline)
        return value + jnp.mean(sg(f - b) * _total(p.log_q_score, None)), value

    def bound(self, log_w, scale=None):
        """The beta = 1 ELBO from weights `log_w` (N,) or (N, M) per element: (estimate, se)."""
        return _mean_se(_total(log_w, scale))


@dataclasses.dataclass(frozen=True)
class IWAE:
    """The importance-weighted bound with `k` particles (Burda et al. 2016, eq. 8):

        L_k = E[ log (1/k) sum_i p(x, z_i) / q(z_i) ],   z_1..z_k ~ q,

    computed stably with log-sum-exp. L_1 is the ELBO, L_k <= L_{k+1} <= log p(x), and
    L_k -> log p(x) as k grows. Its final estimate averages ceil(N / k) independent groups
    of k particles (N the method's `num_eval_particles`), so it is the same k-bound.

    `plate`: the name of a plate over which the model factorises (a VAE's data plate). Then
    each element gets its own k particles and the bound is sum_n L_k(x_n), Burda et al.'s
    IWAE for a dataset (with minibatches, sum over the batch times size / subsample_size).
    Without it the k particles are joint draws of all latents and the bound treats the data
    as one observation; for many data points that is barely tighter than the ELBO. Needs a
    guide function (an automatic guide's density does not factorise per element).
    """

    k: int = 10
    plate: Optional[str] = None
    baseline_decay: float = 0.9

    def check(self) -> None:
        _check_positive_int("IWAE", "k", self.k)
        if self.plate is not None and not isinstance(self.plate, str):
            raise ValueError(f"IWAE: plate must be a plate's name or None, got {self.plate!r}.")

    @property
    def particles_per_step(self) -> int:
        return self.k

    def surrogate(self, p: Particle, baseline):
        lme = logsumexp(p.log_weight, axis=0) - math.log(self.k)
        value = jnp.sum(lme * p.scale[0]) if p.scale is not None else lme
        if p.log_q_score is None:
            return value, value
        b = jnp.where(jnp.isnan(baseline), sg(value), baseline)
        return value + sg(value - b) * jnp.sum(p.log_q_score), value

    def bound(self, log_w, scale=None):
        """The k-particle bound from `log_w` (G*k,) or (G*k, M) per element:
        (estimate, standard error over the G groups)."""
        groups = log_w.reshape((-1, self.k) + log_w.shape[1:])
        per_group = logsumexp(groups, axis=1) - math.log(self.k)
        if scale is not None:
            per_group = jnp.sum(per_group * scale[0], axis=-1)
        return _mean_se(per_group)

    def eval_particles(self, n: int) -> int:
        return self.k * max(1, -(-n // self.k))


OBJECTIVE_TYPES = (ELBO, IWAE)
