"""Run one of NumPyro's example files under ppl and under NumPyro, and say whether they agree.

Each `test_example_<name>.py` here holds the code of NumPyro's `examples/<name>.py` (its model
and `run_inference`, numpyro 0.22, Apache-2.0, Copyright Contributors to the Pyro project)
with `numpyro` renamed to `ppl` and nothing else changed, followed by a small harness part:
`ARGS` (the example's command-line arguments, at small settings), `simulate()` (data in place
of the download) and `run(args, rng_key)`, which calls the example's code and returns
`mcmc.get_samples()` (chains concatenated, as NumPyro gives them).

The NumPyro twin is the same file read back with `ppl` renamed to `numpyro` (`twin`): the
two runs differ by the import rename only.

Agreement (`agreement`): for every scalar of every site both runs return, with draws
`(chains, draws)` on each side, `ess` from NumPyro's `effective_sample_size`:

  mean:  |m_ppl - m_np| < 5 * sqrt(mcse_ppl^2 + mcse_np^2),   mcse = sd / sqrt(ess);
  sd:    |log(sd_ppl / sd_np)| < 5 * sqrt(se_ppl^2 + se_np^2),  se = se(log sd) by the delta
         method, 0.5 * sd((x - m)^2) / (sd^2 * sqrt(ess of (x - m)^2)) (so heavy tails widen it);

a z-score above 5 for one of up to a few hundred scalars has probability ~1e-4 when both
samplers are right. Fewer than `MIN_ESS` effective draws on either side is a failure of its
own (the Monte Carlo error itself is then not known).
"""
from __future__ import annotations

import os
import re
import sys
import types
from typing import NamedTuple

import numpy as np

os.environ.setdefault("NUMPYRO_SPHINXBUILD", "1")  # the examples' switch for progress_bar=False

Z_MAX = 5.0
MIN_ESS = 20.0


def twin(module):
    """The module's NumPyro twin: its source with the word `ppl` renamed to `numpyro`."""
    path = module.__file__
    with open(path) as f:
        source = re.sub(r"\bppl\b", "numpyro", f.read())
    name = "numpyro_twin_" + module.__name__.rsplit(".", 1)[-1]
    twin_module = types.ModuleType(name)
    twin_module.__file__ = path
    sys.modules[name] = twin_module
    exec(compile(source, path + " (numpyro twin)", "exec"), twin_module.__dict__)
    return twin_module


class Scalar(NamedTuple):
    """The comparison of one scalar (`site[index]`)."""

    name: str
    mean: tuple  # (ppl, numpyro)
    sd: tuple
    ess: tuple
    z_mean: float
    z_sd: float


class Agreement(NamedTuple):
    """Every compared scalar and the verdict."""

    scalars: tuple
    ok: bool
    reason: str

    @property
    def worst_mean(self) -> Scalar:
        return max(self.scalars, key=lambda s: s.z_mean)

    @property
    def worst_sd(self) -> Scalar:
        return max(self.scalars, key=lambda s: s.z_sd)

    @property
    def min_ess(self) -> tuple:
        return (min(s.ess[0] for s in self.scalars), min(s.ess[1] for s in self.scalars))

    def describe(self) -> str:
        m, s = self.worst_mean, self.worst_sd
        return (f"{len(self.scalars)} scalars; worst mean z {m.z_mean:.2f} ({m.name}: ppl {m.mean[0]:.4g} vs "
                f"NumPyro {m.mean[1]:.4g}); worst sd z {s.z_sd:.2f} ({s.name}: ppl {s.sd[0]:.4g} vs NumPyro "
                f"{s.sd[1]:.4g}); min ESS ppl {self.min_ess[0]:.0f}, NumPyro {self.min_ess[1]:.0f}"
                + ("" if self.ok else f"; FAILS: {self.reason}"))


def by_chain(samples: dict, num_chains: int, sites=None) -> dict:
    """`get_samples()` output (chains concatenated) as `(chains, draws, ...)` float arrays."""
    names = sites if sites is not None else list(samples)
    out = {}
    for k in names:
        v = np.asarray(samples[k], dtype=np.float64)
        out[k] = v.reshape((num_chains, -1) + v.shape[1:])
    return out


def _ess(x):
    from numpyro.diagnostics import effective_sample_size

    if np.ptp(x) == 0.0:
        return float(x.size)
    return float(effective_sample_size(x))


def agreement(ppl_draws: dict, np_draws: dict) -> Agreement:
    """Compare `(chains, draws, ...)` draws of the sites both dicts hold (see the module docstring)."""
    scalars = []
    for name in sorted(set(ppl_draws) & set(np_draws)):
        a, b = ppl_draws[name], np_draws[name]
        if a.shape[2:] != b.shape[2:]:
            return Agreement(tuple(scalars), False, f"site {name}: shape {a.shape[2:]} under ppl, {b.shape[2:]} "
                                                    f"under NumPyro")
        for index in np.ndindex(*a.shape[2:]):
            x, y = a[(slice(None), slice(None)) + index], b[(slice(None), slice(None)) + index]
            label = name + (str(list(index)) if index else "")
            stats = [_moments(x), _moments(y)]
            (m1, s1, e1, se1), (m2, s2, e2, se2) = stats
            mcse = np.sqrt(s1 ** 2 / e1 + s2 ** 2 / e2)
            z_mean = abs(m1 - m2) / mcse if mcse > 0 else (0.0 if m1 == m2 else np.inf)
            if s1 > 0 and s2 > 0:
                z_sd = abs(np.log(s1 / s2)) / np.sqrt(se1 ** 2 + se2 ** 2)
            else:
                z_sd = 0.0 if s1 == s2 else np.inf
            scalars.append(Scalar(label, (m1, m2), (s1, s2), (e1, e2), float(z_mean), float(z_sd)))
    if not scalars:
        return Agreement((), False, "no site in common")
    result = Agreement(tuple(scalars), True, "")
    low = [s for s in scalars if min(s.ess) < MIN_ESS and max(s.sd) > 0]
    if low:
        s = min(low, key=lambda s: min(s.ess))
        return result._replace(ok=False, reason=f"{len(low)} scalars with ESS < {MIN_ESS:.0f} (e.g. {s.name}: ppl "
                                                f"{s.ess[0]:.1f}, NumPyro {s.ess[1]:.1f})")
    bad = [s for s in scalars if s.z_mean > Z_MAX or s.z_sd > Z_MAX]
    if bad:
        return result._replace(ok=False, reason=f"{len(bad)} scalars beyond {Z_MAX:g} MCSE: "
                                                + ", ".join(s.name for s in bad[:8]))
    return result


def _moments(x):
    """`(mean, sd, ess, se of log sd)` of `(chains, draws)` draws."""
    m, s = float(x.mean()), float(x.std())
    ess = _ess(x)
    if s == 0.0:
        return m, s, ess, 0.0
    sq = (x - m) ** 2
    se_var = float(sq.std()) / np.sqrt(_ess(sq))
    return m, s, ess, 0.5 * se_var / s ** 2


def compare(module, args, seed=0, sites=None, transform=None, entry="run") -> Agreement:
    """Run `module.<entry>(args, key)` under ppl and its NumPyro twin with the same key and data;
    `transform(samples) -> samples` (e.g. relabelling) is applied to both sides' draws."""
    import jax

    numpyro_module = twin(module)
    out = []
    for m in (module, numpyro_module):
        call = run_numpyro if m is numpyro_module else (lambda f, *a: (f(*a), None))
        samples, _ = call(getattr(m, entry), args, jax.random.PRNGKey(seed))
        if transform is not None:
            samples = transform(samples)
        out.append(by_chain(samples, args.num_chains, sites))
    return agreement(*out)


def run_numpyro(fn, *args):
    """`(fn(*args), note)` for a NumPyro twin. NumPyro 0.22 validates distribution arguments
    by default and raises when a start point it tries makes one invalid (an overflowing
    LogNormal(0, 10) prior draw in gp.py with init_to_sample, an ODE solution at a wild
    start in ode.py), where ppl rejects the point and tries another. Then the run is repeated
    with NumPyro's validation off (its initialisation retries, as ppl's does), and `note`
    says so."""
    import numpyro

    try:
        return fn(*args), None
    except ValueError as e:
        if "got invalid" not in str(e):
            raise
        with numpyro.validation_enabled(False):
            return fn(*args), f"NumPyro raised '{str(e).splitlines()[0]}'; rerun with its validation off"


def check(module, args, **kwargs) -> Agreement:
    """`compare`, raising AssertionError with the figures when the runs disagree."""
    result = compare(module, args, **kwargs)
    assert result.ok, result.describe()
    return result


def last_mcmc(module, fn, *args, **kwargs):
    """Call the example's `fn(*args, **kwargs)` and return the `MCMC` object it ran (for
    examples whose `run_inference` prints instead of returning the draws): the module's
    `MCMC` is swapped, for the call, for a subclass that remembers its instances."""
    runs = []
    base = module.MCMC

    class Remembered(base):
        def run(self, *a, **k):
            runs.append(self)
            return super().run(*a, **k)

    module.MCMC = Remembered
    try:
        fn(*args, **kwargs)
    finally:
        module.MCMC = base
    return runs[-1]


NEEDS_ENUMERATION = ("needs enumeration of discrete sites for NUTS/SVI (infer={'enumerate': 'parallel'}, "
                     "config_enumerate, Vindex; issue 17 section 1), being built")


def importable(*modules) -> bool:
    """Whether every named module imports (guards the example files that need what ppl lacks)."""
    import importlib

    try:
        for m in modules:
            importlib.import_module(m)
    except ImportError:
        return False
    return True


def sort_by(site: str):
    """A `transform` for label-switching models: each draw of `site` (class weights, last
    axis the classes) sorted, so that chains in different labellings compare."""
    def transform(samples):
        return {site: np.sort(np.asarray(samples[site]), axis=-1)}
    return transform

NEEDS_FUNSOR = ("NumPyro's side needs funsor for enumeration (not a ppl dependency, not installed): "
                "pip install funsor to compare")
