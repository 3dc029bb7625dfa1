"""Issue-5 benchmark: variational inference against NumPyro and against its floor, and the
VAE comparison of ELBO- and IWAE-trained models.

  1. optimiser steps/s of `ppl.VI` (mean_field / full_rank, ELBO with one particle, Adam)
     vs NumPyro's `SVI` with `AutoNormal` / `AutoMultivariateNormal` on the same models in
     the same run (goal >= 2x): NumPyro timed with `svi.run`, as users call it, and with
     `svi.update` inside one jitted `lax.scan` (its floor without the driver);
  2. IWAE particles/s vs the floor of one jitted, vmapped log-joint per particle (goal
     >= 0.8x): the bound over K particles from a fitted mean-field guide, as the method
     computes it, against `vmap(ld.log_prob)` over K given points, and against a second
     floor that also draws each point from the guide (one normal draw per particle);
     and training particles/s (IWAE k particles per step) for reference;
  3. the VAE on the 8x8 digits trained with ELBO, IWAE k=5 and k=50; held-out
     log-likelihood per digit by IWAE k=5000 with each model's encoder (Burda et al. 2016);
  4. a VRNN on simulated sequences: loss before and after, steps/s.

Run: python -m benchmarks.bench_vi [--steps S] [--particles K] [--vae-steps N] [--quick]
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as nd
import optax
from jax.scipy.special import logsumexp
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

import ppl
from benchmarks._common import best_of, hardware, print_table, timed
from benchmarks._twins import cases
from models import linear_gaussian as lg
from models import vae_digits, vrnn


def linear_gaussian_np(A, b, sigma, s0, x=None, n: int = 10):
    z = numpyro.sample("z", nd.Normal(jnp.zeros(A.shape[1]), s0).to_event(1))
    with numpyro.plate("obs", n if x is None else x.shape[0]):
        numpyro.sample("x", nd.Normal(A @ z + b, sigma).to_event(1), obs=x)


def all_cases():
    out = cases(["eight_schools", "logreg_5000x25"])
    d = lg.simulate(seed=3, d=10, p=20, n=200)
    args, kwargs = lg.args(d)
    out["linear_gaussian_10x200"] = (lg.model, linear_gaussian_np, args, kwargs)
    return out


AUTOGUIDES = {"mean_field": AutoNormal, "full_rank": AutoMultivariateNormal}


def steps_vs_numpyro(name, model, model_np, args, kwargs, guide, steps, lr=1e-2):
    method = ppl.VI(guide=guide, optimizer=optax.adam(lr), num_steps=steps, num_draws=1, num_eval_particles=1)
    _, first_s = timed(lambda: ppl.infer(model, *args, method=method, key=0, **kwargs))
    svi = SVI(model_np, AUTOGUIDES[guide](model_np), numpyro.optim.Adam(lr), Trace_ELBO())
    run = lambda k: svi.run(jax.random.PRNGKey(k), steps, *args, progress_bar=False, **kwargs).params
    _, np_first = timed(lambda: run(0))
    np_run = min(timed(lambda: run(k))[1] for k in (1, 2, 3))
    state = svi.init(jax.random.PRNGKey(0), *args, **kwargs)
    scan = jax.jit(lambda s: jax.lax.scan(lambda c, _: (svi.update(c, *args, **kwargs)[0], None), s, None, length=steps)[0])
    jax.block_until_ready(scan(state).optim_state)
    # Interleaved repeats, minimum of each: the machine may be shared.
    run_s, np_scan = float("inf"), float("inf")
    for k in range(1, 8):
        run_s = min(run_s, ppl.infer(model, *args, method=method, key=k, **kwargs).timing["run_s"])
        np_scan = min(np_scan, timed(lambda: scan(state).optim_state)[1])
    return {
        "model": name, "guide": guide, "steps": steps,
        "ppl_first_call_s": first_s, "numpyro_first_call_s": np_first,
        "ppl_steps_per_s": steps / run_s, "numpyro_steps_per_s": steps / np_run,
        "numpyro_scan_steps_per_s": steps / np_scan,
        "speedup_vs_numpyro": np_run / run_s, "ratio_to_numpyro_scan": np_scan / run_s,
    }


def iwae_vs_floor(name, model, args, kwargs, num_particles, k=10, steps=500):
    ld = ppl.compile(model, *args, **kwargs)
    method = ppl.VI(objective=ppl.IWAE(k=k), num_steps=steps, num_draws=1, num_eval_particles=1)
    ppl.infer(model, *args, method=method, key=0, **kwargs)
    train_s = min(ppl.infer(model, *args, method=method, key=s, **kwargs).timing["run_s"] for s in (1, 2, 3))

    fam = method._family(ld)
    state, _ = fam.init(jax.random.PRNGKey(0))

    def bound(state, key, ld):
        f = ppl.VI(objective=ppl.IWAE(k=num_particles))._family(ld)
        log_w = f.particles_values(state, key, num_particles)[0].log_weight
        return logsumexp(log_w) - math.log(num_particles)

    bound = jax.jit(bound)
    key = jax.random.PRNGKey(1)
    bound_s = best_of(lambda: bound(state, key, ld))
    z = jax.random.normal(key, (num_particles, ld.dim))
    floor = jax.jit(jax.vmap(lambda zi, ld: ld.log_prob(zi), in_axes=(0, None)))
    floor_s = best_of(lambda: floor(z, ld))

    def draw_floor(key, ld):
        eps = jax.random.normal(key, (num_particles, ld.dim))
        return jax.vmap(ld.log_prob)(state[0]["loc"] + eps)

    draw_floor = jax.jit(draw_floor)
    draw_s = best_of(lambda: draw_floor(key, ld))
    return {
        "model": name, "particles": num_particles,
        "iwae_particles_per_s": num_particles / bound_s, "floor_particles_per_s": num_particles / floor_s,
        "ratio_to_floor": floor_s / bound_s, "ratio_to_draw_floor": draw_s / bound_s,
        f"train_iwae{k}_particles_per_s": steps * k / train_s,
    }


def vae_comparison(steps, eval_k, batch=100, seed=0):
    data = vae_digits.load()
    rows = []
    for label, objective in [("ELBO", ppl.ELBO()), ("IWAE k=5", ppl.IWAE(k=5, plate="data")),
                             ("IWAE k=50", ppl.IWAE(k=50, plate="data"))]:
        model, guide = vae_digits.make(seed)
        method = ppl.VI(guide=guide, objective=objective, optimizer=optax.adam(1e-3), num_steps=steps,
                        num_draws=10, num_eval_particles=100)
        t = time.perf_counter()
        r = ppl.infer(model, data.train, batch_size=batch, method=method, key=seed)
        wall = time.perf_counter() - t
        t = time.perf_counter()
        ll = vae_digits.held_out_log_likelihood(model, r, data.test, k=eval_k, key=1)
        eval_s = time.perf_counter() - t
        err, base = vae_digits.reconstruction_error(r, data.test, data.train)
        rows.append({
            "objective": label, "steps": steps, "compile_s": r.timing["compile_s"], "run_s": r.timing["run_s"],
            "train_bound_per_digit": r.log_evidence / data.train.shape[0],
            f"test_ll_iwae{eval_k}": ll, "eval_s": eval_s, "recon_mse": err, "mean_image_mse": base,
            "wall_s": wall,
        })
    return rows


def vrnn_run(steps, n=128, length=20, batch=32):
    x = vrnn.simulate(n=n, length=length)
    model, guide = vrnn.make(0)
    method = ppl.VI(guide=guide, optimizer=optax.adam(3e-3), num_steps=steps, num_draws=10, num_eval_particles=100)
    r = ppl.infer(model, x, batch_size=batch, method=method, key=0)
    loss = r.diagnostics["loss"]
    m = max(1, steps // 20)
    return [{"model": f"vrnn {n}x{length}", "steps": steps, "compile_s": r.timing["compile_s"],
             "steps_per_s": steps / r.timing["run_s"], "loss_first": float(loss[:m].mean()),
             "loss_last": float(loss[-m:].mean()), "elbo_per_seq": r.log_evidence / n}]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--particles", type=int, default=10_000)
    p.add_argument("--vae-steps", type=int, default=3000)
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--vrnn-steps", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--skip", nargs="*", default=[], choices=["steps", "iwae", "vae", "vrnn"])
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.particles, a.vae_steps, a.eval_k, a.vrnn_steps = 200, 1000, 50, 50, 20
    warnings.simplefilter("ignore")
    print("hardware:", hardware())
    out = {}
    if "steps" not in a.skip:
        rows = [steps_vs_numpyro(name, m, m_np, args, kw, g, a.steps)
                for name, (m, m_np, args, kw) in all_cases().items() for g in AUTOGUIDES]
        print("\nVI (ELBO, 1 particle, Adam) vs NumPyro SVI + AutoNormal / AutoMultivariateNormal, same steps, same run")
        print_table(rows, ["model", "guide", "steps", "ppl_first_call_s", "numpyro_first_call_s", "ppl_steps_per_s",
                           "numpyro_steps_per_s", "numpyro_scan_steps_per_s", "speedup_vs_numpyro", "ratio_to_numpyro_scan"])
        out["steps"] = rows
    if "iwae" not in a.skip:
        rows = [iwae_vs_floor(name, m, args, kw, a.particles) for name, (m, _, args, kw) in all_cases().items()]
        print("\nIWAE bound over K particles vs the floor (vmapped log_prob over K given points; and with a normal draw each)")
        print_table(rows, ["model", "particles", "iwae_particles_per_s", "floor_particles_per_s", "ratio_to_floor",
                           "ratio_to_draw_floor", "train_iwae10_particles_per_s"])
        out["iwae"] = rows
    if "vae" not in a.skip:
        rows = vae_comparison(a.vae_steps, a.eval_k)
        print("\nVAE on 8x8 digits (1500 train / 297 test, latent 8, MLP 128x2, batch 100, Adam 1e-3)")
        print_table(rows, list(rows[0]))
        out["vae"] = rows
    if "vrnn" not in a.skip:
        rows = vrnn_run(a.vrnn_steps)
        print("\nVRNN on simulated oscillations")
        print_table(rows, list(rows[0]))
        out["vrnn"] = rows
    return out


if __name__ == "__main__":
    main()
