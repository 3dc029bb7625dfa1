"""Progress bars for chunked runs, updated from Python between chunks.

No host callback reaches into a compiled program, so every program (with or without a bar)
is the same program and is cached on disk like any other. A run shows one tqdm bar per group
of chains (or one for an optimiser), with what the method reports after each chunk
(divergences so far, the current step size, the loss, ...).
"""
from __future__ import annotations

import os
import sys


def enabled(setting) -> bool:
    """Resolve a `progress_bar` option: None means on in a terminal, off under tests and CI."""
    if setting is not None:
        return bool(setting)
    if "PYTEST_CURRENT_TEST" in os.environ or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


class Bars:
    """One bar per group: ``update(group, iterations, **postfix)``; a context manager that
    closes them. With ``on=False`` every call does nothing."""

    def __init__(self, on: bool, descriptions, totals, initial=None):
        self.bars = []
        if on:
            from tqdm.auto import tqdm

            initial = initial or [0] * len(totals)
            self.bars = [tqdm(total=t, initial=i, desc=d, position=k, leave=False, mininterval=0.5,
                              dynamic_ncols=True)
                         for k, (d, t, i) in enumerate(zip(descriptions, totals, initial))]

    def update(self, group: int, n: int, **postfix) -> None:
        if self.bars:
            bar = self.bars[group]
            if postfix:
                bar.set_postfix(postfix, refresh=False)
            bar.update(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for bar in self.bars:
            bar.close()
        return False
