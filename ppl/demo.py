"""`python -m ppl.demo`: fit a few models from the zoo with every registered method and
print a side-by-side table of estimates, log evidence and time.

Each method runs with modest settings so the demo finishes in a few minutes on a laptop;
a method that does not apply to a model (e.g. importance sampling with an improper prior)
is shown with the reason, and a run that was flagged (weights with a Pareto k̂ above 0.7, an
optimiser that has not converged, divergences, ...) shows its first warning in the note
column. A point estimate (MLE, MAP) has no sd: `-`.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np

import ppl

DEMO_MODELS = ("beta_bernoulli", "normal_normal", "linear_regression", "eight_schools_noncentered")

FAST = {
    "nuts": dict(num_warmup=500, num_samples=500),
    "hmc": dict(num_warmup=500, num_samples=500),
    "mh": dict(num_warmup=1000, num_samples=2000),
    "gibbs": dict(num_warmup=200, num_samples=500),
    "vi": dict(num_steps=1000),
    "iwae": dict(num_steps=1000),
}


def _method(name):
    """The registered method with the demo's shorter settings where it has those options."""
    method = ppl.METHODS[name]()
    fields = {f.name for f in dataclasses.fields(method)}
    return dataclasses.replace(method, **{k: v for k, v in FAST.get(name, {}).items() if k in fields})


NOTE_WIDTH = 60


def _headline(result, site):
    """Mean and sd of the site's first scalar; sd None for a single draw (a point estimate)."""
    draws = np.asarray(result.samples[site], float).reshape(result.num_chains * result.num_draws, -1)[:, 0]
    sd = float(draws.std(ddof=1)) if draws.size > 1 else None
    return float(draws.mean()), sd


def _note(result, caught):
    """The run's first warning, short: `k̂=0.93: unreliable` for heavy-tailed weights, else
    the text without its method prefix, cut to NOTE_WIDTH; `(+n)` counts the others.
    Warnings kept in the result come first, then any only raised (`caught`)."""
    texts = list(result.diagnostics.get("warnings") or [])
    texts += [str(w.message) for w in caught
              if issubclass(w.category, UserWarning) and str(w.message) not in texts]
    if not texts:
        return None
    if any("Pareto k̂" in t for t in texts[:1]):
        first = f"k̂={result.diagnostics['pareto_k']:.2f}: unreliable"
    else:
        first = texts[0].split(": ", 1)[-1]
        first = first if len(first) <= NOTE_WIDTH else first[: NOTE_WIDTH - 1] + "…"
    return first + (f" (+{len(texts) - 1})" if len(texts) > 1 else "")


def run(models=DEMO_MODELS, methods=None, key=0):
    from models import ZOO

    methods = list(methods or ppl.METHODS)
    rows = []
    for model_name in models:
        module = ZOO[model_name]
        args, kwargs = module.load()
        for method_name in methods:
            row = {"model": model_name, "method": method_name}
            t = time.perf_counter()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    r = ppl.infer(module.model, *args, method=_method(method_name), key=key, **kwargs)
            except (ValueError, TypeError) as e:
                row["note"] = str(e).split(";")[0][:70]
                rows.append(row)
                continue
            site = r.log_density.spec.latents[0].name
            mean, sd = _headline(r, site)
            row.update(site=site, mean=mean, sd=sd, log_evidence=r.log_evidence,
                       seconds=time.perf_counter() - t, run_s=r.timing["run_s"], note=_note(r, caught))
            rows.append(row)
    return rows


def _fmt(v, width):
    if v is None:
        s = "-"
    elif isinstance(v, float):
        s = "nan" if np.isnan(v) else f"{v:.4g}"
    else:
        s = str(v)
    return s.ljust(width - 1) + " " if width else s  # at least one space between columns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="*", default=list(DEMO_MODELS))
    p.add_argument("--methods", nargs="*", default=None)
    a = p.parse_args(argv)
    rows = run(a.models, a.methods)
    cols = [("model", 27), ("method", 11), ("site", 10), ("mean", 9), ("sd", 9), ("log_evidence", 13),
            ("seconds", 8), ("run_s", 9), ("note", 0)]
    print("".join(c.ljust(w) for c, w in cols))
    for r in rows:
        print("".join(_fmt(r.get(c), w) for c, w in cols))


if __name__ == "__main__":
    main()
