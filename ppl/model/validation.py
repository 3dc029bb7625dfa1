"""NumPyro's validation switch, shared safely by threads.

NumPyro keeps one process-wide flag (`numpyro.enable_validation`): on, a distribution
raises at construction on a concrete invalid parameter and its `log_prob` masks values
outside the support to -inf. ppl traces models with it off (a parameter outside its support
is a -inf density, not an error) and applies support masks itself (`ppl.model.sites.Site`),
so no result depends on the flag. NumPyro's own `validation_enabled(False)` saves and
restores the flag, which is not safe across threads: two overlapping uses can restore each
other's value and leave it off for good. :func:`off` counts its users instead: the first
turns the flag off, the last restores what it found.
"""
from __future__ import annotations

import contextlib
import threading

from numpyro.distributions.distribution import enable_validation
import numpyro.distributions.distribution as _numpyro_distribution

_LOCK = threading.Lock()
_USERS = [0]
_SAVED = [None]


@contextlib.contextmanager
def off():
    """NumPyro's validation off while any thread is inside; restored by the last to leave."""
    with _LOCK:
        if _USERS[0] == 0:
            _SAVED[0] = _numpyro_distribution._VALIDATION_ENABLED
            enable_validation(False)
        _USERS[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS[0] -= 1
            if _USERS[0] == 0:
                enable_validation(_SAVED[0])
