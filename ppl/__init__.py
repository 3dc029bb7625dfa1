"""ppl: probabilistic programming on JAX.

Write a model as a Python function that calls `sample` and `observe`; `ppl.infer` compiles
it once into a pure log density over a flat unconstrained vector and runs any method on it.

    >>> r = ppl.infer(model, data, method="nuts")
"""
from numpyro import distributions as dist

from ppl.check import Report, check
from ppl.compile.logdensity import LogDensity, LogJoint, compile
from ppl.compile.spec import ModelSpec
from ppl.infer.api import METHODS, register
from ppl.method.base import Method
from ppl.method.result import Result
from ppl.mcmc.gibbs import Gibbs, GibbsBlock
from ppl.model import handlers
from ppl.model.primitives import (deterministic, factor, module, observe, param, plate, prng_key, sample,
                                  subsample)
from ppl.model.scan import scan
from ppl.model.enumeration import config_enumerate
from ppl.model.indexing import Vindex
from ppl.model.sites import Plate, Site, Trace
from ppl.mcmc.sampler import HMC, MH, NUTS, ChEES
from ppl.optimize.point import MAP, MLE
from ppl.sampling.importance import Importance
from ppl.sampling.rejection import Rejection
from ppl.sbc import SBCResult, sbc
from ppl import evaluate, optim, vi
from ppl.evaluate import predictive
from ppl.vi import ELBO, IWAE, VI
from ppl import _import_paths, contrib, util  # noqa: F401 - ppl.handlers, ppl.dist, ppl.distributions as import paths
from ppl.util import enable_x64, set_host_device_count, set_platform
from ppl.infer.discrete import infer_discrete
import ppl.infer as infer  # noqa: E402 - the package, callable as ppl.infer.api.infer (see ppl/infer/__init__.py)

distributions = dist

__all__ = [
    "dist", "distributions", "handlers", "util",
    "sample", "observe", "plate", "deterministic", "factor", "param", "module", "prng_key", "subsample", "scan",
    "enable_x64", "set_platform", "set_host_device_count",
    "Site", "Plate", "Trace", "ModelSpec",
    "compile", "LogDensity", "LogJoint",
    "config_enumerate", "Vindex", "infer_discrete",
    "infer", "METHODS", "register", "Method", "Result",
    "NUTS", "HMC", "MH", "ChEES", "MLE", "MAP", "Importance",
    "Gibbs", "GibbsBlock", "Rejection",
    "VI", "ELBO", "IWAE", "vi", "optim", "evaluate", "predictive",
    "sbc", "SBCResult", "check", "Report",
]
__version__ = "0.1.0"
