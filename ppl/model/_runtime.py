"""The effect-handler stack: typed messages, `apply_stack`, and the `Messenger` base class.

A primitive (`sample`, `observe`, ...) builds a `Message` and hands it to `apply_stack`.
Every active handler sees it in `process` (innermost first) and again in `postprocess`
(outermost last), as in Pyro's minipyro. A handler that sets `msg.stop` hides the message
from the handlers outside it. The stack is per thread and holds only handlers entered by a
running model, so nothing persists between runs.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Optional

from ppl.model.site_keys import NumPyroKeys

_LOCAL = threading.local()


def _stack() -> list:
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
    inside the handler; `with Messenger():` installs it for the block.
    """

    def __init__(self, fn: Optional[Callable] = None):
        if fn is not None and not callable(fn):
            raise TypeError(
                f"{type(self).__name__} expected a callable model as its first argument, "
                f"got {type(fn).__name__}; pass the model function itself (not its result)."
            )
        self.fn = fn

    def __enter__(self):
        _stack().append(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        stack = _stack()
        # Remove this handler even if an inner one leaked (an exception inside the model).
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is self:
                del stack[i:]
                break
        return False

    def __call__(self, *args, **kwargs):
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
    """The handlers currently installed, outermost first."""
    return tuple(_stack())


def apply_stack(msg: Message, default: Callable[[Message], None]) -> Message:
    """Send `msg` through the active handlers; `default` fills the value if none did."""
    stack = _stack()
    pointer = 0
    for pointer, handler in enumerate(reversed(stack)):
        handler.process(msg)
        if msg.stop:
            break
    default(msg)
    for handler in stack[len(stack) - pointer - 1:]:
        handler.postprocess(msg)
    return msg
