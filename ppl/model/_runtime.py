"""The effect-handler stack: typed messages, `apply_stack`, and the `Messenger` base class.

A primitive (`sample`, `observe`, ...) builds a `Message` and hands it to `apply_stack`.
Every active handler sees it in `process` (innermost first) and again in `postprocess`
(outermost last), as in Pyro's minipyro. A handler that sets `msg.stop` hides the message
from the handlers outside it. The stack is per thread and holds only handlers entered by a
running model, so nothing persists between runs. Each entry keeps the JAX trace its handler was
entered in, on the stack and not on the handler: one handler object (a wrapped model) may be
entered by several threads, or twice in one, at once.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import traceback
from typing import Any, Callable, NamedTuple, Optional

from jax.extend.core import get_opaque_trace_state

from ppl.model.site_keys import NumPyroKeys

_LOCAL = threading.local()


class _Entry(NamedTuple):
    """One handler on this thread's stack, with the JAX trace it was entered in."""

    handler: "Messenger"
    trace_state: Any


def _stack() -> list:
    """This thread's stack of `_Entry`, outermost first."""
    if not hasattr(_LOCAL, "stack"):
        _LOCAL.stack = []
    return _LOCAL.stack


@dataclasses.dataclass
class Message(NumPyroKeys):
    """One effect on its way through the handler stack.

    `kind` is one of "latent", "observed", "deterministic", "param", "factor" (sites), or
    "plate" (subsample indices) and "prng_key" (a key for the model); `value` is filled by a
    handler or by the default behaviour at the bottom of the stack. `sample_shape` is the
    leading shape of iid copies a `sample` asked for (already part of `dist`'s batch shape).
    NumPyro's dict keys read it too (`msg["name"]`, `msg["fn"]`; see `site_keys`).
    """

    name: str
    kind: str
    dist: Any = None
    value: Any = None
    plates: tuple = ()
    scale: Any = None
    mask: Any = None
    key: Any = None
    constraint: Any = None
    init: Any = None
    stop: bool = False
    log_jacobian: Any = None
    unconstrained: Any = None
    sample_shape: tuple = ()
    infer: dict = dataclasses.field(default_factory=dict)


class Messenger:
    """Base effect handler: a context manager and a function wrapper.

    Subclasses override `process` and/or `postprocess`. `Messenger(fn)(*args)` runs `fn`
    inside the handler; `with Messenger():` installs it for the block; `Messenger()(fn)`
    (a decorator) wraps `fn`.
    """

    def __init__(self, fn: Optional[Callable] = None):
        if fn is not None and not callable(fn):
            raise TypeError(
                f"{type(self).__name__} expected a callable model as its first argument, "
                f"got {type(fn).__name__}; pass the model function itself (not its result)."
            )
        self.fn = fn

    def __enter__(self):
        _stack().append(_Entry(self, get_opaque_trace_state(convention="ppl")))
        return self

    def __exit__(self, exc_type, exc, tb):
        stack = _stack()
        # Remove this handler's innermost entry, and any inner one that leaked (an exception
        # inside the model).
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].handler is self:
                del stack[i:]
                break
        return False

    def __call__(self, *args, **kwargs):
        if self.fn is None and len(args) == 1 and not kwargs and callable(args[0]):
            # A decorator, as in NumPyro: `@reparam(config=...)` over `def model(...)`.
            wrapped = copy.copy(self)
            wrapped.fn = args[0]
            return wrapped
        if self.fn is None:
            raise TypeError(
                f"{type(self).__name__} has no function to wrap; use it as "
                f"{type(self).__name__.lower()}(model, ...) or as a context manager."
            )
        with self:
            return self.fn(*args, **kwargs)

    def process(self, msg: Message) -> None:
        pass

    def postprocess(self, msg: Message) -> None:
        pass


def active_handlers() -> tuple:
    """The handlers currently installed on this thread, outermost first."""
    return tuple(entry.handler for entry in _stack())


def apply_stack(msg: Message, default: Callable[[Message], None]) -> Message:
    """Send `msg` through the active handlers; `default` fills the value if none did."""
    reached = process_stack(msg)
    default(msg)
    postprocess_stack(msg, reached)
    return msg


def process_stack(msg: Message) -> tuple:
    """The first half of `apply_stack`: `process` by each handler, innermost first, until one
    sets `msg.stop`. Returns the handlers reached, for `postprocess_stack`.

    Raises:
      TypeError: naming the site, when the message comes from inside a JAX transformation
        entered after the innermost handler (a site in a bare `jax.lax.scan` body).
    """
    stack = _stack()
    # The running code must be in the JAX trace the innermost handler was entered in, not in
    # a transformation (a `jax.lax.scan` body) begun since.
    if stack and stack[-1].trace_state != get_opaque_trace_state(convention="ppl"):
        raise transformed_site_error(msg)
    reached = []
    for handler in reversed(active_handlers()):
        reached.append(handler)
        handler.process(msg)
        if msg.stop:
            break
    return tuple(reached)


def postprocess_stack(msg: Message, reached: tuple) -> None:
    """The second half of `apply_stack`: `postprocess` by the handlers `process_stack`
    reached, outermost first."""
    for handler in reversed(reached):
        handler.postprocess(msg)


@contextlib.contextmanager
def local_stack(*handlers: Messenger):
    """Run a block with a stack of its own, holding `handlers` (outermost first) and what the
    block enters: `ppl.scan` runs its body so, away from the handlers around the scan."""
    saved = _stack()
    _LOCAL.stack = []
    try:
        with contextlib.ExitStack() as entered:
            for h in handlers:
                entered.enter_context(h)
            yield
    finally:
        _LOCAL.stack = saved


_TRANSFORMS = {"scan": "jax.lax.scan", "fori_loop": "jax.lax.fori_loop", "while_loop": "jax.lax.while_loop",
               "cond": "jax.lax.cond", "switch": "jax.lax.switch", "map": "jax.lax.map", "vmap": "jax.vmap",
               "vmap_f": "jax.vmap", "checkpoint": "jax.checkpoint", "jit": "jax.jit", "pjit": "jax.jit"}


def transformed_site_error(msg: Message) -> TypeError:
    """The error for a site inside a JAX transformation begun after its innermost handler was
    entered (a model's own `jax.lax.scan`): the handlers cannot see it there (its value would
    leak out of the transformation)."""
    where = "a JAX transformation"
    for info in traceback.extract_stack()[::-1]:  # the innermost JAX transformation the site is in
        if "/jax/" in info.filename.replace("\\", "/") and info.name in _TRANSFORMS:
            where = f"the body of {_TRANSFORMS[info.name]}"
            break
    what = f"{msg.kind} site '{msg.name}'" if msg.kind != "prng_key" else "ppl.prng_key()"
    return TypeError(
        f"{what} is called inside {where}, begun inside the handlers around the site; ppl's "
        f"handlers (and so its compiler and methods) cannot see a site there, and its value "
        f"would leak out of the transformation. In a model, for a loop over time steps use "
        f"ppl.scan (from ppl.contrib.control_flow import scan), which has jax.lax.scan's "
        f"signature and records each site once with a leading time dimension; for independent "
        f"copies use ppl.plate; for a branch, jnp.where on sites called outside it. Around a "
        f"model, enter the handlers inside the transformed function: "
        f"jax.jit(lambda: seed(model, 0)()), not seed around jax.jit(model).")
