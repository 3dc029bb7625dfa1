"""NumPyro's `numpyro.util` helpers under ppl: JAX settings and a trace's shapes.

    enable_x64(use_x64=True)     64-bit floats and ints (jax_enable_x64)
    set_platform(platform=None)  "cpu", "gpu" or "tpu" (jax_platform_name)
    set_host_device_count(n)     n CPU devices (for chains in parallel on a CPU)
    format_shapes(trace)         a table of each site's batch, event and value shapes

The platform and device count take effect only before JAX runs its first operation: call
them right after `import ppl`, as in NumPyro.
"""
from __future__ import annotations

import os
import re
import warnings

import jax
import jax.numpy as jnp


def enable_x64(use_x64: bool = True) -> None:
    """Use 64-bit (True) or 32-bit (False) floats and ints by default."""
    jax.config.update("jax_enable_x64", bool(use_x64))


def set_platform(platform: str | None = None) -> None:
    """Run on `platform` ("cpu", "gpu", "tpu"); None reads $JAX_PLATFORM_NAME, else "cpu"."""
    platform = platform or os.environ.get("JAX_PLATFORM_NAME", "cpu")
    jax.config.update("jax_platform_name", platform)


_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S+")


def set_host_device_count(n: int) -> None:
    """Expose `n` CPU devices to JAX (XLA_FLAGS' --xla_force_host_platform_device_count), so
    chains can run on CPU cores in parallel.

    Raises:
      ValueError: for `n` that is not a positive int.

    Warns when JAX has already started (the setting then applies to new processes only).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_host_device_count: n must be a positive int, got {n!r}.")
    flags = _COUNT_FLAG.sub("", os.environ.get("XLA_FLAGS", "")).split()
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        warnings.warn(f"set_host_device_count({n}): JAX has already started, so this process keeps "
                      f"{jax.local_device_count('cpu')} CPU device(s); call it right after `import ppl`.",
                      stacklevel=2)
    except AttributeError:  # an older JAX without the option: XLA_FLAGS alone does it
        pass


def format_shapes(trace, compute_log_prob: bool = False, title: str = "Trace Shapes:") -> str:
    """A table of the sites of `trace` (from `ppl.handlers.trace`): for each site its kind,
    its distribution's batch and event shapes, its value's shape and (with
    `compute_log_prob`) its log density's shape. For finding shape mistakes.

    Example:
      >>> print(ppl.util.format_shapes(ppl.handlers.trace(ppl.handlers.seed(model, 0)).get_trace(x)))
    """
    rows = [(title, "", "", "", "")]
    for site in trace.values():
        d = site.dist
        batch = " ".join(map(str, d.batch_shape)) if d is not None else ""
        event = " ".join(map(str, d.event_shape)) if d is not None else ""
        value = " ".join(map(str, jnp.shape(site.value))) if site.value is not None else ""
        lp = " ".join(map(str, jnp.shape(site.log_prob))) if compute_log_prob else ""
        rows.append((site.name, site.kind, batch, event, value + (f"  log_prob: {lp}" if lp else "")))
    rows.insert(1, ("name", "kind", "batch", "event", "value"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join((" ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + " " + r[4]).rstrip() for r in rows)


__all__ = ["enable_x64", "set_platform", "set_host_device_count", "format_shapes"]
