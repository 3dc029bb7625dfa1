"""Run a ppl model under NumPyro: `to_numpyro(model)` returns the same model as a NumPyro model.

The benchmark harness compares ppl's methods with NumPyro's on the SAME model function, so
that the two never differ by a transcription. The bridge is a ppl effect handler installed
outermost: every ppl site, after ppl's own handlers (plates, scale, mask) have processed it,
is forwarded to the matching NumPyro primitive, and NumPyro's answer becomes the site's value.

    ppl site             NumPyro call
    latent               numpyro.sample(name, msg.dist)            -> msg.value
    observed             numpyro.sample(name, msg.dist, obs=value)
    deterministic        numpyro.deterministic(name, value)
    factor               numpyro.factor(name, log_weight)
    param                numpyro.param(name, init, constraint=...)  -> msg.value
    plate (subsampled)   numpyro.plate(name, size, subsample_size) indices -> msg.value

Plates: ppl's plate has already broadcast each distribution's batch shape to the plate size
(and folded the subsampling ratio into `msg.scale`) before the bridge sees the site, so the
sites are forwarded WITHOUT NumPyro plates. The log joint, its gradient and the
unconstrained parametrisation are then exactly ppl's, which is all NUTS, HMC, SVI with
automatic guides and DiscreteHMCGibbs need. What NumPyro loses is the plate *structure*
(its enumeration of discrete sites in parallel and its subsampling-aware guides), which no
peer in the harness uses. `msg.scale` and `msg.mask` are forwarded with NumPyro's `scale`
and `mask` handlers.

Example:
  >>> from numpyro.infer import MCMC, NUTS
  >>> from models import eight_schools_noncentered as m
  >>> args, kwargs = m.load()
  >>> mcmc = MCMC(NUTS(to_numpyro(m.model)), num_warmup=500, num_samples=500)
  >>> mcmc.run(jax.random.PRNGKey(0), *args, **kwargs)
"""
from __future__ import annotations

import contextlib
import functools

import jax
import numpyro
import numpyro.handlers as nh

from ppl.model._runtime import Message, Messenger


class ToNumPyro(Messenger):
    """The bridge handler: forwards each ppl site to NumPyro (see the module docstring)."""

    def process(self, msg: Message) -> None:
        forward = _FORWARD.get(msg.kind)
        if forward is None:
            raise NotImplementedError(f"to_numpyro: ppl site '{msg.name}' has kind {msg.kind!r}, which the bridge does not know.")
        with _scaled(msg):
            forward(msg)


def _scaled(msg: Message):
    stack = contextlib.ExitStack()
    if msg.scale is not None:
        stack.enter_context(nh.scale(scale=msg.scale))
    if msg.mask is not None:
        stack.enter_context(nh.mask(mask=msg.mask))
    return stack


def _latent(msg: Message) -> None:
    # A value already set by an inner ppl handler (condition, substitute) is kept: observed
    # data for NumPyro, so both log joints still agree.
    if msg.value is None:
        msg.value = numpyro.sample(msg.name, msg.dist)
    else:
        numpyro.sample(msg.name, msg.dist, obs=msg.value)


def _observed(msg: Message) -> None:
    numpyro.sample(msg.name, msg.dist, obs=msg.value)


def _deterministic(msg: Message) -> None:
    numpyro.deterministic(msg.name, msg.value)


def _factor(msg: Message) -> None:
    numpyro.factor(msg.name, msg.value)


def _param(msg: Message) -> None:
    if msg.value is not None:
        return
    if "module_static" in msg.infer:
        raise NotImplementedError(
            f"to_numpyro: ppl.module site '{msg.name}' (an Equinox module) has no NumPyro twin here; "
            f"benchmark this model without a NumPyro peer."
        )
    msg.value = numpyro.param(msg.name, msg.init, constraint=msg.constraint)


def _plate(msg: Message) -> None:
    size, subsample_size = msg.init
    with numpyro.plate(msg.name, size, subsample_size=subsample_size) as idx:
        msg.value = idx


_FORWARD = {
    "latent": _latent,
    "observed": _observed,
    "deterministic": _deterministic,
    "factor": _factor,
    "param": _param,
    "plate": _plate,
}


def to_numpyro(model):
    """The ppl `model` as a NumPyro model with the same arguments and the same log joint.

    Args:
      model: a function written with ppl primitives.

    Returns:
      a function `numpyro_model(*args, **kwargs)` usable with NumPyro's MCMC, SVI,
      autoguides and `numpyro.infer.util` (potential energy, Predictive).
    """

    @functools.wraps(model)
    def numpyro_model(*args, **kwargs):
        with ToNumPyro():
            return model(*args, **kwargs)

    return numpyro_model


def potential_check(model, args, kwargs, key=0, scale=1.0):
    """(NumPyro potential energy, -ppl log_prob) of `model` at one random unconstrained point.

    The point `z` ~ uniform(-scale, scale) is ppl's flat unconstrained vector; it is mapped
    to constrained values with ppl's `constrain` and back to NumPyro's unconstrained
    per-site values with NumPyro's `unconstrain_fn`, so both sides include the same
    log-Jacobian of the same bijections. The two numbers agree when the bridge is faithful.
    """
    import ppl
    from numpyro.infer.util import potential_energy, unconstrain_fn

    ld = ppl.compile(model, *args, **kwargs)
    z = jax.random.uniform(jax.random.PRNGKey(key), (ld.dim,), minval=-scale, maxval=scale)
    values = {lat.name: v for lat, v in zip(ld.spec.latents, _values(ld, z))}
    bridged = to_numpyro(model)
    u = unconstrain_fn(bridged, args, kwargs, values)
    return float(potential_energy(bridged, args, kwargs, u)), float(-ld.log_prob(z))


def _values(ld, z):
    constrained = ld.constrain(z)
    return [constrained[lat.name] for lat in ld.spec.latents]
