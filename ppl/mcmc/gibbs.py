"""Gibbs sampling: discrete sites by exact enumeration, continuous blocks by an MCMC kernel.

One sweep visits the blocks of a schedule in order; each redraws its sites given all others:

- discrete sites with finite support are drawn from their exact full conditional
  (`ppl.compile.enumerate`): elements of a plate at once (O(N K) terms for N elements with K
  values), small groups of interacting sites jointly, Markov chains of states by forward
  filtering backward sampling, anything else one site at a time — see that module for how
  the structure is detected;
- continuous sites (one block by default) take one transition of an inner kernel (NUTS by
  default; HMC or random-walk MH on request) on the log density with the discrete values held
  fixed. The kernel's state is rebuilt at each sweep (the target changed), and its step size
  (dual averaging) and mass matrix (Welford, Stan's windows) are adapted during warmup from
  these conditional transitions;
- a block with a user `sampler` is redrawn by `sampler(key, values) -> new values`, e.g. a
  conjugate update; it must leave the conditional distribution of its sites invariant.

The state is the flat unconstrained vector `z` (discrete values stored as floats); the
continuous update targets the joint density of (unconstrained continuous, discrete), whose
image under the constraining map is the posterior. Chains are a `vmap` axis (on a CPU, with
a NUTS block, one after another), in concurrent groups on a single CPU device (one per core,
as `ppl.NUTS`); warmup and sampling are one `lax.scan`.

Reference: Geman & Geman (1984); Gelfand & Smith (1990) (Gibbs sampling); Tierney (1994)
(hybrid kernels: Metropolis-within-Gibbs, each block invariant for its conditional).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl._keys import as_key
from ppl.compile.hoist import hoist
from ppl.compile.init import check_init_values
from ppl.method.diagnostics import flag_stuck_chains, mixing, per_site
from ppl.method.flags import flag
from ppl.method.base import Method
from ppl.method.result import Result
from ppl.compile import enumerate as enum
from ppl.model.scanned_dist import is_scanned
from ppl.mcmc import driver, hmc, mh, nuts
from ppl.mcmc.chains import ChainMethod

INNER_KERNELS = ("nuts", "hmc", "mh")


@dataclasses.dataclass(frozen=True)
class GibbsBlock:
    """One block of a Gibbs schedule.

    Args:
      sites: a site name or a tuple of names.
      sampler: optional `sampler(key, values) -> dict` drawing new (constrained) values for
        `sites` from their conditional given `values` (a dict of every latent's current value
        in one chain). Without it, discrete sites are enumerated and continuous sites take a
        transition of `inner`.
      inner: the kernel for a continuous block ("nuts", "hmc", "mh"); default: `Gibbs.inner`.

    Example:
      >>> def mu_given_rest(key, v):  # conjugate normal update
      ...     return {"mu": ...}
      >>> ppl.Gibbs(blocks=["z", ppl.GibbsBlock("mu", sampler=mu_given_rest), "sigma"])
    """

    sites: Any
    sampler: Optional[Callable] = None
    inner: Optional[str] = None

    def __post_init__(self):
        sites = (self.sites,) if isinstance(self.sites, str) else tuple(self.sites)
        if not sites or not all(isinstance(s, str) for s in sites):
            raise TypeError(f"GibbsBlock: sites must be a site name or a tuple of names, got {self.sites!r}.")
        object.__setattr__(self, "sites", sites)
        if self.sampler is not None and not callable(self.sampler):
            raise TypeError(f"GibbsBlock {sites}: sampler must be a function (key, values) -> dict, got {self.sampler!r}.")
        if self.inner is not None and self.inner not in INNER_KERNELS:
            raise ValueError(f"GibbsBlock {sites}: inner must be one of {INNER_KERNELS}, got {self.inner!r}.")


def _as_block(b) -> GibbsBlock:
    if isinstance(b, GibbsBlock):
        return b
    if isinstance(b, str):
        return GibbsBlock(b)
    if isinstance(b, (tuple, list)) and len(b) == 2 and callable(b[1]):
        return GibbsBlock(b[0], sampler=b[1])
    if isinstance(b, (tuple, list)):
        return GibbsBlock(tuple(b))
    raise TypeError(
        f"Gibbs: each entry of blocks must be a site name, a tuple of names, (names, sampler) or "
        f"a ppl.GibbsBlock; got {b!r}."
    )


@dataclasses.dataclass(frozen=True)
class KernelBlock:
    """Continuous sites updated by one transition of an inner kernel."""

    names: Tuple[str, ...]
    index: Tuple[int, ...]
    inner: str

    def describe(self) -> str:
        return f"{self.inner} on {{{', '.join(self.names)}}} ({len(self.index)} unconstrained dims)"


@dataclasses.dataclass(frozen=True)
class SamplerBlock:
    """Sites redrawn by a user's conditional sampler."""

    names: Tuple[str, ...]
    sampler: Callable

    def describe(self) -> str:
        return f"user sampler {getattr(self.sampler, '__name__', 'sampler')} on {{{', '.join(self.names)}}}"


@dataclasses.dataclass(frozen=True)
class Gibbs(Method):
    """Gibbs sampling with exact enumeration of discrete sites and an inner MCMC kernel for the
    continuous ones.

    Args:
      blocks: the schedule, or None for the automatic one (every discrete site by enumeration,
        grouped as `ppl.compile.enumerate` detects, then all continuous sites as one `inner`
        block). Entries: a site name, a tuple of names, `(names, sampler)`, or a `GibbsBlock`;
        latent sites named in no block are appended with the automatic treatment.
      inner: "nuts" (default), "hmc" or "mh" for continuous blocks.
      num_warmup, num_samples, num_chains: sweeps of warmup and of sampling, per chain.
      target_accept: step-size adaptation target; None means 0.8 (nuts, hmc), 0.234 (mh).
      max_tree_depth: NUTS; num_steps: leapfrog steps of HMC.
      dense_mass: adapt a dense inverse mass matrix per continuous block.
      max_joint_states: largest product of supports drawn jointly by enumeration; 1 forces
        one-site-at-a-time updates of interacting discrete sites.
      init: "uniform", a radius r (uniform(-r, r)) or "prior" (continuous initial values;
        discrete ones come from the prior), or a dict of initial values.
      check_plates: verify declared plate independence numerically on a random state.
      progress_bar: None (on in a terminal), True or False.
      thinning, chain_method, chunk_size: as `ppl.NUTS` (the same chain driver runs the
        sweeps: chunks, checkpoints, Ctrl-C).

    Structure exploited (detected once per model, before compiling; see `ppl.compile.enumerate`):
    which log-density terms depend on which discrete site is read from the traced program
    (data flow through the jaxpr, never missed); a site's plate is an independent axis when
    every dependent term lies in that plate along the same dim (and a numerical probe on a
    random state confirms that changing one element changes those terms only at its
    position), and its elements are then drawn at once; interacting sites are drawn jointly
    (small product of supports) or by forward filtering backward sampling (a chain); any
    other structure falls back to exact one-element-at-a-time updates. `describe(ld)` and
    `diagnostics["schedule"]` say what was chosen.

    The result has `samples` (num_chains, num_samples, ...) for every site (discrete included),
    `diagnostics` with `r_hat`, `ess`, `ess_tail` per site, `divergences` (total, continuous
    blocks), `acceptance_rate`, `step_size` per continuous block, and `schedule` (what each
    block does). `log_evidence` is None.

    Raises:
      ValueError: a discrete site with infinite support (Poisson, Geometric, ...) and no user
        sampler, naming the site; unknown site names in `blocks`; a discrete site in a block
        for a gradient kernel; invalid options.

    Example:
      >>> r = ppl.infer(gmm, x, method=ppl.Gibbs(num_samples=500), key=0)
      >>> r.samples["z"].shape  # (4, 500, N)

    Reference: Geman & Geman (1984); Tierney (1994), "Markov chains for exploring posterior
    distributions" (combining kernels); Frühwirth-Schnatter (1994) (FFBS).
    """

    blocks: Any = None
    inner: str = "nuts"
    num_warmup: int = 500
    num_samples: int = 1000
    num_chains: int = 4
    target_accept: Optional[float] = None
    max_tree_depth: int = 10
    num_steps: int = 10
    dense_mass: bool = False
    max_joint_states: int = 1024
    init: Any = "uniform"
    check_plates: bool = True
    progress_bar: Any = None
    thinning: int = 1
    chain_method: str = "auto"
    chunk_size: Optional[int] = None
    name: ClassVar[str] = "gibbs"
    checkpoints: ClassVar[bool] = True

    def __post_init__(self):
        if self.blocks is not None and not isinstance(self.blocks, tuple):
            blocks = [self.blocks] if isinstance(self.blocks, (str, GibbsBlock)) else list(self.blocks)
            object.__setattr__(self, "blocks", tuple(blocks))

    # ------------------------------------------------------------------ checks and plan
    def _check_options(self):
        for name in ("num_warmup", "num_samples", "num_chains", "max_joint_states"):
            v = getattr(self, name)
            low = 0 if name == "num_warmup" else 1
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
                raise ValueError(f"Gibbs: {name} must be an int >= {low}, got {v!r}.")
        if self.inner not in INNER_KERNELS:
            raise ValueError(f"Gibbs: inner must be one of {INNER_KERNELS}, got {self.inner!r}.")
        if self.target_accept is not None and not 0 < float(self.target_accept) < 1:
            raise ValueError(f"Gibbs: target_accept must lie in (0, 1), got {self.target_accept!r}.")
        if not isinstance(self.thinning, int) or isinstance(self.thinning, bool) or self.thinning < 1:
            raise ValueError(f"Gibbs: thinning must be a positive int, got {self.thinning!r}.")
        if self.chain_method not in ("auto", "vectorized", "sequential"):
            raise ValueError(f"Gibbs: chain_method must be 'auto', 'vectorized' or 'sequential', got "
                             f"{self.chain_method!r}.")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"Gibbs: chunk_size must be a positive int or None, got {self.chunk_size!r}.")

    def _user_blocks(self, ld):
        blocks = [] if self.blocks is None else [_as_block(b) for b in self.blocks]
        known = {lat.name for lat in ld.spec.latents}
        seen = set()
        for b in blocks:
            for s in b.sites:
                if s not in known:
                    raise ValueError(
                        f"Gibbs: block {b.sites} names '{s}', which is not a latent site of the model; "
                        f"latent sites are {sorted(known)}."
                    )
                if s in seen:
                    raise ValueError(f"Gibbs: site '{s}' appears in more than one block; give each site one block.")
                seen.add(s)
        return blocks

    def check(self, ld, traced=None) -> None:
        self._check_options()
        if ld.dim == 0:
            raise ValueError("Gibbs: the model has no latent sites to sample.")
        blocks = self._user_blocks(ld)
        check_init_values(ld, self.init)
        sampled = {s for b in blocks if b.sampler is not None for s in b.sites}
        if any(lat.name not in sampled for lat in ld.spec.discrete):
            tr = (traced or enum.traced_structure(ld))[0]
            for lat in ld.spec.discrete:
                d = tr[lat.name].dist
                if lat.name not in sampled and is_scanned(d):
                    raise enum.scan_error(lat.name, "gibbs")
                if lat.name not in sampled and not getattr(d, "has_enumerate_support", False):
                    raise enum.infinite_support_error(lat.name, d)
        for b in blocks:
            if b.sampler is None:
                kinds = {ld.spec.latent(s).is_discrete for s in b.sites}
                if len(kinds) > 1:
                    raise ValueError(
                        f"Gibbs: block {b.sites} mixes discrete and continuous sites; a block is "
                        f"updated by enumeration (discrete) or by an inner kernel (continuous). "
                        f"Split it, or give the block a sampler."
                    )
                if kinds == {True} and b.inner is not None:
                    raise ValueError(
                        f"Gibbs: block {b.sites} holds discrete sites, which are enumerated; "
                        f"inner={b.inner!r} applies to continuous blocks only."
                    )

    def schedule(self, ld, key=0):
        """The update blocks, in sweep order (each has `describe()`), for the model `ld`."""
        traced = enum.traced_structure(ld) if ld.spec.discrete else None
        self.check(ld, traced)
        spec = ld.spec
        blocks = self._user_blocks(ld)
        named = {s for b in blocks for s in b.sites}
        sampled = {s for b in blocks if b.sampler is not None for s in b.sites}
        auto_discrete = [lat.name for lat in spec.discrete if lat.name not in named]
        enum_names = [lat.name for lat in spec.discrete if lat.name not in sampled]
        structure = None
        if enum_names:
            structure = enum.analyze(ld, enum_names, key=as_key(key), check_plates=self.check_plates, traced=traced)
        out = []

        def kernel_block(names, inner):
            index = tuple(i for n in names for i in range(spec.latent(n).offset, spec.latent(n).offset + spec.latent(n).size))
            return KernelBlock(tuple(names), index, inner or self.inner)

        for b in blocks:
            if b.sampler is not None:
                out.append(SamplerBlock(b.sites, b.sampler))
            elif spec.latent(b.sites[0]).is_discrete:
                out.extend(enum.plan(structure, list(b.sites), self.max_joint_states))
            else:
                out.append(kernel_block(b.sites, b.inner))
        if auto_discrete:
            out.extend(enum.plan(structure, auto_discrete, self.max_joint_states))
        rest = [lat.name for lat in spec.continuous if lat.name not in named]
        if rest:
            out.append(kernel_block(rest, None))
        return tuple(out)

    def describe(self, ld):
        """One line per block of the schedule for `ld`, e.g. 'enumerate z (5 values),
        vectorised over plate(s) ['data']'."""
        return [b.describe() for b in self.schedule(ld)]

    # ------------------------------------------------------------------ run
    def run(self, key, ld, checkpoint=None) -> Result:
        """The schedule is fixed first (it shapes the program); then the sweeps run through
        the one chain driver (`ppl.mcmc.chains.ChainMethod`), as every MCMC method's."""
        key = as_key(key)
        schedule = self.schedule(ld, key=jax.random.fold_in(key, 7))
        result = _GibbsProgram(self, schedule).run(key, ld, checkpoint)
        result.method = self
        return result


def _option(name):
    return property(lambda self: getattr(self.options, name))


@dataclasses.dataclass(frozen=True)
class _GibbsProgram(ChainMethod):
    """A `Gibbs` run with its schedule fixed (hashable: the compile-cache key): its sweep is a
    `Move` of one adapted block per continuous kernel block, run by the one chain driver."""

    options: Gibbs
    blocks: Tuple
    name: ClassVar[str] = "gibbs"
    sums_out_discrete: ClassVar[bool] = False  # its sweep draws them

    num_warmup = _option("num_warmup")
    num_samples = _option("num_samples")
    num_chains = _option("num_chains")
    thinning = _option("thinning")
    init = _option("init")
    progress_bar = _option("progress_bar")
    chain_method = _option("chain_method")
    chunk_size = _option("chunk_size")
    dense_mass = _option("dense_mass")
    target_accept = _option("target_accept")

    def check(self, ld) -> None:  # the options were checked by `Gibbs.schedule`
        self._check_counts(ld)

    @property
    def _varying_trajectories(self) -> bool:
        """NUTS blocks: on a CPU chains run one after another (under `vmap` they would all
        wait for the longest trajectory; measured on a 5-component mixture, 4 chains: 3.8 s
        vectorised, 1.9 s sequential)."""
        return any(b.inner == "nuts" for b in self._kernel_blocks())

    def _kernel(self, inner):
        o = self.options
        if inner == "nuts":
            return nuts.build_kernel(max_tree_depth=o.max_tree_depth)
        if inner == "hmc":
            return hmc.build_kernel(num_steps=o.num_steps)
        return mh.build_kernel()

    def _target(self, inner):
        if self.options.target_accept is not None:
            return float(self.options.target_accept)
        return 0.234 if inner == "mh" else 0.8

    def _kernel_blocks(self):
        return [b for b in self.blocks if isinstance(b, KernelBlock)]

    def _settings(self):
        return driver.Settings(0.8, self.options.dense_mass)

    def _block_evaluations(self, block) -> int:
        """Rough count of log-density (or local factor) evaluations of one update of `block`."""
        if isinstance(block, KernelBlock):
            if block.inner == "nuts":
                return nuts.typical_steps(self.options.max_tree_depth)
            return self.options.num_steps if block.inner == "hmc" else 1
        if isinstance(block, enum.EnumerationBlock):
            return block.sites[0].coupled_size * math.prod(s.num_values for s in block.sites)
        if isinstance(block, enum.ChainBlock):
            return len(block.sites) * block.sites[0].num_values
        return 1  # a user's update or a sampler block

    def _evaluations_per_transition(self) -> int:
        return sum(self._block_evaluations(b) for b in self.blocks)

    def _log_density(self, ld, z):
        # log_joint(...).total, not ld.log_prob: the kernels already read NaN as -inf; its
        # data-only terms are computed once per program (`hoist`).
        if not self._kernel_blocks():
            return lambda x: ld.log_joint(x).total
        return hoist(lambda x, ld: ld.log_joint(x).total, z, ld)

    def _conditional(self, log_joint, z, block):
        idx = jnp.asarray(block.index, jnp.int32)
        return (lambda zc: log_joint(z.at[idx].set(zc))), idx

    def _move(self, ld, log_density):
        """The sweep as a `Move`: state `z` (discrete values as floats); one adapted block per
        kernel block, whose search (when asked) runs inside the sweep on its conditional."""
        kblocks = self._kernel_blocks()
        enumerated = {type(b) for b in self.blocks} & {enum.EnumerationBlock, enum.ChainBlock}
        terms_fn = hoist(lambda z, ld: enum.site_terms(ld, z), jnp.zeros(ld.dim, jnp.result_type(float)), ld) \
            if enumerated else None

        def sweep(key, z, fn, params, search):
            infos, used, j = [], [], 0
            for block, k in zip(self.blocks, jax.random.split(key, len(self.blocks))):
                if isinstance(block, KernelBlock):
                    kernel = self._kernel(block.inner)
                    cond_fn, idx = self._conditional(fn, z, block)
                    state = kernel.init(z[idx], cond_fn)
                    eps, imm = params[j]
                    shapes = kernel.info_shapes(state, k, cond_fn, eps, imm, z.dtype)
                    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
                    state, info, eps = driver.search_then_move(kernel, k, state, cond_fn, eps, imm, search, zeros)
                    # the block's failing point, placed in the whole vector
                    info = info._replace(nonfinite_position=jnp.where(
                        info.is_nonfinite, z.at[idx].set(info.nonfinite_position), jnp.zeros_like(z)))
                    z = z.at[idx].set(state.position)
                    infos.append(info)
                    used.append(eps)
                    j += 1
                elif isinstance(block, SamplerBlock):
                    z = _apply_sampler(block, k, z, ld)
                elif isinstance(block, (enum.EnumerationBlock, enum.ChainBlock)):
                    z = block.update(k, z, ld, terms_fn)
                else:
                    z = block.update(k, z, ld)
            return z, tuple(infos), tuple(used)

        def info_shapes(z, fn, params, dtype):
            out = []
            for block, (eps, imm) in zip(kblocks, params):
                kernel = self._kernel(block.inner)
                cond_fn, idx = self._conditional(fn, z, block)
                shapes = kernel.info_shapes(kernel.init(z[idx], cond_fn), jnp.zeros((2,), jnp.uint32), cond_fn,
                                            eps, imm, dtype)
                out.append(shapes._replace(nonfinite_position=jax.ShapeDtypeStruct(z.shape, dtype)))
            return tuple(out)

        return driver.Move(blocks=tuple(np.asarray(b.index, np.int64) for b in kblocks), init=lambda z, fn: z,
                           step=sweep, position=lambda z: z, info_shapes=info_shapes, name="gibbs",
                           restart_at_windows=True,
                           target_accept=tuple(self._target(b.inner) for b in kblocks))

    def _assemble(self, ld, run) -> Result:
        return _result(self.options, self.blocks, run, ld)


def _apply_sampler(block, key, z, ld):
    values = ld.constrain(z)
    new = block.sampler(key, values)
    if not isinstance(new, dict) or set(new) - set(block.names):
        got = sorted(new) if isinstance(new, dict) else type(new).__name__
        raise ValueError(
            f"Gibbs: the sampler of block {block.names} must return a dict with new values for "
            f"(some of) {list(block.names)}; it returned {got}."
        )
    merged = {**values, **{k: jnp.reshape(jnp.asarray(v), jnp.shape(values[k])) for k, v in new.items()}}
    return ld.unconstrain(merged).astype(z.dtype)


def _result(method, schedule, run, ld) -> Result:
    samples = run.samples
    diag = per_site(samples)
    kblocks = [b for b in schedule if isinstance(b, KernelBlock)]
    diagnostics = {
        "r_hat": {k: v["r_hat"] for k, v in diag.items()},
        "ess": {k: v["ess_bulk"] for k, v in diag.items()},
        "ess_tail": {k: v["ess_tail"] for k, v in diag.items()},
        "schedule": [b.describe() for b in schedule],
        "divergences": 0,
        "nonfinite": 0,
    }
    if kblocks:
        stats = {k: np.asarray(v) for k, v in run.stats.items()}
        suffixes = ["" if b == 0 else f"_{b}" for b in range(len(kblocks))]
        labels = [", ".join(b.names) for b in kblocks]
        acc = [stats["acceptance_rate" + x] for x in suffixes]
        div = [stats["diverging" + x] for x in suffixes]
        diagnostics.update(
            divergences=int(sum(d.sum() for d in div)),
            nonfinite=int(sum(stats["nonfinite" + x].sum() for x in suffixes)),
            acceptance_rate=float(np.mean([a.mean() for a in acc])) if acc[0].size else float("nan"),
            acceptance_rate_by_block={l: float(a.mean()) if a.size else float("nan") for l, a in zip(labels, acc)},
            step_size={l: np.asarray(run.states.tuning[b].step_size) for b, l in enumerate(labels)},
            num_grad_evals=int(sum(stats["n_steps" + x].sum() for x in suffixes)),
            sample_stats={
                "diverging": np.any(np.stack(div), axis=0),
                "acceptance_rate": np.mean(np.stack(acc), axis=0),
            },
        )
    _warn(method, diagnostics, samples)
    flag_stuck_chains(diagnostics, "gibbs", samples, ld)
    return Result(method=method, samples=samples, diagnostics=diagnostics, log_density=ld)


def _warn(method, d, samples) -> None:
    """Flag (never raise) chains that have not mixed, divergent transitions and numerical
    failures of the continuous blocks."""
    chains = mixing(d["r_hat"], samples, method.num_chains, "the chains have not mixed; run longer, give "
                    "the sampler a better schedule (blocks=), or start the chains nearer the posterior (init=)")
    d["outlier_chain"] = chains.outlier_chain
    if chains.warning:
        flag(d, "gibbs", chains.warning, stacklevel=4)
    if d.get("nonfinite"):
        flag(d, "gibbs",
             f"the model's log density or its gradient was NaN or infinite at {d['nonfinite']} points the "
             f"continuous blocks reached after warmup; those regions are never visited, so the draws may "
             f"be biased. Make the computation stable there (float64, jitter before a Cholesky factor, "
             f"log-space arithmetic); ppl.check(model, ...) reports each site's term and gradient", stacklevel=4)
    if d["divergences"]:
        flag(d, "gibbs",
             f"{d['divergences']} divergent transitions of the continuous blocks after warmup: the "
             f"draws may be biased; raise target_accept (e.g. 0.95) or reparameterise", stacklevel=4)
