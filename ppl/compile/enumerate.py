"""Exact conditional updates of discrete latent sites by enumeration, and how they are planned.

A discrete site with finite support is redrawn from its full conditional: evaluate the log
joint at each of its K values and sample from the normalised result. Only the *terms* of the
log joint that depend on the site matter (a term is one site's elementwise log density, or a
continuous site's log-Jacobian), so everything here works on terms.

How the structure is detected (`analyze`, eager, once per model and data shapes):

1. **Which terms depend on which discrete site** — exactly, from the program: the model's terms
   are traced to a jaxpr as a function of every discrete site's value (substituted as separate
   inputs) and data flow is followed equation by equation; a term depends on a site iff some
   path of equations leads from the site's input to the term. Equations with sub-programs
   (control flow, `pjit`) count every input as reaching every output, so the analysis may
   over-report a dependence (harmless: a term constant in the site cancels) but never misses one.
2. **Plate independence** — a plate p enclosing site s (batch dim `p.dim`, full size) is an
   *independent axis* of s when every term that depends on s is itself inside p, with the full
   plate size along `p.dim`. Elements of s along its independent axes are then updated together
   as one vectorised block: the K candidate values are broadcast across all elements at once,
   the K evaluations of each dependent term are summed per element over every axis except the
   independent ones, and every element draws from its own K logits — O(N K) term evaluations
   for N elements. A plate is a user's declaration of conditional independence; it is also
   verified numerically on a random state (changing one element may only change the dependent
   terms at that element's plate position); a violation warns and drops the plate.
   Batch dims that are not independent (no plate, or a dependent term outside the plate, e.g.
   a sum over the plate or a Jacobian that depends on the site) are *coupled*: their positions
   are updated one after another (single-site Gibbs), each still vectorised over the
   independent axes. With no independent axis this is plain single-site Gibbs, always correct.
3. **Blocks of interacting sites** — two discrete sites interact when a term depends on both.
   A connected group of interacting sites with the same independent axes and no coupled
   positions is drawn *jointly*: by enumerating the product of their supports when it has at
   most `max_joint_states` values (a small Bayesian network is sampled exactly at every
   sweep), or, when the interaction graph is a path s_0 - s_1 - ... - s_{T-1} (a Markov chain
   of states, each term touching at most two neighbours), by forward filtering backward
   sampling (Frühwirth-Schnatter 1994; Carter & Kohn 1994) from pairwise potentials obtained
   in K^2 evaluations (sites at even positions set to a, odd ones to b, for all (a, b)).
   Any other group falls back to one site at a time.

Limits: a site's support must be finite (`has_enumerate_support`) and must not depend on other
latents' values (it is enumerated once, at inspection); candidates outside the support at the
current state get log density -inf.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from typing import Dict, FrozenSet, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.model import handlers
from ppl.model.scanned_dist import is_scanned
from ppl.model.sites import dist_name

JACOBIAN = "/jacobian"
_EMPTY: FrozenSet[str] = frozenset()


# ----------------------------------------------------------------------------------------
# Terms of the log joint
# ----------------------------------------------------------------------------------------
def terms_of(tr) -> Dict[str, jax.Array]:
    """Elementwise log-density terms of a trace: one per latent/observed/factor site, plus
    `name + "/jacobian"` (a scalar) for each continuous latent set from unconstrained space.

    A discrete latent outside its support (an enumerated candidate that is not a valid value
    at the current state) gets -inf.
    """
    out = {}
    for s in tr.values():
        if s.kind not in ("latent", "observed", "factor"):
            continue
        lp = s.log_prob
        if s.kind == "latent" and s.is_discrete:
            ok = s.dist.support(s.value)
            if s.mask is not None:
                ok = ok | ~jnp.asarray(s.mask, bool)
            lp = jnp.where(ok, lp, -jnp.inf)
        out[s.name] = lp
        if s.kind == "latent" and not s.is_discrete and s.log_jacobian is not None:
            out[s.name + JACOBIAN] = s.log_jacobian
    return out


def site_terms(ld, z):
    """`terms_of` the model run at flat `z` (discrete values read from their slices)."""
    return terms_of(ld.run(z))


def _propagate(jaxpr, in_deps):
    """Dependences of `jaxpr`'s outputs given its inputs' (a list of frozensets). A `scan`
    is followed into its body, its carry to a fixed point, and a `jit` into its program;
    any other equation with a sub-program counts every input as reaching every output."""
    from jax.extend.core import Literal

    deps = dict(zip(jaxpr.invars, in_deps))

    def of(v):
        return _EMPTY if isinstance(v, Literal) else deps.get(v, _EMPTY)

    for eqn in jaxpr.eqns:
        ins = [of(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name == "scan":
            body = eqn.params["jaxpr"].jaxpr
            n_c, n_k = eqn.params["num_consts"], eqn.params["num_carry"]
            consts, carry, xs = ins[:n_c], list(ins[n_c:n_c + n_k]), ins[n_c + n_k:]
            while True:
                out = _propagate(body, consts + carry + xs)
                grown = [a | b for a, b in zip(carry, out[:n_k])]
                if grown == carry:
                    break
                carry = grown
            outs = carry + out[n_k:]
        elif name in ("jit", "pjit") and "jaxpr" in eqn.params:
            outs = _propagate(eqn.params["jaxpr"].jaxpr, ins)
        else:
            d = functools.reduce(frozenset.union, ins, _EMPTY)
            outs = [d] * len(eqn.outvars)
        for o, d in zip(eqn.outvars, outs):
            deps[o] = d
    return [of(v) for v in jaxpr.outvars]


def dependence(fn, dvals, z):
    """For each output leaf of `fn(dvals, z)` (a dict), the set of discrete sites (keys of
    `dvals`) it depends on, by data flow through its jaxpr (`_propagate`): an equation's
    outputs depend on the union of its inputs' dependences (sound for every primitive, exact
    for elementwise ones). Nothing runs. Returns `(deps, shapes)`, dicts keyed like `fn`'s
    output."""
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(dvals, z)
    jaxpr = closed.jaxpr
    in_deps = [frozenset([n]) for n in sorted(dvals)] + [_EMPTY] * (len(jaxpr.invars) - len(dvals))
    outs = _propagate(jaxpr, in_deps)
    leaves, tree = jax.tree.flatten(out_shape)
    position = jax.tree.unflatten(tree, list(range(len(leaves))))
    out = {name: outs[i] for name, i in position.items()}
    return out, {k: tuple(v.shape) for k, v in out_shape.items()}


def traced_structure(ld):
    """Trace the model's terms once as a function of (discrete values, z) — nothing runs.

    Returns `(trace, deps, shapes)`: the `Trace` seen while tracing (its distributions'
    shapes, plates and static supports are valid; its values are abstract), for every term
    the set of discrete sites it depends on (see `dependence`), and every term's shape.
    """
    dvals = {lat.name: jnp.zeros(lat.shape, lat.dtype) for lat in ld.spec.discrete}
    captured = {}

    def g(dvals, z):
        tr = ld.run(z, extra=(handlers.substitute(data=dvals),))
        captured["trace"] = tr
        return terms_of(tr)

    deps, shapes = dependence(g, dvals, jnp.zeros((ld.dim,), jnp.result_type(float)))
    return captured["trace"], deps, shapes


def term_dependencies(ld) -> Dict[str, FrozenSet[str]]:
    """For every term, the set of discrete sites it depends on (see `traced_structure`)."""
    return traced_structure(ld)[1]


# ----------------------------------------------------------------------------------------
# Static descriptions
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DiscreteSite:
    """A discrete latent site as the enumeration sees it (static, hashable).

    `support` holds the K values flattened (each of shape `event_shape`); `ind_axes` are the
    positions in the batch shape of its independent plates `ind_plates` (sorted by dim);
    `coupled_axes` are the other batch positions. A site inside `ppl.scan` (`scanned`) has
    its time axis first, in neither: its steps form a Markov chain (see
    `ppl.compile.marginal.ScanChain`).
    """

    name: str
    offset: int
    size: int
    shape: Tuple[int, ...]
    event_ndim: int
    support: Tuple[float, ...]
    num_values: int
    ind_plates: Tuple[str, ...]
    ind_axes: Tuple[int, ...]
    coupled_axes: Tuple[int, ...]
    scanned: bool = False
    scan: Tuple[str, ...] = ()  # inside ppl.scan: the names of that scan's sites
    history: int = 1  # ... its `history` (the chain's order)
    reverse: bool = False  # ... and whether it runs from the last step to the first

    @property
    def batch_shape(self):
        return self.shape[: len(self.shape) - self.event_ndim]

    @property
    def event_shape(self):
        return self.shape[len(self.shape) - self.event_ndim:]

    @property
    def ind_shape(self):
        return tuple(self.batch_shape[a] for a in self.ind_axes)

    @property
    def coupled_size(self) -> int:
        return int(math.prod(self.batch_shape[a] for a in self.coupled_axes))

    def support_array(self, dtype):
        return jnp.asarray(np.asarray(self.support, float).reshape((self.num_values,) + self.event_shape), dtype)

    def _perm(self):
        nb = len(self.batch_shape)
        return self.coupled_axes + self.ind_axes + tuple(range(nb, len(self.shape)))

    def get(self, z):
        """This site's values from flat `z`, laid out as (coupled, *ind_shape, *event)."""
        v = jax.lax.slice_in_dim(z, self.offset, self.offset + self.size).reshape(self.shape)
        return jnp.transpose(v, self._perm()).reshape((self.coupled_size,) + self.ind_shape + self.event_shape)

    def set(self, z, layout):
        """Write values laid out as in `get` back into flat `z`."""
        perm = self._perm()
        transposed = tuple(self.shape[p] for p in perm)
        v = jnp.transpose(jnp.reshape(layout, transposed), np.argsort(perm)).reshape(-1)
        return jax.lax.dynamic_update_slice_in_dim(z, v.astype(z.dtype), self.offset, 0)


@dataclasses.dataclass(frozen=True)
class Term:
    """A dependent term and how to reduce it to the block's independent axes: sum over
    every axis of the term array except `keep` (in the block's plate order)."""

    name: str
    ndim: int
    keep: Tuple[int, ...]
    role: Tuple = ()  # chains: ("unary", j) or ("pair", j)

    def reduce(self, lp):
        """`lp` has one leading (candidate) axis; returns (M, *ind_shape)."""
        axes = tuple(1 + a for a in range(self.ndim) if a not in self.keep)
        return jnp.sum(lp, axis=axes) if axes else lp


@dataclasses.dataclass(frozen=True)
class EnumerationBlock:
    """One site (with a loop over coupled positions) or several sites drawn jointly by
    enumerating the product of their supports, vectorised over shared independent axes."""

    sites: Tuple[DiscreteSite, ...]
    terms: Tuple[Term, ...]

    def describe(self) -> str:
        s = self.sites[0]
        names = ", ".join(x.name for x in self.sites)
        if len(self.sites) > 1:
            states = math.prod(x.num_values for x in self.sites)
            head = f"enumerate {{{names}}} jointly ({states} states)"
        else:
            head = f"enumerate {names} ({s.num_values} values)"
        plates = f", vectorised over plate(s) {list(s.ind_plates)}" if s.ind_plates else ""
        single = f", {s.coupled_size} coupled positions one at a time" if s.coupled_size > 1 else ""
        return head + plates + single

    def update(self, key, z, ld, terms_fn=None):
        """One draw of the block's sites from their full conditional; `terms_fn(z)` gives
        `site_terms(ld, z)` (a hoisted copy, say), by default computed from `ld`."""
        terms_fn = terms_fn or functools.partial(site_terms, ld)
        if len(self.sites) == 1:
            return _update_site(self, key, z, terms_fn)
        return _update_joint(self, key, z, terms_fn)


@dataclasses.dataclass(frozen=True)
class ChainBlock:
    """A path of sites (a Markov chain of states) drawn jointly by forward filtering
    backward sampling, vectorised over shared independent axes."""

    sites: Tuple[DiscreteSite, ...]
    terms: Tuple[Term, ...]

    def describe(self) -> str:
        s = self.sites[0]
        plates = f", vectorised over plate(s) {list(s.ind_plates)}" if s.ind_plates else ""
        return (f"forward-filtering backward-sampling over the chain {self.sites[0].name} -> ... -> "
                f"{self.sites[-1].name} ({len(self.sites)} sites, {s.num_values} values){plates}")

    def update(self, key, z, ld, terms_fn=None):
        """As `EnumerationBlock.update`."""
        return _update_chain(self, key, z, terms_fn or functools.partial(site_terms, ld))


# ----------------------------------------------------------------------------------------
# Updates (pure, jittable, vmappable over chains)
# ----------------------------------------------------------------------------------------
def _logits(block, zs, terms_fn):
    """Sum of the reduced dependent terms at each candidate state `zs` (M, dim)."""
    terms = jax.vmap(terms_fn)(zs)
    total = 0.0
    for t in block.terms:
        total = total + t.reduce(terms[t.name])
    return jnp.where(jnp.isnan(total), -jnp.inf, total)


def _update_site(block, key, z, terms_fn):
    site = block.sites[0]
    support = site.support_array(z.dtype)
    fill = site.ind_shape + site.event_shape

    def one(c, carry):
        z, key = carry
        key, sub = jax.random.split(key)
        cur = site.get(z)
        zs = jax.vmap(lambda v: site.set(z, cur.at[c].set(jnp.broadcast_to(v, fill))))(support)
        idx = jax.random.categorical(sub, _logits(block, zs, terms_fn), axis=0)
        return site.set(z, cur.at[c].set(support[idx])), key

    if site.coupled_size == 1:
        return one(0, (z, key))[0]
    return jax.lax.fori_loop(0, site.coupled_size, one, (z, key))[0]


def _update_joint(block, key, z, terms_fn):
    configs = np.array(list(itertools.product(*[range(s.num_values) for s in block.sites])), np.int32)
    supports = [s.support_array(z.dtype) for s in block.sites]

    def candidate(row):
        zz = z
        for j, s in enumerate(block.sites):
            zz = s.set(zz, jnp.broadcast_to(supports[j][row[j]], (1,) + s.ind_shape + s.event_shape))
        return zz

    zs = jax.vmap(candidate)(jnp.asarray(configs))
    idx = jax.random.categorical(key, _logits(block, zs, terms_fn), axis=0)
    chosen = jnp.asarray(configs)[idx]  # (*ind_shape, n_sites)
    for j, s in enumerate(block.sites):
        z = s.set(z, supports[j][chosen[..., j]][None])
    return z


def chain_candidates(block, dtype):
    """The K^2 states at which a chain's potentials are read: sites at even positions set to
    a, odd ones to b, for every pair (a, b) (row a * K + b); `(pairs, values)` with `values`
    one (K^2, *ind_shape, *event) layout per site."""
    k = block.sites[0].num_values
    ab = np.array(list(itertools.product(range(k), range(k))), np.int32)
    values = []
    for j, s in enumerate(block.sites):
        v = s.support_array(dtype)[ab[:, j % 2]]
        values.append(jnp.broadcast_to(v.reshape((len(ab),) + (1,) * len(s.ind_shape) + s.event_shape),
                                       (len(ab),) + s.ind_shape + s.event_shape))
    return ab, values


def chain_potentials(block, terms, dtype):
    """Unary `phi` (n, K, *ind) and pairwise `psi` (n - 1, K, K, *ind) log potentials of a
    chain from its terms evaluated at `chain_candidates` (leading K^2 axis)."""
    sites = block.sites
    n, k = len(sites), sites[0].num_values
    ind = sites[0].ind_shape
    phi = [jnp.zeros((k,) + ind, dtype) for _ in range(n)]
    psi = [jnp.zeros((k, k) + ind, dtype) for _ in range(n - 1)]
    for t in block.terms:
        lp = t.reduce(terms[t.name]).reshape((k, k) + ind)
        kind, j = t.role
        if kind == "unary":
            phi[j] = phi[j] + (lp[:, 0] if j % 2 == 0 else lp[0, :])
        else:  # pair (j - 1, j): potential psi[j - 1][x_{j-1}, x_j]
            psi[j - 1] = psi[j - 1] + (lp if (j - 1) % 2 == 0 else jnp.swapaxes(lp, 0, 1))
    phi = jnp.stack(phi)
    psi = jnp.stack(psi) if psi else jnp.zeros((0, k, k) + ind, dtype)
    return jnp.where(jnp.isnan(phi), -jnp.inf, phi), jnp.where(jnp.isnan(psi), -jnp.inf, psi)


def _combine(temperature):
    """How the forward pass combines a state's predecessors: log-sum-exp (sampling,
    marginals), or max (temperature 0: the most probable sequence, Viterbi)."""
    return jax.nn.logsumexp if temperature else jnp.max


def chain_forward(phi, psi, temperature=1):
    """Forward messages alpha (n, K, *ind): alpha_0 = phi_0 and alpha_j(x) = phi_j(x) +
    combine_{x'}(alpha_{j-1}(x') + psi_{j-1}(x', x)). With log-sum-exp, logsumexp(alpha_{n-1})
    is the log of the chain's sum over all its state sequences."""
    combine = _combine(temperature)

    def forward(alpha, xs):
        psi_j, phi_j = xs
        alpha = phi_j + combine(alpha[:, None] + psi_j, axis=0)
        return alpha, alpha

    _, rest = jax.lax.scan(forward, phi[0], (psi, phi[1:]))
    return jnp.concatenate([phi[:1], rest])


def _choose(key, logits, temperature):
    """A draw from softmax(logits) along axis 0, or its argmax at temperature 0."""
    if temperature:
        return jax.random.categorical(key, logits, axis=0)
    return jnp.argmax(logits, axis=0)


def chain_backward(key, alphas, psi, temperature=1):
    """State indices (n, *ind) drawn backward from the forward messages: the last from
    alpha_{n-1}, each earlier one given the next (backward sampling; argmax at temperature
    0, which with max-forward messages is the Viterbi path)."""
    n = alphas.shape[0]
    keys = jax.random.split(key, n)
    last = _choose(keys[-1], alphas[-1], temperature)

    def backward(x_next, xs):
        alpha_j, psi_next, kj = xs
        col = jnp.take_along_axis(psi_next, x_next[None, None], axis=1)[:, 0]
        x = _choose(kj, alpha_j + col, temperature)
        return x, x

    _, states = jax.lax.scan(backward, last, (alphas[:-1], psi, keys[:-1]), reverse=True)
    return jnp.concatenate([states, last[None]])


def _update_chain(block, key, z, terms_fn):
    """Forward filtering backward sampling (Frühwirth-Schnatter 1994; Carter & Kohn 1994)."""
    _, values = chain_candidates(block, z.dtype)
    zs = jax.vmap(lambda *vs: functools.reduce(lambda zz, sv: sv[0].set(zz, sv[1][None]), zip(block.sites, vs), z))(
        *values)
    phi, psi = chain_potentials(block, jax.vmap(terms_fn)(zs), z.dtype)
    states = chain_backward(key, chain_forward(phi, psi), psi)
    for j, s in enumerate(block.sites):
        z = s.set(z, s.support_array(z.dtype)[states[j]][None])
    return z


# ----------------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class ModelStructure:
    """What `analyze` learned: discrete sites, term shapes/plates, dependences."""

    sites: Dict[str, DiscreteSite]
    order: Tuple[str, ...]
    term_ndim: Dict[str, int]
    term_plates: Dict[str, Tuple]
    deps: Dict[str, FrozenSet[str]]
    term_scans: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)  # term -> its scan's sites


def infinite_support_error(name, d, who="gibbs") -> ValueError:
    if who == "gibbs":
        return ValueError(
            f"gibbs: discrete site '{name}' has a {dist_name(d)} "
            f"distribution, whose support is infinite, so its full conditional cannot be enumerated. "
            f"Truncate it (e.g. a Categorical or Binomial with a bound), marginalise it out of the "
            f"model, or give it your own conditional sampler: ppl.Gibbs(blocks=[ppl.GibbsBlock("
            f"'{name}', sampler=fn)])."
        )
    return ValueError(
        f"method '{who}' sums discrete latent sites out of the log density by enumerating their "
        f"values, but site '{name}' has a {dist_name(d)} distribution, whose support is infinite. "
        f"Truncate it (e.g. a Categorical or a Binomial with a bound), marginalise it out of the model "
        f"by hand, or use method=\"gibbs\" with your own conditional sampler for it "
        f"(ppl.Gibbs(blocks=[ppl.GibbsBlock('{name}', sampler=fn)]))."
    )


def scan_error(name, who):
    return ValueError(
            f"{who}: discrete latent site '{name}' is inside ppl.scan, whose steps Gibbs cannot "
            f"enumerate yet. Write the loop over time as a Python for loop with one site per step "
            f"(Gibbs then draws each from its exact conditional), use a gradient method (nuts, hmc, "
            f"map, vi: they sum the scan's discrete sites out with the forward algorithm while a step's "
            f"window of history + 1 steps of their joint values numbers at most 1024), or give Gibbs your own conditional "
            f"sampler for it (ppl.Gibbs(blocks=[ppl.GibbsBlock('{name}', sampler=fn)])).")


def _support_of(name, d, who="gibbs", scanned=False):
    if not getattr(d, "has_enumerate_support", False):
        raise infinite_support_error(name, d, who)
    try:
        values = np.asarray(d.enumerate_support(expand=False))
    except (jax.errors.UnexpectedTracerError, jax.errors.ConcretizationTypeError, NotImplementedError,
            jax.errors.TracerArrayConversionError) as e:
        if not scanned:
            raise ValueError(
                f"{who}: cannot enumerate the support of discrete site '{name}' ({type(d).__name__}): {e}. "
                f"Its support must be the same for every element and must not depend on other latent "
                f"values (e.g. give Binomial one total_count).") from e
        raise ValueError(
            f"{who}: cannot enumerate the support of discrete site '{name}' ({type(d).__name__}) inside "
            f"ppl.scan: the parameters that set its values (a Binomial's total_count, a "
            f"DiscreteUniform's bounds) are stacked over the steps as traced arrays, so they are not "
            f"known when the model is analysed. Write it as a Categorical over its values (probs "
            f"from its probability mass function; add the support's lowest value where it is used), or "
            f"use a Python for loop over time.") from e
    k = values.shape[0]
    event = tuple(d.event_shape)
    return values.reshape((k,) + event), k


def _elementwise(d):
    """`(d, 0)`, or for a discrete distribution made an event by `to_event` (`Independent`),
    its elementwise base and the number of event dims it reinterpreted (they are enumerated
    as coupled positions: each element takes the base's values)."""
    n = 0
    while type(d).__name__ == "Independent" and getattr(d.base_dist, "has_enumerate_support", False):
        n += d.reinterpreted_batch_ndims
        d = d.base_dist
    return d, n


def _plate_key(p):
    return (p.name, p.dim)


def _independent_plates(site, dependents, term_plates, term_shape):
    batch = tuple(site.dist.batch_shape)
    nb = len(batch)
    keep = []
    for p in sorted(site.plates, key=lambda p: p.dim):
        if nb < -p.dim or batch[p.dim] != p.subsample_size:
            continue
        ok = True
        for t in dependents:
            tshape = term_shape[t]
            if _plate_key(p) not in {_plate_key(q) for q in term_plates[t]} or len(tshape) < -p.dim \
                    or tshape[p.dim] != p.subsample_size:
                ok = False
                break
        if ok:
            keep.append(p)
    return keep


def analyze(ld, names, key=None, check_plates=True, traced=None, who="gibbs") -> ModelStructure:
    """Describe the discrete sites `names` of `ld`: supports, independent plates, dependences.

    Structure comes from one trace of the model (`traced_structure`); with `check_plates`,
    the plate independence is also verified numerically at a random state drawn with `key`
    (one small compiled probe). `traced` is `traced_structure(ld)` if already computed.

    Raises:
      ValueError: for a discrete site whose support is infinite, not enumerable, or depends
        on other latent values.
    """
    tr, deps, term_shape = traced or traced_structure(ld)
    all_discrete = tuple(lat.name for lat in ld.spec.discrete)
    term_plates = {}
    for k in term_shape:
        base = k[: -len(JACOBIAN)] if k.endswith(JACOBIAN) else k
        term_plates[k] = () if k.endswith(JACOBIAN) else tuple(tr[base].plates)
    sites = {}
    for name in names:
        lat = ld.spec.latent(name)
        site = tr[name]
        scanned = is_scanned(site.dist)
        if scanned and who == "gibbs":
            raise scan_error(name, who)
        d, reinterpreted = _elementwise(site.dist.steps if scanned else site.dist)
        values, k = _support_of(name, d, who, scanned)
        dependents = [t for t, dep in deps.items() if name in dep]
        plates = _independent_plates(site, dependents, term_plates, term_shape)
        nb = len(site.dist.batch_shape)
        ind_axes = tuple(nb + p.dim for p in plates)
        ds = DiscreteSite(
            name=name, offset=lat.offset, size=lat.size, shape=tuple(lat.shape),
            event_ndim=len(d.event_shape), support=tuple(values.reshape(-1).tolist()),
            num_values=k, ind_plates=tuple(p.name for p in plates), ind_axes=ind_axes,
            coupled_axes=tuple(a for a in range(int(scanned), nb + reinterpreted) if a not in ind_axes),
            scanned=scanned,
            scan=tuple(site.infer.get("scan_sites", ())) if scanned else (),
            history=int(site.infer.get("scan_history", 1)), reverse=bool(site.infer.get("scan_reverse", False)),
        )
        if ds.batch_shape != tuple(site.dist.batch_shape) + tuple(site.dist.event_shape)[:reinterpreted]:
            ds = dataclasses.replace(ds, ind_plates=(), ind_axes=(),
                                     coupled_axes=tuple(range(int(scanned), len(ds.batch_shape))))
        sites[name] = ds
    term_scans = {k: tuple(tr[k[: -len(JACOBIAN)] if k.endswith(JACOBIAN) else k].infer.get("scan_sites", ()))
                  for k in term_shape}
    structure = ModelStructure(sites, tuple(n for n in all_discrete if n in names),
                               {k: len(v) for k, v in term_shape.items()}, term_plates, deps, term_scans)
    if check_plates:
        _verify_plates(ld, jax.random.PRNGKey(0) if key is None else key, structure, who=who)
    return structure


def keep_axes(structure, site: DiscreteSite, term: str):
    """Positions, in `term`'s array, of the site's independent plates."""
    ndim = structure.term_ndim[term]
    dims = {p.name: p.dim for p in structure.term_plates[term]}
    return tuple(ndim + dims[p] for p in site.ind_plates)


def _verify_plates(ld, key, structure, seed=0, who="gibbs"):
    """Numerical check of the declared plate independence at a random state: setting one
    element of a site to another value must change its dependent terms only at that
    element's plate position. Two perturbations per site (values j and j + 1 mod K, so at
    least one differs from the current value), all evaluated in one compiled probe.

    A site inside ppl.scan is perturbed at the scan's first step t (`_check_scan_trial`):
    its terms in the same scan may change only at that element of its plates, and only at
    steps t to t + h, h the scan's `history`, which the forward algorithm relies on.

    The continuous coordinates are drawn uniform(-1, 1) (at 0 a symmetric model can hide a
    dependence: a Beta's p = 1/2 is the same either way)."""
    blocked = [s for s in structure.sites.values() if s.ind_plates and s.num_values > 1 and not s.scanned]
    scanned = [s for s in structure.sites.values() if s.scanned and s.num_values > 1]
    if not blocked and not scanned:
        return
    rng = np.random.default_rng(seed)
    trials = []
    for s in blocked:
        c = int(rng.integers(s.coupled_size))
        e = tuple(int(rng.integers(n)) for n in s.ind_shape)
        j = int(rng.integers(s.num_values))
        trials += [(s, c, e, j), (s, c, e, (j + 1) % s.num_values)]
    scan_trials = []
    for s in scanned:
        e = tuple(int(rng.integers(n)) for n in s.ind_shape)
        j = int(rng.integers(s.num_values))
        first = s.shape[0] - 1 if s.reverse else 0
        scan_trials += [(s, first, e, j), (s, first, e, (j + 1) % s.num_values)]

    # The state: continuous sites uniform(-1, 1) in unconstrained space, discrete ones uniform
    # over their supports (built on the host: no model run to compile besides the probe).
    z0 = rng.uniform(-1.0, 1.0, ld.dim)
    for s in structure.sites.values():
        support = np.asarray(s.support, float).reshape((s.num_values, -1))
        z0[s.offset: s.offset + s.size] = np.broadcast_to(
            support[rng.integers(s.num_values, size=s.size // max(support.shape[1], 1))], (s.size // max(support.shape[1], 1), support.shape[1])).reshape(-1)
    z0 = jnp.asarray(z0, jnp.result_type(float))

    def probe(z0):  # the perturbed states are built inside the probe: one program to compile
        # (built eagerly, each operation compiled a program of its own: 22 of them, 1.1 s,
        # on hmm_enum model 1)
        zs = [z0]
        for s, c, e, j in trials:
            zs.append(s.set(z0, s.get(z0).at[(c,) + e].set(s.support_array(z0.dtype)[j])))
        for s, t, e, j in scan_trials:
            zs.append(_set_step(s, z0, t, e, s.support_array(z0.dtype)[j]))
        return jax.vmap(lambda z: site_terms(ld, z))(jnp.stack(zs))

    terms = jax.tree.map(np.asarray, _run_once(probe, z0, ld))
    for i, trial in enumerate(scan_trials, start=1 + len(trials)):
        _check_scan_trial(structure, terms, i, trial, who)
    failed = {}
    for i, (s, c, e, j) in enumerate(trials, start=1):
        if s.name in failed:
            continue
        for t, d in structure.deps.items():
            if s.name not in d:
                continue
            changed = ~np.isclose(terms[t][i], terms[t][0], rtol=1e-6, atol=1e-6, equal_nan=True)
            keep = keep_axes(structure, s, t)
            other = tuple(a for a in range(changed.ndim) if a not in keep)
            changed = changed.any(axis=other) if other else changed
            changed[e] = False
            if changed.any():
                failed[s.name] = t
                break
    for name, t in failed.items():
        s = structure.sites[name]
        warnings.warn(
            f"{who}: site '{name}' is declared inside plate(s) {list(s.ind_plates)}, but "
            f"changing one of its elements changed the term '{t}' at other plate positions; "
            f"the plate's independence does not hold, so the elements of '{name}' are "
            f"{'updated one at a time' if who == 'gibbs' else 'enumerated jointly'} (correct, slower). "
            f"Check the model for sums or shifts over the plate.",
            stacklevel=5,
        )
        nb = len(s.batch_shape)
        structure.sites[name] = dataclasses.replace(s, ind_plates=(), ind_axes=(), coupled_axes=tuple(range(nb)))


def _run_once(fn, z, ld):
    """``fn(z)``, compiled as a program run once (`ppl.runtime.program`: XLA's quick options;
    measured, the probe of `_verify_plates` on NumPyro's hmm_enum model 1: XLA's compile
    0.9 s as a plain `jax.jit`, 0.22 s so); a plain `jax.jit` call inside a trace (`ld`
    holding tracers)."""
    from ppl.runtime import program

    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(ld)):
        return jax.jit(fn)(z)
    executable, _ = program.compile_lowered(jax.jit(fn).lower(z), (program.aval(z),), evaluations=1)
    return executable(z)


def _set_step(s: DiscreteSite, z, t, e, value):
    """`z` with site `s` (inside ppl.scan) set to `value` at step `t`, element `e` of its
    plates (every position of its other batch axes)."""
    v = jax.lax.slice_in_dim(z, s.offset, s.offset + s.size).reshape(s.shape)
    index = [t]
    for a in range(1, len(s.batch_shape)):
        if a in s.ind_axes:
            index.append(e[s.ind_axes.index(a)])
        else:
            index.append(slice(None))
    v = v.at[tuple(index)].set(value)
    return jax.lax.dynamic_update_slice_in_dim(z, v.reshape(-1).astype(z.dtype), s.offset, 0)


def _check_scan_trial(structure, terms, i, trial, who):
    """Raise if changing site `s` at step `t`, element `e` (probe row `i`) changed one of its
    terms of the same scan at another element of its plates, or more than its scan's
    `history` steps away."""
    s, t, e, _ = trial
    steps, history = s.shape[0], s.history
    for k, d in structure.deps.items():
        if s.name not in d or structure.term_scans.get(k) != s.scan or terms[k].ndim < 2:
            continue  # a term outside the scan: refused when the plan is made
        changed = ~np.isclose(terms[k][i], terms[k][0], rtol=1e-6, atol=1e-6, equal_nan=True)
        keep = (0,) + keep_axes(structure, s, k)
        other = tuple(a for a in range(changed.ndim) if a not in keep)
        changed = changed.any(axis=other) if other else changed  # (T, *ind)
        elsewhere = changed.copy()
        elsewhere[(slice(None),) + e] = False
        if elsewhere.any():
            raise ValueError(
                f"method '{who}': site '{s.name}' inside ppl.scan is declared inside plate(s) "
                f"{list(s.ind_plates)}, but changing one of its elements at step {t} changed the term "
                f"'{k}' at other positions of the plate: the plate's independence does not hold (look for "
                f"sums or shifts over the plate in the scan's body), and the forward algorithm sums each "
                f"element's chain on its own. Move that dimension out of the plate, or use "
                f"method=\"gibbs\" with a Python for loop over time.")
        far = [u for u in np.flatnonzero(changed[(slice(None),) + e].reshape(steps, -1).any(axis=1))
               if abs(int(u) - t) > history]
        if far:
            step = max((int(u) for u in far), key=lambda u: abs(u - t))
            lag = abs(step - t)
            raise ValueError(
                f"method '{who}': site '{s.name}' is inside ppl.scan(history={history}), but changing its "
                f"value at step {t} changed the term '{k}' at step {step}, {lag} steps away: the "
                f"scan's body reads discrete values from more than {history} steps back (through its "
                f"carry), which the forward algorithm with history={history} would sum wrongly. Pass "
                f"history={lag} or more to ppl.scan if the body reads at most that many steps back, or "
                f"use method=\"gibbs\" with a Python for loop over time.")


def terms_for(structure, group, role_of=None):
    names = {s.name for s in group}
    out = []
    for t, d in structure.deps.items():
        if d & names:
            role = role_of(d & names) if role_of else ()
            out.append(Term(t, structure.term_ndim[t], keep_axes(structure, group[0], t), role))
    return tuple(out)


def components(structure, names):
    parent = {n: n for n in names}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    edges = set()
    for d in structure.deps.values():
        inside = sorted((d & set(names)), key=structure.order.index)
        for a, b in itertools.combinations(inside, 2):
            edges.add((a, b))
            parent[find(a)] = find(b)
    groups = {}
    for n in sorted(names, key=structure.order.index):
        groups.setdefault(find(n), []).append(n)
    return list(groups.values()), edges


def path_order(group, edges):
    nbrs = {n: [] for n in group}
    for a, b in edges:
        if a in nbrs and b in nbrs:
            nbrs[a].append(b)
            nbrs[b].append(a)
    if any(len(v) > 2 for v in nbrs.values()) or sum(len(v) for v in nbrs.values()) != 2 * (len(group) - 1):
        return None
    ends = [n for n in group if len(nbrs[n]) == 1]
    path, prev = [ends[0]], None
    while len(path) < len(group):
        nxt = [m for m in nbrs[path[-1]] if m != prev]
        prev = path[-1]
        path.append(nxt[0])
    return path


def plan(structure: ModelStructure, names, max_joint_states: int = 1024):
    """Group the discrete sites `names` into update blocks (see the module docstring)."""
    groups, edges = components(structure, names)
    blocks = []
    for group in groups:
        sites = [structure.sites[n] for n in group]
        shared = len(sites) > 1 and all(
            s.coupled_size == 1 and s.ind_plates == sites[0].ind_plates and s.ind_shape == sites[0].ind_shape
            for s in sites)
        path = path_order(group, edges) if shared and len(sites) > 2 and len({s.num_values for s in sites}) == 1 \
            else None
        if path is None and shared and math.prod(s.num_values for s in sites) <= max_joint_states:
            blocks.append(EnumerationBlock(tuple(sites), terms_for(structure, sites)))
            continue
        if path is not None:
            chain = [structure.sites[n] for n in path]
            pos = {n: j for j, n in enumerate(path)}

            def role(d, pos=pos):
                js = sorted(pos[n] for n in d)
                return ("unary", js[0]) if len(js) == 1 else ("pair", js[1])

            blocks.append(ChainBlock(tuple(chain), terms_for(structure, chain, role)))
            continue
        for s in sites:
            blocks.append(EnumerationBlock((s,), terms_for(structure, [s])))
    return blocks
