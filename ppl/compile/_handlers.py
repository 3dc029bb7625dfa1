"""Internal handlers that move latent and param values between constrained and flat space.

The bijection of a site is built from its distribution *as it stands at that evaluation*
(`biject_to(dist.support)`), so supports that depend on other latents are exact.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import ImproperUniform
from numpyro.distributions.transforms import biject_to

from ppl.model._runtime import Message, Messenger
from ppl.model.scanned_dist import is_scanned
from ppl.model.sites import user_dist


def _structure_error(name: str) -> ValueError:
    return ValueError(
        f"latent site '{name}' was not seen when the model was inspected; ppl needs a model "
        f"whose set of latent sites does not depend on random values. Use jnp.where/lax.cond "
        f"on values instead of Python if/while, or declare every site in every run."
    )


class FromFlat(Messenger):
    """Set every latent site from its slice of the flat vector `z`.

    Continuous sites get `biject_to(support)(u)` and record log|det J|; discrete sites hold
    their values in `z` as floats and are cast back to the distribution's dtype.
    """

    def __init__(self, z, spec):
        super().__init__(None)
        self.z, self.spec = z, spec

    def process(self, msg: Message) -> None:
        if msg.kind != "latent" or msg.value is not None:
            return
        info = self.spec.latent_index.get(msg.name)
        if info is None:
            raise _structure_error(msg.name)
        lat = self.spec.latents[info]
        u = jax.lax.dynamic_slice_in_dim(self.z, lat.offset, lat.size).reshape(lat.unconstrained_shape)
        msg.unconstrained = u
        if lat.is_discrete:
            msg.value = u.reshape(lat.shape).astype(lat.dtype)
            msg.log_jacobian = jnp.zeros((), self.z.dtype)
        elif is_scanned(msg.dist):
            return  # inside ppl.scan: each step maps its row through its own support's bijection
        else:
            t = biject_to(msg.dist.support)
            msg.value = t(u)
            msg.log_jacobian = jnp.sum(t.log_abs_det_jacobian(u, msg.value))


class ParamsFromFlat(Messenger):
    """Set param sites from unconstrained values: `biject_to(constraint)(u)`."""

    def __init__(self, uparams):
        super().__init__(None)
        self.uparams = uparams

    def process(self, msg: Message) -> None:
        if msg.kind == "param" and msg.name in self.uparams:
            u = self.uparams[msg.name]
            msg.value = jax.tree.map(biject_to(msg.constraint), u)


class ToFlat(Messenger):
    """Record the unconstrained value of each latent (and param) site as the model runs."""

    def __init__(self):
        super().__init__(None)
        self.latents, self.params = {}, {}

    def postprocess(self, msg: Message) -> None:
        if msg.kind == "latent":
            if msg.unconstrained is not None:
                self.latents[msg.name] = msg.unconstrained
            elif msg.dist.is_discrete:
                self.latents[msg.name] = jnp.asarray(msg.value)
            else:
                self.latents[msg.name] = biject_to(msg.dist.support).inv(msg.value)
        elif msg.kind == "param":
            self.params[msg.name] = jax.tree.map(biject_to(msg.constraint).inv, msg.value)


def _improper(d) -> bool:
    return isinstance(user_dist(d), ImproperUniform)


class InitValues(Messenger):
    """Initial values: continuous latents uniform in (-radius, radius) in unconstrained
    space (strategy "uniform") or drawn from the prior ("prior"); given `values` win.

    Discrete latents are drawn from their (conditional) prior in every strategy; an improper
    flat prior (`ImproperUniform`), which cannot be drawn from, starts uniform in every one.
    """

    def __init__(self, key, strategy="uniform", radius=2.0, values=None):
        super().__init__(None)
        if strategy not in ("uniform", "prior"):
            raise ValueError(f"unknown init strategy {strategy!r}; use 'uniform' or 'prior'.")
        self.key, self.strategy, self.radius = key, strategy, radius
        self.values = values or {}
        self.preset = set()  # latents and params whose value a handler inside this one had set

    def process(self, msg: Message) -> None:
        if msg.kind in ("latent", "param") and msg.value is not None:
            self.preset.add(msg.name)
        if msg.kind != "latent" or msg.value is not None:
            return
        self.key, sub = jax.random.split(self.key)
        if msg.name in self.values:
            msg.value = jnp.asarray(self.values[msg.name])
            return
        if msg.dist.is_discrete or (self.strategy == "prior" and not _improper(msg.dist)):
            msg.key = sub
            return
        dtype = jnp.result_type(float)
        if is_scanned(msg.dist):  # inside ppl.scan: each step maps its row through its own support
            msg.unconstrained = jax.random.uniform(sub, msg.dist.unconstrained_shape, dtype, -self.radius, self.radius)
            return
        t = biject_to(msg.dist.support)
        shape = t.inverse_shape(msg.dist.shape())
        u = jax.random.uniform(sub, shape, dtype, -self.radius, self.radius)
        msg.unconstrained = u
        msg.value = t(u)
