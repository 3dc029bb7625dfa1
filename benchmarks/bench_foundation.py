"""Issue-2 benchmark: importance sampling against its floor, MAP against NumPyro.

  1. importance sampling particles/s vs the floor: one jitted, vmapped `log_prob` over the
     same number of particles (goal >= 0.8x the floor); and vs a second floor that also
     draws each particle from the prior (the random numbers dominate small models on CPU);
  2. MAP optimiser steps/s vs NumPyro's SVI with an AutoDelta guide, both with Adam and
     the same number of steps, measured in this run (goal >= 1x NumPyro); also NumPyro's
     `svi.update` run inside one jitted `lax.scan` (its floor without the driver).

Run: python -m benchmarks.bench_foundation [--particles N] [--steps S]
"""
from __future__ import annotations

import argparse
import warnings

import jax
import numpyro
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta

import ppl
from benchmarks._common import best_of, hardware, print_table, timed
from benchmarks._twins import cases
from ppl.sampling.importance import weighted_particle


def importance_vs_floor(name, model, args, kwargs, num_particles):
    method = ppl.Importance(num_particles=num_particles)
    first = ppl.infer(model, *args, method=method, key=0, **kwargs)
    run_s = min(ppl.infer(model, *args, method=method, key=k, **kwargs).timing["run_s"] for k in (1, 2, 3))
    ld = ppl.compile(model, *args, **kwargs)
    z = jax.random.uniform(jax.random.PRNGKey(0), (num_particles, ld.dim), minval=-2, maxval=2)
    floor = jax.jit(jax.vmap(lambda zi, ld: ld.log_prob(zi), in_axes=(0, None)))
    floor_s = best_of(lambda: floor(z, ld))
    keys = jax.random.split(jax.random.PRNGKey(0), num_particles)
    draw = jax.jit(jax.vmap(lambda k, ld: weighted_particle(ld, k, "prior"), in_axes=(0, None)))
    draw_s = best_of(lambda: draw(keys, ld))
    return {
        "model": name, "particles": num_particles,
        "ppl_compile_s": first.timing["compile_s"], "ppl_run_s": run_s,
        "ppl_particles_per_s": num_particles / run_s, "floor_particles_per_s": num_particles / floor_s,
        "ratio_to_floor": floor_s / run_s,
        "floor_with_draw_per_s": num_particles / draw_s, "ratio_to_draw_floor": draw_s / run_s,
    }


def map_vs_numpyro(name, model, model_np, args, kwargs, steps, lr=1e-2):
    method = ppl.MAP(optimizer=optax.adam(lr), num_steps=steps, tolerance=0.0)
    r, first_s = timed(lambda: ppl.infer(model, *args, method=method, key=0, **kwargs))
    run_s = min(ppl.infer(model, *args, method=method, key=k, **kwargs).timing["run_s"] for k in (1, 2, 3))
    done = r.diagnostics["num_steps"]

    svi = SVI(model_np, AutoDelta(model_np), numpyro.optim.Adam(lr), Trace_ELBO())
    run = lambda k: svi.run(jax.random.PRNGKey(k), steps, *args, progress_bar=False, **kwargs).params
    _, np_first = timed(lambda: run(0))
    np_run = min(timed(lambda: run(k))[1] for k in (1, 2, 3))

    state = svi.init(jax.random.PRNGKey(0), *args, **kwargs)
    scan = jax.jit(lambda s: jax.lax.scan(lambda c, _: (svi.update(c, *args, **kwargs)[0], None), s, None, length=steps)[0])
    np_scan = best_of(lambda: scan(state).optim_state)
    return {
        "model": name, "steps": done,
        "ppl_first_call_s": first_s, "numpyro_first_call_s": np_first,
        "ppl_steps_per_s": done / run_s, "numpyro_steps_per_s": steps / np_run,
        "numpyro_scan_steps_per_s": steps / np_scan,
        "speedup_vs_numpyro": (done / run_s) / (steps / np_run),
        "ratio_to_numpyro_scan": (done / run_s) / (steps / np_scan),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--particles", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=2000)
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")  # MAP runs a fixed number of steps (tolerance=0): no convergence warnings
    print("hardware:", hardware())
    rows_is, rows_map = [], []
    for name, (model, model_np, args, kwargs) in cases(["eight_schools", "logreg_5000x25"]).items():
        rows_is.append(importance_vs_floor(name, model, args, kwargs, a.particles))
        rows_map.append(map_vs_numpyro(name, model, model_np, args, kwargs, a.steps))
    print("\nImportance sampling vs the floor (one jitted vmapped log_prob over the same particles)")
    print_table(rows_is, ["model", "particles", "ppl_compile_s", "ppl_run_s", "ppl_particles_per_s",
                          "floor_particles_per_s", "ratio_to_floor", "floor_with_draw_per_s", "ratio_to_draw_floor"])
    print("\nMAP (Adam) vs NumPyro SVI + AutoDelta (Adam), same steps, same run")
    print_table(rows_map, ["model", "steps", "ppl_first_call_s", "numpyro_first_call_s", "ppl_steps_per_s",
                           "numpyro_steps_per_s", "numpyro_scan_steps_per_s", "speedup_vs_numpyro", "ratio_to_numpyro_scan"])
    return rows_is, rows_map


if __name__ == "__main__":
    main()
