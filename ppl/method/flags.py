"""Flags: the problems a run found, raised as Python warnings AND kept with its result.

Every method reports numerical trouble (divergences, non-finite gradients, weight collapse,
an optimiser that has not converged, ...) through :func:`flag`: one ``UserWarning`` per
problem, whose text names the method, the site where there is one, and what to do; the
same text goes to ``diagnostics["warnings"]``, which ``Result.summary()`` and ``print(r)``
show under the table, and the demo in its note column.
"""
from __future__ import annotations

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_stacklevel() -> int:
    """The stacklevel (counted from the caller of this function) of the first frame outside
    the ppl package: the user's line that started the run."""
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE + os.sep):
        frame, level = frame.f_back, level + 1
    return level


class PplWarning(UserWarning):
    """A problem with a run's result: the numbers may be wrong; the text says what to do."""


def flag(diagnostics: dict, method: str, message: str, stacklevel=None) -> None:
    """Warn ``"<method>: <message>"`` and append the text to ``diagnostics["warnings"]``.

    Args:
      diagnostics: the result's diagnostics dict (created lists are kept in it).
      method: the method's name (``"nuts"``, ``"vi"``, ...), the warning's first word.
      message: what went wrong, naming the site where there is one, and the fix.
      stacklevel: ignored (kept for callers that pass it): the warning points at the first
        line outside the ppl package, the user's call.
    """
    text = f"{method}: {message.rstrip('.')}."
    diagnostics.setdefault("warnings", []).append(text)
    warnings.warn(text, PplWarning, stacklevel=_user_stacklevel())
