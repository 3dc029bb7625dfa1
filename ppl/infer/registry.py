"""`METHODS`: every inference method by name, the built-in ones registered here."""
from __future__ import annotations

from typing import Callable, Dict

from ppl.method.base import Method
from ppl.mcmc.gibbs import Gibbs
from ppl.mcmc.sampler import HMC, MH, NUTS, ChEES
from ppl.optimize.point import MAP, MLE
from ppl.sampling.importance import Importance
from ppl.sampling.rejection import Rejection
from ppl.vi import IWAE, VI

METHODS: Dict[str, Callable[[], Method]] = {}


def register(name: str, factory: Callable[[], Method]) -> None:
    """Add a method under `name`; `factory()` returns it with default options."""
    METHODS[name] = factory


for _name, _factory in (("nuts", NUTS), ("hmc", HMC), ("mh", MH), ("chees", ChEES), ("mle", MLE),
                        ("map", MAP), ("importance", Importance), ("gibbs", Gibbs), ("rejection", Rejection),
                        ("vi", VI), ("iwae", lambda: VI(objective=IWAE()))):
    register(_name, _factory)
