"""One BLAS thread per execution while several of ppl's programs that call LAPACK run at once
on a CPU.

jaxlib's CPU LAPACK kernels (the custom calls ``lapack_*``: triangular solves, Cholesky
factors, eigendecompositions) call the BLAS that scipy ships (OpenBLAS on Linux and Windows
wheels), which runs a call over threads of its own, as many as the machine has cores, beside
XLA's CPU pool; between calls its threads spin, waiting for the next one, on the cores XLA
needs. When ppl runs groups of chains at once (one per core, `ppl.mcmc.chains`), each group
with a solve at every leapfrog step, the groups' BLAS threads and XLA's fight for every core.
Measured (the 100-dimensional correlated Gaussian of ``benchmarks/many_chains.py``, whose
gradient solves against its covariance's Cholesky factor; 256 chains as lanes, two groups of
128; 2-core CPU; 50 + 50): 18.3 us per gradient with OpenBLAS's threads; 4.8 with one BLAS
thread. One program alone keeps them: ChEES's 256 chains in one program, 500 + 500, ran 8.6 s
with them and 10.3-10.8 s with one.

So while two or more executions of programs that call LAPACK
(:func:`ppl.runtime.program.execute`) are in flight, every BLAS library loaded in the process
runs on one thread, through ``threadpoolctl`` (the standard way to set BLAS threads from
Python: it finds the loaded libraries, whichever they are). The limit is process-wide and
shared: set when a second such execution begins, lifted when none is in flight, and inside a
run (:func:`run_scope`: a method's whole run, chunk after chunk) kept until the run ends.
Lifted and set again around every chunk it cost more than it saved: OpenBLAS starts its
threads again at every lift, and they spin (the same run: 18.3 us per gradient). Measured on a
2-core CPU only; on more cores one BLAS thread per group may leave cores idle where the groups
are fewer than the cores. A BLAS that threadpoolctl cannot steer (macOS's Accelerate) is left
as it is.
"""
from __future__ import annotations

import contextlib
import threading

class _Shared:
    """The process's one record: ``in_flight``, executions inside :func:`lapack_execution`;
    ``scopes``, open :func:`run_scope` s; ``limit``, threadpoolctl's record of the settings
    to restore while the limit is on (else None); ``controller``, threadpoolctl's view of
    the loaded libraries (made at first use). Read and written under ``lock``."""

    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.scopes = 0
        self.limit = None
        self.controller = None


_shared = _Shared()


def _controller():
    from threadpoolctl import ThreadpoolController  # finds the BLAS libraries loaded now

    if _shared.controller is None:
        _shared.controller = ThreadpoolController()
    return _shared.controller


def _set_limit() -> None:  # under the lock
    _shared.limit = _controller().select(user_api="blas").limit(limits=1)


def _lift_if_unused() -> None:  # under the lock
    if _shared.in_flight == 0 and _shared.scopes == 0 and _shared.limit is not None:
        _shared.limit.restore_original_limits()
        _shared.limit = None


@contextlib.contextmanager
def lapack_execution():
    """The body is an execution of a program that calls LAPACK: from the second one in flight
    at once, every loaded BLAS library runs on one thread (see the module doc)."""
    with _shared.lock:
        _shared.in_flight += 1
        if _shared.in_flight >= 2 and _shared.limit is None:
            _set_limit()
    try:
        yield
    finally:
        with _shared.lock:
            _shared.in_flight -= 1
            _lift_if_unused()


@contextlib.contextmanager
def run_scope():
    """A run of many executions (a method's chunks): a limit set during it is kept until the
    scope ends, not lifted and set again between its executions."""
    with _shared.lock:
        _shared.scopes += 1
    try:
        yield
    finally:
        with _shared.lock:
            _shared.scopes -= 1
            _lift_if_unused()


def blas_threads() -> list:
    """The thread count of each loaded BLAS library (for tests and diagnostics)."""
    return [lib["num_threads"] for lib in _controller().select(user_api="blas").info()]
