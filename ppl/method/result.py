"""`Result`: what every inference method returns."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from ppl.method.diagnostics import flatten_sites, scalar_diagnostics

SUMMARY_COLUMNS = ("mean", "sd", "q5", "q50", "q95", "r_hat", "ess_bulk", "ess_tail")


@dataclasses.dataclass
class Result:
    """The outcome of `ppl.infer`.

    Attributes:
      method: the method object used.
      samples: site -> array (num_chains, num_draws, *site_shape) of equally weighted draws,
        deterministic sites included.
      params: point values (MLE/MAP optimum, learned params); empty where none.
      log_evidence: estimate or bound of log p(data), or None.
      diagnostics: method-specific diagnostics (r_hat, ess, divergences, loss, ...).
      timing: {"compile_s", "run_s", "compile_source", ...}: seconds spent tracing and compiling
        (or loading) the program, and running it; "compile_source" is "memory" (reused in
        this process), "disk" (loaded from the compile cache) or "compiled".
      log_weights, particles: raw weighted particles (importance sampling only).
      log_density: the compiled model (`LogDensity`) the method ran on.
    """

    method: Any
    samples: dict
    params: dict = dataclasses.field(default_factory=dict)
    log_evidence: Optional[float] = None
    diagnostics: dict = dataclasses.field(default_factory=dict)
    timing: dict = dataclasses.field(default_factory=dict)
    log_weights: Any = None
    particles: Optional[dict] = None
    log_density: Any = dataclasses.field(default=None, repr=False)

    @property
    def num_chains(self) -> int:
        return int(next(iter(self.samples.values())).shape[0]) if self.samples else 0

    @property
    def num_draws(self) -> int:
        return int(next(iter(self.samples.values())).shape[1]) if self.samples else 0

    @property
    def warnings(self) -> list:
        """The problems this run found (the texts of its warnings; see `ppl.method.flags`)."""
        return list(self.diagnostics.get("warnings", []))

    def summary(self):
        """A `pandas.DataFrame`, one row per scalar (`theta[0]`, ...), with columns mean,
        sd, q5, q50, q95, r_hat, ess_bulk, ess_tail. The run's warnings (see `warnings`)
        are in the frame's ``attrs["warnings"]`` and printed under it by ``print(r)``."""
        import pandas as pd

        rows, index = [], []
        for labels, _, flat in flatten_sites(self.samples):
            pooled = flat.reshape(-1, flat.shape[2])
            if not pooled.shape[0]:  # no draws yet (a run stopped in warmup): a row of NaN per scalar
                rows.append(np.full((flat.shape[2], len(SUMMARY_COLUMNS)), np.nan))
                index.extend(labels)
                continue
            d = scalar_diagnostics(flat)
            with np.errstate(invalid="ignore"):
                sd = pooled.std(axis=0, ddof=1) if pooled.shape[0] > 1 else np.full(pooled.shape[1], np.nan)
            q = np.quantile(pooled, [0.05, 0.5, 0.95], axis=0)
            cols = np.stack([pooled.mean(0), sd, q[0], q[1], q[2], d["r_hat"], d["ess_bulk"], d["ess_tail"]], 1)
            rows.append(cols)
            index.extend(labels)
        data = np.concatenate(rows, 0) if rows else np.zeros((0, len(SUMMARY_COLUMNS)))
        frame = pd.DataFrame(data, index=index, columns=list(SUMMARY_COLUMNS))
        frame.attrs["warnings"] = self.warnings
        return frame

    def to_arviz(self, log_likelihood: bool = False):
        """An `arviz.InferenceData` with a posterior group (and sample_stats where the
        method records per-draw statistics; a log_likelihood group on request)."""
        import arviz as az

        posterior = {k: np.asarray(v) for k, v in self.samples.items()}
        stats = {k: np.asarray(v) for k, v in self.diagnostics.get("sample_stats", {}).items()}
        groups = {"posterior": posterior}
        if stats:
            groups["sample_stats"] = stats
        if log_likelihood:
            groups["log_likelihood"] = pointwise_log_likelihood(self)
        return az.from_dict(**groups)

    def __str__(self):
        name = getattr(self.method, "name", type(self.method).__name__)
        head = f"ppl.Result(method={name!r}, chains={self.num_chains}, draws={self.num_draws}"
        if self.log_evidence is not None:
            head += f", log_evidence={self.log_evidence:.4f}"
        head += ")"
        text = head + "\n" + self.summary().to_string(float_format=lambda v: f"{v:.4g}")
        if self.warnings:
            text += "\nWarnings:\n" + "\n".join(f"  - {w}" for w in self.warnings)
        return text

    def __repr__(self):
        return self.__str__()


def pointwise_log_likelihood(result) -> dict:
    """Observed site -> elementwise log-likelihood per draw, shape (chains, draws, *site)."""
    import jax

    from ppl.model import handlers

    ld = result.log_density
    if ld is None:
        raise ValueError("this result carries no compiled model; log-likelihoods need one.")
    latents = {lat.name: np.asarray(result.samples[lat.name]) for lat in ld.spec.latents}
    args, kwargs = ld.arguments()

    def one(values):
        with handlers.trace() as tr, handlers.substitute(data={**ld.params, **values}):
            ld.model(*args, **kwargs)
        return {s.name: s.log_prob for s in tr.sites("observed")}

    c, s = result.num_chains, result.num_draws
    flat = {k: v.reshape((c * s,) + v.shape[2:]) for k, v in latents.items()}
    out = jax.jit(jax.vmap(one))(flat)
    return {k: np.asarray(v).reshape((c, s) + v.shape[1:]) for k, v in out.items()}
