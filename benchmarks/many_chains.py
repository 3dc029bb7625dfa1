"""Many chains: vectorised NUTS as lanes and in lockstep, ChEES-HMC, and NumPyro's vectorised
NUTS, from 1 to 4096 chains (`python -m benchmarks scaling --axes many`).

For each model and number of chains, each sampler runs once, its first call in this process
(ppl's compiled programs and JAX's caches cleared first, so compile time is included, as a
user meets it), and records:

  first_s          wall time of the call, compile included
  run_s            ppl: the run without compile (NumPyro: not measured, see numpyro_point)
  ess_per_s        the smallest bulk ESS over the scalars / first_s (rank-normalised bulk
                   ESS, `bench_mcmc.min_bulk_ess`, for every sampler, NumPyro's included)
  us_per_grad      run time / gradient evaluations over all chains (warmup included)
  lane_util        gradient evaluations / (chains x batched steps): ppl's lanes from the
                   run's own count (warmup included); lockstep NUTS (ppl's old schedule and
                   NumPyro's) from the sampling draws' steps, sum / (chains x sum over draws of
                   the batch's longest), the sampling phase only; ChEES: none (every chain
                   takes the same number of steps).
  lane_util_bound  ppl's lanes: the utilisation no schedule could pass, sum / (chains x max)
                   of the chains' own gradient evaluations per batch (they differ: each
                   chain adapts its own step size)

Samplers: "nuts" (ppl NUTS, chain_method="vectorized": lanes), "nuts_lockstep" (the same
chains in lockstep, `ppl.mcmc.lanes.ENABLED` off), "chees" (if `ppl.METHODS` has it) and
"numpyro" (NumPyro's NUTS, chain_method="vectorized"). Models: the non-centred eight schools,
a 5000 x 25 logistic regression, a 100-dimensional correlated Gaussian.
"""
from __future__ import annotations

import dataclasses
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

FULL_CHAINS = (1, 4, 16, 64, 256, 1024, 4096)
QUICK_CHAINS = (4, 64, 256)
MODELS = ("eight_schools", "logreg_5000x25", "gauss100")
QUICK_MODELS = ("eight_schools",)
SAMPLERS = ("nuts", "nuts_lockstep", "chees", "numpyro")


def _gauss_cov(d=100, rho=0.9):
    """An AR(1) correlation matrix with scales from 0.1 to 10: correlated and badly scaled."""
    idx = np.arange(d)
    corr = rho ** np.abs(idx[:, None] - idx[None, :])
    scale = np.logspace(-1, 1, d)
    return jnp.asarray(corr * scale[:, None] * scale[None, :], jnp.float32)


def gauss100(cov):
    ppl.sample("x", dist.MultivariateNormal(jnp.zeros(cov.shape[0]), covariance_matrix=cov))


def gauss100_np(cov):
    import numpyro
    import numpyro.distributions as nd

    numpyro.sample("x", nd.MultivariateNormal(jnp.zeros(cov.shape[0]), covariance_matrix=cov))


def model(name):
    """(ppl model, NumPyro model, args, kwargs)."""
    if name == "gauss100":
        return gauss100, gauss100_np, (_gauss_cov(),), {}
    from benchmarks._twins import cases

    return cases([name])[name]


def _fresh():
    from ppl.runtime import program

    program.clear_cache()
    jax.clear_caches()


def _lockstep_util(steps) -> float:
    steps = np.asarray(steps)
    return float(steps.sum() / (steps.max(axis=0).sum() * steps.shape[0])) if steps.size else float("nan")


def ppl_point(name, chains, warmup, draws, sampler) -> dict:
    from benchmarks.bench_mcmc import min_bulk_ess
    from ppl.mcmc import lanes

    m, _, args, kwargs = model(name)
    if sampler == "chees":
        method = dataclasses.replace(ppl.METHODS["chees"](), num_warmup=warmup, num_samples=draws,
                                     num_chains=chains, progress_bar=False)
    else:
        method = ppl.NUTS(num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="vectorized",
                          progress_bar=False)
    _fresh()
    lanes.ENABLED = sampler != "nuts_lockstep"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            r = ppl.infer(m, *args, method=method, key=0, **kwargs)
            first = time.perf_counter() - t
    finally:
        lanes.ENABLED = True
    d = r.diagnostics
    grads = int(d["num_grad_evals"]) + int(d["num_warmup_grad_evals"])
    util = d.get("lane_utilization", float("nan"))
    if sampler == "nuts_lockstep":
        util = _lockstep_util(d["sample_stats"]["n_steps"])
    return {"first_s": first, "compile_s": r.timing["compile_s"], "run_s": r.timing["run_s"],
            "ess_per_s": min_bulk_ess(r.samples) / first, "us_per_grad": r.timing["run_s"] / grads * 1e6,
            "grad_evals": grads, "lane_util": util,
            # ppl's lanes: what no schedule of these chains could pass (sum / (chains x max) of
            # each chain's gradient evaluations, per batch)
            "lane_util_bound": d.get("lane_utilization_bound", float("nan")),
            # vectorised batches run at once (one per core on a single CPU device; see NUTS's chain_method)
            "groups": method._groups(r.log_density)}


def numpyro_point(name, chains, warmup, draws) -> dict:
    from benchmarks.bench_mcmc import min_bulk_ess
    from numpyro.infer import MCMC, NUTS

    _, m, args, kwargs = model(name)
    _fresh()

    mcmc = MCMC(NUTS(m), num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="vectorized",
                progress_bar=False)

    def call(key):
        t = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(key), *args, extra_fields=("num_steps",), **kwargs)
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        return samples, time.perf_counter() - t

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples, first = call(0)
    steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
    ess = min_bulk_ess(samples)  # the same estimator as ppl's points
    grads = steps.sum() * (warmup + draws) / draws
    # A second `run` of NumPyro's MCMC traced and compiled again (measured: as slow as the
    # first), so its run time alone is not measured here: compile_s, run_s, us_per_grad NaN.
    nan = float("nan")
    return {"first_s": first, "compile_s": nan, "run_s": nan, "ess_per_s": ess / first,
            "us_per_grad": nan, "grad_evals": int(grads), "lane_util": _lockstep_util(steps), "ess": "bulk"}


def point(name, chains, warmup, draws, sampler) -> dict:
    """One (model, chains, sampler) point."""
    if sampler == "numpyro":
        out = numpyro_point(name, chains, warmup, draws)
    else:
        out = ppl_point(name, chains, warmup, draws, sampler)
    return {"model": name, "chains": chains, "sampler": sampler, "warmup": warmup, "draws": draws, **out}


def samplers(numpyro=True, chains=None):
    """The samplers of a point: ChEES only where ppl has it and with 2 or more chains (its
    warmup averages over chains: one chain is refused), NumPyro's only with ``numpyro``."""
    def runs(s):
        if s == "chees":
            return "chees" in ppl.METHODS and (chains is None or chains >= 2)
        return s != "numpyro" or numpyro
    return [s for s in SAMPLERS if runs(s)]
