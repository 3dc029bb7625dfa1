"""The public entry, above every method: `infer` (`api`) and the `METHODS` registry
(`registry`); and NumPyro's `numpyro.infer` names (`numpyro_names`).

`ppl.infer` is this package, and the package is callable: its class is switched to
`CallableModule`, whose `__call__` is `ppl.infer.api.infer`, so that both

    r = ppl.infer(model, x, y=y, method="nuts", key=0)       # ppl's entry point (a call)
    from ppl.infer import Predictive, log_likelihood, NUTS   # what NumPyro users type

work. (The function `infer` bound as `ppl.infer` would make `from ppl.infer import X` read
another object than `ppl.infer`, and attributes on a function are no import path.)
`ppl.infer.api.infer` stays the plain function.
"""
import sys
import types

from ppl.infer import api
from ppl.infer.numpyro_names import Predictive, log_likelihood
from ppl.mcmc.sampler import HMC, MH, NUTS

__all__ = ["Predictive", "log_likelihood", "NUTS", "HMC", "MH"]

_NUMPYRO_ONLY = {
    "MCMC": "ppl has no MCMC driver object: run r = ppl.infer(model, *args, method=ppl.NUTS(num_warmup=..., "
            "num_samples=..., num_chains=...), key=0) and read r.samples",
    "SVI": "ppl has no SVI driver object: run r = ppl.infer(model, *args, method=ppl.VI(guide=..., num_steps=...))",
}


class CallableModule(types.ModuleType):
    """The package `ppl.infer`, callable as the function `ppl.infer.api.infer`."""

    def __call__(self, model, *args, **kwargs):
        return api.infer(model, *args, **kwargs)

    def __getattr__(self, name):
        if name in _NUMPYRO_ONLY:
            raise ImportError(f"ppl.infer.{name} (NumPyro's) does not exist: {_NUMPYRO_ONLY[name]}.")
        raise AttributeError(f"module 'ppl.infer' has no attribute {name!r}")


CallableModule.__call__.__doc__ = api.infer.__doc__
sys.modules[__name__].__class__ = CallableModule
