"""Shared helpers for the benchmark scripts: timing, hardware description, peer models."""
from __future__ import annotations

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np


def timed(f):
    """Run `f()`, block on its outputs, return (outputs, seconds)."""
    t = time.perf_counter()
    out = jax.block_until_ready(f())
    return out, time.perf_counter() - t


def best_of(f, repeats=3):
    """Minimum wall time of `repeats` runs of `f()` (after the first, which may compile)."""
    jax.block_until_ready(f())
    return min(timed(f)[1] for _ in range(repeats))


def warm_up_jax() -> None:
    """Compile and run one small program that uses neither library, so that the process's
    one-time JAX/XLA start-up costs are not charged to whichever library is timed first."""

    def f(x):
        g = jax.grad(lambda v: jnp.sum(jnp.sin(v) ** 2))
        return jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] - 0.1 * g(c[1])), (0, x))[1]

    key = jax.random.PRNGKey(0)
    jax.block_until_ready(jax.jit(f)(jax.random.normal(key, (3,))))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware() -> dict:
    import numpyro
    import optax

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "optax": optax.__version__,
    }


def hardware_label(hw: dict) -> str:
    kind = hw["device_kind"].lower().replace(" ", "-")
    return f"{hw['backend']}-{kind}-x{hw['device_count']}"


def logistic_data(n=5000, d=25, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w)))).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(y)


def print_table(rows, columns):
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)
