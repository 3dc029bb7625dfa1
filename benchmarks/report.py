"""Turn every results file into one Markdown page, `REPORT.md`, with PNG plots beside it.

Per hardware file: what ran where (hardware, versions, settings), a table per device with
ppl's and NumPyro's numbers side by side, the cells that were skipped (and why), a plot of
ESS/s per model and method, a plot of the speed-up over NumPyro, the scaling curves
(cost per gradient against chains, N and d) and the many-chains points (ESS/s, cost per
gradient and lane utilisation from 1 to 4096 vectorised chains). Across files: one table with each hardware's
ESS/s and speed-ups side by side. Only measured numbers appear; a missing one is "-".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.harness import RESULTS_DIR

REPORT_NAME = "REPORT.md"


def load_all(out_dir) -> dict:
    """stem -> results dict, for every `*.json` results file in `out_dir`, sorted by name."""
    out = {}
    for path in sorted(Path(out_dir).glob("*.json")):
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict) and isinstance(data.get("cells"), dict):  # not sbc.json's list of cells
            out[path.stem] = data
    return out


def _f(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def _x(v):
    return "-" if v is None else f"×{v:.2f}"


def _table(header, rows) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def _cells(data, device=None, status=None):
    cells = list(data["cells"].values())
    if device is not None:
        cells = [c for c in cells if c["device"] == device]
    if status is not None:
        cells = [c for c in cells if c["status"] == status]
    return sorted(cells, key=lambda c: (c["model"], c["method"]))


def _devices(data):
    return sorted({c["device"] for c in data["cells"].values()})


def _evals(m):
    if m.get("grad_evals") is not None:
        return f"{_f(m['grad_evals'])} grad"
    if m.get("logdensity_evals") is not None:
        return f"{_f(m['logdensity_evals'])} logp"
    return "-"


def _mb(v):
    return "-" if v is None else f"{v / 2**20:.0f}"


def _accuracy(m):
    z = m.get("exact_worst_z", m.get("ref_worst_z"))
    sd = m.get("exact_worst_sd_ratio", m.get("ref_worst_sd_ratio"))
    return _f(z, 2), _f(sd, 2)


def device_table(data, device) -> list:
    header = ["model", "method", "ppl compile s", "ppl run s", "ppl first call s", "evals", "ESS", "ESS/s",
              "worst z", "sd ratio", "ΔlogZ", "NumPyro peer", "NP compile s", "NP run s", "NP first call s", "NP evals",
              "NP ESS/s", "NP worst z", "NP ΔlogZ", "speed-up run", "speed-up first call", "ESS/s ratio"]
    memory = any((c.get("ppl") or {}).get("peak_bytes") for c in _cells(data, device))
    if memory:
        header += ["peak MB ppl / NP"]
    rows = []
    for c in _cells(data, device):
        if c["status"] == "skipped":
            continue
        if c["status"] == "error":
            rows.append([c["model"], c["method"], f"error: {c['reason'][:80]}"] + ["-"] * (len(header) - 3))
            continue
        p, n, r = c["ppl"], c.get("numpyro") or {}, c.get("ratios") or {}
        z, sd = _accuracy(p)
        nz, _ = _accuracy(n) if n else ("-", "-")
        peer = n.get("peer") or "-"
        if n.get("error"):
            peer = f"{peer} (error: {n['error'][:60]})"
        rows.append([
            c["model"], c["method"], _f(p.get("compile_s")), _f(p.get("run_s")), _f(p.get("first_call_s")), _evals(p),
            _f(p.get("ess")), _f(p.get("ess_per_s")), z, sd, _f(p.get("evidence_error")),
            peer, _f(n.get("compile_s")), _f(n.get("run_s")), _f(n.get("first_call_s")), _evals(n) if n else "-",
            _f(n.get("ess_per_s")), nz, _f(n.get("evidence_error")),
            _x(r.get("speedup_run")), _x(r.get("speedup_first_call")), _x(r.get("ess_per_s")),
        ] + ([f"{_mb(p.get('peak_bytes'))} / {_mb(n.get('peak_bytes'))}"] if memory else []))
    return _table(header, rows)


def skipped_table(data) -> list:
    by_reason = {}
    for c in _cells(data, status="skipped"):
        by_reason.setdefault((c["method"], c["reason"][:160]), set()).add(c["model"])
    rows = [[m, ", ".join(sorted(models)), reason.replace("|", "/")] for (m, reason), models in sorted(by_reason.items())]
    return _table(["method", "models", "reason"], rows) if rows else ["(none)"]


def summary_table(all_data) -> list:
    """model × method, one column pair per hardware file: ESS/s (ppl / NumPyro) and speed-up."""
    keys = sorted({(c["model"], c["method"]) for d in all_data.values() for c in d["cells"].values()
                   if c["status"] == "ok"})
    header = ["model", "method"]
    for stem in all_data:
        header += [f"{stem}: ESS/s ppl / NumPyro", f"{stem}: speed-up run / first call"]
    rows = []
    for model, method in keys:
        row = [model, method]
        for data in all_data.values():
            cs = [c for c in data["cells"].values() if c["model"] == model and c["method"] == method and c["status"] == "ok"]
            if not cs:
                row += ["-", "-"]
                continue
            c = cs[0]
            n, r = c.get("numpyro") or {}, c.get("ratios") or {}
            row.append(f"{_f(c['ppl'].get('ess_per_s'))} / {_f(n.get('ess_per_s'))}")
            row.append(f"{_x(r.get('speedup_run'))} / {_x(r.get('speedup_first_call'))}")
        rows.append(row)
    return _table(header, rows)


# ------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(ax):
    """A log-scale panel's grid and legend."""
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ess(data, device, path) -> bool:
    cells = [c for c in _cells(data, device, "ok") if c["ppl"].get("ess_per_s")]
    if not cells:
        return False
    plt = _plt()
    models = sorted({c["model"] for c in cells})
    methods = sorted({c["method"] for c in cells})
    series = []
    for m in methods:
        series.append((m, "ppl"))
        if any((c.get("numpyro") or {}).get("ess_per_s") for c in cells if c["method"] == m):
            series.append((m, "numpyro"))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(models) + 4), 4.5))
    colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    for j, (method, who) in enumerate(series):
        xs, ys = [], []
        for i, model in enumerate(models):
            c = next((c for c in cells if c["model"] == model and c["method"] == method), None)
            v = None if c is None else (c["ppl"] if who == "ppl" else (c.get("numpyro") or {})).get("ess_per_s")
            if v:
                xs.append(i + (j - len(series) / 2 + 0.5) * width)
                ys.append(v)
        ax.bar(xs, ys, width, color=colours[method], hatch="//" if who == "numpyro" else None,
               edgecolor="black" if who == "numpyro" else None, label=f"{method} ({who})")
    ax.set_yscale("log")
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=20, ha="right")
    ax.set_ylabel("min bulk ESS per second of run time")
    ax.set_title(f"ESS/s per model and method ({device}; hatched: NumPyro)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(plt, fig, path)
    return True


def plot_speedup(data, device, path) -> bool:
    cells = [c for c in _cells(data, device, "ok") if (c.get("ratios") or {}).get("speedup_run")]
    if not cells:
        return False
    plt = _plt()
    labels = [f"{c['model']} / {c['method']}" for c in cells]
    run = [c["ratios"].get("speedup_run") or np.nan for c in cells]
    first = [c["ratios"].get("speedup_first_call") or np.nan for c in cells]
    y = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(cells) + 1.5))
    ax.barh(y - 0.2, run, 0.4, label="run (steady state)")
    ax.barh(y + 0.2, first, 0.4, label="first call (compile included)")
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    _plain_ticks(ax, "x")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("speed-up over NumPyro (NumPyro time / ppl time; > 1: ppl faster)")
    ax.set_title(f"Speed-up over NumPyro ({device})")
    ax.legend(fontsize=8)
    _save(plt, fig, path)
    return True


def _plain_ticks(ax, which="xy"):
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in [{"x": ax.xaxis, "y": ax.yaxis}[w] for w in which]:
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def plot_scaling(data, path) -> bool:
    scaling = {k: v for k, v in (data.get("scaling") or {}).items() if v}
    if not scaling:
        return False
    plt = _plt()
    axes_order = [a for a in ("chains", "N", "d") if a in scaling]
    fig, axs = plt.subplots(1, len(axes_order), figsize=(4.5 * len(axes_order), 4), squeeze=False)
    for ax, axis in zip(axs[0], axes_order):
        pts = sorted(scaling[axis].values(), key=lambda p: p["value"])
        xs = [p["value"] for p in pts]
        ax.plot(xs, [p["us_per_grad"] for p in pts], "o-", label="ppl NUTS")
        if any("numpyro_us_per_grad" in p for p in pts):
            ax.plot(xs, [p.get("numpyro_us_per_grad", np.nan) for p in pts], "s--", label="NumPyro NUTS kernel in one scan")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_ticks(ax)
        ax.set_xlabel({"chains": "number of chains", "N": "data size N", "d": "dimension d"}[axis])
        ax.set_ylabel("µs per gradient evaluation (all chains)")
        ax.set_title(pts[0]["model"].split("(")[0] if pts else axis, fontsize=9)
        _finish(ax)
    _save(plt, fig, path)
    return True


def scaling_table(data) -> list:
    rows = []
    for axis in ("chains", "N", "d"):
        for p in sorted((data.get("scaling") or {}).get(axis, {}).values(), key=lambda p: p["value"]):
            rows.append([axis, _f(p["value"]), p["model"], p["chains"], _f(p["compile_s"]), _f(p["run_s"]),
                         _f(p["grad_evals"]), _f(p["us_per_grad"]), _f(p.get("numpyro_us_per_grad")),
                         _x(1 / p["ratio_to_numpyro"]) if p.get("ratio_to_numpyro") else "-", _f(p.get("ess_per_s"))])
    if not rows:
        return []
    return _table(["axis", "value", "model", "chains", "compile s", "run s", "grad evals", "µs/grad",
                   "NumPyro µs/grad", "speed-up", "ESS/s"], rows)


MANY_SAMPLERS = {"nuts": "ppl NUTS (lanes)", "nuts_lockstep": "ppl NUTS (lockstep)", "chees": "ppl ChEES-HMC",
                 "numpyro": "NumPyro NUTS (vectorized)"}


def _many(data) -> dict:
    """model -> chains -> sampler -> point, from the results' many-chains points."""
    out = {}
    for p in ((data.get("scaling") or {}).get("many") or {}).values():
        out.setdefault(p["model"], {}).setdefault(p["chains"], {})[p["sampler"]] = p
    return out


def many_table(data) -> list:
    rows = []
    for model, by_chains in _many(data).items():
        for chains in sorted(by_chains):
            points = by_chains[chains]
            peer = (points.get("numpyro") or {}).get("ess_per_s")
            # NumPyro's points before its ESS was the same bulk estimator as ppl's: marked
            plain = "numpyro" in points and points["numpyro"].get("ess") != "bulk"
            for sampler in [s for s in MANY_SAMPLERS if s in points]:
                p = points[sampler]
                ratio = p["ess_per_s"] / peer if peer and p.get("ess_per_s") and sampler != "numpyro" else None
                shown = _x(ratio) + (" †" if plain and ratio is not None else "")
                # ppl's points before vectorised chains ran one batch per CPU core: marked
                if sampler not in ("numpyro", "chees") and "groups" not in p and ratio is not None:
                    shown += " ‡"
                rows.append([model, chains, MANY_SAMPLERS[sampler], f"{p['warmup']} + {p['draws']}", _f(p["first_s"]),
                             _f(p.get("compile_s")), _f(p.get("ess_per_s")), shown, _f(p.get("us_per_grad")),
                             _f(p.get("grad_evals")), _f(p.get("lane_util")), _f(p.get("lane_util_bound"))])
    if not rows:
        return []
    return _table(["model", "chains", "sampler", "warmup + draws", "first call s", "compile s", "ESS/s",
                   "ESS/s ratio to NumPyro", "µs/grad", "grad evals", "lane utilisation",
                   "its bound"], rows)


def plot_many(data, path) -> bool:
    """Per model: ESS/s, µs per gradient and lane utilisation against the number of chains."""
    many = _many(data)
    if not many:
        return False
    plt = _plt()
    panels = (("ess_per_s", "min bulk ESS / first-call s", True), ("us_per_grad", "µs per gradient (all chains)", True),
              ("lane_util", "lane utilisation", False))
    fig, axs = plt.subplots(len(many), len(panels), figsize=(13, 3.8 * len(many)), squeeze=False)
    for row, (model, by_chains) in zip(axs, many.items()):
        chains = sorted(by_chains)
        for ax, (key, label, log_y) in zip(row, panels):
            for color, (sampler, name) in enumerate(MANY_SAMPLERS.items()):
                ys = [(by_chains[c].get(sampler) or {}).get(key) for c in chains]
                if any(y is not None for y in ys):
                    ax.plot(chains, [np.nan if y is None else y for y in ys], "o-", label=name, color=f"C{color}")
            ax.set_xscale("log", base=2)
            if log_y:
                ax.set_yscale("log")
            ax.set_xlabel("chains")
            ax.set_ylabel(label)
            ax.set_title(model, fontsize=9)
            _finish(ax)
    _save(plt, fig, path)
    return True


MANY_LEGEND = """`python -m benchmarks scaling --axes many`: each point is one first call in a fresh
state (ppl's compiled programs and JAX's caches cleared), compilation included, all chains
vectorised (`chain_method="vectorized"`), key 0. *ESS/s*: the smallest bulk ESS over the
scalars / first-call seconds. *µs/grad*: ppl's run time (without compile) / gradient
evaluations over all chains, warmup included (NumPyro: not measured, its second run compiles
again). *lane utilisation*: gradient evaluations / (chains × batched steps): ppl's lanes from
the run's own count (warmup included); lockstep NUTS (ppl's and NumPyro's) from the sampling
draws' steps; ChEES: none (every chain takes the same steps). One run per point on a shared
machine: single figures move by 10-40% between runs. †: a row measured before NumPyro's ESS
was the same rank-normalised bulk estimator as ppl's (it was NumPyro's plain ESS): on the
same draws of eight schools at 256 chains, tau's plain ESS was 86k and its bulk ESS 74k, so
these ratios understate ppl by about 15% (same-run pairs at 256 chains with one estimator:
1.68 and 1.69). ‡: a ppl row measured while its vectorised chains ran as ONE batch on a
multi-core CPU; they now run one vectorised batch per core, at once (eight schools, 256 NUTS
chains, same-run pairs: 1.46-1.75 as one batch, 2.10-2.11 as two)."""


# ------------------------------------------------------------------------------ the page
def _hardware_lines(data) -> list:
    hw = data.get("hardware", {})
    s = data.get("settings", {})
    mode = "quick (`--quick`: small settings, a smoke run)" if data.get("quick") else "full"
    return [
        f"- hardware: backend **{hw.get('backend')}**, {hw.get('device_count')} × {hw.get('device_kind')}; "
        f"CPU {hw.get('cpu')} ({hw.get('cpu_count')} cores)",
        f"- versions: python {hw.get('python')}, jax {hw.get('jax')}, numpyro {hw.get('numpyro')}, optax {hw.get('optax')}",
        f"- mode: {mode}; updated {data.get('updated')}",
        f"- settings: {s.get('chains')} chains × ({s.get('warmup')} warmup + {s.get('draws')} draws) for NUTS/HMC; "
        f"MH {s.get('mh_warmup')} + {s.get('mh_draws')}; Gibbs {s.get('gibbs_warmup')} + {s.get('gibbs_draws')}; "
        f"{s.get('particles')} importance particles; {s.get('rejection_draws')} rejection draws; "
        f"VI {s.get('vi_steps')} steps; MAP Adam {s.get('map_steps')} steps",
    ]


LEGEND = """Columns: *compile s* includes model inspection; *run s* is the compiled program alone;
*first call s* is the wall time of the user-facing call (`ppl.infer`; NumPyro's `MCMC.run` /
`SVI.run`). NumPyro's compile/run split is its kernel (or `svi.update`) run as one compiled
`lax.scan`, ppl's way, i.e. its floor without the driver. *evals*: gradient evaluations
(warmup included) or log-density evaluations. *ESS*: min bulk ESS over all scalars
(importance: the weights' ESS; rejection: the exact draws). *worst z*: max |mean − truth| / sd
over scalars, against the closed form for conjugate models (point estimates: against the
exact mode) else the posteriordb reference (for a point estimate (mle, map) that is only how
far the point lies from the posterior mean, in posterior sds, not an error); *sd ratio*: the
sd / reference sd farthest from 1.
*ΔlogZ*: log-evidence estimate (or bound) minus the exact value. *speed-up*: NumPyro time /
ppl time (> 1: ppl is faster); *ESS/s ratio*: ppl / NumPyro. *peak MB* (accelerators only):
the device's `peak_bytes_in_use` after the run, a high-water mark of the whole process (so
NumPyro's, measured second, is at least ppl's)."""


def build(out_dir=RESULTS_DIR) -> Path:
    """Write `<out_dir>/REPORT.md` and its PNGs from every results file there; return its path."""
    out_dir = Path(out_dir)
    all_data = load_all(out_dir)
    lines = ["# ppl benchmarks", "",
             f"Generated by `python -m benchmarks report` from {len(all_data)} results file(s) in this folder. "
             "Every number below was measured by `python -m benchmarks` (and `python -m benchmarks scaling`) "
             "on the hardware named; NumPyro ran the same model (through `benchmarks/bridge.py`) with the same "
             "settings in the same run.", ""]
    if not all_data:
        lines.append("No results yet: run `python -m benchmarks` (or `--quick`).")
    else:
        lines += ["## Side by side", "", *summary_table(all_data), ""]
    for stem, data in all_data.items():
        lines += [f"## {stem}", "", *_hardware_lines(data), "", LEGEND, ""]
        for device in _devices(data):
            lines += [f"### {device}", "", *device_table(data, device), ""]
            safe = device.replace(":", "")
            for kind, fn in (("ess_per_s", plot_ess), ("speedup", plot_speedup)):
                name = f"{stem}-{safe}-{kind}.png"
                if fn(data, device, out_dir / name):
                    lines += [f"![{kind} {stem} {device}]({name})", ""]
        lines += ["### Skipped cells (the method's check rejected the model)", "", *skipped_table(data), ""]
        table = scaling_table(data)
        if table:
            lines += ["### Scaling: NUTS cost per gradient against chains, N and d", "",
                      "µs/grad = run time / leapfrog steps summed over chains (warmup included); falling with "
                      "the number of chains means the chains share the hardware.", "", *table, ""]
            name = f"{stem}-scaling.png"
            if plot_scaling(data, out_dir / name):
                lines += [f"![scaling {stem}]({name})", ""]
        table = many_table(data)
        if table:
            lines += ["### Many chains: NUTS as lanes and in lockstep, ChEES-HMC, NumPyro", "", MANY_LEGEND, "", *table,
                      ""]
            name = f"{stem}-many.png"
            if plot_many(data, out_dir / name):
                lines += [f"![many chains {stem}]({name})", ""]
    path = out_dir / REPORT_NAME
    path.write_text("\n".join(lines) + "\n")
    return path
