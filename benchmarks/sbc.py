"""SBC release gate: `ppl.sbc` for every sampling method on small models, p-values recorded.

  python -m benchmarks.sbc [--simulations 200] [--draws 100] [--methods nuts vi ...]
                           [--models normal_normal ...] [--key 0] [--out benchmarks/results/sbc.json]

prints the table of p-values (the smallest over each cell's scalars) per method x model and
merges the cells into the JSON file (one record per (method, model)). The slow test suite
(tests/slow/test_sbc_release.py) runs the same cells and asserts them.

Models (small, so that 200 simulations of every method take minutes on two CPU cores):
  normal_normal   mu ~ N(0, 2), 10 observations N(mu, 1) (zoo `models.normal_normal`)
  beta_bernoulli  p ~ Beta(2, 2), 20 flips (zoo `models.beta_bernoulli`)
  regression      alpha, beta ~ N(0, 1), sigma ~ Gamma(5, 5), y ~ N(alpha + beta x, sigma),
                  10 points at centred x (the noise prior keeps sigma away from 0, where the
                  posterior is so much narrower than the prior that rejection from the prior
                  would exhaust its proposal budget)
  hierarchical    mu ~ N(0, 1), tau ~ HalfNormal(1), theta_raw[j] ~ N(0, 1),
                  theta = mu + tau theta_raw (deterministic, ranked too), y[j] ~ N(theta[j], 1),
                  4 groups (non-centred)
  mixture         mu1 ~ N(-1.5, 1), mu2 ~ N(1.5, 1), z[i] ~ Bernoulli(0.3),
                  y[i] ~ N(mu_z[i], 1), 6 points (discrete latents: gibbs, importance, rejection)

Methods: every entry of `ppl.METHODS` that gives posterior draws, with settings sized for
SBC (`METHOD_SETTINGS`); the gradient methods and VI need continuous latents, so they skip
`mixture`.

Pass rule: a cell passes when every scalar's p-value exceeds ALPHA / (number of scalars in
the whole grid) (Bonferroni: family-wise error ALPHA = 1% over the grid when every method is
calibrated). Cells in EXPECTED_TO_FAIL are approximations whose miscalibration SBC is meant
to find; they are run and recorded like the others, and reported as expected failures.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import jax.numpy as jnp

import ppl
from models import beta_bernoulli, normal_normal
from ppl import dist
from ppl.sbc import sbc

ALPHA = 0.01
NUM_SIMULATIONS = 200
NUM_DRAWS = 100
RESULTS = Path(__file__).resolve().parent / "results" / "sbc.json"


def regression(x, y=None):
    alpha = ppl.sample("alpha", dist.Normal(0.0, 1.0))
    beta = ppl.sample("beta", dist.Normal(0.0, 1.0))
    sigma = ppl.sample("sigma", dist.Gamma(5.0, 5.0))
    with ppl.plate("data", x.shape[0]):
        ppl.observe("y", dist.Normal(alpha + beta * x, sigma), y)


def hierarchical(sigma, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    tau = ppl.sample("tau", dist.HalfNormal(1.0))
    with ppl.plate("groups", sigma.shape[0]):
        theta_raw = ppl.sample("theta_raw", dist.Normal(0.0, 1.0))
        theta = ppl.deterministic("theta", mu + tau * theta_raw)
        ppl.observe("y", dist.Normal(theta, sigma), y)


def mixture(n, y=None):
    mu1 = ppl.sample("mu1", dist.Normal(-1.5, 1.0))
    mu2 = ppl.sample("mu2", dist.Normal(1.5, 1.0))
    with ppl.plate("data", n):
        z = ppl.sample("z", dist.Bernoulli(0.3))
        ppl.observe("y", dist.Normal(jnp.where(z == 1, mu2, mu1), 1.0), y)


@dataclasses.dataclass(frozen=True)
class Case:
    model: Callable
    args: tuple
    kwargs: dict
    discrete: bool = False
    log_likelihood_bound: float | None = None  # for rejection on discrete latents
    max_proposals: int = 10_000_000  # rejection's proposal budget per run


MIXTURE_N = 6
MODELS = {
    "normal_normal": Case(normal_normal.model, (10,), {"y": jnp.zeros(10)}),
    "beta_bernoulli": Case(beta_bernoulli.model, (20,), {"y": jnp.zeros(20)}),
    "regression": Case(regression, (jnp.linspace(-1.0, 1.0, 10),), {"y": jnp.zeros(10)}),
    "hierarchical": Case(hierarchical, (jnp.ones(4),), {"y": jnp.zeros(4)}),
    # N(y | m, 1) <= 1 / sqrt(2 pi) for every point: a bound of the likelihood for rejection.
    # That bound is loose (the likelihood's maximum over mu and z is lower): about 2% of the
    # simulated data sets accept fewer than 1e-5 of the proposals, hence the larger budget.
    "mixture": Case(mixture, (MIXTURE_N,), {"y": jnp.zeros(MIXTURE_N)}, discrete=True,
                    log_likelihood_bound=-0.5 * MIXTURE_N * math.log(2 * math.pi), max_proposals=100_000_000),
}

# Every method: 4 chains where it has chains; >= NUM_DRAWS effective draws on these models.
METHOD_SETTINGS = {
    "nuts": lambda case: ppl.NUTS(num_warmup=300, num_samples=250),
    "hmc": lambda case: ppl.HMC(num_warmup=300, num_samples=250),
    "mh": lambda case: ppl.MH(num_warmup=1000, num_samples=1000),
    "gibbs": lambda case: ppl.Gibbs(num_warmup=300, num_samples=250),
    "importance": lambda case: ppl.Importance(num_particles=100_000),
    "rejection": lambda case: ppl.Rejection(num_samples=NUM_DRAWS, log_bound=case.log_likelihood_bound,
                                            max_proposals=case.max_proposals),
    "vi": lambda case: ppl.VI(guide="mean_field"),
    "iwae": lambda case: ppl.VI(guide="mean_field", objective=ppl.IWAE(k=10)),
}
NEEDS_CONTINUOUS = {"nuts", "hmc", "mh", "vi", "iwae"}

# (method, model) -> why its draws are not expected to be calibrated. Mean-field VI (and a
# guide fitted by IWAE, whose draws come from the guide) is exact only for a factorised
# Gaussian posterior (normal_normal). On beta_bernoulli (a logit-Beta posterior) and
# regression (sigma's posterior is a skewed, correlated factor) its error is small, and these
# cells pass at 200 simulations: they assert that the error stays below what SBC at this size
# resolves. On the hierarchical model it is large:
EXPECTED_TO_FAIL = {
    ("vi", "hierarchical"): "mean-field VI on a hierarchical posterior: tau's posterior is skewed with "
                            "mass near 0 and couples to every theta_raw (a funnel); a factorised "
                            "Gaussian in log tau cannot follow it and understates its spread",
    ("iwae", "hierarchical"): "draws come from a mean-field Gaussian guide (fitted by IWAE), which cannot "
                              "represent the funnel-shaped tau-theta_raw posterior",
}


def cells(methods=None, models=None):
    """The applicable (method, model) pairs, in table order."""
    out = []
    for method in METHOD_SETTINGS:
        if methods and method not in methods:
            continue
        for model, case in MODELS.items():
            if models and model not in models:
                continue
            if case.discrete and method in NEEDS_CONTINUOUS:
                continue
            out.append((method, model))
    return out


def num_scalars(model: str) -> int:
    ld = ppl.compile(MODELS[model].model, *MODELS[model].args, **MODELS[model].kwargs)
    sites = [lat.shape for lat in ld.spec.latents]
    return int(sum(math.prod(s) for s in sites))


@functools.lru_cache(maxsize=1)
def threshold() -> float:
    """ALPHA / (scalars over the whole grid): the per-scalar Bonferroni threshold."""
    return ALPHA / sum(num_scalars(model) for _, model in cells())


def run_cell(method: str, model: str, num_simulations=NUM_SIMULATIONS, num_draws=NUM_DRAWS, key=0) -> dict:
    """Run SBC of `method` on `model`; return the JSON record of the cell."""
    case = MODELS[model]
    m = METHOD_SETTINGS[method](case)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flags and failures are counted in the record
        r = sbc(case.model, *case.args, method=m, num_simulations=num_simulations,
                num_draws=num_draws, key=key, progress_bar=False, **case.kwargs)
    seconds = time.perf_counter() - t
    frame = r.summary()
    p = {label: float(v) for label, v in frame["p_value"].items()}
    kinds = {}
    for problems in r.flags.values():
        for text in problems:
            kinds[text.split(":")[0]] = kinds.get(text.split(":")[0], 0) + 1
    latent = {lat.name for lat in ppl.compile(case.model, *case.args, **case.kwargs).spec.latents}
    latent_p = [v for label, v in p.items() if label.split("[")[0] in latent]
    return {
        "method": method, "model": model, "settings": repr(m),
        "num_simulations": num_simulations, "num_draws": num_draws, "key": key,
        "p_values": p, "min_p": float(min(latent_p)),
        "mean_rank": {label: float(v) for label, v in frame["mean_rank"].items()},
        "sd_rank": {label: float(v) for label, v in frame["sd_rank"].items()},
        "failed_simulations": int(r.failed.sum()), "flagged_simulations": len(r.flags), "flag_kinds": kinds,
        "failures": {str(k): v for k, v in list(r.failures.items())[:5]},
        "expected_to_fail": EXPECTED_TO_FAIL.get((method, model)),
        "seconds": round(seconds, 2), "timing": {k: v for k, v in r.timing.items() if isinstance(v, float)},
    }


def passed(record: dict, limit: float) -> bool:
    return record["failed_simulations"] == 0 and record["min_p"] > limit


def save(records: list, path: Path = RESULTS) -> None:
    """Merge `records` into the JSON file at `path`, one record per (method, model)."""
    from benchmarks._common import hardware

    old = json.loads(path.read_text()) if path.exists() else {}
    merged = {(c["method"], c["model"]): c for c in old.get("cells", [])}
    merged.update({(c["method"], c["model"]): c for c in records})
    order = {cell: i for i, cell in enumerate(cells())}
    limit = threshold()
    doc = {
        "description": "ppl.sbc p-values (exact ECDF uniformity test) per method x model; see benchmarks/sbc.py",
        "alpha": ALPHA, "threshold": limit, "hardware": hardware(),
        "cells": [dict(c, passed=passed(c, limit)) for _, c in
                  sorted(merged.items(), key=lambda kv: order.get(kv[0], len(order)))],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")


def table(records: list, limit: float) -> str:
    """Markdown table: min p-value per cell (over its scalars), with failed/flagged counts."""
    models = [m for m in MODELS if any(r["model"] == m for r in records)]
    methods = [m for m in METHOD_SETTINGS if any(r["method"] == m for r in records)]
    by = {(r["method"], r["model"]): r for r in records}
    lines = ["| method | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for method in methods:
        row = []
        for model in models:
            r = by.get((method, model))
            if r is None:
                row.append("n/a")
                continue
            mark = "" if passed(r, limit) else (" (expected fail)" if r["expected_to_fail"] else " FAIL")
            extra = f", {r['flagged_simulations']} flagged" if r["flagged_simulations"] else ""
            extra += f", {r['failed_simulations']} failed" if r["failed_simulations"] else ""
            row.append(f"{r['min_p']:.3g}{mark}{extra}")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sbc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simulations", type=int, default=NUM_SIMULATIONS)
    p.add_argument("--draws", type=int, default=NUM_DRAWS)
    p.add_argument("--methods", nargs="*")
    p.add_argument("--models", nargs="*")
    p.add_argument("--key", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    limit = threshold()
    records = []
    for method, model in cells(a.methods, a.models):
        r = run_cell(method, model, a.simulations, a.draws, a.key)
        records.append(r)
        print(f"{method:>10} {model:<15} min p {r['min_p']:.3g}  ({r['seconds']:.0f} s; "
              f"{r['flagged_simulations']} flagged, {r['failed_simulations']} failed)", flush=True)
        save([r], a.out)
    print(f"\nmin p-value over each cell's scalars; pass: > {limit:.3g} (Bonferroni, alpha {ALPHA})\n")
    print(table(records, limit))
    unexpected = [r for r in records if not passed(r, limit) and not r["expected_to_fail"]]
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
