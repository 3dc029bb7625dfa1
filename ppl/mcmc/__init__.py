"""MCMC kernels (pure ``init``/``step`` pairs) and the chain driver.

Kernel modules ``hmc``, ``nuts``, ``mh`` each export ``State``, ``Info``, ``init``,
``build_kernel`` (and ``probe`` for the step-size heuristic); ``driver.run_chain`` runs
Stan-style warmup and sampling for any of them.
"""
from ppl.mcmc import base, driver, hmc, integrators, metrics, mh, nuts

__all__ = ["base", "driver", "hmc", "integrators", "metrics", "mh", "nuts"]
