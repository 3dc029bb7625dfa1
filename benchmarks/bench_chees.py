"""Effective draws per gradient evaluation: ChEES-HMC with many chains against NUTS.

Models (benchmarks/_twins.py): eight schools non-centred and a 5000 x 25 logistic regression.
NUTS runs at its defaults (4 chains x (1000 warmup + 1000 draws)); ChEES with ``--chains``
chains (1024 by default) x (``--warmup`` + ``--draws``). Both with key 0, in float32.

Reported per run: the smallest and the mean bulk ESS over the scalars (ArviZ, rank-normalised),
gradient evaluations of the sampling phase and of the warmup (step-size heuristic trials
excluded), and ESS per gradient: of the sampling phase (the steady-state efficiency the
ChEES paper compares, Hoffman, Radul & Sountsov 2021) and of the whole run
(warmup included: with a thousand chains, warmup dominates the cost).

Run from the repository root (on a GPU for 1024 chains of the logistic regression; on a
two-core CPU that cell takes several minutes):
    python -m benchmarks.bench_chees [--chains 1024] [--warmup 1000] [--draws 200]
                                     [--models eight_schools logreg_5000x25]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import ppl
from benchmarks._common import print_table
from benchmarks._twins import cases


def measure(name: str, method) -> dict:
    """One run of `method` on the twin `name`: its ESS per gradient evaluation."""
    model, _, args, kwargs = cases([name])[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        r = ppl.infer(model, *args, method=method, key=0, **kwargs)
        seconds = time.perf_counter() - t
    s, d = r.summary(), r.diagnostics
    grads, warm = d["num_grad_evals"], d["num_warmup_grad_evals"]
    return {
        "model": name, "method": r.method.name, "chains": r.num_chains, "draws": r.num_draws,
        "min_ess": float(s["ess_bulk"].min()), "mean_ess": float(s["ess_bulk"].mean()),
        "grads": grads, "warmup_grads": warm,
        "min_ess/grad": float(s["ess_bulk"].min()) / grads,
        "mean_ess/grad": float(s["ess_bulk"].mean()) / grads,
        "min_ess/all_grads": float(s["ess_bulk"].min()) / (grads + warm),
        "max_r_hat": float(s["r_hat"].max()), "divergences": d["divergences"],
        "step_size": float(np.mean(d["step_size"])), "T": d.get("trajectory_length"),
        "seconds": round(seconds, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--models", nargs="+", default=["eight_schools", "logreg_5000x25"])
    a = parser.parse_args(argv)
    rows = []
    for name in a.models:
        rows.append(measure(name, ppl.NUTS(progress_bar=False)))
        rows.append(measure(name, ppl.ChEES(num_chains=a.chains, num_warmup=a.warmup, num_samples=a.draws,
                                            progress_bar=False)))
        print_table(rows[-2:], list(rows[-1]))
        print(f"{name}: ChEES / NUTS, min ESS per sampling gradient: "
              f"{rows[-1]['min_ess/grad'] / rows[-2]['min_ess/grad']:.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
