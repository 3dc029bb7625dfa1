"""Issue-3 benchmark: ppl's NUTS against NumPyro's, measured in the same run.

Per model (eight schools non-centred, kidiq, logistic regression 5000 x 25) and chain count
(1 and 4, 1000 warmup + 1000 draws), NumPyro is timed three ways as in
shared/peers/numpyro_floor.py: its driver `MCMC(NUTS(model)).run` (first call and repeat),
its NUTS kernel inside one jitted `lax.scan` (the floor for that kernel), and one bare jitted
gradient. Printed ratios (ppl / NumPyro unless stated):

  first_call     end-to-end wall time of the first call, compile included (goal <= 0.5);
                 NumPyro with its default vectorized chains. On a single CPU device ppl runs
                 groups of chains at once on the cores (chain_method="auto"), so with several
                 chains NumPyro is also timed with chain_method="parallel" and one XLA CPU
                 device per chain (`numpyro_parallel_first_s`, `first_call_vs_parallel`)
  compile        ppl compile_s vs NumPyro's first-minus-repeat (goal <= 0.5)
  disk_first_call, disk_compile   the same for ppl in a later process whose disk compile
                 cache holds the program (trace + lower + load instead of compiling), vs
                 NumPyro's (which has no such cache unless the user configures jax's
                 persistent compilation cache)

First calls are timed each in a fresh Python process (after the imports and a small neutral
JAX program), so neither library pays the process's start-up or warms the other's caches;
each first-call figure is the median of `--repeats` (3) such processes, run interleaved.
ppl's first process compiles into an empty temporary cache; the second loads from it.
  us_per_leapfrog  steady-state wall time per leapfrog vs NumPyro's kernel in one scan (goal
                 <= 1.2); with several chains ppl's concurrent groups use all cores, so
  one_thread_us_per_leapfrog  gives the same with ppl's chains one after another on one
                 thread (chain_method="sequential")
  vs_grad_floor  ppl run time / (gradient evaluations x one jitted gradient) (goal <= 1.2)
  vs_value_grad_floor  the same with the floor of one jitted value AND gradient of ppl's log
                 density, both used (a leapfrog needs the log density for its energy; a bare
                 `jax.grad` lets XLA drop the likelihood's sum, e.g. logreg's 5000 softplus)
  ess_per_grad   min bulk ESS per sampling-phase gradient evaluation, ppl / NumPyro (about 1)

Run: python -m benchmarks.bench_mcmc [--models eight_schools kidiq logreg_5000x25] [--chains 1 4]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC
from numpyro.infer import NUTS as NumPyroNUTS
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model

import ppl
from benchmarks._common import hardware, hardware_label, print_table, timed, warm_up_jax
from benchmarks._twins import cases
from ppl.runtime import program as _program
from ppl.method.diagnostics import scalar_diagnostics


def min_bulk_ess(samples: dict) -> float:
    ess = [scalar_diagnostics(np.asarray(v, float).reshape(v.shape[0], v.shape[1], -1))["ess_bulk"]
           for v in samples.values()]
    return float(np.nanmin(np.concatenate(ess)))


def numpyro_kernel_floor(model_np, args, kwargs, chains, warmup, draws):
    """NumPyro's NUTS kernel in one jitted scan over warmup + draws, vmapped over chains."""
    info = initialize_model(jax.random.PRNGKey(0), model_np, model_args=args, model_kwargs=kwargs)
    init_kernel, sample_kernel = hmc(info.potential_fn, algo="NUTS")
    states = jax.vmap(lambda k: init_kernel(info.param_info, num_warmup=warmup, rng_key=k))(
        jax.random.split(jax.random.PRNGKey(1), chains))

    def run_all(s):
        def body(c, _):
            c = jax.vmap(sample_kernel)(c)
            return c, c.num_steps
        return jax.lax.scan(body, s, None, length=warmup + draws)

    run = jax.jit(run_all)
    timed(lambda: run(states))
    (_, steps), t = timed(lambda: run(states))
    grad = jax.grad(info.potential_fn)
    z0 = info.param_info.z

    @jax.jit
    def grads(z):
        def body(i, c):
            g = grad(jax.tree.map(lambda a: a + 1e-6 * i, c))
            return jax.tree.map(lambda a, b: a - 1e-9 * b, c, g)
        return jax.lax.fori_loop(0, 2000, body, z)

    timed(lambda: grads(z0))
    _, tg = timed(lambda: grads(z0))
    return t / float(np.sum(steps)), tg / 2000


def first_calls(library, name, chains, warmup, draws, cache_dir=None, chain_method="vectorized"):
    """Run in a fresh process (see `_child`): one library's first call of NUTS on model `name`
    after its imports and a neutral JAX warm-up, then a repeat call. Returns seconds:
    `first_s`, `repeat_s` and `compile_s` (ppl's own timing; NumPyro: first - repeat)."""
    warnings.simplefilter("ignore")
    model, model_np, args, kwargs = cases([name])[name]
    warm_up_jax()
    if library == "ppl":
        _program.set_compile_cache(cache_dir)
        method = ppl.NUTS(num_warmup=warmup, num_samples=draws, num_chains=chains, progress_bar=False)
        first, t_first = timed(lambda: ppl.infer(model, *args, method=method, key=0, **kwargs))
        _, t_repeat = timed(lambda: ppl.infer(model, *args, method=method, key=1, **kwargs).samples)
        return {"first_s": t_first, "repeat_s": t_repeat, "compile_s": first.timing["compile_s"],
                "source": first.timing["compile_source"]}
    mcmc = MCMC(NumPyroNUTS(model_np), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method=chain_method, progress_bar=False)
    _, t_first = timed(lambda: (mcmc.run(jax.random.PRNGKey(0), *args, **kwargs), mcmc.get_samples())[1])
    _, t_repeat = timed(lambda: (mcmc.run(jax.random.PRNGKey(1), *args, **kwargs), mcmc.get_samples())[1])
    return {"first_s": t_first, "repeat_s": t_repeat, "compile_s": t_first - t_repeat}


def _child(*call_args, host_devices=None):
    """`first_calls(*call_args)` in a new Python process: nothing imported, traced or compiled
    before (a user's first call), and neither library warming the other's caches. With
    `host_devices`, XLA shows that many CPU devices (what NumPyro's parallel chains need)."""
    code = f"import json; from benchmarks.bench_mcmc import first_calls; print(json.dumps(first_calls(*{call_args!r})))"
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    if host_devices:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={host_devices}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    if out.returncode:
        raise RuntimeError(f"first-call child {call_args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def value_and_grad_floor(ld, evaluations=2000):
    """Seconds per `jax.value_and_grad` of ppl's log density with both outputs kept, timed
    in one jitted fori_loop (the data as an argument, as in ppl's programs)."""
    vg = jax.value_and_grad(lambda z, ld: ld.log_joint(z).total)

    @jax.jit
    def loop(z, ld):
        def body(i, c):
            z, acc = c
            v, g = vg(z + 1e-6 * i, ld)
            return z - 1e-9 * g, acc + v
        return jax.lax.fori_loop(0, evaluations, body, (z, jnp.zeros((), z.dtype)))

    z0 = jnp.zeros(ld.dim, jnp.result_type(float))
    timed(lambda: loop(z0, ld))
    return min(timed(lambda: loop(z0, ld))[1] for _ in range(3)) / evaluations


def _median_runs(runs):
    return {k: float(np.median([r[k] for r in runs])) for k in ("first_s", "repeat_s", "compile_s")}


def bench(name, model, model_np, args, kwargs, chains, warmup, draws, repeats=3):
    colds, warms, peers, parallel = [], [], [], []
    for _ in range(repeats):  # interleaved, so that a slow spell of the machine hits them all
        cache = tempfile.mkdtemp(prefix="ppl-bench-cache-")
        colds.append(_child("ppl", name, chains, warmup, draws, cache))  # compiles, fills the cache
        warms.append(_child("ppl", name, chains, warmup, draws, cache))  # a later process: loads it
        assert colds[-1]["source"] == "compiled" and warms[-1]["source"] == "disk", (colds[-1], warms[-1])
        peers.append(_child("numpyro", name, chains, warmup, draws))
        if chains > 1:  # NumPyro's own parallel chains: one XLA CPU device per chain
            parallel.append(_child("numpyro", name, chains, warmup, draws, None, "parallel",
                                   host_devices=chains))
    cold, warm, peer = _median_runs(colds), _median_runs(warms), _median_runs(peers)
    par = _median_runs(parallel) if parallel else None

    # Steady state, in this process.
    method = ppl.NUTS(num_warmup=warmup, num_samples=draws, num_chains=chains, progress_bar=False)
    ppl.infer(model, *args, method=method, key=0, **kwargs)
    repeat = ppl.infer(model, *args, method=method, key=1, **kwargs)
    d = repeat.diagnostics
    grads = d["num_grad_evals"] + d["num_warmup_grad_evals"]
    ppl_us = repeat.timing["run_s"] / grads * 1e6
    one_core_us = ppl_us
    if chains > 1:  # the same chains one after another in one program, on one thread
        one = dataclasses.replace(method, chain_method="sequential")
        ppl.infer(model, *args, method=one, key=0, **kwargs)
        r = ppl.infer(model, *args, method=one, key=1, **kwargs)
        one_core_us = r.timing["run_s"] / (r.diagnostics["num_grad_evals"] + r.diagnostics["num_warmup_grad_evals"]) * 1e6

    mcmc = MCMC(NumPyroNUTS(model_np), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(1), *args, extra_fields=("num_steps",), **kwargs)
    np_samples = mcmc.get_samples(group_by_chain=True)
    np_grads = float(np.sum(mcmc.get_extra_fields()["num_steps"]))
    kernel_s, grad_s = numpyro_kernel_floor(model_np, args, kwargs, chains, warmup, draws)
    ppl_ess_per_grad = min_bulk_ess(repeat.samples) / d["num_grad_evals"]
    np_ess_per_grad = min_bulk_ess(np_samples) / np_grads
    np_compile = max(peer["compile_s"], 1e-9)
    return {
        "model": name, "chains": chains,
        "ppl_first_s": cold["first_s"], "numpyro_first_s": peer["first_s"],
        "first_call": cold["first_s"] / peer["first_s"],
        "numpyro_parallel_first_s": par["first_s"] if par else float("nan"),
        "first_call_vs_parallel": cold["first_s"] / par["first_s"] if par else float("nan"),
        "ppl_compile_s": cold["compile_s"], "numpyro_compile_s": peer["compile_s"],
        "compile": cold["compile_s"] / np_compile,
        "ppl_disk_first_s": warm["first_s"], "disk_first_call": warm["first_s"] / peer["first_s"],
        "ppl_disk_compile_s": warm["compile_s"], "disk_compile": warm["compile_s"] / np_compile,
        "ppl_us_per_leapfrog": ppl_us, "numpyro_kernel_us": kernel_s * 1e6,
        "us_per_leapfrog": ppl_us / (kernel_s * 1e6),
        "ppl_one_thread_us": one_core_us, "one_thread_us_per_leapfrog": one_core_us / (kernel_s * 1e6),
        "vs_grad_floor": repeat.timing["run_s"] / (grads * grad_s),
        "vs_value_grad_floor": repeat.timing["run_s"] / (grads * value_and_grad_floor(repeat.log_density)),
        "ess_per_grad": ppl_ess_per_grad / np_ess_per_grad,
        "divergences": d["divergences"],
    }


COLUMNS = ["model", "chains", "ppl_first_s", "numpyro_first_s", "first_call", "numpyro_parallel_first_s",
           "first_call_vs_parallel", "ppl_compile_s",
           "numpyro_compile_s", "compile", "ppl_disk_first_s", "disk_first_call", "ppl_disk_compile_s",
           "disk_compile", "ppl_us_per_leapfrog", "numpyro_kernel_us", "us_per_leapfrog",
           "ppl_one_thread_us", "one_thread_us_per_leapfrog",
           "vs_grad_floor", "vs_value_grad_floor", "ess_per_grad", "divergences"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--chains", nargs="*", type=int, default=[1, 4])
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per first-call figure (median)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                   help="folder for bench_mcmc_<hardware>.json (the printed table, with the hardware)")
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")
    hw = hardware()
    print("hardware:", hw, flush=True)
    warm_up_jax()
    rows = []
    for name, (model, model_np, args, kwargs) in cases(a.models).items():
        for chains in a.chains:
            t = time.perf_counter()
            rows.append(bench(name, model, model_np, args, kwargs, chains, a.warmup, a.draws, a.repeats))
            print(f"  {name} x{chains} done in {time.perf_counter() - t:.0f}s", flush=True)
    print()
    print_table(rows, COLUMNS)
    if a.out:
        path = Path(a.out) / f"bench_mcmc_{hardware_label(hw)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        settings = {"warmup": a.warmup, "draws": a.draws}
        path.write_text(json.dumps({"hardware": hw, "settings": settings, "rows": rows}, indent=1, default=float))
        print(f"results: {path}")
    return rows


if __name__ == "__main__":
    main()
