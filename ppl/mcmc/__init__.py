"""MCMC kernels (pure ``init``/``step`` pairs) and the chain driver.

Kernel modules ``hmc``, ``nuts``, ``mh`` each export ``State``, ``Info``, ``init``,
``build_kernel`` (and ``probe`` for the step-size heuristic); ``driver.run_chain`` runs
Stan-style warmup and sampling for any of them. ``chees`` exports ``State``, ``Info``,
``init`` and ``build_move``: ChEES-HMC's move, whose chains adapt together (it runs under a
named ``vmap`` over chains, ``ppl.ChEES``).
"""
from ppl.mcmc import base, chees, driver, hmc, integrators, metrics, mh, nuts

__all__ = ["base", "chees", "driver", "hmc", "integrators", "metrics", "mh", "nuts"]
