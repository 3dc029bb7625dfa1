"""The benchmark matrix: models x methods x devices, ppl and NumPyro side by side.

One *cell* is one model, one entry of `ppl.METHODS` and one device. It records

- `status`: "ok", "skipped" (the method's `check` rejects the model; `reason` says why) or
  "error" (the run raised; `reason` holds the message);
- `ppl` and `numpyro` (None where the method has no NumPyro twin, see `benchmarks.peers`):
  `compile_s`, `run_s`, `grad_evals` (warmup included), `sampling_grad_evals`,
  `logdensity_evals`, `ess` (min bulk ESS over all scalars; importance: the weights' ESS;
  rejection: the number of exact draws), `ess_per_s` (= ess / run_s), `ess_per_grad`
  (= ess / sampling_grad_evals), `ref_worst_z` and `ref_worst_sd_ratio` (against the
  posteriordb reference: max |mean - ref mean| / ref sd, and the sd / ref sd farthest from 1),
  `exact_worst_z` and `exact_worst_sd_ratio` (the same against a closed-form posterior;
  point estimates are compared with the exact mode), `log_evidence` and `evidence_error`
  (estimate - exact log p(data)), `divergences`, `peak_bytes` (the device's
  `memory_stats()["peak_bytes_in_use"]` after the run: a high-water mark of the process,
  None on CPU);
- `first_call_s`: wall time of the user-facing call, compilation included (`ppl.infer`;
  NumPyro's `MCMC.run` / `SVI.run`); `compile_s`/`run_s` split the same work as one compiled
  program (NumPyro's kernel in one `lax.scan`, see `benchmarks.peers`);
- `ratios`: `speedup_run` (NumPyro run_s / ppl run_s, steady state), `speedup_first_call`
  (NumPyro first_call_s / ppl first_call_s), `compile` (ppl compile_s / NumPyro's),
  `ess_per_s` and `ess_per_grad` (ppl / NumPyro).

Results go to `<out>/<hardware label>[-quick].json`, cells keyed "model/method/device" and
merged into what the file already holds, written after every cell.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import time
import traceback
import warnings
from pathlib import Path
from typing import Optional

import jax
import numpy as np
import optax

import ppl
from benchmarks import peers
from benchmarks._common import hardware, hardware_label, print_table, warm_up_jax
from benchmarks.bench_mcmc import min_bulk_ess
from ppl.mcmc.sampler import MH, _MCMC

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------ settings
@dataclasses.dataclass(frozen=True)
class Settings:
    """The sizes every method runs with (NumPyro's twin gets the same)."""

    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    mh_warmup: int = 2000
    mh_draws: int = 5000
    gibbs_warmup: int = 500
    gibbs_draws: int = 1000
    particles: int = 10_000
    rejection_draws: int = 1000
    max_proposals: int = 10_000_000
    vi_steps: int = 2000
    vi_draws: int = 1000
    eval_particles: int = 1000
    map_steps: int = 2000
    map_lr: float = 0.05


FULL = Settings()
QUICK = Settings(chains=2, warmup=200, draws=200, mh_warmup=500, mh_draws=1000, gibbs_warmup=200, gibbs_draws=200,
                 particles=2000, rejection_draws=500, max_proposals=1_000_000, vi_steps=300, vi_draws=500,
                 eval_particles=500, map_steps=300)

QUICK_MODELS = ("beta_bernoulli", "eight_schools_noncentered")
# Sizes of synthetic data in the full matrix (the module defaults otherwise).
FULL_SIZES = {"logistic_regression": {"n": 5000, "d": 25}, "gmm": {"n": 200}}
# Models beyond models.ZOO run by the full matrix: discrete latents (Gibbs vs DiscreteHMCGibbs).
EXTRA_MODELS = ("gmm",)


def map_optimizer(s: Settings):
    """Adam with a cosine-decayed learning rate: the one optax object both MAPs use."""
    return optax.adam(optax.cosine_decay_schedule(s.map_lr, s.map_steps, alpha=0.02))


def configure(name: str, s: Settings):
    """The method `ppl.METHODS[name]` with the benchmark's sizes (fields it lacks are left)."""
    method = ppl.METHODS[name]()
    fields = {f.name for f in dataclasses.fields(method)}
    if isinstance(method, MH):
        over = dict(num_chains=s.chains, num_warmup=s.mh_warmup, num_samples=s.mh_draws)
    elif isinstance(method, ppl.Gibbs):
        over = dict(num_chains=s.chains, num_warmup=s.gibbs_warmup, num_samples=s.gibbs_draws)
    elif isinstance(method, _MCMC):
        over = dict(num_chains=s.chains, num_warmup=s.warmup, num_samples=s.draws)
    elif isinstance(method, ppl.Importance):
        over = dict(num_particles=s.particles)
    elif isinstance(method, ppl.Rejection):
        over = dict(num_samples=s.rejection_draws, max_proposals=s.max_proposals)
    elif isinstance(method, ppl.VI):
        over = dict(num_steps=s.vi_steps, num_draws=s.vi_draws, num_eval_particles=s.eval_particles)
    elif isinstance(method, ppl.MAP):
        over = dict(optimizer=map_optimizer(s), num_steps=s.map_steps, tolerance=0.0)
    elif isinstance(method, ppl.MLE):
        over = {}
    else:  # a method added later: give it the MCMC sizes where its fields match
        over = dict(num_chains=s.chains, num_warmup=s.warmup, num_samples=s.draws, num_particles=s.particles)
    over["progress_bar"] = False
    return dataclasses.replace(method, **{k: v for k, v in over.items() if k in fields})


def kind_of(method) -> str:
    """"mcmc", "weighted", "exact", "point", "variational" or "other"."""
    if isinstance(method, (_MCMC, ppl.Gibbs)):
        return "mcmc"
    if isinstance(method, ppl.Importance):
        return "weighted"
    if isinstance(method, ppl.Rejection):
        return "exact"
    if isinstance(method, ppl.MLE):
        return "point"
    if isinstance(method, ppl.VI):
        return "point" if method.guide == "delta" else "variational"
    return "other"


# ------------------------------------------------------------------------------ models
@dataclasses.dataclass
class ModelEntry:
    name: str
    module: object
    args: tuple
    kwargs: dict


def available_models() -> tuple:
    from models import ZOO

    return tuple(ZOO) + EXTRA_MODELS


def load_model(name: str, quick: bool) -> ModelEntry:
    """The zoo module `models.<name>` with its data (FULL_SIZES in the full matrix)."""
    import importlib

    from models import ZOO

    module = ZOO.get(name) or importlib.import_module(f"models.{name}")
    sizes = {} if quick else FULL_SIZES.get(name, {})
    args, kwargs = module.load(**sizes)
    return ModelEntry(name, module, tuple(args), dict(kwargs))


# ------------------------------------------------------------------------------ devices
def device_label(d) -> str:
    return f"{d.platform}:{d.id}"


def select_devices(spec=None) -> list:
    """Devices to run on: by default the first device of the default backend and, when that
    is an accelerator, the first CPU too. `spec`: a list of "all", "cpu", "gpu", "tpu" or labels."""
    default = jax.devices()
    if not spec:
        out = [default[0]]
        if default[0].platform != "cpu":
            out.append(jax.devices("cpu")[0])
        return out
    out = []
    for s in spec:
        if s == "all":
            out.extend(default)
        elif ":" in s:
            out.extend(d for d in _all_devices() if device_label(d) == s)
        else:
            out.extend(jax.devices(s)[:1])
    return list(dict.fromkeys(out))


def _all_devices():
    out = []
    for backend in ("cpu", "gpu", "tpu"):
        try:
            out.extend(jax.devices(backend))
        except RuntimeError:
            pass
    return out


def peak_bytes(device) -> Optional[int]:
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


# ------------------------------------------------------------------------------ metrics
def _moments(frozen):
    """(mean, sd) arrays of a frozen scipy distribution, univariate or multivariate."""
    if hasattr(frozen, "cov"):
        return np.asarray(frozen.mean, float), np.sqrt(np.diag(np.atleast_2d(frozen.cov)))
    return np.asarray(frozen.mean(), float), np.asarray(frozen.std(), float)


def _known(entry: ModelEntry, attr: str):
    fn = getattr(entry.module, attr, None)
    if fn is None:
        return None
    try:
        return fn(*entry.args, **entry.kwargs)
    except (ValueError, TypeError):  # e.g. linear_regression without a known sigma
        return None


def _worst_ratio(r) -> Optional[float]:
    r = np.asarray(r, float)
    r = r[np.isfinite(r) & (r > 0)]
    return float(r[np.argmax(np.abs(np.log(r)))]) if r.size else None


def accuracy(entry: ModelEntry, samples: dict, point: bool) -> dict:
    """Reference and closed-form accuracy of `samples` (site -> (chains, draws, ...))."""
    out = {}
    mod = entry.module
    if hasattr(mod, "REFERENCE") and hasattr(mod, "to_reference"):
        from models._reference import compare

        try:
            df = compare(mod.to_reference(samples), mod.REFERENCE)
            out["ref_worst_z"] = float(df["z"].max())
            out["ref_worst_sd_ratio"] = None if point else _worst_ratio(df["sd_ratio"])
        except (FileNotFoundError, KeyError) as e:
            out["ref_error"] = str(e)
    exact = _known(entry, "exact_posterior")
    if isinstance(exact, dict):
        mode = _known(entry, "exact_mode") if point else None
        zs, ratios = [], []
        for site, frozen in exact.items():
            if site not in samples:
                continue
            mean, sd = _moments(frozen)
            x = np.asarray(samples[site], float).reshape((-1,) + np.shape(mean))
            if point:
                if mode is None or site not in mode:
                    continue
                zs.append(np.abs(x[0] - np.asarray(mode[site], float)) / sd)
            else:
                zs.append(np.abs(x.mean(0) - mean) / sd)
                ratios.append(x.std(0, ddof=1) / sd)
        if zs:
            out["exact_worst_z"] = float(np.max(np.concatenate([np.ravel(z) for z in zs])))
        if ratios:
            out["exact_worst_sd_ratio"] = _worst_ratio(np.concatenate([np.ravel(r) for r in ratios]))
    return out


def evidence(entry: ModelEntry, log_evidence) -> dict:
    if log_evidence is None:
        return {}
    out = {"log_evidence": float(log_evidence)}
    truth = _known(entry, "exact_log_evidence")
    if truth is not None:
        out["exact_log_evidence"] = float(truth)
        out["evidence_error"] = float(log_evidence) - float(truth)
    return out


def ppl_metrics(entry: ModelEntry, method, r) -> dict:
    """The cell's numbers for a ppl `Result`."""
    kind = kind_of(method)
    d = r.diagnostics
    m = {"compile_s": r.timing.get("compile_s"), "run_s": r.timing.get("run_s")}
    if isinstance(method, MH):
        m["logdensity_evals"] = d.get("num_grad_evals", 0) + d.get("num_warmup_grad_evals", 0)
    elif "num_grad_evals" in d:
        m["sampling_grad_evals"] = int(d["num_grad_evals"])
        m["grad_evals"] = int(d["num_grad_evals"]) + int(d.get("num_warmup_grad_evals", 0))
    if kind == "point" and "num_steps" in d:
        m["grad_evals"] = int(d["num_steps"])
    if kind == "variational":
        obj = method.objective
        m["grad_evals"] = int(method.num_steps) * int(obj.particles_per_step)
    if kind == "weighted":
        m["logdensity_evals"] = int(method.num_particles)
        m["ess"] = float(d["ess_weights"])
    if kind == "exact":
        m["logdensity_evals"] = int(d.get("num_proposals", 0))
        m["ess"] = float(r.num_draws)
    if kind == "mcmc":
        m["ess"] = min_bulk_ess(r.samples)
        m["divergences"] = d.get("divergences")
    m.update(accuracy(entry, r.samples, kind == "point"))
    m.update(evidence(entry, r.log_evidence))
    return _derived(m)


def peer_metrics(entry: ModelEntry, method, p: peers.PeerRun) -> dict:
    kind = kind_of(method)
    m = {"peer": p.peer, "first_call_s": p.first_call_s, "compile_s": p.compile_s, "run_s": p.run_s,
         "grad_evals": p.grad_evals,
         "sampling_grad_evals": p.sampling_grad_evals, "divergences": p.divergences}
    if kind == "mcmc":
        m["ess"] = min_bulk_ess(p.samples)
    m.update(accuracy(entry, p.samples, kind == "point"))
    m.update(evidence(entry, p.log_evidence))
    return _derived(m)


def _derived(m: dict) -> dict:
    ess, run_s = m.get("ess"), m.get("run_s")
    if ess is not None and run_s:
        m["ess_per_s"] = ess / run_s
    if ess is not None and m.get("sampling_grad_evals"):
        m["ess_per_grad"] = ess / m["sampling_grad_evals"]
    return {k: _clean(v) for k, v in m.items()}


def _clean(v):
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def ratios(a: dict, b: dict) -> dict:
    """ppl `a` against NumPyro `b`."""

    def div(x, y):
        return x / y if x is not None and y not in (None, 0) else None

    return {k: _clean(v) for k, v in {
        "speedup_run": div(b.get("run_s"), a.get("run_s")),
        "speedup_first_call": div(b.get("first_call_s"), a.get("first_call_s")),
        "compile": div(a.get("compile_s"), b.get("compile_s")),
        "ess_per_s": div(a.get("ess_per_s"), b.get("ess_per_s")),
        "ess_per_grad": div(a.get("ess_per_grad"), b.get("ess_per_grad")),
    }.items()}


# ------------------------------------------------------------------------------ one cell
def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:500]


def _clear_ppl_cache():
    """Forget ppl's compiled programs, so every cell's compile_s is a cold compile (and a
    program compiled for one device is never reused on another)."""
    from ppl.runtime import program as _program

    _program.clear_cache()  # the disk cache is off for benchmarks (benchmarks/__init__.py)


def run_cell(entry: ModelEntry, name: str, s: Settings, device, key: int = 0, numpyro: bool = True) -> dict:
    """Benchmark method `name` on `entry` on `device`; never raises for a method's failure."""
    cell = {"model": entry.name, "method": name, "device": device_label(device), "status": "ok", "reason": None,
            "kind": None, "ppl": None, "numpyro": None, "ratios": None, "warnings": [],
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    method = configure(name, s)
    cell["kind"] = kind_of(method)
    with jax.default_device(device), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ld = ppl.compile(entry.module.model, *entry.args, **entry.kwargs)
            method.check(ld)
        except Exception as e:  # noqa: BLE001 - the method does not apply: record why
            return {**cell, "status": "skipped", "reason": _reason(e)}
        _clear_ppl_cache()
        try:
            t0 = time.perf_counter()
            r = ppl.infer(entry.module.model, *entry.args, method=method, key=key, **entry.kwargs)
            first_call = time.perf_counter() - t0
            cell["ppl"] = {"first_call_s": first_call, **ppl_metrics(entry, method, r), "peak_bytes": peak_bytes(device)}
        except Exception as e:  # noqa: BLE001
            return {**cell, "status": "error", "reason": _reason(e), "traceback": traceback.format_exc(limit=3)}
        if numpyro:
            try:
                p = peers.run_peer(method, entry.module.model, entry.args, entry.kwargs, ld, key)
                if p is not None:
                    cell["numpyro"] = {**peer_metrics(entry, method, p), "peak_bytes": peak_bytes(device)}
                    cell["ratios"] = ratios(cell["ppl"], cell["numpyro"])
            except Exception as e:  # noqa: BLE001 - a peer failure never hides ppl's numbers
                cell["numpyro"] = {"peer": peers.peer_name(method, ld), "error": _reason(e)}
    cell["warnings"] = sorted({str(w.message)[:200] for w in caught if not issubclass(w.category, DeprecationWarning)})[:5]
    return cell


# ------------------------------------------------------------------------------ results files
def results_path(out_dir, quick: bool, hw: Optional[dict] = None) -> Path:
    hw = hw or hardware()
    return Path(out_dir) / f"{hardware_label(hw)}{'-quick' if quick else ''}.json"


def load_results(path: Path) -> dict:
    if path.exists():
        with open(path) as f:
            return json.load(f)
    return {"cells": {}, "scaling": {}}


def save_results(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=_json_default)
    tmp.replace(path)


def _json_default(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return _clean(v)
    return str(v)


def cell_key(model: str, method: str, device: str) -> str:
    return f"{model}/{method}/{device}"


def header(hw: dict, quick: bool, s: Settings) -> dict:
    return {"hardware": hw, "label": hardware_label(hw), "quick": quick, "settings": dataclasses.asdict(s),
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


# ------------------------------------------------------------------------------ the matrix
def run_matrix(models=None, methods=None, devices=None, quick=False, out_dir=RESULTS_DIR, numpyro=True,
               key=0, log=print) -> Path:
    """Run every (model, method, device) cell; merge into the results file; return its path."""
    s = QUICK if quick else FULL
    models = list(models or (QUICK_MODELS if quick else available_models()))
    methods = list(methods or ppl.METHODS)
    unknown = [m for m in methods if m not in ppl.METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; ppl.METHODS has {sorted(ppl.METHODS)}.")
    devs = select_devices(devices)
    hw = hardware()
    path = results_path(out_dir, quick, hw)
    data = load_results(path)
    data.update(header(hw, quick, s))
    total = len(models) * len(methods) * len(devs)
    log(f"benchmarks: {len(models)} models x {len(methods)} methods x {len(devs)} device(s) = {total} cells "
        f"-> {path}")
    warm_up_jax()  # the process's JAX start-up is charged to neither library's first cell
    i, done = 0, []
    t_all = time.perf_counter()
    for model_name in models:
        entry = load_model(model_name, quick)
        for dev in devs:
            for name in methods:
                i += 1
                t = time.perf_counter()
                cell = run_cell(entry, name, s, dev, key=key, numpyro=numpyro)
                cell["wall_s"] = time.perf_counter() - t
                data["cells"][cell_key(model_name, name, device_label(dev))] = cell
                save_results(path, data)
                done.append(cell)
                log(f"[{i:>3}/{total}] {progress_line(cell)}")
    log(f"benchmarks: {total} cells in {time.perf_counter() - t_all:.0f}s")
    if log is print:
        print_table([summary_row(c) for c in done], SUMMARY_COLUMNS)
    else:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            print_table([summary_row(c) for c in done], SUMMARY_COLUMNS)
        log(buf.getvalue().rstrip())
    return path


SUMMARY_COLUMNS = ["model", "method", "status", "first_s", "compile_s", "run_s", "ess_per_s", "z", "sd_ratio",
                   "dlogZ", "np_first_s", "np_run_s", "np_ess_per_s", "x_run", "x_first", "x_ess_per_s"]


def summary_row(c: dict) -> dict:
    """One line of the end-of-run table (x_*: speed-up over NumPyro / ratio to it)."""
    p, n, r = c.get("ppl") or {}, c.get("numpyro") or {}, c.get("ratios") or {}
    return {
        "model": c["model"], "method": c["method"], "status": c["status"],
        "first_s": p.get("first_call_s"), "compile_s": p.get("compile_s"), "run_s": p.get("run_s"),
        "ess_per_s": p.get("ess_per_s"), "z": p.get("exact_worst_z", p.get("ref_worst_z")),
        "sd_ratio": p.get("exact_worst_sd_ratio", p.get("ref_worst_sd_ratio")), "dlogZ": p.get("evidence_error"),
        "np_first_s": n.get("first_call_s"), "np_run_s": n.get("run_s"), "np_ess_per_s": n.get("ess_per_s"),
        "x_run": r.get("speedup_run"), "x_first": r.get("speedup_first_call"), "x_ess_per_s": r.get("ess_per_s"),
    }


def _f(v, fmt="{:.3g}"):
    return "-" if v is None else fmt.format(v)


def progress_line(c: dict) -> str:
    head = f"{c['model']:<26} {c['method']:<10} {c['device']:<6} {c['status']:<7}"
    if c["status"] != "ok":
        return f"{head} {c['reason'][:90]}"
    p, n, r = c["ppl"], c.get("numpyro") or {}, c.get("ratios") or {}
    acc = p.get("exact_worst_z", p.get("ref_worst_z"))
    line = (f"{head} ppl {_f(p['compile_s'], '{:.1f}')}+{_f(p['run_s'], '{:.3f}')}s ess/s {_f(p.get('ess_per_s'))} "
            f"z {_f(acc, '{:.2f}')}")
    if "log_evidence" in p and "evidence_error" in p:
        line += f" dlogZ {p['evidence_error']:+.3f}"
    if n.get("error"):
        line += f" | numpyro error: {n['error'][:60]}"
    elif n:
        line += (f" | numpyro {_f(n.get('compile_s'), '{:.1f}')}+{_f(n.get('run_s'), '{:.3f}')}s "
                 f"speed-up run x{_f(r.get('speedup_run'), '{:.2f}')} first call x{_f(r.get('speedup_first_call'), '{:.2f}')}")
        if r.get("ess_per_s") is not None:
            line += f" ess/s x{r['ess_per_s']:.2f}"
    return line
