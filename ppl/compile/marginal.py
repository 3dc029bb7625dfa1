"""Discrete latent sites summed out of the log density, exactly: `marginalize(ld)`.

A gradient method (NUTS, HMC, ChEES), an optimiser (MAP, MLE) or variational inference
needs a density over continuous values. A model with finite discrete latents z has one: the
marginal p(x, theta) = sum_z p(x, theta, z), and this module computes it inside the log
density, with no funsor, from the structure that `ppl.compile.enumerate` finds (the same
analysis Gibbs uses):

* the discrete sites fall into groups of sites that interact (some term depends on two of
  them); different groups share no term, so the marginal is the product of one sum per group;
* a group of sites with the same independent plates is summed over the product of their
  values (and of their coupled positions, where no plate makes their elements independent),
  vectorised over the plates: N elements with K values cost K evaluations, not K^N
  (`Product`);
* a path of sites (a Markov chain: each term touches at most two neighbours) is summed by
  the forward algorithm from pairwise potentials read in K^2 evaluations (`Chain`);
* the discrete sites of one `ppl.scan` form a Markov chain over time of the scan's order
  (`history`): summed by the forward algorithm over windows of that many steps of their
  joint values, per element of their plates (`ScanChain`);
* a group on two plate levels (a global site and the sites of a plate that depend on it,
  as in a mixture's cluster assignment of annotators' reliabilities) is summed inner level
  first, per value of the outer (`Nested`).

Every term is evaluated at all candidate values in ONE vectorised run of the model: under
`vmap` over the candidates, only the discrete values are batched, so the work that depends
on continuous values alone is done once. A group with more joint values than
`MAX_STATES`, or of another shape, is refused with an error that names its sites.

The same plan draws the discrete sites from their conditional posterior given the
continuous ones (`MarginalLogDensity.draw_discrete`; exact, since the groups are
conditionally independent): backward sampling for chains, per-element categorical draws
for products; at temperature 0, the most probable values (Viterbi for chains).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl._memo import Memo
from ppl.compile import enumerate as enum
from ppl.compile.logdensity import LogDensity, LogJoint
from ppl.model import handlers

MAX_STATES = 1024


# ----------------------------------------------------------------------------------------
# Candidate values
# ----------------------------------------------------------------------------------------
def _natural(site: enum.DiscreteSite, layout):
    """A value laid out as `site.get` gives it, (coupled, *ind, *event), in the site's shape."""
    perm = site._perm()
    transposed = tuple(site.shape[p] for p in perm)
    return jnp.transpose(jnp.reshape(layout, transposed), np.argsort(perm))


@dataclasses.dataclass(frozen=True)
class Part:
    """Sites sharing their independent plates, enumerated jointly over the product of their
    values at each coupled position: row m of `table` gives, for every (site, coupled
    position) slot, the index of its value in the site's support."""

    sites: Tuple[enum.DiscreteSite, ...]
    table: Tuple[Tuple[int, ...], ...]

    @staticmethod
    def of(sites):
        slots = [range(s.num_values) for s in sites for _ in range(s.coupled_size)]
        return Part(tuple(sites), tuple(itertools.product(*slots)))

    @property
    def size(self) -> int:
        return len(self.table)

    @property
    def ind_shape(self):
        return self.sites[0].ind_shape

    def values(self, rows, dtype):
        """Each site's value (in its shape) at table rows `rows`, an int array of shape
        `ind_shape` (a row per element) or a scalar (one row for every element)."""
        table = jnp.asarray(np.asarray(self.table, np.int32).reshape(self.size, -1))
        rows = jnp.broadcast_to(rows, self.ind_shape)
        chosen = table[rows]  # (*ind, slots)
        out, start = {}, 0
        for s in self.sites:
            idx = jnp.moveaxis(chosen[..., start: start + s.coupled_size], -1, 0)  # (C, *ind)
            start += s.coupled_size
            out[s.name] = _natural(s, s.support_array(dtype)[idx])
        return out


@dataclasses.dataclass(frozen=True)
class Product:
    """One `Part`: log sum over its rows of its terms, per element of its plates."""

    part: Part
    terms: Tuple[enum.Term, ...]

    @property
    def sites(self):
        return self.part.sites

    @property
    def size(self) -> int:
        return self.part.size

    def candidate(self, m, dtype):
        return self.part.values(m, dtype)

    def _logits(self, terms):
        return _sum_terms(self.terms, terms, self.size)

    def log_normalizer(self, terms):
        return jnp.sum(_lse(self._logits(terms), axis=0))

    def draw(self, key, terms, temperature, dtype):
        rows = enum._choose(key, self._logits(terms), temperature)
        return self.part.values(rows, dtype)


@dataclasses.dataclass(frozen=True)
class Chain:
    """A path of sites: the forward algorithm over the `enum.ChainBlock`'s potentials."""

    block: enum.ChainBlock

    @property
    def sites(self):
        return self.block.sites

    @property
    def size(self) -> int:
        return self.block.sites[0].num_values ** 2

    def candidate(self, m, dtype):
        k = self.block.sites[0].num_values
        ab = (m // k, m % k)
        return {s.name: _natural(s, jnp.broadcast_to(s.support_array(dtype)[ab[j % 2]],
                                                     (1,) + s.ind_shape + s.event_shape))
                for j, s in enumerate(self.block.sites)}

    def _potentials(self, terms, dtype):
        return enum.chain_potentials(self.block, {t.name: terms[t.name][: self.size] for t in self.block.terms}, dtype)

    def log_normalizer(self, terms):
        dtype = jnp.result_type(float)
        phi, psi = self._potentials(terms, dtype)
        return jnp.sum(_lse(enum.chain_forward(phi, psi)[-1], axis=0))

    def draw(self, key, terms, temperature, dtype):
        phi, psi = self._potentials(terms, dtype)
        states = enum.chain_backward(key, enum.chain_forward(phi, psi, temperature), psi, temperature)
        return {s.name: _natural(s, s.support_array(dtype)[states[j]][None]) for j, s in enumerate(self.sites)}


@dataclasses.dataclass(frozen=True)
class ScanChain:
    """The discrete sites of one `ppl.scan`: their joint value X_t at step t (J values, the
    product of the sites' supports; site 0's index most significant) forms a Markov chain of
    order h, the scan's `history` (each step's terms depend on X_{t-h}, ..., X_t). It is
    summed by the forward algorithm over windows (X_{t-h+1}, ..., X_t) of J^h values, per
    element of the sites' plates.

    The potentials come from J^(h+1) candidates: candidate m = (c_0, ..., c_h) in base J
    sets X_t = c_{t mod (h+1)}, so a term at step t sees the window (c_{(t-h) mod (h+1)}, ...,
    c_{t mod (h+1)}), every index of c once: over the candidates, every joint value of the
    window (for h = 1: x_t = a at even steps and b at odd ones). A `reverse` scan runs from
    step T-1 down to 0: its chain is summed in that order (step t reads X_t, ..., X_{t+h}).
    Steps t < h see fewer
    earlier steps (the scan's initial carry is not a site): their terms are constant along
    the window's places before step 0, which the forward pass sums over like any other, so
    its total counts each sequence J^h times (subtracted; the draws are not affected)."""

    sites: Tuple[enum.DiscreteSite, ...]
    history: int
    terms: Tuple[enum.Term, ...]
    reverse: bool = False

    @property
    def steps(self) -> int:
        return self.sites[0].shape[0]

    @property
    def joint(self) -> int:
        """J: the joint values of the sites at one step."""
        return math.prod(s.num_values for s in self.sites)

    @property
    def size(self) -> int:
        return self.joint ** (self.history + 1)

    def _values(self, joint_index, dtype):
        """Each site's value, in its shape, from joint indices (T, *ind) (or (T,) broadcast
        over the plates)."""
        out, stride = {}, self.joint
        for s in self.sites:
            stride //= s.num_values
            v = s.support_array(dtype)[(joint_index // stride) % s.num_values]  # (T, [*ind], *event)
            if v.ndim == 1 + s.event_ndim:
                v = v.reshape((self.steps,) + (1,) * len(s.ind_axes) + s.event_shape)
            out[s.name] = self._shaped(s, v)
        return out

    @staticmethod
    def _shaped(s, values):
        """(T, *ind, *event) values in the site's shape (its other batch axes have size 1)."""
        out = jnp.expand_dims(values, s.coupled_axes) if s.coupled_axes else values
        return jnp.broadcast_to(out, s.shape)

    def candidate(self, m, dtype):
        p, j = self.history + 1, self.joint
        digits = jnp.stack([(m // j ** (p - 1 - r)) % j for r in range(p)])
        return self._values(digits[jnp.arange(self.steps) % p], dtype)

    def _potentials(self, terms):
        """psi (T, J^(h+1), *ind) in the order the scan runs (tau = t, or T-1-t for a reverse
        scan): step tau's log potential at the window (X_{tau-h}, ..., X_tau) of the steps run
        before it, flattened with X_{tau-h} most significant."""
        p, h, j, steps = self.history + 1, self.history, self.joint, self.steps
        lp = _sum_terms(self.terms, terms, self.size)  # (J^p, T, *ind)
        rest = lp.shape[2:]
        lp = jnp.moveaxis(lp.reshape((j,) * p + (steps,) + rest), p, 0)  # (T, c_0, ..., c_h, *ind)
        if self.reverse:
            lp = lp[::-1]
        psi = 0.0
        phase = (steps - 1 - jnp.arange(steps) if self.reverse else jnp.arange(steps)) % p  # X_tau's digit
        for r in range(p):  # window position i (step tau-h+i) holds the digit of that step
            order = (0,) + tuple(1 + ((r + h - i) if self.reverse else (r - h + i)) % p for i in range(p))
            mine = (phase == r).reshape((steps,) + (1,) * (lp.ndim - 1))
            psi = jnp.where(mine, jnp.transpose(lp, order + tuple(range(p + 1, lp.ndim))), psi)
        return psi.reshape((steps, j ** p) + rest)

    def _forward(self, psi, temperature):
        """Forward messages alpha_t over windows (X_{t-h+1}, ..., X_t), flattened: (T + 1,
        J^h, *ind), alpha_{-1} = 0 first."""
        combine, j, h = enum._combine(temperature), self.joint, self.history
        start = jnp.zeros((j ** h,) + psi.shape[2:], psi.dtype)

        def step(alpha, psi_t):  # (J^h, *ind), (J^(h+1), *ind)
            full = (alpha[:, None] + psi_t.reshape((j ** h, j) + psi_t.shape[1:]))
            alpha = combine(full.reshape((j, j ** h) + psi_t.shape[1:]), axis=0)
            return alpha, alpha

        _, alphas = jax.lax.scan(step, start, psi)
        return jnp.concatenate([start[None], alphas])

    def log_normalizer(self, terms):
        alphas = self._forward(self._potentials(terms), 1)
        return jnp.sum(_lse(alphas[-1], axis=0) - self.history * math.log(self.joint))

    def draw(self, key, terms, temperature, dtype):
        """Backward sampling: the last window from alpha_{T-1}, then X_{t-h} given the window
        (X_{t-h+1}, ..., X_t) from alpha_{t-1} + psi_t, for t = T-1, ..., 0 (the places before
        step 0 are drawn too, and dropped)."""
        psi = self._potentials(terms)
        j, h = self.joint, self.history
        keys = jax.random.split(key, self.steps + 1)
        if h == 0:  # independent steps
            states = jax.vmap(lambda k, lp: enum._choose(k, lp, temperature))(keys[1:], psi)
            return self._values(states[::-1] if self.reverse else states, dtype)
        alphas = self._forward(psi, temperature)
        last = enum._choose(keys[0], alphas[-1], temperature)  # (*ind): window index at T-1

        def back(w, xs):
            alpha_prev, psi_t, k = xs
            low = w // j  # (X_{t-h+1}, ..., X_{t-1})
            idx = jnp.arange(j).reshape((j,) + (1,) * w.ndim)
            logits = (jnp.take_along_axis(alpha_prev, idx * j ** (h - 1) + low[None], axis=0)
                      + jnp.take_along_axis(psi_t, idx * j ** h + w[None], axis=0))
            a = enum._choose(k, logits, temperature)
            return a * j ** (h - 1) + low, w % j

        _, states = jax.lax.scan(back, last, (alphas[:-1], psi, keys[1:]), reverse=True)
        return self._values(states[::-1] if self.reverse else states, dtype)


@dataclasses.dataclass(frozen=True)
class Nested:
    """Two plate levels: `outer` sites on plates A, `inner` sites on plates B, a superset of
    A. Per value of the outer sites, the inner ones are summed per element of B; the sum is
    multiplied over B's plates outside A, then the outer values are summed per element of A.
    Candidate m sets the outer part to row m // inner.size and the inner part to m % inner.size."""

    outer: Part
    inner: Part
    outer_terms: Tuple[enum.Term, ...]
    inner_terms: Tuple[enum.Term, ...]
    spread: Tuple[int, ...]  # positions of B's plates that are not A's, in the inner ind_shape

    @property
    def sites(self):
        return self.outer.sites + self.inner.sites

    @property
    def size(self) -> int:
        return self.outer.size * self.inner.size

    def candidate(self, m, dtype):
        return {**self.outer.values(m // self.inner.size, dtype), **self.inner.values(m % self.inner.size, dtype)}

    def _logits(self, terms):
        n_o, n_i = self.outer.size, self.inner.size
        inner = _sum_terms(self.inner_terms, terms, self.size)
        inner = inner.reshape((n_o, n_i) + inner.shape[1:])
        outer = _sum_terms(self.outer_terms, terms, self.size)
        outer = outer.reshape((n_o, n_i) + outer.shape[1:])[:, 0]
        return outer, inner

    def _outer_logits(self, outer, inner):
        per = _lse(inner, axis=1)  # (n_o, *ind_B)
        if self.spread:
            per = jnp.sum(per, axis=tuple(1 + a for a in self.spread))
        return outer + per

    def log_normalizer(self, terms):
        outer, inner = self._logits(terms)
        return jnp.sum(_lse(self._outer_logits(outer, inner), axis=0))

    def draw(self, key, terms, temperature, dtype):
        k_outer, k_inner = jax.random.split(key)
        outer, inner = self._logits(terms)
        o = enum._choose(k_outer, self._outer_logits(outer, inner), temperature)  # (*ind_A)
        o_b = jnp.expand_dims(o, tuple(self.spread))  # broadcastable to ind_B
        picked = jnp.take_along_axis(inner, jnp.broadcast_to(o_b, inner.shape[2:])[None, None], axis=0)[0]
        i = enum._choose(k_inner, picked, temperature)
        return {**self.outer.values(o, dtype), **self.inner.values(i, dtype)}


def _lse(x, axis):
    """log-sum-exp that is -inf (with a zero gradient) where every term is -inf."""
    peak = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    return jnp.log(jnp.sum(jnp.exp(x - peak), axis=axis)) + jnp.squeeze(peak, axis)


def _sum_terms(block_terms, terms, size):
    total = 0.0
    for t in block_terms:
        total = total + t.reduce(terms[t.name][:size])
    total = jnp.asarray(total)
    return jnp.where(jnp.isnan(total), -jnp.inf, total)


# ----------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    """How a model's discrete sites are summed out (static and hashable: part of a compiled
    program's key). `base` holds the terms that depend on no discrete site with the part of
    the log joint each belongs to ("prior", "likelihood" or "jacobian"); the groups' sums
    count as likelihood. `deterministic` names the deterministic sites whose values depend
    on a discrete site (they are computed once the discrete sites are drawn)."""

    groups: tuple
    base: Tuple[Tuple[str, str], ...]
    deterministic: Tuple[str, ...]
    discrete: Tuple[str, ...]

    @property
    def size(self) -> int:
        return max(g.size for g in self.groups)

    def describe(self) -> list:
        out = []
        for g in self.groups:
            names = ", ".join(s.name for s in g.sites)
            if isinstance(g, ScanChain):
                order = f", order {g.history}" if g.history != 1 else ""
                plates = g.sites[0].ind_plates
                out.append(f"forward algorithm over the {g.steps} steps of {names} in ppl.scan "
                           f"({g.joint} values{order})" + (", in reverse" if g.reverse else "")
                           + (f", vectorised over plate(s) {list(plates)}" if plates else ""))
            elif isinstance(g, Chain):
                out.append(f"forward algorithm over the chain {names} ({g.sites[0].num_values} values)")
            elif isinstance(g, Nested):
                out.append(f"{{{names}}} summed on two plate levels ({g.size} joint values)")
            else:
                plates = g.sites[0].ind_plates
                out.append(f"{{{names}}} summed over {g.size} joint values"
                           + (f", vectorised over plate(s) {list(plates)}" if plates else ""))
        return out


def _too_many(who, names, states):
    return ValueError(
        f"method '{who}' sums the discrete sites {names} out of the log density, but together they "
        f"take {states} joint values (more than {MAX_STATES}): their elements are coupled (no plate "
        f"makes them conditionally independent) and they form no Markov chain. Declare with "
        f"ppl.plate the dimensions over which their elements are independent, or use "
        f"method=\"gibbs\", which updates them one at a time.")


def _scan_refusal(who, names, why):
    return ValueError(
        f"method '{who}' sums the discrete sites {names} inside ppl.scan out with the forward "
        f"algorithm, but {why}. Write the loop over time as a Python for loop with one site per step "
        f"and use method=\"gibbs\" (which draws each from its exact conditional); {who} sums such a "
        f"loop's sites exactly only while they form one Markov chain or their joint values number "
        f"at most {MAX_STATES}.")


def _scan_chain(structure, sites, who):
    """The `ScanChain` of a group of interacting discrete sites inside ppl.scan, or a clear
    refusal (sites of different scans, or with other sites; elements that no plate makes
    independent; more than MAX_STATES joint values of a step's window)."""
    names = [s.name for s in sites]
    first = sites[0]
    if not all(s.scanned and s.scan == first.scan for s in sites):
        raise _scan_refusal(who, names, "they are not all sites of one ppl.scan (they interact through "
                                        "its carry or outputs)")
    if any(s.coupled_size != 1 or s.ind_plates != first.ind_plates or s.ind_shape != first.ind_shape
           for s in sites):
        raise _scan_refusal(who, names, "their elements are not independent along the same plates (declare "
                                        "them with ppl.plate inside the body)")
    history = first.history
    chain = ScanChain(tuple(sites), history, (), first.reverse)
    if chain.size > MAX_STATES:
        raise _scan_refusal(who, names, f"a step's terms read {history + 1} steps (history={history}) of "
                                        f"{chain.joint} joint values each: {chain.size} values to evaluate, "
                                        f"more than {MAX_STATES}")
    terms = []
    for t, d in structure.deps.items():
        if not d & set(names):
            continue
        owner = t[: -len(enum.JACOBIAN)] if t.endswith(enum.JACOBIAN) else t
        if structure.term_scans.get(t) != first.scan:
            raise ValueError(
                f"method '{who}' sums the discrete sites {names} inside ppl.scan out step by step, "
                f"but the term '{t}' outside that scan depends on them (through the scan's carry or "
                f"outputs); only the scan's own sites may use them. Use method=\"gibbs\" with a "
                f"Python loop instead of ppl.scan.")
        if t.endswith(enum.JACOBIAN):
            raise ValueError(
                f"method '{who}' sums the discrete sites {names} inside ppl.scan out step by step, "
                f"but the support of the continuous site '{owner}' in the scan depends on them, "
                f"and its log-Jacobian is one sum over the steps, which cannot be split per step. Give "
                f"'{owner}' a support that does not depend on them (e.g. scale a fixed-support "
                f"draw by them), or use method=\"gibbs\" with a Python for loop over time.")
        terms.append(enum.Term(t, structure.term_ndim[t], (0,) + enum.keep_axes(structure, first, t)))
    return dataclasses.replace(chain, terms=tuple(terms))


def _group_plan(structure, group, edges, who):
    sites = [structure.sites[n] for n in group]
    if any(s.scanned for s in sites):
        return _scan_chain(structure, sites, who)
    same = all(s.ind_plates == sites[0].ind_plates and s.ind_shape == sites[0].ind_shape for s in sites)
    if same and len(sites) > 2 and all(s.coupled_size == 1 for s in sites) and len({s.num_values for s in sites}) == 1:
        path = enum.path_order(group, edges)
        if path is not None:
            chain = [structure.sites[n] for n in path]
            pos = {n: j for j, n in enumerate(path)}

            def role(d):
                js = sorted(pos[n] for n in d)
                return ("unary", js[0]) if len(js) == 1 else ("pair", js[1])

            return Chain(enum.ChainBlock(tuple(chain), enum.terms_for(structure, chain, role)))
    if same:
        states = math.prod(s.num_values ** s.coupled_size for s in sites)
        if states > MAX_STATES:
            raise _too_many(who, list(group), states)
        return Product(Part.of(sites), enum.terms_for(structure, sites))
    levels = sorted({s.ind_plates for s in sites}, key=len)
    if len(levels) == 2 and set(levels[0]) < set(levels[1]):
        outer = [s for s in sites if s.ind_plates == levels[0]]
        inner = [s for s in sites if s.ind_plates == levels[1]]
        states = math.prod(s.num_values ** s.coupled_size for s in sites)
        if states > MAX_STATES:
            raise _too_many(who, list(group), states)
        inner_names = {s.name for s in inner}
        inner_terms, outer_terms = [], []
        for t, d in structure.deps.items():
            if d & inner_names:
                inner_terms.append(enum.Term(t, structure.term_ndim[t], enum.keep_axes(structure, inner[0], t)))
            elif d & {s.name for s in outer}:
                outer_terms.append(enum.Term(t, structure.term_ndim[t], enum.keep_axes(structure, outer[0], t)))
        spread = tuple(j for j, p in enumerate(levels[1]) if p not in levels[0])
        return Nested(Part.of(outer), Part.of(inner), tuple(outer_terms), tuple(inner_terms), spread)
    raise ValueError(
        f"method '{who}' sums the discrete sites {list(group)} out of the log density, but they "
        f"interact across plates in a way it cannot sum exactly (plates {[list(s.ind_plates) for s in sites]}): "
        f"it handles sites on the same plates, Markov chains of sites, and a global site with the "
        f"sites of one plate level under it. Use method=\"gibbs\" for this model.")


def _part(kinds, term):
    """The part of the log joint a term belongs to, from its site's kind."""
    if term.endswith(enum.JACOBIAN):
        return "jacobian"
    return "likelihood" if kinds[term] in ("observed", "factor") else "prior"


def make_plan(ld, who) -> Plan:
    """Analyse `ld`'s discrete sites (see `ppl.compile.enumerate.analyze`) and plan their sums.

    Raises:
      ValueError: naming the site, for a discrete site with infinite support, and naming the
        sites, for a group that cannot be summed exactly (see `_group_plan`).
    """
    traced = enum.traced_structure(ld)
    tr = traced[0]
    names = tuple(lat.name for lat in ld.spec.discrete)
    structure = enum.analyze(ld, names, traced=traced, who=who)
    groups, edges = enum.components(structure, names)
    plan_groups = tuple(_group_plan(structure, g, edges, who) for g in groups)
    kinds = {s.name: s.kind for s in tr.values()}
    base = tuple((t, _part(kinds, t)) for t, d in structure.deps.items() if not d)
    return Plan(plan_groups, base, _deterministic_dependence(ld), names)


def _deterministic_dependence(ld):
    if not ld.spec.deterministic:
        return ()
    dvals = {lat.name: jnp.zeros(lat.shape, lat.dtype) for lat in ld.spec.discrete}

    def g(dvals, z):
        tr = ld.run(z, extra=(handlers.substitute(data=dvals),))
        return {s.name: jnp.asarray(s.value) for s in tr.sites("deterministic")}

    deps, _ = enum.dependence(g, dvals, jnp.zeros((ld.dim,), jnp.result_type(float)))
    return tuple(sorted(n for n, d in deps.items() if d))


# ----------------------------------------------------------------------------------------
# The marginal log density
# ----------------------------------------------------------------------------------------
def _continuous_spec(spec):
    latents, offset = [], 0
    for lat in spec.continuous:
        latents.append(dataclasses.replace(lat, offset=offset))
        offset += lat.size
    return dataclasses.replace(spec, latents=tuple(latents), dim=offset)


@jax.tree_util.register_pytree_node_class
class MarginalLogDensity(LogDensity):
    """A `LogDensity` over the continuous latents only, the discrete ones summed out.

    `full` is the model's own `LogDensity` (discrete sites included); `plan` the `Plan`.
    `run` and `constrain` give the discrete sites a placeholder value (their first
    candidate); `constrain` leaves out the discrete sites and the deterministic sites that
    depend on them (`draw_discrete` gives those).
    """

    def __init__(self, model, spec, tree, static, data, params, full_spec, plan):
        super().__init__(model, spec, tree, static, data, params)
        self.full_spec, self.plan = full_spec, plan

    def tree_flatten(self):
        return (self.data, self.params), (self.model, self.spec, self._tree, self._static, self.full_spec, self.plan)

    @classmethod
    def tree_unflatten(cls, aux, children):
        model, spec, tree, static, full_spec, plan = aux
        return cls(model, spec, tree, static, *children, full_spec, plan)

    @property
    def full(self) -> LogDensity:
        ld = LogDensity(self.model, self.full_spec, self._tree, self._static, self.data, self.params)
        ld.module_statics = getattr(self, "module_statics", {})
        return ld

    def embed(self, z, discrete=None):
        """The full flat vector: continuous values from `z`, discrete ones from the dict
        `discrete` (values in each site's shape), else zero."""
        full = jnp.zeros((self.full_spec.dim,), z.dtype)
        for lat in self.spec.latents:
            src = self.full_spec.latent(lat.name)
            full = jax.lax.dynamic_update_slice_in_dim(full, jax.lax.dynamic_slice_in_dim(z, lat.offset, lat.size),
                                                       src.offset, 0)
        for name, v in (discrete or {}).items():
            lat = self.full_spec.latent(name)
            full = jax.lax.dynamic_update_slice_in_dim(full, jnp.reshape(v, (-1,)).astype(z.dtype), lat.offset, 0)
        return full

    def _candidate(self, m, dtype):
        """Every discrete site's value at candidate `m` (each group at min(m, its size - 1))."""
        out = {}
        for g in self.plan.groups:
            out.update(g.candidate(jnp.minimum(m, g.size - 1), dtype))
        return {k: v.astype(self.full_spec.latent(k).dtype) for k, v in out.items()}

    def _placeholder(self, dtype):
        return self._candidate(jnp.int32(0), dtype)

    def run(self, z, uparams=None, extra=()):
        z = jnp.asarray(z)
        return self.full.run(self.embed(z), uparams, (handlers.substitute(data=self._placeholder(z.dtype)),) + tuple(extra))

    def candidate_terms(self, z, uparams=None):
        """Every term of the log joint at every candidate of the plan (leading axis)."""
        z = jnp.asarray(z)
        full = self.full
        zf = self.embed(z)

        def at(m):
            values = self._candidate(m, z.dtype)
            return enum.terms_of(full.run(zf, uparams, (handlers.substitute(data=values),)))

        return jax.vmap(at)(jnp.arange(self.plan.size))

    def log_joint(self, z, uparams=None) -> LogJoint:
        """The log joint with the discrete sites summed out; the sums count as likelihood."""
        terms = self.candidate_terms(z, uparams)
        parts = {"prior": jnp.zeros(()), "likelihood": jnp.zeros(()), "jacobian": jnp.zeros(())}
        for name, part in self.plan.base:
            parts[part] = parts[part] + jnp.sum(terms[name][0])
        for g in self.plan.groups:
            parts["likelihood"] = parts["likelihood"] + g.log_normalizer(terms)
        return LogJoint(parts["prior"], parts["likelihood"], parts["jacobian"])

    def constrain(self, z, deterministic: bool = False) -> dict:
        values = super().constrain(z, deterministic)
        return {k: v for k, v in values.items() if k not in self.plan.discrete and k not in self.plan.deterministic}

    def unconstrain(self, values: dict):
        z = jnp.asarray(self.full.unconstrain({**self._placeholder(jnp.result_type(float)), **values}))
        return jnp.concatenate([jax.lax.slice_in_dim(z, self.full_spec.latent(lat.name).offset,
                                                     self.full_spec.latent(lat.name).offset + lat.size)
                                for lat in self.spec.latents]) if self.spec.latents else z[:0]

    def unconstrained_params(self, z=None) -> dict:
        z = jnp.zeros((self.dim,), jnp.result_type(float)) if z is None else z
        return self.full.unconstrained_params(self.embed(z))

    def draw_discrete(self, z, key, temperature=1) -> dict:
        """The discrete sites drawn from their conditional posterior given `z` (or their most
        probable values given `z` at temperature 0): site -> value."""
        terms = self.candidate_terms(z)
        out = {}
        for g, k in zip(self.plan.groups, jax.random.split(key, len(self.plan.groups))):
            out.update(g.draw(k, terms, temperature, jnp.result_type(float)))
        return {name: v.astype(self.full_spec.latent(name).dtype) for name, v in out.items()}

    def complete(self, z, key, temperature=1) -> dict:
        """Constrained values of every latent and deterministic site at `z`, the discrete
        sites drawn as in `draw_discrete` (and the deterministic sites computed with them)."""
        discrete = self.draw_discrete(z, key, temperature)
        return self.full.constrain(self.embed(z, discrete), deterministic=True)

    def __repr__(self):
        return (f"MarginalLogDensity(model={getattr(self.model, '__name__', self.model)!s}, dim={self.dim}, "
                f"summed out={list(self.plan.discrete)})")


_PLANS = Memo(64)  # one plan per model structure


def marginalize(ld, who: str = "nuts") -> MarginalLogDensity:
    """`ld` with its discrete latent sites summed out (see the module docstring); `ld`
    itself when it has none. The plan is made once per model structure and reused.

    Raises:
      ValueError: naming the site or sites, when a discrete site has infinite support or a
        group of them cannot be summed exactly.
    """
    if not ld.spec.discrete or isinstance(ld, MarginalLogDensity):
        return ld
    plan = _PLANS.get((ld.model, ld.spec, ld._tree, ld._static), lambda: make_plan(ld, who))
    out = MarginalLogDensity(ld.model, _continuous_spec(ld.spec), ld._tree, ld._static, ld.data, ld.params,
                             ld.spec, plan)
    out.module_statics = getattr(ld, "module_statics", {})
    return out
