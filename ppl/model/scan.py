"""`ppl.scan`: `jax.lax.scan` whose body may call `sample`, `observe`, `deterministic`, `factor`.

    def transition(carry, y_t):
        x = ppl.sample("x", dist.Normal(carry, s))
        ppl.observe("y", dist.Normal(x, 1.0), y_t)
        return x, x

    last, xs = ppl.scan(transition, x0, y)          # sites 'x', 'y' of shape (T,)

NumPyro's `numpyro.contrib.control_flow.scan` semantics: each site of the body is recorded
ONCE, with a leading time dimension (shape ``(T, *step_shape)``), and its log density sums
over time; the body runs inside one `jax.lax.scan` (the program does not grow with T).

How it meets the handlers around it. A site's handlers see one message per site, as for any
other site: every handler *processes* the stacked message before the scan runs, and
*postprocesses* it after, with its stacked value and a `ScannedDistribution` (the step
distributions stacked; see `ppl.model.scanned_dist`). In between, the body runs under a
stack of its own whose outermost handler, the *boundary*, hands each step what the handlers
outside decided for the whole site:

* a value (`substitute`, `condition`, a draw to replay): step t gets its row t;
* an unconstrained value (the compiler's flat vector): row t goes through the bijection of
  step t's support, and the log-Jacobian is summed over time;
* a key (`seed`): step t draws from its own distribution with ``fold_in(key, t)``;
* a change of kind (observed -> latent to draw data anew, latent -> observed by `condition`).

To know the body's sites before it runs, the body is first traced once abstractly
(`jax.eval_shape`: no computation). Plates around the scan, and `reparam`, apply inside the
body too, step by step. Not supported inside a body: `param`/`module` (create them before
the scan), subsampling plates, and a `ppl.scan` nested in another.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to

from ppl.model import scanned_dist
from ppl.model._runtime import (
    Message,
    Messenger,
    active_handlers,
    local_stack,
    postprocess_stack,
    process_stack,
)
from ppl.model.primitives import _expand_to_plate, plate
from ppl.model.sites import dist_name

SITES = ("latent", "observed", "deterministic", "factor")


@dataclasses.dataclass
class _BodySite:
    """What the trial trace of the body found about one site (static facts only)."""

    name: str
    kind: str
    plates: tuple
    facts: scanned_dist.StepFacts | None  # latent and observed sites
    shape: tuple
    dtype: Any
    preset: bool  # a latent whose value a handler inside the body sets
    infer: dict


@dataclasses.dataclass
class _Plan:
    """What the handlers outside decided for one stacked site (see the module docstring)."""

    kind: str
    source: str | None  # "value", "unconstrained", "key", "body" or None
    key: Any = None
    steps_given: int = 0  # rows of a given value (fewer than T: the rest are drawn)


def scan(f: Callable, init, xs, length: int | None = None, reverse: bool = False, history: int = 1):
    """Scan `f` over the leading axis of `xs`, as `jax.lax.scan`, with sites inside `f`.

    Args:
      f: ``f(carry, x) -> (carry, y)``; it may call `sample`, `observe`, `deterministic` and
        `factor` (and `plate` without subsampling). Each site is recorded once, with a leading
        time dimension.
      init: the initial carry.
      xs: a pytree of arrays scanned along their leading axis (or None, with `length`).
      length: the number of steps (needed when `xs` is None).
      reverse: run from the last step to the first (outputs stay in the order of `xs`).
      history: NumPyro's number of previous steps visible to discrete enumeration: the
        order of the Markov chain that the discrete sites of the body form (each step's
        terms may depend on the discrete values of this many earlier steps, through the
        carry). Gradient methods sum them out with the forward algorithm
        (`ppl.compile.marginal.ScanChain`); a continuous model is the same for any value.

    Returns:
      ``(final carry, stacked y)``, as `jax.lax.scan`.

    Raises:
      ValueError: for a bad `length`, `xs` or `history`; a `param` or a subsampling plate
        inside `f`; a value given for a scanned site with the wrong shape (naming it).

    Example:
      >>> def ar1(y):
      ...     rho = ppl.sample("rho", dist.Uniform(-1.0, 1.0))
      ...     def step(prev, y_t):
      ...         ppl.observe("y", dist.Normal(rho * prev, 1.0), y_t)
      ...         return y_t, None
      ...     ppl.scan(step, 0.0, y)                  # site 'y' of shape (len(y),)
    """
    if not callable(f):
        raise TypeError(f"ppl.scan: f must be the body function f(carry, x) -> (carry, y), got {type(f).__name__}.")
    if not isinstance(history, (int, np.integer)) or isinstance(history, bool) or history < 0:
        raise ValueError(f"ppl.scan: history must be an int >= 0, got {history!r}.")
    length = _length(xs, length)
    outer = active_handlers()
    if any(isinstance(h, _Boundary) for h in outer):
        raise NotImplementedError("ppl.scan inside the body of another ppl.scan is not supported; write the "
                                  "inner loop with vectorised operations and ppl.plate.")
    body_sites, key_calls = _trial_trace(f, init, xs, outer)
    together = tuple(site.name for site in body_sites)
    slots = [_Slot.send(site, length, history, together, reverse) for site in body_sites]
    key_slots = [_send_key_request() for _ in range(key_calls)]
    plans = {slot.site.name: slot.plan() for slot in slots}
    rows = {slot.site.name: slot.rows(plans[slot.site.name]) for slot in slots}
    rows = {k: v for k, v in rows.items() if v is not None}
    key_plans = [msg.key for msg, _ in key_slots]
    kinds = {}

    def step(carry, inputs):
        x, t, rows_t = inputs
        boundary = _Boundary(plans, key_plans, length, t, rows_t)
        with local_stack(boundary, *_views(outer)):
            carry, y = f(carry, x)
        kinds.update(boundary.kinds)
        return carry, (y, boundary.records)

    carry, (ys, records) = jax.lax.scan(step, init, (xs, jnp.arange(length), rows), length=length, reverse=reverse)
    for slot in slots:
        slot.finish(kinds[slot.site.name], records[slot.site.name])
    for msg, reached in key_slots:
        postprocess_stack(msg, reached)
    return carry, ys


def _length(xs, length) -> int:
    lengths = set()
    for a in jax.tree.leaves(xs):
        if np.ndim(a) == 0:
            raise ValueError("ppl.scan: every array in xs needs a leading (time) axis to scan over; a scalar "
                             "has none.")
        lengths.add(int(np.shape(a)[0]))
    if length is not None:
        if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 1:
            raise ValueError(f"ppl.scan: length must be a Python int >= 1, got {length!r}.")
        if lengths - {int(length)}:
            raise ValueError(f"ppl.scan: length={length} but xs has leading axes of sizes {sorted(lengths)}.")
        return int(length)
    if not lengths:
        raise ValueError("ppl.scan: xs holds no arrays, so give the number of steps: scan(f, init, None, "
                         "length=T).")
    if len(lengths) > 1:
        raise ValueError(f"ppl.scan: the arrays in xs have leading axes of different sizes {sorted(lengths)}; "
                         f"they must all be the number of steps.")
    (n,) = lengths
    if n < 1:
        raise ValueError("ppl.scan: xs has no steps (a leading axis of size 0).")
    return n


def _views(outer) -> list:
    """The handlers around the scan that also apply inside its body, step by step: plates
    (each step's distributions are broadcast along them) and handlers with a
    `scan_body_handler` (reparam). Fresh for every trace of the body."""
    views = []
    for h in outer:
        if isinstance(h, plate):
            views.append(_PlateView(h))
        elif hasattr(h, "scan_body_handler"):
            view = h.scan_body_handler()
            if view is not None:
                views.append(view)
    return views


class _PlateView(plate):
    """A plate around the scan, seen from inside the body: it broadcasts each step's
    distributions along its dim (the plate itself adds its frame, and any subsampling scale,
    to the stacked site, once) and holds its dim against plates inside the body."""

    def __init__(self, outer: plate):
        Messenger.__init__(self, None)
        self.name, self.size, self.subsample_size = outer.name, outer.size, outer.subsample_size
        self._dim, self.dim, self.frame, self.indices = outer._dim, outer.dim, outer.frame, outer.indices

    def __enter__(self):
        Messenger.__enter__(self)
        return self.indices

    def process(self, msg: Message) -> None:
        if msg.kind in SITES and msg.dist is not None:
            msg.dist = _expand_to_plate(msg.name, msg.dist, self.frame, msg.sample_shape)


# ------------------------------------------------------------------------------- trial trace

def _trial_trace(f, init, xs, outer):
    """The body's sites (`_BodySite`s, in order) and its number of `prng_key()` calls, from
    one abstract trace of `f` (`jax.eval_shape`: nothing is computed)."""
    boundary = _Boundary(None, None, 0, 0, None)
    x0 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], jnp.result_type(a)), xs)

    def one_step(carry, x):
        with local_stack(boundary, *_views(outer)):
            return f(carry, x)

    jax.eval_shape(one_step, init, x0)
    return boundary.found, boundary.key_calls


def _placeholder(d):
    """A value of the site's shape and dtype for the trial trace (abstract: never computed)."""
    try:
        return d.sample(jax.random.PRNGKey(0))
    except NotImplementedError:  # an improper prior: a point of the support
        bijection = biject_to(d.support)
        return bijection(jnp.zeros(bijection.inverse_shape(d.shape()), jnp.result_type(float)))


def _body_site(msg, preset: bool) -> _BodySite:
    facts = None
    if msg.kind in ("latent", "observed"):
        d = msg.dist
        shape = tuple(d.shape())
        unconstrained = shape if d.is_discrete else tuple(biject_to(d.support).inverse_shape(shape))
        facts = scanned_dist.StepFacts(
            name=msg.name, length=0, batch_shape=tuple(d.batch_shape), event_shape=tuple(d.event_shape),
            is_discrete=bool(d.is_discrete), has_rsample=bool(d.has_rsample),
            event_dim=int(getattr(d.support, "event_dim", len(d.event_shape))),
            unconstrained_shape=unconstrained, dist_name=dist_name(d))
    value = msg.value
    return _BodySite(name=msg.name, kind=msg.kind, plates=tuple(msg.plates), facts=facts,
                     shape=tuple(jnp.shape(value)), dtype=jnp.result_type(value), preset=preset,
                     infer={k: v for k, v in msg.infer.items() if not isinstance(v, jax.Array)})


# ------------------------------------------------------------------------------- the boundary

class _Boundary(Messenger):
    """The outermost handler inside the scan body. It stands where the handlers around the
    scan would, gives step `t` what they decided for each stacked site (`plans`, with the
    step's rows of given values in `rows`), and records what each step's sites end with.
    With `plans=None` (the trial trace) it records the sites' static facts instead and gives
    latent sites placeholder values."""

    def __init__(self, plans, key_plans, length, t, rows):
        super().__init__(None)
        self.plans, self.key_plans, self.length, self.t, self.rows = plans, key_plans, length, t, rows
        self.found, self.key_calls, self.records, self.kinds = [], 0, {}, {}
        self._preset = {}

    def process(self, msg: Message) -> None:
        if msg.kind == "param":
            raise ValueError(
                f"param '{msg.name}' is created inside a ppl.scan body; a param is one value for the whole "
                f"model: create it before the scan (ppl.param or ppl.module) and use it inside the body. "
                f"(A LocScaleReparam(centered=None) on a site inside the body learns such a param: give it "
                f"a fixed centered in [0, 1] there.)")
        if msg.kind == "plate":
            raise ValueError(
                f"plate '{msg.name}' subsamples inside a ppl.scan body, which is not supported; subsample "
                f"outside the scan, or use a plate without subsample_size inside it.")
        if msg.kind == "prng_key":
            k = self.key_calls
            self.key_calls += 1
            if self.plans is None:
                msg.key = jax.random.PRNGKey(0)
            elif self.key_plans[k] is not None:
                msg.key = jax.random.fold_in(self.key_plans[k], self.t)
            return
        if msg.kind not in SITES:
            return
        if self.plans is None:
            self._trial(msg)
        else:
            self._step(msg)

    def _trial(self, msg):
        if msg.name in self._preset:
            raise ValueError(f"site name '{msg.name}' is used twice in one step of a ppl.scan body; give each "
                             f"site of the body a unique name (each is recorded once, over all steps).")
        self._preset[msg.name] = msg.kind == "latent" and msg.value is not None
        if msg.kind == "latent" and msg.value is None:
            msg.value = _placeholder(msg.dist)

    def _step(self, msg):
        plan = self.plans.get(msg.name)
        if plan is None:
            raise ValueError(f"site '{msg.name}' appears in a ppl.scan body on some traces of it only; the "
                             f"body must call the same sites every time it is traced.")
        row = self.rows.get(msg.name)
        if plan.kind == "observed":
            msg.kind = "observed"
        elif plan.kind == "latent" and msg.kind == "observed":  # data drawn anew
            msg.kind, msg.value = "latent", None
        if plan.source == "value":
            if plan.steps_given < self.length:  # the steps past the given rows are drawn
                drawn = msg.dist.sample(jax.random.fold_in(plan.key, self.t))
                row = jnp.where(self.t < plan.steps_given, row, drawn)
            msg.value = row
        elif plan.source == "unconstrained" and msg.kind == "latent":
            bijection = biject_to(msg.dist.support)
            msg.unconstrained, msg.value = row, bijection(row)
            msg.log_jacobian = jnp.sum(bijection.log_abs_det_jacobian(row, msg.value))
        elif plan.source == "key" and msg.kind == "observed":  # data drawn by a handler
            msg.value = msg.dist.sample(jax.random.fold_in(plan.key, self.t))
        elif plan.source == "key" and msg.kind == "latent" and msg.value is None:
            msg.key = jax.random.fold_in(plan.key, self.t)

    def postprocess(self, msg: Message) -> None:
        if msg.kind not in SITES:
            return
        if self.plans is None:
            self.found.append(_body_site(msg, self._preset.get(msg.name, False)))
            return
        self.kinds[msg.name] = msg.kind
        self.records[msg.name] = _record(msg)


def _record(msg) -> dict:
    """What one step of a site leaves for the stacked site (arrays only: scan outputs)."""
    out = {"value": msg.value}
    if msg.kind not in ("latent", "observed"):
        if msg.kind == "factor":
            out.update(_weights(msg, jnp.shape(msg.value)))
        return out
    d = msg.dist
    out["dist"] = d
    if msg.log_jacobian is not None:
        out["log_jacobian"] = msg.log_jacobian
    if msg.kind == "latent" and not d.is_discrete:
        out["unconstrained"] = msg.unconstrained if msg.unconstrained is not None \
            else biject_to(d.support).inv(msg.value)
    out.update(_weights(msg, tuple(d.batch_shape)))
    return out


def _weights(msg, shape) -> dict:
    """A step's scale and mask set inside the body, broadcast to its batch shape (so that
    stacked over time they line up with the stacked log density)."""
    out = {}
    if msg.scale is not None:
        out["scale"] = jnp.broadcast_to(jnp.asarray(msg.scale, jnp.result_type(float)), shape)
    if msg.mask is not None:
        out["mask"] = jnp.broadcast_to(msg.mask, shape)
    return out


# ------------------------------------------------------------------------------- stacked sites

@dataclasses.dataclass
class _Slot:
    """One stacked site on its way through the handlers around the scan."""

    site: _BodySite
    msg: Message
    reached: tuple
    length: int
    placeholder: Any  # the value the body gives (observed data, a value set inside the body)

    @classmethod
    def send(cls, site: _BodySite, length: int, history: int = 1, together: tuple = (),
             reverse: bool = False) -> _Slot:
        """Build the stacked message and let the handlers around the scan process it (its
        `infer` records, for the enumeration, the scan's `history` as "scan_history", the
        names of the scan's sites, `together`, as "scan_sites", and its direction as
        "scan_reverse")."""
        dist = None if site.facts is None else scanned_dist.pending(site.facts._replace(length=length))
        placeholder = None
        if site.kind == "observed" or site.preset:
            placeholder = jnp.zeros((length,) + site.shape, site.dtype)
        msg = Message(name=site.name, kind=site.kind, dist=dist, value=placeholder, plates=site.plates,
                      infer={**site.infer, "scan_history": history, "scan_sites": together,
                             "scan_reverse": bool(reverse)})
        return cls(site, msg, process_stack(msg), length, placeholder)

    def plan(self) -> _Plan:
        msg, name = self.msg, self.site.name
        if msg.kind not in ("latent", "observed"):
            return _Plan(msg.kind, None)
        if not scanned_dist.is_scanned(msg.dist):
            raise ValueError(f"site '{name}' is inside ppl.scan, but a handler around the scan replaced its "
                             f"distribution ({type(msg.dist).__name__}); that handler does not support ppl.scan.")
        if isinstance(msg.value, scanned_dist.DeferredDraw):  # a handler drew the site: step by step
            return _Plan(msg.kind, "key", msg.value.key)
        if msg.value is not None and msg.value is not self.placeholder:
            return _Plan(msg.kind, "value", msg.key, self._check_value(msg.value, msg.key))
        if msg.value is not None:
            return _Plan(msg.kind, "body")
        if msg.unconstrained is not None and not self.site.facts.is_discrete:
            want = (self.length,) + tuple(self.site.facts.unconstrained_shape)
            if tuple(jnp.shape(msg.unconstrained)) != want:
                raise ValueError(f"site '{name}' (inside ppl.scan): its unconstrained value has shape "
                                 f"{tuple(jnp.shape(msg.unconstrained))}, not {want}.")
            return _Plan(msg.kind, "unconstrained")
        if msg.key is not None:
            return _Plan(msg.kind, "key", msg.key)
        return _Plan(msg.kind, None)

    def _check_value(self, value, key) -> int:
        """The number of steps a given value covers (at most the scan's length)."""
        shape, step = tuple(jnp.shape(value)), self.site.shape
        name, n = self.site.name, self.length
        if len(shape) != len(step) + 1 or shape[1:] != step or shape[0] > n:
            raise ValueError(
                f"site '{name}' is inside ppl.scan, so a value given for it (by condition, substitute, "
                f"...) must have shape (T, *step shape) = {(n,) + step} (or fewer than T={n} steps, the "
                f"rest drawn); got {shape}.")
        if shape[0] < n and key is None:
            raise ValueError(
                f"site '{name}' is inside ppl.scan of {n} steps but its given value covers {shape[0]}; the "
                f"other steps are drawn, which needs a random key: wrap the model in ppl.handlers.seed.")
        return shape[0]

    def rows(self, plan: _Plan):
        """The array scanned alongside xs for this site: its given (padded) value or its
        unconstrained value; None when the steps need none."""
        if plan.source == "value":
            value = jnp.asarray(self.msg.value)
            if plan.steps_given < self.length:
                pad = jnp.zeros((self.length - plan.steps_given,) + value.shape[1:], value.dtype)
                value = jnp.concatenate([value, pad])
            return value
        if plan.source == "unconstrained":
            return self.msg.unconstrained
        return None

    def finish(self, kind: str, record: dict) -> None:
        """Fill the stacked message from the steps' records and let the handlers postprocess it."""
        msg = self.msg
        msg.kind, msg.value = kind, record["value"]
        if "dist" in record:
            msg.dist = scanned_dist.stacked(msg.dist.facts, record["dist"])
        if "log_jacobian" in record:
            msg.log_jacobian = jnp.sum(record["log_jacobian"])
        if "unconstrained" in record:
            msg.unconstrained = record["unconstrained"]
        if "scale" in record:
            msg.scale = record["scale"] if msg.scale is None else msg.scale * record["scale"]
        if "mask" in record:
            msg.mask = record["mask"] if msg.mask is None else jnp.logical_and(msg.mask, record["mask"])
        postprocess_stack(msg, self.reached)


def _send_key_request():
    msg = Message(name="prng_key", kind="prng_key")
    return msg, process_stack(msg)


__all__ = ["scan"]
