"""Gibbs with enumerated assignments vs NumPyro, on a Gaussian mixture (same run, same data).

Model (`models.gmm`): N points, K well-separated components, ordered means, per-component
scales, Dirichlet weights. Three samplers, 4 chains each unless said otherwise:

  ppl Gibbs           explicit assignments z: z by vectorised enumeration (O(N K) per sweep),
                      (weights, mu, sigma) by one NUTS transition per sweep
  NumPyro DHMCG       DiscreteHMCGibbs(NUTS) on the same explicit-assignment model
  NumPyro NUTS (marg) NUTS on the hand-marginalised model (MixtureSameFamily)

Reported: sweeps (iterations) per second and ESS per second of the component means (bulk
ESS, min over the K means and mean over them), time = warmup + sampling, compilation
excluded (ppl: `timing["run_s"]`; NumPyro: a second `MCMC.run` with `jit_model_args=True`,
which reuses the compiled program). All start at the same initial values (data quantiles).

Run: python -m benchmarks.bench_gibbs [--n 10000] [--warmup 500] [--samples 1000]
     [--dhmcg-warmup 100] [--dhmcg-samples 200] [--dhmcg-chains 1] [--dhmcg-once] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from models import gmm
from ppl.method.diagnostics import scalar_diagnostics


def _ess(mu):
    """Bulk ESS of each component mean; `mu` has shape (chains, draws, K)."""
    return scalar_diagnostics(np.asarray(mu, float))["ess_bulk"]


def run_ppl(x, k, warmup, samples, chains, key=0):
    g = ppl.Gibbs(num_warmup=warmup, num_samples=samples, num_chains=chains, init=gmm.init_values(x, k),
                  progress_bar=False)
    r = ppl.infer(gmm.model, jnp.asarray(x), k=k, method=g, key=key)
    r2 = ppl.infer(gmm.model, jnp.asarray(x), k=k, method=g, key=key + 1)  # cached program
    return dict(mu=r2.samples["mu"], run_s=r2.timing["run_s"], compile_s=r.timing["compile_s"],
                iterations=warmup + samples, chains=chains, schedule=r2.diagnostics["schedule"],
                divergences=r2.diagnostics["divergences"])


def _numpyro_models(k):
    import numpyro
    import numpyro.distributions as nd
    from numpyro.distributions import constraints

    def params():
        weights = numpyro.sample("weights", nd.Dirichlet(jnp.ones(k)))
        mu = numpyro.sample("mu", nd.ImproperUniform(constraints.ordered_vector, (), (k,)))
        numpyro.factor("mu_prior", nd.Normal(0.0, 10.0).log_prob(mu).sum())
        with numpyro.plate("components", k):
            sigma = numpyro.sample("sigma", nd.HalfNormal(2.0))
        return weights, mu, sigma

    def explicit(x):
        weights, mu, sigma = params()
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", nd.Categorical(weights))
            numpyro.sample("x", nd.Normal(mu[z], sigma[z]), obs=x)

    def marginal(x):
        weights, mu, sigma = params()
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", nd.MixtureSameFamily(nd.Categorical(weights), nd.Normal(mu, sigma)), obs=x)

    return explicit, marginal


def run_numpyro(kernel_name, x, k, warmup, samples, chains, key=0, once=False):
    from numpyro.infer import MCMC, NUTS, DiscreteHMCGibbs, init_to_value

    explicit, marginal = _numpyro_models(k)
    init = init_to_value(values=gmm.init_values(x, k))
    if kernel_name == "dhmcg":
        kernel = DiscreteHMCGibbs(NUTS(explicit, init_strategy=init))
    else:
        kernel = NUTS(marginal, init_strategy=init)
    method = "vectorized" if chains > 1 else "sequential"
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains, chain_method=method,
                progress_bar=False, jit_model_args=True)
    xj = jnp.asarray(x)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(key), xj)
    mu = mcmc.get_samples(group_by_chain=True)["mu"]
    jax.block_until_ready(mu)
    first = time.perf_counter() - t0
    if once:  # a very slow sampler: one call only; run_s then includes its (small) compilation
        return dict(mu=np.asarray(mu), run_s=first, compile_s=float("nan"), iterations=warmup + samples,
                    chains=chains)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(key + 1), xj)
    mu = mcmc.get_samples(group_by_chain=True)["mu"]
    jax.block_until_ready(mu)
    run_s = time.perf_counter() - t0
    return dict(mu=np.asarray(mu), run_s=run_s, compile_s=max(first - run_s, 0.0), iterations=warmup + samples,
                chains=chains)


def row(name, out):
    ess = _ess(out["mu"])
    sweeps = out["iterations"] * out["chains"] / out["run_s"]
    return dict(method=name, chains=out["chains"], iterations=out["iterations"], run_s=out["run_s"],
                compile_s=out["compile_s"], sweeps_per_s=sweeps, ess_min=float(np.min(ess)),
                ess_mean=float(np.mean(ess)), ess_min_per_s=float(np.min(ess)) / out["run_s"],
                ess_mean_per_s=float(np.mean(ess)) / out["run_s"],
                mu_mean=np.asarray(out["mu"]).reshape(-1, out["mu"].shape[-1]).mean(0).round(3).tolist())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--dhmcg-warmup", type=int, default=100)
    p.add_argument("--dhmcg-samples", type=int, default=200)
    p.add_argument("--dhmcg-chains", type=int, default=1)
    p.add_argument("--skip-dhmcg", action="store_true")
    p.add_argument("--dhmcg-once", action="store_true",
                   help="run DiscreteHMCGibbs once and time it compilation included (it is slow)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    x, _ = gmm.simulate(0, a.n)
    print(f"GMM N={a.n} K={a.k}, true means {gmm.TRUE_MU.tolist()}; jax {jax.__version__} on {jax.devices()[0].platform}")
    rows = []
    out = run_ppl(x, a.k, a.warmup, a.samples, a.chains)
    print("ppl schedule:", out["schedule"], "divergences:", out["divergences"])
    rows.append(row("ppl Gibbs (enumerate z + NUTS)", out))
    rows.append(row("NumPyro NUTS, marginalised", run_numpyro("nuts", x, a.k, a.warmup, a.samples, a.chains)))
    if not a.skip_dhmcg:
        rows.append(row("NumPyro DiscreteHMCGibbs(NUTS)",
                        run_numpyro("dhmcg", x, a.k, a.dhmcg_warmup, a.dhmcg_samples, a.dhmcg_chains,
                                    once=a.dhmcg_once)))
    head = f"{'method':34s} {'chains':>6s} {'iters':>6s} {'run_s':>8s} {'compile_s':>9s} {'sweeps/s':>9s} " \
           f"{'ESS min':>8s} {'ESS/s min':>9s} {'ESS/s mean':>10s}"
    print(head)
    for r in rows:
        print(f"{r['method']:34s} {r['chains']:6d} {r['iterations']:6d} {r['run_s']:8.2f} {r['compile_s']:9.1f} "
              f"{r['sweeps_per_s']:9.1f} {r['ess_min']:8.0f} {r['ess_min_per_s']:9.2f} {r['ess_mean_per_s']:10.2f}")
    for r in rows:
        print(f"  {r['method']}: posterior mean of mu = {r['mu_mean']}")
    ours = rows[0]["ess_min_per_s"]
    for r in rows[1:]:
        print(f"ESS/s (min over means) ratio ppl / {r['method']}: {ours / r['ess_min_per_s']:.1f}x")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
