"""The MCMC methods of `ppl.infer`: `NUTS`, `HMC`, `MH` and `ChEES`.

Each method's chains run through the one chain driver a chunk at a time (`ppl.mcmc.chains`:
initialisation, Stan-style warmup and sampling, the constrained draws and deterministic
sites; one compiled program for every chunk); inside it, chains are one `vmap` axis or, with
`chain_method="sequential"`, run one after another (`lax.map`).
Chain c's random keys are `fold_in(key_init, c)` and `fold_in(key_run, c)`, so the same key
gives the same draws (up to floating-point rounding) whether chains run vectorised,
sequentially, in concurrent groups or sharded. With several devices the chain axis is
sharded across them (`jax.sharding`), when the chains divide evenly.

`chain_method="auto"` (the default) on a single CPU device splits the chains into as many
equal groups as the CPU has cores (at most one chain per group), compiles ONE program for a
group and runs the groups at the same time, each from its own thread (an XLA executable runs
on the thread that calls it). Within a group NUTS chains run one after another: a CPU gains
little from batching small operations, and vectorised NUTS chains take longer to compile
(measured in benchmarks/bench_mcmc.py). Vectorised NUTS chains run as lanes
(`ppl.mcmc.lanes`): a chain whose trajectory ends starts its next transition at once
instead of waiting for the batch's longest one, with the draws it makes alone. HMC and MH gain from batching and stay vectorised, unless the
model takes a LAPACK-backed factorisation (batched, it could stop the groups from running at
once: see `ppl.runtime.program.blocks_the_pool`). On accelerators and several devices, "auto"
is one vectorised program. `chain_method="vectorized"` on a single multi-core CPU device also
splits the chains into one group per core, each group a vectorised batch (lanes for NUTS),
run at once, unless the model's gradient takes a LAPACK-backed factorisation: XLA's CPU
backend runs one batch's small operations on one core, so one batch per core is faster with
the same draws (eight schools, 256 NUTS chains, 500 + 500: a first call of 12.1-12.3 s against
14.6-17.6 s as one batch). Where one group per core would be wide (more than about 3200
position-sized numbers per group: 256 chains of a 10-d model, 32 of a 100-d one), the chains
split into narrower groups that one thread per core takes in turn: a batch whose state
outgrows the core's cache is slower per chain (eight schools, 4096 chains: 3.37 us per
gradient in two groups of 2048, 1.49 in sixteen of 256).

Numerical trouble is counted apart: `diagnostics["divergences"]` (energy error above 1000)
and `diagnostics["nonfinite"]` (the model's log density or gradient NaN or infinite at a
point a trajectory reached; `nonfinite_sites` names the failing terms), each with its own
warning and advice.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Optional

import numpy as np

from ppl.compile.terms import nonfinite_terms
from ppl.method.diagnostics import flag_stuck_chains, mixing, per_site
from ppl.method.flags import flag
from ppl.method.result import Result
from ppl.adapt import window
from ppl.mcmc import chees, driver, hmc, mh, nuts
from ppl.mcmc.chains import CHAIN_AXIS, ChainMethod


@dataclasses.dataclass(frozen=True)
class _MCMC(ChainMethod):
    """Shared options of the gradient-free and gradient-based samplers. Finite discrete
    latent sites are summed out of the log density and drawn afterwards (see
    `ppl.compile.marginal`)."""

    sums_out_discrete: ClassVar[bool] = True

    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    target_accept: float = 0.8
    dense_mass: bool = False
    thinning: int = 1
    init: Any = "uniform"
    progress_bar: Any = None
    chain_method: str = "auto"
    chunk_size: Optional[int] = None

    def _kernel(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _move(self, ld, log_density):
        return driver.single(self._kernel())

    def _restart_at_windows(self) -> bool:
        return self._kernel().restart_at_windows

    def _assemble(self, ld, run) -> Result:
        samples = run.samples
        diagnostics = self._diagnostics(samples, run.stats, run.states)
        if np.isfinite(run.lane_utilization):
            # Chains run as lanes (`ppl.mcmc.lanes`): gradient evaluations made / (chains x
            # batched steps), this run's chunks only.
            diagnostics["lane_utilization"] = run.lane_utilization
            # what no schedule could pass: sum / (chains x max) of the chains' own evaluations
            diagnostics["lane_utilization_bound"] = run.lane_utilization_bound
        if diagnostics["nonfinite"]:
            diagnostics["nonfinite_sites"] = _failing_sites(ld, run.states)
        result = Result(method=self, samples=samples, diagnostics=diagnostics, log_density=ld)
        self._warn(diagnostics, samples)
        flag_stuck_chains(diagnostics, self.name, samples, ld, diagnostics["step_size"])
        return result

    def _diagnostics(self, samples, stats, states):
        sites = per_site(samples)
        tally, tuning = states.tally, states.tuning[0]
        stats = {k: np.asarray(v) for k, v in stats.items()}
        d = {
            "r_hat": {k: v["r_hat"] for k, v in sites.items()},
            "ess": {k: v["ess_bulk"] for k, v in sites.items()},
            "ess_tail": {k: v["ess_tail"] for k, v in sites.items()},
            "divergences": int(stats["diverging"].sum()),
            "warmup_divergences": int(np.sum(tally.warmup_divergences)),
            "nonfinite": int(stats["nonfinite"].sum()),
            "warmup_nonfinite": int(np.sum(tally.warmup_nonfinite)),
            "acceptance_rate": float(stats["acceptance_rate"].mean()) if stats["acceptance_rate"].size else float("nan"),
            "step_size": np.asarray(tuning.step_size),
            "inverse_mass_matrix": np.asarray(tuning.inverse_mass_matrix),
            "num_grad_evals": int(stats["n_steps"].sum()),
            "num_warmup_grad_evals": int(np.sum(tally.warmup_grad_evals)),
        }
        if "tree_depth" in stats:
            d["tree_depth_mean"] = float(stats["tree_depth"].mean()) if stats["tree_depth"].size else float("nan")
            d["tree_depth_saturation"] = float(np.mean(stats["tree_depth"] >= self.max_tree_depth)) \
                if stats["tree_depth"].size else 0.0
        d["sample_stats"] = stats
        return d

    def _warn(self, d, samples) -> None:
        problems = []
        chains = mixing(d["r_hat"], samples, self.num_chains, "the chains have not mixed; run longer "
                        "(num_warmup/num_samples), or reparameterise the model")
        d["outlier_chain"] = chains.outlier_chain
        if chains.warning:
            problems.append(chains.warning)
        # Warmup's early, far too large steps can reach absurd points (a scale underflowing to
        # 0); only failures while sampling say that the draws avoid a region of the posterior.
        if d["nonfinite"]:
            where = ", ".join(f"'{n}'" for n in d.get("nonfinite_sites", [])) or "no single site (the sum overflowed)"
            problems.append(
                f"the model's log density or its gradient was NaN or infinite at points the sampler "
                f"reached ({d['nonfinite']} transitions after warmup, {d['warmup_nonfinite']} in warmup), "
                f"in the term of {where}; those regions are never visited, so the draws may be biased. "
                f"This is numerical failure, not geometry: raising target_accept will not help. Make the "
                f"computation stable there (float64 with jax.config.update('jax_enable_x64', True), "
                f"jitter on matrix diagonals before a Cholesky factor, log-space arithmetic, clipping "
                f"exp arguments), or bound the parameter's prior away from the failing region; "
                f"ppl.check(model, ...) reports the finiteness of every site's term and gradient")
        if d["divergences"]:
            problems.append(
                f"{d['divergences']} divergent transitions after warmup: the draws may be biased; raise "
                f"target_accept (e.g. 0.95) or reparameterise (e.g. non-centred hierarchical models)")
        if d.get("tree_depth_saturation", 0) > 0:
            problems.append(
                f"{100 * d['tree_depth_saturation']:.1f}% of transitions hit max_tree_depth="
                f"{self.max_tree_depth}: raise max_tree_depth or reparameterise")
        for p in problems:
            flag(d, self.name, p, stacklevel=4)


def _failing_sites(ld, states) -> list:
    """The sites whose log-density term (or its gradient) fails at a point where a chain met
    a numerical failure (the first such chain's last one)."""
    positions = np.asarray(states.tally.nonfinite_position)
    hit = np.flatnonzero(np.any(positions != 0, axis=-1))
    if not hit.size:
        return []
    try:
        return nonfinite_terms(ld, positions[hit[0]])
    except Exception:  # noqa: BLE001 - naming is best effort; the warning is given regardless
        return []


@dataclasses.dataclass(frozen=True)
class NUTS(_MCMC):
    """The No-U-Turn sampler with Stan-style windowed warmup.

    Multinomial trajectory sampling and the generalised U-turn criterion (Hoffman & Gelman
    2014; Betancourt 2017, "A Conceptual Introduction to Hamiltonian Monte Carlo", app. A).

    Args:
      num_warmup, num_samples, num_chains: iterations per chain and number of chains.
      target_accept: dual-averaging target for the acceptance statistic.
      max_tree_depth: at most 2**max_tree_depth leapfrog steps per transition.
      dense_mass: adapt a dense (True) or diagonal inverse mass matrix.
      init: "uniform" (uniform(-2, 2) unconstrained), a radius r (uniform(-r, r), as Stan's
        ``init=r``), "prior", or a dict of initial values.
      progress_bar: None (auto: on in a terminal), True or False.
      chain_method: "vectorized" (chains as a vmap axis of one program; on a single CPU
        device, one such group of chains per core, run at the same time, unless the model's
        gradient factorises a matrix; many chains in narrower groups, taken in turn),
        "sequential" (one after another in one program) or
        "auto": on a single CPU device, groups of chains run at the same time on the CPU's
        cores, one after another within a group; elsewhere vectorized. Each chain gets the
        same random numbers whatever the layout (and however many devices), so the draws are
        the same: in float64 to about 1e-12 (the programs' arithmetic differs only in the last
        bit, and warmup rounds what it feeds back to 20 bits, so no difference grows); in float32 the same until rounding tips one accept or
        tree decision the other way, after which that chain's draws differ (statistically
        equivalent, not identical): use float64 for layout-independent draws.

    Example:
      >>> r = ppl.infer(model, data, method=ppl.NUTS(num_chains=8, num_samples=2000))
    """

    max_tree_depth: int = 10
    name: ClassVar[str] = "nuts"
    _varying_trajectories: ClassVar[bool] = True
    _resumable: ClassVar[bool] = True

    def check(self, ld) -> None:
        super().check(ld)
        if not isinstance(self.max_tree_depth, int) or isinstance(self.max_tree_depth, bool) \
                or not 1 <= self.max_tree_depth <= 30:
            raise ValueError(f"NUTS: max_tree_depth must be an int in [1, 30], got {self.max_tree_depth!r}.")

    def _kernel(self):
        return nuts.build_kernel(max_tree_depth=self.max_tree_depth)

    def _evaluations_per_transition(self) -> int:
        return nuts.typical_steps(self.max_tree_depth)


@dataclasses.dataclass(frozen=True)
class HMC(_MCMC):
    """Hamiltonian Monte Carlo with a jittered trajectory length: about `num_steps` leapfrog
    steps per transition, Metropolis-corrected (Neal 2011, "MCMC using Hamiltonian
    dynamics"); warmup as NUTS.

    Args:
      num_steps: the mean number of leapfrog steps per transition.
      jitter: each transition draws its number of steps uniformly from the integers in
        num_steps * [1 - jitter, 1 + jitter] (Neal 2011, sec. 3.2): one fixed length can
        resonate with the posterior (on a Gaussian whose period is near the trajectory, the
        chain returns to where it started: 35 effective draws of 4000 were measured with a
        fixed 8 steps on a 1-d normal). 0 gives the static trajectory.
      Other options as `NUTS`.
    """

    num_steps: int = 16
    jitter: float = 0.5
    name: ClassVar[str] = "hmc"

    def check(self, ld) -> None:
        super().check(ld)
        if not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) or self.num_steps < 1:
            raise ValueError(f"HMC: num_steps must be a positive int, got {self.num_steps!r}.")
        if not isinstance(self.jitter, (int, float)) or not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"HMC: jitter must be a number in [0, 1), got {self.jitter!r}.")

    def _kernel(self):
        return hmc.build_kernel(num_steps=self.num_steps, jitter=float(self.jitter))

    def _evaluations_per_transition(self) -> int:
        return self.num_steps


@dataclasses.dataclass(frozen=True)
class MH(_MCMC):
    """Random-walk Metropolis with a Gaussian proposal of covariance step_size^2 * M^-1,
    both adapted in warmup towards an acceptance rate of 0.234 (Roberts, Gelman & Gilks 1997)."""

    num_warmup: int = 2000
    num_samples: int = 5000
    target_accept: float = 0.234
    name: ClassVar[str] = "mh"

    def _kernel(self):
        return mh.build_kernel()


@dataclasses.dataclass(frozen=True)
class ChEES(_MCMC):
    """ChEES-HMC: HMC for many chains at once, its trajectory length adapted across the
    chains (Hoffman, Radul & Sountsov 2021, "An adaptive MCMC scheme for setting trajectory
    lengths in Hamiltonian Monte Carlo", AISTATS, Algorithm 1).

    Every chain makes the same number of leapfrog steps at each iteration, ceil(h T / eps):
    a fraction h of the trajectory length T (h the base-2 Halton sequence at the iteration:
    the jitter, t = h T), with the step size eps. All chains share T, eps and the mass matrix,
    so hundreds or thousands of vectorised chains advance in lockstep with no idle lanes.
    Warmup follows Stan's windowed schedule (as `NUTS`), the chains adapting together:

    - step size: dual averaging (Hoffman & Gelman 2014, eq. 6) on the chains' mean
      acceptance probability (``driver.pooled_acceptance``): the harmonic mean over Stan's
      initial buffer (the reduction of the authors' TensorFlow Probability code), so that the step size shrinks until even a chain started
      in a narrow region moves; the arithmetic mean afterwards, which one chain's rare low
      acceptance among many does not drag down (with the harmonic mean throughout, 256
      chains on the non-centred eight schools kept an acceptance of 0.99 and half the step
      size of NUTS). The step-size heuristic at each window's end follows the chains' mean
      trial acceptance, so every chain keeps the same step size;
    - mass matrix: each slow window's diagonal estimate from the draws of every chain
      (pooled Welford, ``ppl.adapt.welford.pooled_inverse_mass_matrix``: a cross-chain
      variance as the paper's, regularised as Stan's);
    - trajectory length: Adam ascent of log T on the ChEES criterion
      ChEES = 1/4 E[(||theta' - E theta||^2 - ||theta - E theta||^2)^2], whose gradient is
      estimated after every transition from all chains, h T sum_c a_c g_c / sum_c a_c with
      g_c = (||theta'_c - mean'||^2 - ||theta_c - mean||^2) (theta'_c - mean') . v'_c and a_c
      the acceptance probabilities (`ppl.adapt.chees`; norms in the mass matrix's metric).

    Where a window ends, T is rescaled by the change of the slowest time scale under the
    new metric (``ppl.adapt.chees.rescale``). Sampling uses the final step size and the
    averaged T, still jittered.

    Shared tuning has a price where some chains sit in a minor mode they never leave (a
    mixture, with a hundred chains or more): those chains bias the pooled draws as they would
    with NUTS, and they also widen the shared mass matrix and shrink the shared step size for
    every chain. ``r_hat`` and the per-chain means show it.

    Args:
      num_chains: chains (at least 2; default 64: the cross-chain estimates that steer the
        warmup, the ChEES gradient above all, are noisy with a handful of chains and steady
        from a few dozen, while 64 chains of a small model still run in seconds on a CPU; on
        a GPU a thousand chains cost little more time per iteration than a few).
      num_warmup, num_samples: iterations per chain (1000 + 1000, as NUTS). With
        num_warmup=0 nothing is adapted: one leapfrog step of size 1 per transition.
      target_accept: the chains' mean acceptance probability that dual averaging targets
        (0.8, as NUTS; 0.9 cut the divergences on the non-centred eight schools 20-fold for
        5-15% fewer effective draws per gradient).
      max_leapfrog_steps: at most this many leapfrog steps per transition.
      learning_rate: Adam's learning rate for log T (0.025, as the paper's implementation).
      thinning, init, progress_bar, chunk_size: as `NUTS`. The mass matrix is diagonal
        (``dense_mass=True`` is refused: see `check`).
      chain_method: "auto" and "vectorized" both run the chains as one vectorised program
        (the warmup reduces across chains at every iteration); "sequential" is refused.

    Diagnostics are those of `NUTS` (divergences, nonfinite, step_size, acceptance_rate,
    r_hat, ess, ...) and ``trajectory_length``, the adapted T (in the units of the
    unconstrained space scaled by the mass matrix: a transition integrates h T with h in (0, 1]).

    Example:
      >>> r = ppl.infer(model, data, method=ppl.ChEES(num_chains=256, num_samples=200))
    """

    num_chains: int = 64
    target_accept: float = 0.8
    max_leapfrog_steps: int = 1000
    learning_rate: float = 0.025
    name: ClassVar[str] = "chees"

    def check(self, ld) -> None:
        super().check(ld)
        if self.num_chains < 2:
            raise ValueError(f"ChEES: num_chains must be at least 2 (the warmup averages over chains), got "
                             f"{self.num_chains!r}; use 64 or more chains, or NUTS for a few chains.")
        if self.chain_method == "sequential":
            raise ValueError(
                "ChEES: chain_method='sequential' cannot run ChEES: its warmup adapts the step size, mass matrix "
                "and trajectory length from statistics across all chains at every iteration, so the chains "
                "must advance together in one vectorised program; use chain_method='vectorized' (or 'auto').")
        if self.dense_mass:
            raise ValueError(
                "ChEES: dense_mass=True is not supported: ChEES estimates one mass matrix from every chain's "
                "draws, and early in warmup, with the chains still spread along a posterior ridge, a dense "
                "estimate can be near-singular and fling chains to absurd points (seen on kidiq with 64 "
                "chains); use the diagonal metric (dense_mass=False, the paper's choice) or "
                "ppl.NUTS(dense_mass=True).")
        if not isinstance(self.max_leapfrog_steps, int) or isinstance(self.max_leapfrog_steps, bool) \
                or self.max_leapfrog_steps < 1:
            raise ValueError(f"ChEES: max_leapfrog_steps must be a positive int, got {self.max_leapfrog_steps!r}.")
        if not isinstance(self.learning_rate, (int, float)) or isinstance(self.learning_rate, bool) \
                or not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"ChEES: learning_rate must be a number in (0, 1], got {self.learning_rate!r}.")

    def _move(self, ld, log_density):
        return chees.build_move(self.num_warmup, CHAIN_AXIS, self.max_leapfrog_steps, float(self.learning_rate),
                                self.dense_mass)

    def _restart_at_windows(self) -> bool:
        return True

    def _settings(self) -> driver.Settings:
        # The harmonic mean of the chains' acceptance over the initial fast buffer (every chain
        # reaches the bulk), the arithmetic mean afterwards (`driver.pooled_acceptance`).
        buffers = window.buffers(self.num_warmup)
        return driver.Settings(self.target_accept, self.dense_mass, chain_axis=CHAIN_AXIS,
                               harmonic_until=buffers[0] if buffers else self.num_warmup)

    def _sequential(self, sharding, ld, log_density, z) -> bool:
        return False  # the chains reduce across the vmap axis: never one after another

    def _groups(self, ld=None) -> int:
        return 1  # every chain in one program: the warmup's statistics span all of them

    def _evaluations_per_transition(self) -> int:
        return 16  # a typical adapted trajectory; the compiler's options only need the scale

    def _diagnostics(self, samples, stats, states):
        d = super()._diagnostics(samples, stats, states)
        traj = states.move.trajectory
        log_length = np.where(np.asarray(traj.avg_count) > 0, np.asarray(traj.log_length_avg),
                              np.asarray(traj.log_length))
        d["trajectory_length"] = float(np.exp(np.max(log_length)))
        return d
