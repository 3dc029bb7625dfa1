"""`ppl.sbc`: simulation-based calibration of an inference method on a model.

If parameters are drawn from the prior, theta_i ~ p(theta), data from the model given them,
y_i ~ p(y | theta_i), and an exact method returns L independent posterior draws from
p(theta | y_i), then the rank of theta_i among those draws is uniform on {0, ..., L}
(Talts, Betancourt, Simpson, Vehtari and Gelman 2018, "Validating Bayesian inference
algorithms with simulation-based calibration", arXiv:1804.06788, theorem 1). A rank
histogram that is not uniform shows a method, or a model implementation, that is wrong:
∪-shaped for draws too narrow, ∩-shaped for too wide, sloped for biased ones.

How `sbc` does it:

- **Simulation.** The model runs under `seed` and `trace` with every observed site's value
  replaced by a draw from its distribution (keeping the shape of the value the user passed);
  `observe(name, d, None)` sites are latents already. Arrays passed to the model other than
  the observed values stay fixed: they are covariates, the same in simulation and inference
  (so a model that also uses its data elsewhere, e.g. lagged values as predictors, is
  calibrated conditionally on those). All simulations are one vectorised program.
- **Inference.** The model is compiled once with its observations as an argument
  (`LogDensity` is a pytree of its data), so every simulated data set runs the same compiled
  program. For NUTS, HMC, MH, Gibbs, importance sampling and VI the method's own program
  (`type(method)._program`) is `vmap`ped over simulations in chunks of `batch_size`, ONE
  executable for all chunks; any other method (rejection, user methods) runs its `run` in a
  Python loop on data of the same shapes, which reuses its compiled program.
- **Thinning.** The L draws a rank is computed among are evenly spaced through the run's
  draws (chains one after another). They are nearly independent when the run's effective
  sample size is at least L (Talts et al. 2018): bulk ESS over every ranked scalar (the
  smallest) for MCMC and Gibbs, the weights' ESS for importance sampling, and the number of
  draws for methods whose draws are independent (VI, rejection). A run whose ESS is below L
  is flagged. Ties (discrete sites) are broken uniformly at random, so ranks stay uniform.
- **Test.** Per scalar, the exact ECDF test of uniformity of Säilynoja, Bürkner and Vehtari
  (2022), as recommended for SBC by Modrák et al. (2023); see `ppl._uniformity`. Deterministic
  sites are ranked too: any function of parameters and data is a valid test quantity
  (Modrák et al. 2023), and some are more sensitive than the parameters.
- **Failures and flags.** A run that raises, finds no finite start, or returns non-finite
  draws is a failure: its ranks are -1, it is left out of the p-values, and it is listed in
  `SBCResult.failures`. A run that completes with a problem (divergences, R-hat > 1.01, ESS
  below L, weight collapse, skipped VI steps, the method's own warnings) keeps its ranks and
  is listed in `SBCResult.flags`. Both are summarised in warnings and `SBCResult.warnings`.

Example:
  >>> res = ppl.sbc(model, 20, y=y, method=ppl.NUTS(num_warmup=300, num_samples=250),
  ...               num_simulations=200, key=0)
  >>> res.p_values["mu"], res.summary()
  >>> res.plot()
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ppl import _uniformity
from ppl._keys import as_key
from ppl.compile.logdensity import LogDensity, compile as compile_model, split_arguments
from ppl.runtime import progress
from ppl.runtime.program import run_program
from ppl.method.diagnostics import R_HAT_FLAG, scalar_diagnostics
from ppl.method.flags import flag
from ppl.method.base import Method
from ppl.model import handlers
from ppl.model._runtime import Message, Messenger

MEMORY_BUDGET_BYTES = 1 << 30
MAX_BATCH = 32  # simulations per vectorised chunk (progress granularity; little gain beyond)


# ----------------------------------------------------------------------------- result

@dataclasses.dataclass
class SBCResult:
    """The outcome of `ppl.sbc`.

    Attributes:
      method: the method object that was calibrated.
      ranks: site -> int array (num_simulations, *site_shape), each rank in 0..num_draws;
        -1 in the rows of failed simulations. Latent and deterministic sites.
      num_draws: L, the number of posterior draws each rank is computed among.
      p_values: site -> array of site_shape: the exact ECDF uniformity test's p-value per
        scalar, over the simulations that did not fail (small: miscalibrated). With many
        scalars, judge them together (e.g. Bonferroni: min p against alpha / count).
      truths: site -> array (num_simulations, *site_shape) of the simulated true values.
      failed: bool array (num_simulations,): simulations without ranks.
      failures: simulation index -> why it failed.
      flags: simulation index -> the problems its run reported (it keeps its ranks).
      ess: array (num_simulations,): the effective sample size used to judge thinning
        (NaN for failed runs).
      warnings: the summary texts that `sbc` warned with.
      timing: seconds spent simulating, compiling and running.
    """

    method: Any
    ranks: dict
    num_draws: int
    p_values: dict
    truths: dict
    failed: np.ndarray
    failures: dict
    flags: dict
    ess: np.ndarray
    warnings: list = dataclasses.field(default_factory=list)
    timing: dict = dataclasses.field(default_factory=dict)

    @property
    def num_simulations(self) -> int:
        return int(self.failed.shape[0])

    def _scalars(self, sites=None):
        """(label, site, ranks of the successful simulations (n,), p-value) per scalar."""
        names = list(self.ranks) if sites is None else [sites] if isinstance(sites, str) else list(sites)
        unknown = [n for n in names if n not in self.ranks]
        if unknown:
            raise ValueError(f"SBCResult: no ranks for site(s) {unknown}; ranked sites are {list(self.ranks)}.")
        ok = ~self.failed
        for name in names:
            r = self.ranks[name][ok]
            shape = r.shape[1:]
            flat, p = r.reshape(r.shape[0], -1), np.reshape(self.p_values[name], -1)
            for j, idx in enumerate(np.ndindex(*shape) if shape else [()]):
                label = f"{name}[{','.join(map(str, idx))}]" if shape else name
                yield label, name, flat[:, j], float(p[j])

    def summary(self):
        """A `pandas.DataFrame`, one row per scalar: `p_value` (ECDF test), `mean_rank` and
        `sd_rank` of rank / L (uniform: 0.5 and about 0.289; a higher mean means the draws
        sit below the truth, a larger sd means draws too narrow, a smaller one too wide), and
        `n` (simulations ranked)."""
        import pandas as pd

        rows, index = [], []
        for label, _, r, p in self._scalars():
            u = r / self.num_draws
            rows.append([p, u.mean() if u.size else np.nan, u.std(ddof=1) if u.size > 1 else np.nan, u.size])
            index.append(label)
        return pd.DataFrame(rows, index=index, columns=["p_value", "mean_rank", "sd_rank", "n"])

    def plot(self, sites=None, max_scalars: int = 12, bins: Optional[int] = None, level: float = 0.95):
        """Rank histograms (Talts et al. 2018) and ECDF-difference plots (Säilynoja et al.
        2022), one row per scalar.

        Left: the histogram of ranks in `bins` bins (default: at most 20 bins of equal
        width where L + 1 allows), with the 99% interval of each bin's count under uniformity. Right:
        ECDF(rank) - uniform CDF at the test's thresholds, with the exact simultaneous
        `level` band: under calibration the whole curve stays inside it with probability
        `level`. Titles give the p-value.

        Returns the matplotlib `Figure` (matplotlib is imported here, on first use).
        """
        import matplotlib.pyplot as plt
        from scipy.stats import binom

        scalars = list(self._scalars(sites))[:max_scalars]
        if not scalars:
            raise ValueError("SBCResult.plot: nothing to plot (no ranked scalars).")
        n = int(scalars[0][2].size)
        if n == 0:
            raise ValueError("SBCResult.plot: every simulation failed; there are no ranks to plot.")
        L = self.num_draws
        nb = _bins(L + 1) if bins is None else int(bins)
        edges = np.round(np.linspace(0, L + 1, nb + 1)).astype(int)
        widths = np.diff(edges) / (L + 1.0)
        p_band, lower, upper = _uniformity.ecdf_band(n, L, level)
        ts = np.round(p_band * (L + 1)).astype(int)
        fig, axes = plt.subplots(len(scalars), 2, figsize=(9, 2.2 * len(scalars)), squeeze=False)
        for (label, _, r, p), (ax_h, ax_e) in zip(scalars, axes):
            counts = np.histogram(r, bins=edges)[0]
            lo, hi = binom.ppf(0.005, n, widths), binom.ppf(0.995, n, widths)
            centers = 0.5 * (edges[:-1] + edges[1:]) - 0.5
            ax_h.bar(centers, counts, width=np.diff(edges) * 0.9, color="C0", alpha=0.8)
            ax_h.fill_between(centers, lo, hi, step="mid", color="0.5", alpha=0.25, lw=0, label="99% per bin")
            ax_h.set_title(f"{label}: rank histogram", fontsize=9)
            ax_h.set_xlim(-0.5, L + 0.5)
            ecdf = (r[:, None] < ts[None, :]).mean(axis=0)
            ax_e.fill_between(p_band, lower - p_band, upper - p_band, step="mid", color="0.85",
                              label=f"{level:.0%} simultaneous")
            ax_e.step(p_band, ecdf - p_band, where="mid", color="C0")
            ax_e.axhline(0.0, color="0.5", lw=0.5)
            ax_e.set_title(f"{label}: ECDF difference, p = {p:.3g}", fontsize=9)
        axes[-1, 0].set_xlabel("rank")
        axes[-1, 1].set_xlabel("fractional rank")
        fig.tight_layout()
        return fig

    def __str__(self):
        name = getattr(self.method, "name", type(self.method).__name__)
        head = (f"ppl.SBCResult(method={name!r}, simulations={self.num_simulations}, "
                f"draws={self.num_draws}, failed={int(self.failed.sum())}, flagged={len(self.flags)})")
        text = head + "\n" + self.summary().to_string(float_format=lambda v: f"{v:.4g}")
        if self.warnings:
            text += "\nWarnings:\n" + "\n".join(f"  - {w}" for w in self.warnings)
        return text

    def __repr__(self):
        return self.__str__()


def _bins(num_ranks: int) -> int:
    """Histogram bins for ranks 0..L: every rank when there are at most 20, else the largest
    number of equal-width bins from 8 to 20, else 20 (widths differing by one rank)."""
    if num_ranks <= 20:
        return num_ranks
    return next((b for b in range(20, 7, -1) if num_ranks % b == 0), 20)


# ----------------------------------------------------------------------------- entry point

def sbc(model, *args, method="nuts", num_simulations: int = 100, num_draws: int = 100, key=0,
        batch_size: Optional[int] = None, progress_bar=None, **model_kwargs) -> SBCResult:
    """Simulation-based calibration of `method` on `model` (Talts et al. 2018).

    Draws `num_simulations` parameter sets from the prior and a data set from the model for
    each (the observed sites' values replaced by simulations of the same shape), runs
    `method` on each data set, and ranks every true latent (and deterministic) scalar among
    `num_draws` posterior draws, thinned evenly through the run. See the module docstring
    for how runs are vectorised, thinned and flagged.

    Args:
      model, *args, **model_kwargs: the model and its arguments, as for `ppl.infer` (the
        data passed give the shapes of the simulated data; their values are not used).
      method: a sampling method: a name from `ppl.METHODS` or a method object.
      num_simulations: number of simulated data sets (100-1000 is usual).
      num_draws: L, the posterior draws each rank is computed among (ranks lie in 0..L);
        each run must give at least L draws, and an effective sample size of at least L.
      key: an int or a jax random key; the same key gives the same result.
      batch_size: simulations per vectorised chunk; None chooses from a memory budget (at
        most 32).
      progress_bar: None (on in a terminal), True or False: a bar over simulations.

    Returns:
      an `SBCResult` (`ranks`, `p_values`, `num_draws`, `failures`, `flags`, `summary()`,
      `plot()`).

    Raises:
      ValueError: a method that gives no posterior draws (mle, map, VI with a point-mass
        guide), naming it and what to use instead; an improper prior, a `factor` site or a
        learnable `param` (the model cannot simulate), naming the site; a method whose runs
        give fewer than `num_draws` draws; invalid counts.

    Example:
      >>> res = ppl.sbc(model, 20, y=y, method="importance", num_simulations=200, key=0)
      >>> print(res.summary())   # p_value per scalar
      >>> res.plot()
    """
    from ppl.infer.api import resolve_method

    m = resolve_method(method)
    _refuse_pointwise(m)
    _check_options(num_simulations, num_draws, batch_size)
    key = as_key(key)
    t0 = time.perf_counter()
    ld_user = compile_model(model, *args, **model_kwargs)
    _refuse_model(ld_user)
    _refuse_point_guide(m, ld_user)
    m.check(ld_user)
    available = _draws_per_run(m)
    if available is not None and available < num_draws:
        raise ValueError(
            f"sbc: each {m.name} run gives {available} draws, fewer than num_draws={num_draws} "
            f"that each rank is computed among; raise the method's draws (e.g. num_samples, "
            f"num_particles, num_draws) or lower num_draws.")

    k_sim, k_run, k_tie = jax.random.split(key, 3)
    ranked = [lat.name for lat in ld_user.spec.latents] + list(ld_user.spec.deterministic)
    truths, observations, sim_ok = _simulate(model, args, model_kwargs, k_sim, num_simulations)
    truths = {k: np.asarray(truths[k]) for k in ranked}
    failures = {int(i): _simulation_failure(truths, observations, int(i)) for i in np.flatnonzero(~sim_ok)}
    good = np.flatnonzero(sim_ok)
    if good.size == 0:
        raise ValueError(f"sbc: every simulation gave non-finite values ({failures[0]}); check the "
                         f"model's priors and likelihood for overflow.")
    timing = {"simulate_s": time.perf_counter() - t0}

    first = jax.tree.map(lambda v: v[good[0]], observations)
    ld0 = compile_model(_observed_model(model), first, *args, **model_kwargs)
    run_keys = jax.vmap(lambda i: jax.random.fold_in(k_run, i))(jnp.arange(num_simulations))
    runner = _vectorised(m, ld0, ranked, num_simulations, batch_size)
    show = progress.enabled(progress_bar)
    if runner is not None:
        outcomes, t = _run_vectorised(runner, ld0, run_keys, observations, good, show)
    else:
        outcomes, t = _run_loop(m, ld0, run_keys, observations, good, show)
    timing.update(t)

    tie_seed = [int(x) for x in np.asarray(k_tie)]  # a raw key (as_key): two uint32 words
    ranks, ess, flags = _collect(outcomes, truths, num_draws, tie_seed, failures)
    failed = np.zeros(num_simulations, bool)
    failed[list(failures)] = True
    p_values = {k: _p_values(r[~failed], num_draws) for k, r in ranks.items()}
    notes = {}
    _warn(notes, m, failures, flags, num_simulations)
    return SBCResult(method=m, ranks=ranks, num_draws=num_draws, p_values=p_values, truths=truths,
                     failed=failed, failures=dict(sorted(failures.items())), flags=dict(sorted(flags.items())),
                     ess=ess, warnings=notes.get("warnings", []), timing=timing)


def _check_options(num_simulations, num_draws, batch_size) -> None:
    for name, value, low in (("num_simulations", num_simulations, 2), ("num_draws", num_draws, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"sbc: {name} must be an int >= {low}, got {value!r}.")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                                   or batch_size < 1):
        raise ValueError(f"sbc: batch_size must be a positive int or None, got {batch_size!r}.")


# ----------------------------------------------------------------------------- refusals

def _refuse_pointwise(m) -> None:
    from ppl.optimize.point import MAP, MLE

    if isinstance(m, MLE):
        kind = "MAP" if isinstance(m, MAP) else "MLE"
        raise ValueError(
            f"sbc: method {m.name!r} ({kind}) gives a point estimate, not posterior draws, so there "
            f"is nothing to rank the true values among. Calibrate a sampling method instead: "
            f"'nuts', 'hmc', 'mh', 'gibbs', 'importance', 'rejection', 'vi' (a guide with spread, "
            f"e.g. 'mean_field') or 'iwae'.")


def _refuse_point_guide(m, ld) -> None:
    from ppl.vi import VI

    if not isinstance(m, VI):
        return
    _, point = m._check(ld)
    if point:
        raise ValueError(
            f"sbc: method 'vi' with guide {m.guide!r} is a point mass (it is MAP), which gives no "
            f"posterior draws to rank the true values among. Use a guide with spread "
            f"(guide='mean_field', 'full_rank', 'low_rank', 'flow'), or method='nuts'.")


def _refuse_model(ld) -> None:
    """A model SBC cannot simulate: improper priors, factors, learnable params."""
    improper = [lat.name for lat in ld.spec.latents if lat.improper]
    if improper:
        raise ValueError(
            f"sbc: site '{improper[0]}' has an improper flat prior (ImproperUniform), which cannot "
            f"be drawn from, so SBC cannot simulate parameters; give it a proper prior.")
    if ld.spec.factors:
        raise ValueError(
            f"sbc: site '{ld.spec.factors[0]}' is a factor, an arbitrary term of the log density "
            f"that the model cannot simulate from, so prior draws would not follow the model. Write "
            f"it as an observe site of a distribution, or drop it for the calibration.")
    if ld.spec.params:
        raise ValueError(
            f"sbc: param '{ld.spec.params[0]}' is a learnable point parameter, not a random variable "
            f"with a prior, so SBC cannot simulate it; give it a prior with ppl.sample, or fix it "
            f"with ppl.handlers.substitute(model, data={{'{ld.spec.params[0]}': value}}).")


def _draws_per_run(m) -> Optional[int]:
    """Draws each run of a built-in method gives (None when unknown)."""
    from ppl.mcmc.gibbs import Gibbs
    from ppl.mcmc.sampler import _MCMC
    from ppl.sampling.importance import Importance
    from ppl.sampling.rejection import Rejection
    from ppl.vi import VI

    if isinstance(m, (_MCMC, Gibbs)):
        return m.num_chains * m.num_samples
    if isinstance(m, Importance):
        return m.num_particles
    if isinstance(m, Rejection):
        return m.num_samples
    if isinstance(m, VI):
        return m.num_draws
    return None


# ----------------------------------------------------------------------------- simulation

class _SimulateObserved(Messenger):
    """Replace each observed site's value by a draw from its distribution, of the shape of
    the value it had (extra leading dims of the value are iid copies)."""

    def __init__(self, key):
        super().__init__(None)
        self.key = key

    def process(self, msg: Message) -> None:
        if msg.kind != "observed":
            return
        shape = tuple(jnp.shape(msg.value))
        dist_shape = tuple(msg.dist.shape())
        extra = len(shape) - len(dist_shape)
        sample_shape = shape[:extra] if extra > 0 else ()
        self.key, k = jax.random.split(self.key)
        msg.value = msg.dist.sample(k, sample_shape)


class _ObservedFrom(Messenger):
    """Set observed sites' values from a dict (the simulated data of one run)."""

    def __init__(self, values: dict):
        super().__init__(None)
        self.values = values

    def process(self, msg: Message) -> None:
        if msg.kind == "observed" and msg.name in self.values:
            msg.value = self.values[msg.name]


@functools.lru_cache(maxsize=16)
def _observed_model(model):
    """`model` with its observed values taken from a first argument (a dict name -> array),
    so that they are data of the compiled `LogDensity` (one stable function per model, so
    its compiled programs are reused)."""

    def simulated(observations, /, *args, **kwargs):
        with _ObservedFrom(observations):
            return model(*args, **kwargs)

    simulated.__name__ = f"{getattr(model, '__name__', 'model')}_simulated"
    return simulated


def _rebuild(tree, static, data):
    static = dict(static)
    it = iter(data)
    leaves = [static[i] if i in static else next(it) for i in range(len(data) + len(static))]
    return jax.tree.unflatten(tree, leaves)


@functools.lru_cache(maxsize=16)
def _simulator(model, tree, static):
    """A jitted `(keys, data) -> (values, observations, ok)`, vectorised over keys: latent and
    deterministic values, observed values, and whether all of them are finite."""

    def one(key, data):
        args, kwargs = _rebuild(tree, static, data)
        k_model, k_obs = jax.random.split(key)
        with handlers.trace() as tr, handlers.seed(rng_seed=k_model), _SimulateObserved(k_obs):
            model(*args, **kwargs)
        values = {s.name: s.value for s in tr.sites("latent", "deterministic")}
        observed = {s.name: s.value for s in tr.sites("observed")}
        ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in
                                list(values.values()) + list(observed.values())] or [jnp.bool_(True)]))
        return values, observed, ok

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def _simulate(model, args, kwargs, key, num):
    data, tree, static = split_arguments(args, kwargs)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num))
    values, observed, ok = _simulator(model, tree, static)(keys, data)
    return values, observed, np.asarray(ok)


def _simulation_failure(truths, observations, i) -> str:
    bad = [k for k, v in {**truths, **observations}.items() if not np.all(np.isfinite(np.asarray(v[i])))]
    return f"simulation: the simulated values of site(s) {bad} are not finite"


def _with_observations(ld0: LogDensity, observations: dict) -> LogDensity:
    """`ld0` (compiled from `_observed_model(model)`) with other observed values: its first
    data leaves are the observations (the first argument, a dict, flattens first)."""
    (data, params), aux = ld0.tree_flatten()
    leaves = jax.tree.leaves(observations)
    return LogDensity.tree_unflatten(aux, (tuple(leaves) + tuple(data[len(leaves):]), params))


# ----------------------------------------------------------------------------- running

@dataclasses.dataclass
class _Outcome:
    """One simulation's run: draws site -> (num_chains, num_draws, *shape), or a failure."""

    draws: Optional[dict] = None
    ess: float = float("nan")
    flags: tuple = ()
    failure: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class _Vectorised(Method):
    """A method's compiled program vmapped over simulated data sets and keys.

    `kind` says how to call the inner program and read its outputs: "mcmc" (NUTS, HMC, MH)
    and "gibbs" (a `_GibbsProgram`): the whole run as one chunk (`ChainMethod._whole`);
    "vi": the whole fit as one chunk (`VI._whole`); "importance": its `_program(key, ld)`."""

    inner: Any
    kind: str
    num_chains: int
    sites: tuple
    batch: int
    name = "sbc"

    def expected_evaluations(self):
        inner = self.inner.expected_evaluations()
        return None if inner is None else inner * self.batch

    def _one(self, key, observations, ld0):
        ld = _with_observations(ld0, observations)
        program = type(self.inner)._program
        if self.kind in ("mcmc", "gibbs"):
            samples, divergences, ok = self.inner._whole(key, ld, jnp.arange(self.num_chains, dtype=jnp.int32))
            stats = dict(ok=ok, divergences=divergences)
        elif self.kind == "importance":
            out = program(self.inner, key, ld)
            stats = dict(ess=out["ess"], finite=jnp.sum(jnp.isfinite(out["log_weights"])))
            samples = out["samples"]
        else:  # vi: the whole fit as one chunk
            final, state = self.inner._whole(key, ld)
            stats = dict(ok=state.ok, skipped=jnp.sum(~state.good))
            samples = final.draws
        return {k: samples[k] for k in self.sites}, stats

    def _program(self, keys, observations, ld0):
        return jax.vmap(self._one, in_axes=(0, 0, None))(keys, observations, ld0)


def _vectorised(m, ld0, sites, num_simulations, batch_size) -> Optional[_Vectorised]:
    """The vectorised runner for the built-in methods whose programs allow it, else None."""
    from ppl.mcmc.gibbs import Gibbs, _GibbsProgram
    from ppl.mcmc.sampler import _MCMC
    from ppl.sampling.importance import Importance
    from ppl.vi import VI

    if isinstance(m, _MCMC):
        inner, kind, chains = dataclasses.replace(m, progress_bar=False), "mcmc", m.num_chains
    elif isinstance(m, Gibbs):
        quiet = dataclasses.replace(m, progress_bar=False)
        inner, kind, chains = _GibbsProgram(quiet, quiet.schedule(ld0)), "gibbs", m.num_chains
    elif isinstance(m, Importance):
        inner, kind, chains = m, "importance", 1
    elif isinstance(m, VI):
        inner, kind, chains = m, "vi", 1
    else:
        return None
    if batch_size is None:
        per_draw = 8 * max(ld0.spec.value_size, 1)
        per_run = 4 * per_draw * max(_draws_per_run(m) or 1, 1)
        batch_size = max(1, min(MAX_BATCH, num_simulations, MEMORY_BUDGET_BYTES // per_run))
    return _Vectorised(inner=inner, kind=kind, num_chains=chains, sites=tuple(sites), batch=int(batch_size))


def _run_vectorised(runner: _Vectorised, ld0, keys, observations, todo, show):
    """Run the vmapped program over the simulations `todo` in chunks of `runner.batch` (the
    last padded), ONE executable for every chunk. Returns ({index: _Outcome}, timing)."""
    b = runner.batch
    chunks = [todo[i: i + b] for i in range(0, len(todo), b)]
    pick = lambda idx: (keys[idx], jax.tree.map(lambda v: v[idx], observations), ld0)
    padded = lambda c: np.concatenate([c, np.full(b - len(c), c[-1])])
    outcomes, compile_s, run_s, source = {}, 0.0, 0.0, None
    with _bar(len(todo), runner.inner, show) as bar:
        for c in chunks:
            out, c_s, r_s, src = run_program(runner, *pick(padded(c)))  # compiled once, then reused
            compile_s, run_s, source = compile_s + c_s, run_s + r_s, source or src
            draws, stats = jax.device_get(out)
            for j, i in enumerate(c):
                outcomes[int(i)] = _read(runner, jax.tree.map(lambda v: v[j], draws),
                                         jax.tree.map(lambda v: v[j], stats))
            bar.update(len(c))
    return outcomes, {"compile_s": compile_s, "run_s": run_s, "compile_source": source}


def _read(runner: _Vectorised, draws, stats) -> _Outcome:
    """One simulation's outcome from the vectorised program's outputs."""
    flags = []
    if runner.kind in ("mcmc", "gibbs"):
        if not bool(stats["ok"]):
            return _Outcome(failure="init: no finite starting point found for some chain")
        if int(stats["divergences"]):
            flags.append(f"divergences: {int(stats['divergences'])} divergent transitions after warmup")
        ess, rhat = _chain_diagnostics(draws)
        if runner.num_chains > 1 and rhat > R_HAT_FLAG:
            flags.append(f"r_hat: {rhat:.3f} > {R_HAT_FLAG}: the chains have not mixed")
    elif runner.kind == "importance":
        if int(stats["finite"]) == 0:
            return _Outcome(failure="importance: no particle has a finite weight")
        ess = float(stats["ess"])
    else:
        if not bool(stats["ok"]):
            return _Outcome(failure="vi: no finite starting point for the guide")
        skipped, steps = int(stats["skipped"]), runner.inner.num_steps
        if skipped == steps:
            return _Outcome(failure="vi: the objective or its gradient was not finite at every step")
        if skipped > 0.1 * steps:
            flags.append(f"vi: {skipped} of {steps} steps had a non-finite objective or gradient")
        ess = float(_num_draws(draws))
    return _Outcome(draws=draws, ess=ess, flags=tuple(flags))


def _run_loop(m, ld0, keys, observations, todo, show):
    """Run `m.run` per simulation (its compiled program reused: same shapes), recording its
    warnings as flags and its exceptions as failures."""
    outcomes, compile_s, t1 = {}, 0.0, time.perf_counter()
    with _bar(len(todo), m, show) as bar:
        for i in todo:
            ld = _with_observations(ld0, jax.tree.map(lambda v: v[i], observations))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    r = m.run(keys[i], ld)
                except Exception as e:  # noqa: BLE001 - a failed run is counted, never hidden
                    outcomes[int(i)] = _Outcome(failure=f"{type(e).__name__}: {e}")
                    bar.update(1)
                    continue
            compile_s += r.timing.get("compile_s", 0.0)
            texts = list(dict.fromkeys([str(w.message) for w in caught] + list(r.diagnostics.get("warnings", []))))
            draws = {k: np.asarray(v) for k, v in r.samples.items()}
            outcomes[int(i)] = _Outcome(draws=draws, ess=_result_ess(r, draws), flags=tuple(texts))
            bar.update(1)
    return outcomes, {"compile_s": compile_s, "run_s": time.perf_counter() - t1 - compile_s}


def _result_ess(r, draws) -> float:
    """ESS for thinning a `Result`'s draws: the weights' ESS where the method reports one,
    bulk ESS where it reports R-hat (Markov chains), else the number of draws (independent)."""
    if "ess_weights" in r.diagnostics:
        return float(r.diagnostics["ess_weights"])
    if "r_hat" in r.diagnostics:
        return _chain_diagnostics(draws)[0]
    return float(_num_draws(draws))


def _num_draws(draws) -> int:
    v = np.asarray(next(iter(draws.values())))
    return int(v.shape[0] * v.shape[1])


def _chain_diagnostics(draws) -> tuple:
    """(smallest bulk ESS, largest R-hat) over every scalar of `draws` (C, S, *shape);
    constant scalars (NaN) are ignored."""
    flat = np.concatenate([np.asarray(v, float).reshape(v.shape[0], v.shape[1], -1) for v in draws.values()], axis=2)
    d = scalar_diagnostics(flat)
    ess, rhat = d["ess_bulk"], d["r_hat"]
    ess = float(np.nanmin(ess)) if np.isfinite(ess).any() else float(_num_draws(draws))
    rhat = float(np.nanmax(rhat)) if np.isfinite(rhat).any() else 1.0
    return ess, rhat


class _bar:
    """A tqdm bar over simulations (or nothing)."""

    def __init__(self, total, method, on):
        self.total, self.on = total, on
        self.desc = f"sbc {getattr(method, 'name', '') or type(method).__name__}"

    def __enter__(self):
        if self.on:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="sim", leave=False)
        return self

    def update(self, k):
        if self.on:
            self.bar.update(k)

    def __exit__(self, *exc):
        if self.on:
            self.bar.close()
        return False


# ----------------------------------------------------------------------------- ranks

def _thin(draws: np.ndarray, num_draws: int) -> np.ndarray:
    """`num_draws` draws evenly spaced through `draws` (C, S, ...) taken chain after chain."""
    v = np.asarray(draws)
    flat = v.reshape((v.shape[0] * v.shape[1],) + v.shape[2:])
    n = flat.shape[0]
    idx = np.minimum(((np.arange(num_draws) + 0.5) * n / num_draws).astype(int), n - 1)
    return flat[idx]


def _rank(draws, truths, num_draws, rng):
    """Ranks of `truths` among `num_draws` thinned draws per site; ties broken at random.
    Returns (site -> ranks, None) or (None, why it failed)."""
    out = {}
    n = _num_draws(draws)
    if n < num_draws:
        return None, f"draws: the run gave {n} draws, fewer than num_draws={num_draws}"
    for k, truth in truths.items():
        if k not in draws:
            return None, f"draws: the run returned no draws of site '{k}'"
        d = _thin(draws[k], num_draws)
        if not np.all(np.isfinite(d)):
            return None, f"draws: non-finite draws of site '{k}'"
        below = (d < truth).sum(axis=0)
        ties = (d == truth).sum(axis=0)
        out[k] = below + rng.integers(0, ties + 1)
    return out, None


def _collect(outcomes, truths, num_draws, tie_seed, failures):
    """Ranks (site -> (S, *shape), -1 where failed), ESS per simulation and flags, from the
    runs' outcomes; failures found here (no draws, non-finite draws) are added to `failures`."""
    num = next(iter(truths.values())).shape[0] if truths else len(outcomes)
    ranks = {k: np.full(v.shape, -1, np.int64) for k, v in truths.items()}
    flags, ess = {}, np.full(num, np.nan)
    for i, outcome in sorted(outcomes.items()):
        if outcome.failure is not None:
            failures[i] = outcome.failure
            continue
        rng = np.random.default_rng(tie_seed + [i])  # per simulation: independent of chunking
        row, problem = _rank(outcome.draws, {k: v[i] for k, v in truths.items()}, num_draws, rng)
        if problem is not None:
            failures[i] = problem
            continue
        for k, r in row.items():
            ranks[k][i] = r
        ess[i] = outcome.ess
        problems = list(outcome.flags)
        if outcome.ess < num_draws:
            problems.append(f"ess: effective sample size {outcome.ess:.0f} is below num_draws={num_draws}, so "
                            f"the thinned draws are autocorrelated and their ranks not uniform even for "
                            f"an exact sampler; run longer or lower num_draws")
        if problems:
            flags[i] = problems
    return ranks, ess, flags


def _p_values(ranks, num_draws):
    shape = ranks.shape[1:]
    flat = ranks.reshape(ranks.shape[0], math.prod(shape))
    return _uniformity.ecdf_p_values(flat, num_draws).reshape(shape)


def _warn(notes, m, failures, flags, num):
    name = getattr(m, "name", type(m).__name__)
    if failures:
        first = next(iter(sorted(failures.items())))
        flag(notes, "sbc", f"{len(failures)} of {num} simulations with method {name!r} failed (first: "
                           f"simulation {first[0]}, {first[1]}); their ranks are -1 and left out of the "
                           f"p-values, which a failure rate this size can bias; see SBCResult.failures",
             stacklevel=3)
    if flags:
        kinds = {}
        for problems in flags.values():
            for p in problems:
                kinds[p.split(":")[0]] = kinds.get(p.split(":")[0], 0) + 1
        what = ", ".join(f"{k} in {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        flag(notes, "sbc", f"{len(flags)} of {num} simulations with method {name!r} were flagged ({what}); "
                           f"they keep their ranks; see SBCResult.flags", stacklevel=3)
