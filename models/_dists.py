"""Distributions the zoo needs that NumPyro lacks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, Normal, constraints


class OrderedNormal(Distribution):
    """Independent normals N(loc[k], scale[k]) restricted to the ordered region
    x[0] < x[1] < ... (and 0 < x[0] when `positive`), as Stan's `ordered[K] x; x ~ normal(loc, scale);`.

    `log_prob` is the sum of the normal log densities: the restriction's normalising
    constant log P(ordered) is omitted, as in Stan (it does not depend on x). Drawing is
    exact, by rejection from the unrestricted normals.

    Args:
      loc, scale: arrays whose last axis (length K) is the event.
      positive: also require x[0] > 0 (support `positive_ordered_vector`).

    Example:
      >>> mu = ppl.sample("mu", OrderedNormal(jnp.array([3.0, 10.0]), 1.0, positive=True))
    """

    pytree_data_fields = ("loc", "scale")
    pytree_aux_fields = ("positive",)

    def __init__(self, loc, scale, positive: bool = False, validate_args=None):
        loc = jnp.atleast_1d(jnp.asarray(loc))
        self.loc, self.scale = jnp.broadcast_arrays(loc, jnp.asarray(scale, dtype=loc.dtype))
        self.positive = bool(positive)
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        return constraints.positive_ordered_vector if self.positive else constraints.ordered_vector

    def log_prob(self, value):
        return jnp.sum(Normal(self.loc, self.scale).log_prob(value), -1)

    def _in_region(self, x):
        ok = jnp.all(jnp.diff(x, axis=-1) > 0, axis=-1)
        return ok & (x[..., 0] > 0) if self.positive else ok

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape

        def draw(k):
            return self.loc + self.scale * jax.random.normal(k, shape, self.loc.dtype)

        def body(carry):
            k, x, ok = carry
            k, sub = jax.random.split(k)
            x = jnp.where(ok[..., None], x, draw(sub))
            return k, x, self._in_region(x)

        k0, sub = jax.random.split(key)
        x0 = draw(sub)
        _, x, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[2]), body, (k0, x0, self._in_region(x0)))
        return x
