"""Ctrl-C during a run: the first asks it to stop after the chunk in flight, the second aborts.

While a run is chunked, its programs execute on worker threads and the main thread only waits
(in short timed waits), so it sees SIGINT at once: the first sets :attr:`Interrupt.requested`
(the run then returns every completed chunk, flagged ``interrupted``), the second raises
``KeyboardInterrupt`` immediately (the chunk in flight is abandoned; its thread finishes it
and its result is dropped).
"""
from __future__ import annotations

import signal
import sys
import threading


class Interrupt:
    """A context manager that takes SIGINT over for a run (main thread only; elsewhere, and
    when SIGINT is not Python's default handler, Ctrl-C behaves as usual)."""

    def __init__(self, label: str = "ppl"):
        self.label = label
        self.requested = False
        self._previous = None
        self._installed = False

    def _handler(self, signum, frame):
        if self.requested:  # the second Ctrl-C: abort at once
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{self.label}: interrupted; finishing the chunk in flight and returning the draws so "
              f"far (Ctrl-C again to abort at once).", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is signal.default_int_handler:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handler)
                self._installed = True
        return self

    def _restore(self):
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def __exit__(self, *exc):
        self._restore()
        return False
