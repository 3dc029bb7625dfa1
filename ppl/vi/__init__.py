"""Variational inference: objectives (`ELBO`, `IWAE`), guide families and the `VI` method.

    >>> r = ppl.infer(model, x, method=ppl.VI(guide="full_rank", objective=ppl.ELBO()))
    >>> r = ppl.infer(model, x, method=ppl.VI(guide=my_guide, objective=ppl.IWAE(k=50)))
"""
from ppl.vi.guides import Delta, Flow, FullRank, LowRank, MeanField
from ppl.vi.method import VI, default_optimizer
from ppl.vi.objectives import ELBO, IWAE, Particle

__all__ = ["VI", "ELBO", "IWAE", "Particle", "MeanField", "FullRank", "LowRank", "Flow", "Delta", "default_optimizer"]
