"""Effect handlers, each a context manager and a function wrapper (NumPyro's signatures).

    trace(fn)                      record every site into an ordered `Trace`
    seed(fn, rng_seed)             supply random keys to sample sites
    substitute(fn, data)           set latent/param values (data: dict or fn(site) -> value)
    condition(fn, data)            turn latent sites into observed ones with the given values
    block(fn, hide=..., expose=...) hide sites from the handlers outside
    scale(fn, scale)               multiply log densities
    mask(fn, mask)                 drop log-density elements where mask is False
    replay(fn, trace)              reuse the latent values of an earlier trace
    reparam(fn, config)            rewrite sites as functions of new ones (see `ppl.model.reparam`)

All are pure Python bookkeeping around JAX values, so they compose with `jax.jit`,
`jax.vmap` and `jax.grad` when used inside the transformed function.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from ppl._keys import as_key
from ppl.model._runtime import Message, Messenger
from ppl.model.primitives import has_initialiser
from ppl.model.reparam import reparam
from ppl.model.scanned_dist import is_scanned
from ppl.model.sites import KINDS, Trace, site_from_message


class trace(Messenger):
    """Record every site of a run into a `Trace` (name -> `Site`, in order).

    Example:
      >>> tr = trace(seed(model, 0)).get_trace(data)
      >>> with trace() as tr: seed(model, 0)(data)
    """

    def __init__(self, fn: Optional[Callable] = None):
        super().__init__(fn)
        self.trace = Trace()

    def __enter__(self):
        self.trace = Trace()
        super().__enter__()
        return self.trace

    def postprocess(self, msg: Message) -> None:
        if msg.kind in KINDS:
            self.trace.add(site_from_message(msg))

    def get_trace(self, *args, **kwargs) -> Trace:
        """Run the wrapped function and return its trace."""
        self(*args, **kwargs)
        return self.trace


class seed(Messenger):
    """Give each random site (and each `ppl.prng_key()` call) a fresh key split from
    `rng_seed` (an int or a jax key).

    The stream restarts at every entry, so a seeded model is a deterministic function.
    """

    def __init__(self, fn: Optional[Callable] = None, rng_seed=None):
        super().__init__(fn)
        if rng_seed is None:
            raise TypeError("seed needs rng_seed=<int or jax.random key>.")
        self.rng_seed = rng_seed

    def __enter__(self):
        self._key = as_key(self.rng_seed)
        return super().__enter__()

    def process(self, msg: Message) -> None:
        needs_key = msg.value is None and msg.key is None and (
            msg.kind in ("latent", "plate", "prng_key") or (msg.kind == "param" and has_initialiser(msg))
        )
        # A site inside ppl.scan may be given values for fewer steps than the scan has; the
        # rest are drawn, so it gets a key whatever its value.
        needs_key = needs_key or (msg.key is None and msg.kind in ("latent", "observed") and is_scanned(msg.dist))
        if needs_key:
            self._key, msg.key = jax.random.split(self._key)


def _lookup(data, msg):
    if callable(data):
        return data(msg)
    return data.get(msg.name) if msg.name in data else None


class substitute(Messenger):
    """Set the value of latent and param sites (and plate subsample indices) found in `data`.

    `data` is a dict name -> value, or `substitute_fn(site_message) -> value or None`.
    """

    def __init__(self, fn: Optional[Callable] = None, data: Optional[Mapping] = None, substitute_fn=None):
        super().__init__(fn)
        if (data is None) == (substitute_fn is None):
            raise TypeError("substitute needs exactly one of data=dict or substitute_fn=callable.")
        self.data = data if data is not None else substitute_fn

    def process(self, msg: Message) -> None:
        if msg.kind in ("latent", "param", "plate"):
            value = _lookup(self.data, msg)
            if value is not None:
                msg.value = value


class condition(Messenger):
    """Observe latent sites at the values in `data` (they become observed sites)."""

    def __init__(self, fn: Optional[Callable] = None, data: Optional[Mapping] = None):
        super().__init__(fn)
        if data is None:
            raise TypeError("condition needs data=dict of site name -> observed value.")
        self.data = data

    def process(self, msg: Message) -> None:
        if msg.kind == "latent" and msg.name in self.data:
            msg.value = jnp.asarray(self.data[msg.name])
            msg.kind = "observed"


class block(Messenger):
    """Hide sites from the handlers outside this one.

    With neither `hide` nor `expose` (nor `hide_fn`) every site is hidden.
    """

    def __init__(self, fn: Optional[Callable] = None, hide=None, expose=None, hide_fn=None):
        super().__init__(fn)
        if hide is not None and expose is not None:
            raise TypeError("block takes hide= or expose=, not both.")
        self.hide, self.expose, self.hide_fn = hide, expose, hide_fn

    def _hidden(self, msg: Message) -> bool:
        if self.hide_fn is not None:
            return bool(self.hide_fn(msg))
        if self.hide is not None:
            return msg.name in self.hide
        if self.expose is not None:
            return msg.name not in self.expose
        return True

    def process(self, msg: Message) -> None:
        if self._hidden(msg):
            msg.stop = True


class scale(Messenger):
    """Multiply the log density of every site inside by `scale` (> 0)."""

    def __init__(self, fn: Optional[Callable] = None, scale=1.0):
        super().__init__(fn)
        if isinstance(scale, (int, float)) and not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}.")
        self.scale = scale

    def process(self, msg: Message) -> None:
        if msg.kind in ("latent", "observed", "factor"):
            msg.scale = self.scale if msg.scale is None else msg.scale * self.scale


class mask(Messenger):
    """Keep only the log-density elements where the boolean `mask` is True."""

    def __init__(self, fn: Optional[Callable] = None, mask=True):
        super().__init__(fn)
        self.mask = mask

    def process(self, msg: Message) -> None:
        if msg.kind in ("latent", "observed", "factor"):
            msg.mask = self.mask if msg.mask is None else jnp.logical_and(msg.mask, self.mask)


class replay(Messenger):
    """Reuse the values of the latent sites recorded in `trace`."""

    def __init__(self, fn: Optional[Callable] = None, trace: Optional[Trace] = None):
        super().__init__(fn)
        if trace is None:
            raise TypeError("replay needs trace=<a Trace from ppl.handlers.trace>.")
        self.replay_trace = trace

    def process(self, msg: Message) -> None:
        site = self.replay_trace.get(msg.name)
        if msg.kind == "latent" and site is not None and site.kind == "latent":
            msg.value = site.value


__all__ = ["trace", "seed", "substitute", "condition", "block", "scale", "mask", "replay", "reparam"]
