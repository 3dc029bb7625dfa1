"""Time ppl's NUTS against NumPyro's NUTS kernel, both run in one jitted program.

Models (hand-written flat-vector log densities ``logdensity(z, data)``, shared by both
samplers so that the gradient cost is identical; the data are arguments of the compiled
program, as ``ppl.compile`` passes them, not baked-in constants): eight schools non-centred (mu, log tau, theta_raw[8];
HalfCauchy(5) on tau with the log-Jacobian) and a 5000 x 25 logistic regression (w[25], b).

For each model and for 1 chain and 4 vmapped chains, 1000 warmup + 1000 draws:
  ours:    jax.jit(vmap(run_chain(kernel=nuts.build_kernel())))  (one scan: warmup + draws)
  numpyro: numpyro.infer.hmc.hmc(potential_fn, algo="NUTS") with its own windowed adaptation,
           init_kernel then sample_kernel iterated 2000 times in ONE jitted lax.scan
           (as /work/shared/peers/numpyro_floor.py).
Compile time is one jax.jit(f).lower(args).compile() call (trace and lowering included; a
second call would hit JAX's in-memory cache); run time is the best of ``--repeats`` calls of the compiled program. Reported:
microseconds per leapfrog (run time divided by the leapfrog steps of all chains, warmup
included) and the ratios ours / numpyro.

Run from the repository root:
    python -m benchmarks.bench_kernels [--repeats 3] [--models eight_schools,logreg]
"""
import argparse
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ppl.mcmc import driver, nuts

NUM_WARMUP, NUM_SAMPLES = 1000, 1000


def eight_schools():
    """Flat log density of eight schools, non-centred; z = (mu, log tau, theta_raw[8])."""
    data = (jnp.array([28.0, 8, -3, 7, -1, 1, 18, 12]), jnp.array([15.0, 10, 16, 11, 9, 11, 10, 18]))

    def logdensity(z, data):
        y, sigma = data
        mu, log_tau, theta_raw = z[0], z[1], z[2:]
        tau = jnp.exp(log_tau)
        lp = -0.5 * (mu / 5.0) ** 2
        lp += -jnp.log1p((tau / 5.0) ** 2) + log_tau  # HalfCauchy(5) + log|d tau / d log tau|
        lp += -0.5 * jnp.sum(theta_raw ** 2)
        lp += -0.5 * jnp.sum(((y - mu - tau * theta_raw) / sigma) ** 2)
        return lp

    return logdensity, 10, data


def logistic_regression():
    """Flat log density of a 5000 x 25 logistic regression; z = (w[25], b)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 25)).astype(np.float32)
    w = rng.normal(size=25)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(x @ w)))).astype(np.float32)
    data = (jnp.asarray(x), jnp.asarray(y))

    def logdensity(z, data):
        x, y = data
        w, b = z[:-1], z[-1]
        logits = x @ w + b
        return -0.5 * jnp.sum(z ** 2) + jnp.sum(y * logits - jnp.logaddexp(0.0, logits))

    return logdensity, 26, data


def ours(logdensity, dim, data, num_chains):
    """Our NUTS with Stan warmup; returns (fn, args); fn -> (draws, leapfrogs per chain)."""
    kernel = nuts.build_kernel()

    def run(keys, z0, data):
        run_chain = partial(driver.run_chain, logdensity_fn=partial(logdensity, data=data),
                            kernel=kernel, num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES,
                            target_accept=0.8)
        draws, infos, adapt = jax.vmap(lambda k, z: run_chain(k, z0=z))(keys, z0)
        return draws, adapt.num_warmup_grad_evals + jnp.sum(infos.num_steps, axis=1)

    return run, _inputs(dim, num_chains) + (data,)


def numpyro_nuts(logdensity, dim, data, num_chains):
    """NumPyro's NUTS kernel (its own windowed adaptation) iterated in one lax.scan."""
    from numpyro.infer.hmc import hmc

    def run(keys, z0, data):
        init_kernel, sample_kernel = hmc(potential_fn=lambda z: -logdensity(z, data), algo="NUTS")
        state = jax.vmap(lambda k, z: init_kernel(z, num_warmup=NUM_WARMUP, rng_key=k))(keys, z0)

        def body(s, _):
            s = jax.vmap(sample_kernel)(s)
            return s, (s.z, s.num_steps)

        _, (zs, steps) = jax.lax.scan(body, state, None, length=NUM_WARMUP + NUM_SAMPLES)
        return zs, jnp.sum(steps, axis=0)

    return run, _inputs(dim, num_chains) + (data,)


def _inputs(dim, num_chains):
    keys = jax.random.split(jax.random.PRNGKey(1), num_chains)
    z0 = jax.random.uniform(jax.random.PRNGKey(2), (num_chains, dim), minval=-2, maxval=2)
    return keys, z0


def time_it(build, model, num_chains, repeats):
    """(compile seconds, best run seconds, total leapfrogs over chains)."""
    fn, args = build(*model, num_chains)
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        _, steps = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
    return compile_s, best, int(np.sum(steps))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="eight_schools,logreg")
    parser.add_argument("--chains", default="1,4")
    a = parser.parse_args()
    models = {"eight_schools": eight_schools, "logreg": logistic_regression}
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {NUM_WARMUP} warmup + "
          f"{NUM_SAMPLES} draws per chain; us/lf = best run time / leapfrogs summed over chains")
    header = ("model", "chains", "ours us/lf", "numpyro us/lf", "ratio", "ours compile s",
              "numpyro compile s", "ratio", "ours lf", "numpyro lf")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in a.models.split(","):
        model = models[name]()
        for chains in [int(c) for c in a.chains.split(",")]:
            oc, ot, osteps = time_it(ours, model, chains, a.repeats)
            nc, nt, nsteps = time_it(numpyro_nuts, model, chains, a.repeats)
            o_us, n_us = ot / osteps * 1e6, nt / nsteps * 1e6
            print(f"| {name} | {chains} | {o_us:.2f} | {n_us:.2f} | {o_us / n_us:.2f} | {oc:.2f} | "
                  f"{nc:.2f} | {oc / nc:.2f} | {osteps} | {nsteps} |", flush=True)


if __name__ == "__main__":
    main()
