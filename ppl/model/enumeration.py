"""NumPyro's enumeration annotations, for models ported by renaming the import.

ppl sums every finite discrete latent site out of the log density for the methods that need
continuous latents (see `ppl.compile.marginal`), annotated or not, so these only record the
annotation: `config_enumerate` marks discrete sites `infer={"enumerate": "parallel"}`, and
`markov` (NumPyro's declaration of a Markov chain's dependence) leaves its argument as it is:
ppl finds chains itself from the model's data flow.
"""
from __future__ import annotations

import functools

from ppl.model._runtime import Message, Messenger


class _ConfigEnumerate(Messenger):
    def __init__(self, fn, default):
        super().__init__(fn)
        self.default = default

    def process(self, msg: Message) -> None:
        if msg.kind == "latent" and getattr(msg.dist, "has_enumerate_support", False):
            msg.infer = {"enumerate": self.default, **(msg.infer or {})}


def config_enumerate(fn=None, default="parallel"):
    """Mark every discrete latent site of `fn` with `infer={"enumerate": default}` (sites that
    say otherwise keep theirs). Usable as `config_enumerate(model)` or as a decorator.

    Raises:
      ValueError: for a `default` other than "parallel", "sequential" or None.
    """
    if default not in ("parallel", "sequential", None):
        raise ValueError(f"config_enumerate: default must be 'parallel', 'sequential' or None, got {default!r}.")
    if fn is None:
        return functools.partial(config_enumerate, default=default)
    return _ConfigEnumerate(fn, default)


def markov(fn=None, history=1, keep=False):
    """NumPyro's Markov-dependence declaration: `for t in markov(range(T))`, `with markov():`
    or `@markov`. ppl detects Markov chains of discrete sites from the model itself, so this
    returns its argument (an iterable or a function) unchanged, or a context that does nothing."""
    if fn is None:
        return _NoContext()
    return fn


class _NoContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
