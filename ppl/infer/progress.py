"""Progress bars for long compiled runs, fed by host callbacks from inside the program.

A compiled program is cached and reused, so the callback it carries cannot hold a bar
object; it calls `report`, which forwards to whichever bar is open at run time.
"""
from __future__ import annotations

import os
import sys
import threading

_ACTIVE = threading.local()


def enabled(setting) -> bool:
    """Resolve a `progress_bar` option: None means on in a terminal, off under tests and CI."""
    if setting is not None:
        return bool(setting)
    if "PYTEST_CURRENT_TEST" in os.environ or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def report(chain, iteration) -> None:
    """Host side of the callback: advance the open bar (chain 0, or an unbatched run)."""
    bar = getattr(_ACTIVE, "bar", None)
    if bar is not None and (chain is None or chain == 0):
        bar.update(max(0, iteration - bar.n))


class bar:
    """Context manager that opens a tqdm bar of `total` iterations for `report` to feed."""

    def __init__(self, total: int, description: str, on: bool):
        self.total, self.description, self.on = total, description, on

    def __enter__(self):
        if self.on:
            from tqdm.auto import tqdm

            _ACTIVE.bar = tqdm(total=self.total, desc=self.description, leave=False, mininterval=0.5)
        return self

    def __exit__(self, *exc):
        b = getattr(_ACTIVE, "bar", None)
        if b is not None:
            b.update(self.total - b.n)
            b.close()
            _ACTIVE.bar = None
        return False
