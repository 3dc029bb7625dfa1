"""How NUTS's cost grows with the number of chains, the data size N and the dimension d.

Each point runs `ppl.NUTS` with its default `chain_method="auto"` (on a single CPU device,
one group of chains per core, run at the same time, the chains of a group one after another;
elsewhere one program with the chains as a vmap axis: on a 2-core CPU, 64 vectorised
eight-schools chains ran 2.3x slower than 64 sequential ones) and records the cost per
gradient evaluation: `us_per_grad` = wall run time / total leapfrog steps over all chains
(warmup included), so perfect vectorisation over chains shows as a cost per gradient that
falls as 1/chains, sequential chains as a flat line, and concurrent groups as a flat line
divided by the number of cores. Beside it, NumPyro's NUTS kernel on the same model (through the bridge)
run in one jitted `lax.scan` and vmapped over chains (`benchmarks.bench_mcmc.numpyro_kernel_floor`),
and NumPyro's bare jitted gradient (`numpyro_grad_us`, one chain).

Axes:
  chains  eight schools (non-centred), chains 1, 4, 16, 64, 256, 1024
  N       logistic regression with d = 5, N = 1e3, 1e4, 1e5 (4 chains)
  d       logistic regression with N = 1000, d = 5, 25, 100, 400 (4 chains)
  many    1 to 4096 vectorised chains: NUTS as lanes and in lockstep, ChEES, NumPyro's
          vectorised NUTS, on three models (`benchmarks.many_chains`)
"""
from __future__ import annotations

import time
import warnings

import jax

import ppl
from benchmarks import harness, many_chains
from benchmarks._common import hardware
from benchmarks.bench_mcmc import numpyro_kernel_floor
from benchmarks.bridge import to_numpyro

FULL_AXES = {"chains": [1, 4, 16, 64, 256, 1024], "N": [1_000, 10_000, 100_000], "d": [5, 25, 100, 400],
             "many": list(many_chains.FULL_CHAINS)}
QUICK_AXES = {"chains": [1, 4, 16], "N": [1_000, 10_000], "d": [5, 25], "many": list(many_chains.QUICK_CHAINS)}
FULL_ITERS, QUICK_ITERS = (500, 500), (100, 100)
AXIS_CHAINS = 4


def _case(axis, value):
    """(model name, module, args, kwargs, chains) of one point."""
    from models import ZOO

    if axis == "chains":
        try:
            m = ZOO["eight_schools_noncentered"]
            args, kwargs = m.load()
            return "eight_schools_noncentered", m, args, kwargs, int(value)
        except FileNotFoundError:  # no reference folder: a small logistic regression instead
            m = ZOO["logistic_regression"]
            args, kwargs = m.load(n=100, d=5)
            return "logistic_regression(n=100,d=5)", m, args, kwargs, int(value)
    m = ZOO["logistic_regression"]
    n, d = (int(value), 5) if axis == "N" else (1000, int(value))
    args, kwargs = m.load(n=n, d=d)
    return f"logistic_regression(n={n},d={d})", m, args, kwargs, AXIS_CHAINS


def point(axis, value, warmup, draws, numpyro=True) -> dict:
    """One scaling point: ppl's cost per gradient and, with `numpyro`, NumPyro's."""
    name, m, args, kwargs, chains = _case(axis, value)
    method = ppl.NUTS(num_warmup=warmup, num_samples=draws, num_chains=chains, progress_bar=False)
    harness._clear_ppl_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ppl.infer(m.model, *args, method=method, key=0, **kwargs)
    d = r.diagnostics
    grads = int(d["num_grad_evals"]) + int(d["num_warmup_grad_evals"])
    out = {
        "axis": axis, "value": value, "model": name, "chains": chains, "warmup": warmup, "draws": draws,
        "device": harness.device_label(jax.devices()[0]),
        "compile_s": r.timing["compile_s"], "run_s": r.timing["run_s"], "grad_evals": grads,
        "us_per_grad": r.timing["run_s"] / grads * 1e6,
        "us_per_iteration": r.timing["run_s"] / (warmup + draws) * 1e6,
        "ess_per_s": harness.min_bulk_ess(r.samples) / r.timing["run_s"],
    }
    if numpyro:
        per_leapfrog, grad_s = numpyro_kernel_floor(to_numpyro(m.model), tuple(args), dict(kwargs), chains, warmup, draws)
        out["numpyro_us_per_grad"] = per_leapfrog * 1e6
        out["numpyro_grad_us"] = grad_s * 1e6
        out["ratio_to_numpyro"] = out["us_per_grad"] / out["numpyro_us_per_grad"]
    return {k: harness._clean(v) for k, v in out.items()}


def run_scaling(axes=None, values=None, quick=False, out_dir=harness.RESULTS_DIR, numpyro=True, log=print,
                models=None):
    """Run the scaling points and merge them into the results file; return its path.
    ``models``: the many axis's models (default `many_chains.MODELS`, quick: QUICK_MODELS)."""
    grid = QUICK_AXES if quick else FULL_AXES
    axes = list(axes or grid)
    warmup, draws = QUICK_ITERS if quick else FULL_ITERS
    hw = hardware()
    path = harness.results_path(out_dir, quick, hw)
    data = harness.load_results(path)
    data.update(harness.header(hw, quick, harness.QUICK if quick else harness.FULL))
    scaling = data.setdefault("scaling", {})
    for axis in axes:
        if axis not in grid:
            raise ValueError(f"unknown scaling axis {axis!r}; choose from {sorted(grid)}.")
        if axis == "many":
            models = models or (many_chains.QUICK_MODELS if quick else many_chains.MODELS)
            unknown = sorted(set(models) - set(many_chains.MODELS))
            if unknown:
                raise ValueError(f"unknown many-chains model(s) {unknown}; choose from {list(many_chains.MODELS)}.")
            _run_many(values or grid[axis], models, warmup, draws, numpyro, scaling, path, data, log)
            continue
        for value in (values or grid[axis]):
            t = time.perf_counter()
            p = point(axis, value, warmup, draws, numpyro=numpyro)
            scaling.setdefault(axis, {})[str(value)] = p
            harness.save_results(path, data)
            np_part = (f" | numpyro {p['numpyro_us_per_grad']:.2f} us/grad (x{p['ratio_to_numpyro']:.2f})"
                       if "numpyro_us_per_grad" in p else "")
            log(f"scaling {axis}={value:<7} {p['model']:<34} chains {p['chains']:<5} ppl {p['us_per_grad']:.2f} us/grad "
                f"(compile {p['compile_s']:.1f}s, run {p['run_s']:.2f}s){np_part} [{time.perf_counter() - t:.0f}s]")
    return path


def _run_many(chain_counts, models, warmup, draws, numpyro, scaling, path, data, log):
    """The many-chains points (`benchmarks.many_chains`), saved one by one."""
    many = scaling.setdefault("many", {})
    for name in models:
        for chains in chain_counts:
            for sampler in many_chains.samplers(numpyro, chains):
                t = time.perf_counter()
                p = {k: harness._clean(v) for k, v in many_chains.point(name, chains, warmup, draws, sampler).items()}
                many[f"{name}/{chains}/{sampler}"] = p
                harness.save_results(path, data)
                def fmt(key, spec):  # NaN is saved as None (ChEES has no lanes; see many_chains)
                    return "-" if p[key] is None else format(p[key], spec)

                log(f"many {name:<16} chains {chains:<5} {sampler:<14} first {p['first_s']:.2f}s "
                    f"(compile {fmt('compile_s', '.2f')}s) ESS/s {p['ess_per_s']:.0f} us/grad "
                    f"{fmt('us_per_grad', '.2f')} lane util {fmt('lane_util', '.3f')} [{time.perf_counter() - t:.0f}s]")
