"""The public entry, above every method: `infer` (`api`) and the `METHODS` registry
(`registry`); and NumPyro's `numpyro.infer` names (`numpyro_names`; `svi`, `elbo` and
`autoguide` for its variational inference, doors to `ppl.vi`).

`ppl.infer` is this package, and the package is callable: its class is switched to
`CallableModule`, whose `__call__` is `ppl.infer.api.infer`, so that both

    r = ppl.infer(model, x, y=y, method="nuts", key=0)       # ppl's entry point (a call)
    from ppl.infer import Predictive, log_likelihood, NUTS   # what NumPyro users type
    mcmc = ppl.infer.MCMC(ppl.infer.NUTS(model), num_warmup=500, num_samples=500)  # NumPyro's driver
    svi = ppl.infer.SVI(model, autoguide.AutoNormal(model), ppl.optim.Adam(0.01), Trace_ELBO())  # NumPyro's SVI

work. `ppl.infer.NUTS`/`HMC` called with a model are NumPyro's kernels (for `MCMC`); called
without one they are `ppl.NUTS`/`ppl.HMC` (see `numpyro_names`). (The function `infer`
bound as `ppl.infer` would make `from ppl.infer import X` read another object than
`ppl.infer`, and attributes on a function are no import path.)
`ppl.infer.api.infer` stays the plain function.
"""
import sys
import types

from ppl.infer import api
from ppl.infer.numpyro_names import (HMC, MCMC, NUTS, UNAVAILABLE, Predictive, Unavailable, init_to_feasible,
                                     init_to_mean, init_to_median, init_to_sample, init_to_uniform, init_to_value,
                                     log_likelihood)
from ppl.mcmc.sampler import MH
# NumPyro's submodules numpyro.infer.autoguide, .hmc (its functional hmc()) and .util
# (initialize_model), reachable as attributes as in NumPyro.
from ppl.infer import autoguide, hmc, util  # noqa: E402, F401
from ppl.infer.elbo import RenyiELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from ppl.infer.svi import SVI, SVIRunResult, SVIState

__all__ = ["Predictive", "log_likelihood", "MCMC", "NUTS", "HMC", "MH", "init_to_feasible", "init_to_mean",
           "init_to_median", "init_to_sample", "init_to_uniform", "init_to_value",
           "SVI", "SVIState", "SVIRunResult", "Trace_ELBO", "TraceMeanField_ELBO", "TraceGraph_ELBO",
           "TraceEnum_ELBO", "RenyiELBO", "autoguide"]

# NumPyro names ppl does not offer: importable (a ported file that imports SA but runs
# MCMC works), an error naming them when used.
globals().update({name: Unavailable(name, advice) for name, advice in UNAVAILABLE.items()})


class CallableModule(types.ModuleType):
    """The package `ppl.infer`, callable as the function `ppl.infer.api.infer`."""

    def __call__(self, model, *args, **kwargs):
        return api.infer(model, *args, **kwargs)

    def __getattr__(self, name):
        raise AttributeError(f"module 'ppl.infer' has no attribute {name!r}")


CallableModule.__call__.__doc__ = api.infer.__doc__
sys.modules[__name__].__class__ = CallableModule
