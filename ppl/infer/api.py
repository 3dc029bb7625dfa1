"""`ppl.infer`: one entry point for every inference method (registered in `registry`)."""
from __future__ import annotations

import time

from ppl._keys import as_key
from ppl.compile.errors import pointing_to_check
from ppl.compile.logdensity import compile as compile_model
from ppl.infer.registry import METHODS, register  # noqa: F401 - re-exported
from ppl.method.base import Method
from ppl.method.result import Result


def resolve_method(method) -> Method:
    """A method object from a registry name or an object; raises for anything else."""
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(
                f"unknown method {method!r}; choose one of {sorted(METHODS)} or pass a method "
                f"object such as ppl.NUTS(num_chains=8)."
            )
        return METHODS[method]()
    if isinstance(method, Method):
        return method
    if isinstance(method, type) and issubclass(method, Method):
        return method()
    raise TypeError(f"method must be a name from ppl.METHODS or a method object, got {method!r}.")


def infer(model, *args, method="nuts", key=0, checkpoint=None, **kwargs) -> Result:
    """Run inference on `model(*args, **kwargs)` with `method`.

    Args:
      model: a Python function calling `ppl.sample`, `ppl.observe`, ...
      *args, **kwargs: the model's arguments (arrays are data; Python scalars are static).
      method: a name from `ppl.METHODS` or a method object carrying its options.
      key: an int, a `jax.random.PRNGKey` or a typed `jax.random.key`.
      checkpoint: a directory (MCMC, VI, MLE, MAP): the run's state and draws are written
        there after each chunk; the same call again resumes from the last complete chunk
        (in a new process too), returns a finished run at once, or extends it when asked for
        more draws; a checkpoint of another run is refused, naming what differs. Ctrl-C
        returns what was done, flagged `diagnostics["interrupted"]`.

    Returns:
      a `Result` (samples, params, log_evidence, diagnostics, timing, ...).

    Example:
      >>> r = ppl.infer(model, x, y=y, method="nuts", key=0)
      >>> r.samples["mu"].shape  # (num_chains, num_draws)
    """
    m = resolve_method(method)
    if checkpoint is not None and not m.checkpoints:
        raise ValueError(f"method '{m.name}' does not write checkpoints; drop checkpoint= or use one of the "
                         f"MCMC, VI, MLE or MAP methods.")
    key = as_key(key)
    t0 = time.perf_counter()
    ld = compile_model(model, *args, **kwargs)
    inspect_s = time.perf_counter() - t0
    with pointing_to_check(model, sites_only=True):  # errors about the model point to ppl.check
        m.check(ld)
        result = m.run(key, ld) if checkpoint is None else m.run(key, ld, checkpoint=checkpoint)
    result.timing["inspect_s"] = inspect_s
    result.timing["compile_s"] = result.timing.get("compile_s", 0.0) + inspect_s
    return result
