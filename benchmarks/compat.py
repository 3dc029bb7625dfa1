"""NumPyro's own examples under ppl and under NumPyro: do they run with only the import renamed,
do the posteriors agree, and how long does the first call take (issue 17 section 3).

    python -m benchmarks.compat [--reps 1] [--only ar2,gp] [--scale 1.0]

Every case is a file of `tests/compat/` (`test_example_<name>.py`: the example's code with
`numpyro` renamed to `ppl`, its NumPyro twin the same file renamed back; see
`tests/compat/compat_harness.py`). Each side of each case runs in a fresh process (`--one`),
which imports everything, then times the example's own inference code (`run(args, key)`:
`MCMC(NUTS(model)).run`, its `print_summary`, and what the example does with the draws) on
its FIRST call, compilation included, as `numpyro_floor.py` times NumPyro's first call, with
two host devices, as the examples' `set_host_device_count(num_chains)` gives them. The
two sides run one after the other for each case (ppl first, then NumPyro), `--reps` times;
the ratio is the median over repetitions of ppl/NumPyro. Agreement is `compat_harness.agreement`
on the first repetition's draws: |dmean| < 5 MCSE and |log sd ratio| < 5 standard errors for
every scalar, with at least 20 effective draws on each side.

Writes `benchmarks/results/compat.md` (the table) and `benchmarks/results/compat.json`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "tests" / "compat"
RESULTS = ROOT / "benchmarks" / "results"

# case -> (test module, entry, ARGS overrides, note)
CASES = {
    "ar2 (scan)": ("test_example_ar2", "run", {}, ""),
    "ar2 (for loop)": ("test_example_ar2", "run", {"unroll_loop": True}, ""),
    "baseball: fully_pooled": ("test_example_baseball", "run_fully_pooled", {}, "SA imports, unused"),
    "baseball: not_pooled": ("test_example_baseball", "run_not_pooled", {}, "SA imports, unused"),
    "baseball: partially_pooled": ("test_example_baseball", "run", {}, "SA imports, unused"),
    "baseball: partially_pooled_with_logit": ("test_example_baseball", "run_partially_pooled_with_logit", {},
                                              "SA imports, unused"),
    "bnn": ("test_example_bnn", "run", {}, "compared: prec_obs and predictions (weights unidentified)"),
    "funnel (reparam)": ("test_example_funnel", "run", {}, ""),
    "funnel (centred)": ("test_example_funnel", "run", {"centered": True}, "neither sampler mixes"),
    "gp (init_to_median)": ("test_example_gp", "run", {}, ""),
    "gp (init_to_value)": ("test_example_gp", "run", {"init_strategy": "value"}, ""),
    "hmm (semi-supervised)": ("test_example_hmm", "run", {}, ""),
    "holt_winters": ("test_example_holt_winters", "run", {}, ""),
    "horseshoe_regression: normal": ("test_example_horseshoe_regression", "run", {}, ""),
    "horseshoe_regression: bernoulli": ("test_example_horseshoe_regression", "run_bernoulli", {}, ""),
    "mortality": ("test_example_mortality", "run", {}, ""),
    "ode": ("test_example_ode", "run", {}, ""),
    "proportion_test": ("test_example_proportion_test", "run", {}, ""),
    "sparse_regression": ("test_example_sparse_regression", "run", {}, ""),
    "stochastic_volatility": ("test_example_stochastic_volatility", "run", {},
                              "the example's own driver (initialize_model, hmc(algo=\"NUTS\"), fori_collect; "
                              "one chain, as the example)"),
    "ucbadmit": ("test_example_ucbadmit", "run", {}, ""),
    "var2": ("test_example_var2", "run", {}, ""),
    "zero_inflated_poisson (MCMC part)": ("test_example_zero_inflated_poisson", "run", {}, ""),
    "annotation": ("test_example_annotation", "run", {}, "enumeration"),
    "capture_recapture": ("test_example_capture_recapture", "run", {}, "enumeration"),
    "hmm_enum": ("test_example_hmm_enum", "run", {}, "enumeration; compared through label-free quantities; the "
                                                     "emissions agree, the self-transitions have nearby modes no "
                                                     "chain of either side crosses in 300 draws (chain means 0.78 "
                                                     "and 0.80, sd 0.027); ppl recovers the simulated chain "
                                                     "(test_model_1_recovers_the_simulated_chain)"),
    "hmm_enum: model_3": ("test_example_hmm_enum", "run", {"model": "3", "hidden_dim": 4},
                          "two chains w, x in one scan (data of two sticky chains); label-free; NumPyro's "
                          "chains stick on the self-transitions, ppl's mix (test_ppl_mixes_where_numpyro_sticks)"),
    "hmm_enum: model_4": ("test_example_hmm_enum", "run", {"model": "4", "hidden_dim": 4},
                          "x depends on w in one scan (data of two sticky chains); label-free; modes that "
                          "neither side's chains cross"),
    "hmm_enum: model_6": ("test_example_hmm_enum", "run", {"model": "6"},
                          "a second-order chain (history=2), priors masked out as the example does; label-free; "
                          "NumPyro's chains stick, ppl's mix (test_ppl_mixes_where_numpyro_sticks)"),
}

# The SVI examples (ppl.infer.SVI, autoguide, ppl.optim): a fit, not draws, so their
# agreement is each test's own comparison with NumPyro (slow-marked), not the table's.
SVI_EXAMPLES = {
    "toy_mixture_model_discrete_enumeration": ("yes", "fitted probabilities within 0.02 (TraceEnum_ELBO)",
                                               "test_example_toy_mixture_model_discrete_enumeration.py"),
    "zero_inflated_poisson (SVI part)": ("yes", "AutoDelta medians within 0.02, AutoDiagonalNormal within 0.5 guide "
                                         "sd, predictions within 5 MCSE, both fits run to convergence",
                                         "test_example_zero_inflated_poisson.py"),
    "vae": ("yes (simulated images)", "test loss per epoch within 3%", "test_example_vae.py"),
    "thompson_sampling": ("as NumPyro: the example itself fails at numpyro 0.22 (svi.run's 3-field result "
                          "unpacked into 2) and fails the same way under ppl", "the GP fit reaches the same MAP",
                          "test_example_thompson_sampling.py"),
    "minipyro": ("yes", "fitted guide params within 0.01 (mean) and 0.03 (log sd); both reach the exact "
                 "(conjugate) posterior", "test_example_minipyro.py"),
}

# Cases where only part of the example runs under ppl (the rest needs what ppl lacks).
PARTLY = {}

# NumPyro examples left out of the suite, and why.
EXCLUDED = {
    "covtype.py": "HMCECS, SA, NeuTra with AutoBNAFNormal; a 581k-row download",
    "cvae.py / cvae-flax": "flax",
    "dais_demo.py": "AutoDAIS (SVI), seaborn",
    "gaussian_shells.py": "NestedSampler (jaxns), DiscreteHMCGibbs",
    "hmcecs.py": "HMCECS, HIGGS download",
    "hsgp.py": "tensorflow_probability",
    "neutra.py": "AutoBNAFNormal, NeuTraReparam (SVI), seaborn",
    "prodlda.py": "flax, sklearn, wordcloud",
    "ssbvm_mixture.py": "CircularReparam, sklearn KMeans",
    "stein_bnn.py / stein_dmm.py": "SteinVI (numpyro.contrib.einstein); stein_bnn also sklearn and a Boston housing "
                                   "download, stein_dmm a JSB chorales download",
}


def one(case: str, side: str, out: str, scale: float, seed: int, host_devices: int = 1) -> None:
    """Child process: run one side of one case once, timed, and save its draws."""
    # The examples start with set_host_device_count(args.num_chains) (1 chain by default):
    # --host-devices 2 gives what that does with 2 chains (NumPyro runs its chains in
    # parallel, ppl shards them over the devices).
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={host_devices}"])
    sys.path.insert(0, str(COMPAT))
    os.environ.setdefault("NUMPYRO_SPHINXBUILD", "1")
    module_name, entry, overrides, _ = CASES[case]
    record = {"case": case, "side": side}
    try:
        import importlib

        import jax

        import compat_harness

        module = importlib.import_module(module_name)
        if side == "numpyro":
            module = compat_harness.twin(module)
        if entry is None:
            raise NotImplementedError("no MCMC entry")
        args = argparse.Namespace(**{**vars(module.ARGS), **overrides})
        for name in ("num_warmup", "num_samples"):
            setattr(args, name, max(50, int(getattr(args, name) * scale)))
        key = jax.random.PRNGKey(seed)
        fn = getattr(module, entry)
        t0 = time.perf_counter()
        if side == "numpyro":
            samples, note = compat_harness.run_numpyro(lambda: jax.block_until_ready(fn(args, key)))
            if note:
                record["note"] = note + " (time includes the failed attempt)"
        else:
            samples = jax.block_until_ready(fn(args, key))
        record["first_call_s"] = time.perf_counter() - t0
        record["num_chains"] = args.num_chains
        np.savez(out + ".npz", **{k: np.asarray(v) for k, v in samples.items()})
    except BaseException as e:  # noqa: BLE001 - pytest.skip raises a BaseException
        if isinstance(e, KeyboardInterrupt):
            raise
        record["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    Path(out + ".json").write_text(json.dumps(record))


def run_side(case, side, scale, seed, tmp, host_devices=1):
    out = os.path.join(tmp, f"{abs(hash((case, side, time.time())))}")
    cmd = [sys.executable, "-m", "benchmarks.compat", "--one", case, "--side", side, "--out", out,
           "--scale", str(scale), "--seed", str(seed), "--host-devices", str(host_devices)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"case": case, "side": side, "error": "TimeoutExpired: over 900 s"}
    try:
        record = json.loads(Path(out + ".json").read_text())
    except FileNotFoundError:
        record = {"case": case, "side": side, "error": f"process failed (rc {proc.returncode}): "
                                                         f"{proc.stderr.strip().splitlines()[-1:]}"}
    if "error" not in record:
        with np.load(out + ".npz") as z:
            record["samples"] = {k: z[k] for k in z.files}
    return record


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one")
    p.add_argument("--side", choices=["ppl", "numpyro"])
    p.add_argument("--out")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the cases' warmup and draws")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="", help="comma-separated substrings of case names")
    p.add_argument("--merge", action="store_true", help="replace these cases' rows in the existing results")
    p.add_argument("--render", action="store_true", help="only rewrite compat.md from compat.json")
    p.add_argument("--host-devices", type=int, default=1,
                   help="XLA host devices in each run (the examples' set_host_device_count; default 1)")
    a = p.parse_args(argv)
    if a.one:
        return one(a.one, a.side, a.out, a.scale, a.seed, a.host_devices)
    if a.render:
        data = json.loads((RESULTS / "compat.json").read_text())
        return write(data["rows"], a, data["meta"])  # the run's own settings and date

    sys.path.insert(0, str(COMPAT))
    import compat_harness

    cases = [c for c in CASES if not a.only or any(s in c for s in a.only.split(","))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            reps = []
            for r in range(a.reps):
                ours = run_side(case, "ppl", a.scale, a.seed, tmp, a.host_devices)
                theirs = run_side(case, "numpyro", a.scale, a.seed, tmp, a.host_devices) if "error" not in ours or r == 0 else {}
                reps.append((ours, theirs))
            ours, theirs = reps[0]
            note = "; ".join(n for n in (CASES[case][3], theirs.get("note")) if n)
            row = {"case": case, "note": note, "runs_unchanged": "error" not in ours,
                   "ppl_error": ours.get("error"), "numpyro_error": theirs.get("error")}
            times = [(o.get("first_call_s"), t.get("first_call_s")) for o, t in reps]
            times = [(x, y) for x, y in times if x and y]
            if times:
                row["ppl_first_call_s"] = float(np.median([x for x, _ in times]))
                row["numpyro_first_call_s"] = float(np.median([y for _, y in times]))
                row["ratio"] = float(np.median([x / y for x, y in times]))
            if "samples" in ours and "samples" in theirs:
                n = ours["num_chains"]
                # A label-switching example compares label-free quantities (its COMPARE).
                compared = getattr(importlib.import_module(CASES[case][0]), "COMPARE", lambda s: s)
                agree = compat_harness.agreement(compat_harness.by_chain(compared(ours["samples"]), n),
                                                 compat_harness.by_chain(compared(theirs["samples"]), n))
                row["agrees"] = agree.ok
                row["agreement"] = agree.describe()
                row["worst_mean_z"] = agree.worst_mean.z_mean if agree.scalars else None
                row["worst_sd_z"] = agree.worst_sd.z_sd if agree.scalars else None
                row["min_ess"] = list(agree.min_ess) if agree.scalars else None
            rows.append(row)
            print(f"{case}: {'runs' if row['runs_unchanged'] else 'FAILS: ' + str(row['ppl_error'])}; "
                  f"{row.get('agreement', '')}; ratio {row.get('ratio', float('nan')):.2f}", flush=True)
    if a.merge and (RESULTS / "compat.json").exists():
        new = {r["case"]: r for r in rows}
        old = json.loads((RESULTS / "compat.json").read_text())["rows"]
        rows = [new.pop(r["case"], r) for r in old] + list(new.values())
    write(rows, a)


def write(rows, a, meta=None):
    """Write compat.json and compat.md; ``meta``: the measuring run's (``--render``), else this one's."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = [r for r in rows if r["case"] in CASES]  # a case since moved (e.g. to SVI_EXAMPLES) is dropped
    if meta is None:
        meta = {"machine": platform.node(), "cpus": os.cpu_count(), "reps": a.reps, "scale": a.scale, "seed": a.seed,
                "host_devices": a.host_devices,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        try:
            import jax
            import numpyro

            meta.update(jax=jax.__version__, numpyro=numpyro.__version__, device=str(jax.devices()[0]))
        except Exception:  # noqa: BLE001
            pass
    a = argparse.Namespace(**{**vars(a), "reps": meta["reps"], "scale": meta["scale"],
                              "host_devices": meta.get("host_devices", 1)})
    (RESULTS / "compat.json").write_text(json.dumps({"meta": meta, "rows": rows, "excluded": EXCLUDED}, indent=1))
    lines = [
        "# NumPyro's examples under ppl (issue 17 section 3)",
        "",
        f"`python -m benchmarks.compat --reps {a.reps} --scale {a.scale}`; {meta.get('device', '')}, "
        f"{meta['cpus']} cores, {a.host_devices} host device(s) (with 1, NumPyro's MCMC runs the 2 chains one "
        f"after the other and ppl runs them at once on the cores; see compat.2devices.md for 2), jax {meta.get('jax', '?')}, numpyro {meta.get('numpyro', '?')}, {meta['date']}. "
        "Each example's code as it writes it, `numpyro` renamed to `ppl` (tests/compat/test_example_*.py), "
        "small simulated data and settings (2 chains, a few hundred warmup and draws: see each file's ARGS). "
        "First call: the example's inference code in a fresh process, compilation included; ratio = "
        "ppl / NumPyro (median over repetitions; below 1 ppl is faster). Agreement: every scalar within 5 "
        "MCSE (mean) and 5 standard errors (log sd), at least 20 effective draws per side.",
        "",
        "| example | runs unchanged | agrees | worst z (mean / sd) | min ESS (ppl / NumPyro) | first call ppl s | "
        "NumPyro s | ratio | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        unchanged = "yes" if r["runs_unchanged"] else f"no: {r['ppl_error']}"
        if r["runs_unchanged"] and r["case"] in PARTLY:
            unchanged = PARTLY[r["case"]]
        agrees = {True: "yes", False: "**no**", None: "n/a"}[r.get("agrees")]
        if r.get("numpyro_error") and r["runs_unchanged"]:
            agrees = "n/a: NumPyro " + ("needs funsor" if "funsor" in r["numpyro_error"] else r["numpyro_error"])
        z = f"{r['worst_mean_z']:.1f} / {r['worst_sd_z']:.1f}" if r.get("worst_mean_z") is not None else ""
        ess = f"{r['min_ess'][0]:.0f} / {r['min_ess'][1]:.0f}" if r.get("min_ess") else ""
        t = (f"{r['ppl_first_call_s']:.1f} | {r['numpyro_first_call_s']:.1f} | {r['ratio']:.2f}"
             if "ratio" in r else " | | ")
        lines.append(f"| {r['case']} | {unchanged} | {agrees} | {z} | {ess} | {t} | {r['note']} |")
    lines += ["", "Divergent transitions against NumPyro's, over many seeds at the examples' own (larger) "
                  "settings: divergences.md (`python -m benchmarks.divergences`)."]
    lines += ["", "SVI examples (`ppl.infer.SVI`, `ppl.infer.autoguide`, `ppl.optim`; the agreement is each "
                  "test's own comparison with NumPyro, slow-marked):", "",
              "| example | runs unchanged | agrees with NumPyro | test |", "|---|---|---|---|"]
    lines += [f"| {k} | {u} | {agree} | tests/compat/{t} |" for k, (u, agree, t) in SVI_EXAMPLES.items()]
    lines += ["", "Left out (they need a package or an inference algorithm outside ppl's scope, or a download "
                  "that is the data itself):", ""]
    lines += [f"- {k}: {v}" for k, v in EXCLUDED.items()]
    (RESULTS / "compat.md").write_text("\n".join(lines) + "\n")
    print("wrote", RESULTS / "compat.md")


if __name__ == "__main__":
    main()
