"""Divergent transitions, ppl against NumPyro, over many seeds at each example's own settings
(issue 17 section 2: "find out why ppl diverges more").

    python -m benchmarks.divergences [--seeds 20] [--only horseshoe] [--scale 1.0] [--merge]

A divergence count is heavy-tailed: most runs of the horseshoe regression diverge a few dozen
times, and 3 in 50 more than a hundred (a chain that wanders into the funnel at small tau: 254
and 595 at most, measured on each side), so a run or two a side says little. Each case
runs the example's own code (`tests/compat/test_example_<name>.py`, and its NumPyro twin:
the same file with the import renamed back) with one chain per seed, at the example's own
data size and warmup/draws (its `main()` defaults, not the compat suite's small ones), and
counts the divergences after warmup (`MCMC.get_extra_fields()["diverging"]`), the adapted step
size and the mean acceptance statistic after warmup. Both sides run in this process, ppl's
seeds first.

Writes `benchmarks/results/divergences.md` and `benchmarks/results/divergences.json`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from benchmarks.compat import COMPAT, RESULTS  # the examples' files, and where results go


class Case(NamedTuple):
    """An example: its compat module, its data (``data``, words), its ``warmup`` and ``draws``
    (its ``main()`` defaults), and ``call(module, key, warmup, draws) -> MCMC`` running the
    example's inference code with one chain."""

    module: str
    data: str
    warmup: int
    draws: int
    call: Callable


def _horseshoe_bernoulli(module, key, warmup, draws):
    import compat_harness

    # The example's main(): N = args.num_data (100), D_X = 32.
    args = argparse.Namespace(num_data=100, num_warmup=warmup, num_samples=draws, num_chains=1)
    X, Y = module.get_data(N=args.num_data, D_X=32, response="binary")
    return compat_harness.last_mcmc(module, module.run_inference, module.model_bernoulli_likelihood, args, key, X, Y)


def _semi_supervised_hmm(module, key, warmup, draws):
    import compat_harness

    # The example's defaults: 3 categories, 10 words, 100 supervised and 500 unsupervised words.
    args = argparse.Namespace(num_categories=3, num_words=10, num_supervised=100, num_unsupervised=500,
                              num_warmup=warmup, num_samples=draws, num_chains=1, unroll_loop=False)
    return compat_harness.last_mcmc(module, module.run, args, key)


CASES = {
    "horseshoe_regression: bernoulli": Case("test_example_horseshoe_regression", "N 100, D 32", 1000, 2000,
                                            _horseshoe_bernoulli),
    "hmm (semi-supervised)": Case("test_example_hmm", "100 + 500 words", 500, 1000, _semi_supervised_hmm),
}


def settings(case: str, scale: float) -> tuple:
    """``(warmup, draws)`` of ``case`` with both multiplied by ``scale`` (at least 20)."""
    c = CASES[case]
    return max(20, int(c.warmup * scale)), max(20, int(c.draws * scale))


class Run(NamedTuple):
    """One seed of one side: divergent transitions after warmup in NumPyro's sense (an energy
    error above 1000, or a non-finite one: ppl counts the latter apart, as numerical failures
    of the model, ``nonfinite``; None for NumPyro, which does not tell them apart), the
    draws, the adapted step size and the mean acceptance statistic after warmup."""

    seed: int
    divergences: int
    nonfinite: Optional[int]
    draws: int
    step_size: float
    accept: float


def measure(case: str, side: str, seeds, scale: float = 1.0) -> list:
    """The :class:`Run` of each seed of ``case`` on ``side`` ("ppl" or "numpyro")."""
    import importlib

    import jax

    if str(COMPAT) not in sys.path:
        sys.path.insert(0, str(COMPAT))
    import compat_harness  # (sets the examples' switch for progress_bar=False before they load)

    module = importlib.import_module(CASES[case].module)
    if side == "numpyro":
        module = compat_harness.twin(module)
    warmup, draws = settings(case, scale)
    runs = []
    for seed in seeds:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            mcmc = CASES[case].call(module, jax.random.PRNGKey(seed), warmup, draws)
        diverging = np.asarray(mcmc.get_extra_fields()["diverging"])
        nonfinite = None
        if side == "ppl":
            stats = mcmc.result.diagnostics["sample_stats"]
            step, accept = np.asarray(stats["step_size"]).ravel()[-1], np.mean(stats["acceptance_rate"])
            nonfinite = int(np.sum(stats["nonfinite"]))
        else:
            step, accept = mcmc.last_state.adapt_state.step_size, np.mean(mcmc.last_state.mean_accept_prob)
        runs.append(Run(int(seed), int(diverging.sum()) + (nonfinite or 0), nonfinite, int(diverging.size),
                        float(step), float(accept)))
    return runs


def summarise(runs) -> dict:
    """Median, quartiles, mean and maximum of the divergence counts; runs above 100; ppl's
    non-finite ones in all; mean and sd of the step sizes; mean acceptance."""
    div = np.array([r.divergences for r in runs])
    steps = np.array([r.step_size for r in runs])
    q1, med, q3 = np.percentile(div, [25, 50, 75])
    nonfinite = [r.nonfinite for r in runs if r.nonfinite is not None]
    return {"seeds": len(runs), "nonfinite": int(sum(nonfinite)) if nonfinite else None, "median": float(med),
            "q1": float(q1), "q3": float(q3), "mean": float(div.mean()), "max": int(div.max()),
            "over_100": int((div > 100).sum()), "step_mean": float(steps.mean()),
            "step_sd": float(steps.std(ddof=1)) if len(runs) > 1 else 0.0,
            "accept_mean": float(np.mean([r.accept for r in runs]))}


def render(data: dict) -> str:
    meta = data["meta"]
    lines = ["# Divergences after warmup, ppl against NumPyro (issue 17 section 2)", "",
             f"`python -m benchmarks.divergences --scale {meta['scale']}` (seeds: each row's); "
             f"{meta.get('device', '')}, {meta['cpus']} cores, jax {meta.get('jax', '?')}, numpyro "
             f"{meta.get('numpyro', '?')}, {meta['date']}. Each example's own code and settings, one chain per "
             "seed (seeds 0..n-1 on each side; the two sides' random streams differ, so seeds are not paired). "
             "Divergences in NumPyro's sense (energy error above 1000 or not finite; ppl counts the non-finite ones "
             "apart, as numerical failures of the model: their total is the last column): median [quartiles], "
             "mean, maximum, and runs with more than 100. Mean acceptance: "
             "the sampler's acceptance statistic averaged over the draws (both sides target 0.8 in warmup).", "",
             "| example | settings | side | seeds | divergences median [q1, q3] | mean | max | runs > 100 | "
             "step size mean (sd) | mean acceptance | of which non-finite (ppl) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case, sides in data["cases"].items():
        warmup, draws = settings(case, meta["scale"])
        for side, s in sides.items():
            lines.append(f"| {case} | {CASES[case].data}, {warmup} warmup + {draws} draws, 1 chain | {side} | "
                         f"{s['seeds']} | "
                         f"{s['median']:.0f} [{s['q1']:.0f}, {s['q3']:.0f}] | {s['mean']:.1f} | {s['max']} | "
                         f"{s['over_100']} | {s['step_mean']:.4f} ({s['step_sd']:.4f}) | {s['accept_mean']:.3f} | "
                         f"{'' if s.get('nonfinite') is None else s['nonfinite']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--only", default="", help="comma-separated substrings of case names")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the cases' warmup and draws")
    p.add_argument("--out", default=str(RESULTS), help="folder for divergences.md and divergences.json")
    p.add_argument("--merge", action="store_true",
                   help="keep the existing results: other cases as they are, and the seeds already run of these")
    a = p.parse_args(argv)
    import jax
    import numpyro

    meta = {"machine": platform.node(), "cpus": os.cpu_count(), "seeds": a.seeds, "scale": a.scale,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "jax": jax.__version__,
            "numpyro": numpyro.__version__, "device": str(jax.devices()[0])}
    out = Path(a.out)
    data = {"meta": meta, "cases": {}, "runs": {}}
    if a.merge and (out / "divergences.json").exists():
        old = json.loads((out / "divergences.json").read_text())
        if old["meta"]["scale"] != a.scale:
            raise SystemExit(f"--merge: the existing results ran at --scale {old['meta']['scale']}, not {a.scale}.")
        data["cases"], data["runs"] = old["cases"], old["runs"]
    for case in CASES:
        if a.only and not any(s in case for s in a.only.split(",")):
            continue
        for side in ("ppl", "numpyro"):
            # With --merge, the seeds already measured are kept and only the others run.
            kept = [Run(**r) for r in data["runs"].get(case, {}).get(side, [])]
            seeds = [i for i in range(a.seeds) if i not in {r.seed for r in kept}]
            runs = sorted(kept + measure(case, side, seeds, a.scale), key=lambda r: r.seed)
            data["cases"].setdefault(case, {})[side] = summarise(runs)
            data["runs"].setdefault(case, {})[side] = [r._asdict() for r in runs]
            s = data["cases"][case][side]
            print(f"{case} / {side}: divergences median {s['median']:.0f}, mean {s['mean']:.1f}, max {s['max']}; "
                  f"step {s['step_mean']:.4f}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "divergences.json").write_text(json.dumps(data, indent=1))
    (out / "divergences.md").write_text(render(data))
    print("wrote", out / "divergences.md")


if __name__ == "__main__":
    main()
