"""ppl: probabilistic programming on JAX.

Write a model as a Python function that calls `sample` and `observe`; `ppl.infer` compiles
it once into a pure log density over a flat unconstrained vector and runs any method on it.

    >>> r = ppl.infer(model, data, method="nuts")
"""
from numpyro import distributions as dist

from ppl.check import Report, check
from ppl.compile.logdensity import LogDensity, LogJoint, compile
from ppl.compile.spec import ModelSpec
from ppl.infer.api import METHODS, infer, register
from ppl.method.base import Method
from ppl.method.result import Result
from ppl.mcmc.gibbs import Gibbs, GibbsBlock
from ppl.model import handlers
from ppl.model.primitives import deterministic, factor, module, observe, param, plate, sample
from ppl.model.sites import Plate, Site, Trace
from ppl.mcmc.sampler import HMC, MH, NUTS
from ppl.optimize.point import MAP, MLE
from ppl.sampling.importance import Importance
from ppl.sampling.rejection import Rejection
from ppl.sbc import SBCResult, sbc
from ppl import evaluate, vi
from ppl.evaluate import predictive
from ppl.vi import ELBO, IWAE, VI

__all__ = [
    "dist", "handlers",
    "sample", "observe", "plate", "deterministic", "factor", "param", "module",
    "Site", "Plate", "Trace", "ModelSpec",
    "compile", "LogDensity", "LogJoint",
    "infer", "METHODS", "register", "Method", "Result",
    "NUTS", "HMC", "MH", "MLE", "MAP", "Importance",
    "Gibbs", "GibbsBlock", "Rejection",
    "VI", "ELBO", "IWAE", "vi", "evaluate", "predictive",
    "sbc", "SBCResult", "check", "Report",
]
__version__ = "0.1.0"
