"""How a guide meets the model: one particle's log-weight terms, draws and learned values.

Two kinds of guide, one interface (`init`, `particle`, `particle_values`, `named`):

* `AutoFamily`: an automatic guide (`ppl.vi.guides`) over the flat unconstrained vector z.
  Its density is in unconstrained space, so the model's prior term is the unconstrained
  one, log p(T(z)) + log|det J_T(z)| (`LogJoint.prior + LogJoint.jacobian`); a point guide
  (`Delta`) uses log p(T(z)) alone (MAP, as `ppl.MAP`). It is fitted in a frame,
  z = shift + unit * u, found at `init` (`find_frame`): a mode of that density and the
  Laplace sds there.
* `FunctionFamily`: a user's guide function with `sample` sites named like the model's
  latents and `param`/`module` sites for its parameters. Its densities are those of the
  *constrained* values it samples, so the model is evaluated at those values with no
  Jacobian: both sides are densities on the same (constrained) space.

Model `param`/`module` sites are learned jointly with the guide's parameters; a name that
appears in both model and guide is one shared parameter. Plate subsampling: the guide's
subsample indices are replayed into the model's plate of the same name (other subsampled
plates draw their own), and sites inside a subsampled plate carry the scale
size / subsample_size in both guide and model, so the objective is unbiased for the full data.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.distributions import Delta
from numpyro.distributions.transforms import biject_to

from ppl import _counter_rng
from ppl.compile import _handlers as H
from ppl.compile.hoist import hoist
from ppl.compile.logdensity import log_joint_of
from ppl.compile.marginal import MarginalLogDensity
from ppl.compile.subsample import RecordPlates
from ppl.model import handlers
from ppl.model.sites import user_dist
from ppl.model._runtime import Message, Messenger
from ppl.vi import guides
from ppl.vi.objectives import Particle
from ppl.vi.plates import sum_per_element

sg = jax.lax.stop_gradient


class ScoreSites(Messenger):
    """Draw latent sites whose distribution cannot be reparameterised (`has_rsample` False,
    e.g. discrete ones) with their gradient stopped, and mark them for the score term.

    Install it outside `seed`, so the key is already set when it runs."""

    def process(self, msg: Message) -> None:
        if msg.kind == "latent" and msg.value is None and not msg.dist.has_rsample:
            if msg.key is None:
                return
            msg.value = sg(msg.dist.sample(msg.key))
            msg.infer = {**msg.infer, "score": True}


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class PlateKeys(Messenger):
    """Give keys to subsampled plates only (`seed` would also split one for every latent
    site, which here is set from z or from the guide anyway). Installed inside `seed`, it
    also decides a guide's minibatch, so that particles can share one."""

    def __init__(self, key):
        super().__init__(None)
        self.key = key

    def process(self, msg: Message) -> None:
        if msg.kind == "plate" and msg.value is None and msg.key is None:
            self.key, msg.key = jax.random.split(self.key)


def _uparams_of(tr, names=None) -> dict:
    """Unconstrained values of the trace's params (those in `names`, when given: a model's
    learnable ones, `ld.spec.params`)."""
    return {s.name: jax.tree.map(biject_to(s.constraint).inv, s.value) for s in tr.sites("param")
            if names is None or s.name in names}


def _constraints_of(tr, names=None) -> dict:
    return {s.name: s.constraint for s in tr.sites("param") if names is None or s.name in names}


def _values_of(tr) -> dict:
    return {s.name: s.value for s in tr.sites("latent", "deterministic")}


def _nan_to_neg_inf(x):
    return jnp.where(jnp.isnan(x), -jnp.inf, x)


def _particle(log_lik, log_prior, log_q) -> Particle:
    """A reparameterised particle's terms, NaN read as -inf."""
    return Particle(_nan_to_neg_inf(log_lik), _nan_to_neg_inf(log_prior), log_q, None)


def _split(key, keyed):
    """(guide key, model key): the model needs its own only when it subsamples."""
    return tuple(jax.random.split(key)) if keyed else (key, key)


def _first_finite(log_prob, dim, key, num_tries=100, radius=2.0):
    """A start z: 0 in unconstrained space (as Stan's ADVI, Kucukelbir et al. 2017, sec. 3.5),
    else the first of uniform(-radius, radius) draws (what `ppl.compile.init` draws for
    continuous sites) with a finite log density and gradient, `num_tries` in all. The draws
    are counter-based (`ppl._counter_rng`: no random loop to compile), each made inside the
    while loop that tries it. Returns `(z, ok)`."""
    dtype = jnp.result_type(float)
    words = _counter_rng.key_words(key)

    def draw(i):
        counter = i.astype(jnp.uint32) * jnp.uint32(dim) + jnp.arange(dim, dtype=jnp.uint32)
        u = _counter_rng.uniform(words, counter, _counter_rng.INIT, dtype)
        return jnp.where(i == 0, 0.0, (2.0 * u - 1.0) * jnp.asarray(radius, dtype))

    def finite(z):
        lp, g = jax.value_and_grad(log_prob)(z)
        return jnp.isfinite(lp) & jnp.all(jnp.isfinite(g))

    def body(c):
        i, z, _, _ = c
        return i + 1, draw(i + 1), finite(z), z

    z0 = jnp.zeros((dim,), dtype)
    _, _, ok, z = jax.lax.while_loop(lambda c: (c[0] < num_tries) & ~c[2], body,
                                     (jnp.int32(0), z0, jnp.bool_(False), z0))
    return z, ok


MODE_EVALUATIONS = 200  # gradient evaluations of the search for the start's mode, at most
NEWTON_STEP_OK = 1.0  # the mode is accepted if its diagonal Newton step is below this (in sds)


def find_frame(log_prob, z0, key, max_evaluations=MODE_EVALUATIONS):
    """Where an automatic guide starts, and the units it is fitted in: `(shift, unit, ok)`.

    A short L-BFGS climb from `z0` to the mode of the density the guide targets, and the
    curvature H there (`ppl.optimize.point.mode_and_curvature`, one compiled copy of the
    model's gradient). unit_i is the marginal sd along coordinate i of the Laplace
    approximation N(mode, H^-1), sqrt((H^-1)_ii), where H is known and positive definite,
    else the conditional sd 1 / sqrt(H_ii) (the mean-field optimum for a Gaussian target).
    Marginal rather than conditional: a guide shrinks a scale fast (its softplus is
    exponential below 1) but grows it slowly (linear above), so a strongly correlated
    posterior, whose marginal sds are many conditional ones, is reached from above.

    The mode is accepted when it is finite, no worse than `z0`, and a diagonal Newton
    step from it, |g_i| unit_i, is below NEWTON_STEP_OK for every coordinate (a climb into
    a funnel's neck or towards a boundary is not). Otherwise the frame is `z0` with unit 1.
    Coordinates whose curvature is not positive get unit 1.
    """
    from ppl.optimize.point import mode_and_curvature

    if z0.shape[0] == 0:
        return z0, jnp.ones_like(z0), jnp.bool_(True)
    mode = mode_and_curvature(lambda x: -log_prob(x), z0, key, max_evaluations)
    curved = jnp.isfinite(mode.hess_diag) & (mode.hess_diag > 0)
    unit = jnp.where(curved, jax.lax.rsqrt(jnp.where(curved, mode.hess_diag, 1.0)), 1.0)
    if mode.hess is not None:
        chol = jnp.linalg.cholesky(mode.hess)  # NaN where H is not positive definite
        inv = jax.scipy.linalg.solve_triangular(chol, jnp.eye(chol.shape[0], dtype=chol.dtype), lower=True)
        marginal = jnp.sqrt(jnp.sum(inv**2, axis=0))  # diag(H^-1) = column sums of (L^-1)^2
        unit = jnp.where(jnp.all(jnp.isfinite(marginal) & (marginal > 0)), marginal, unit)
    accept = jnp.isfinite(mode.value) & jnp.all(jnp.isfinite(mode.x)) \
        & jnp.all(jnp.abs(mode.grad) * unit <= NEWTON_STEP_OK)
    return jnp.where(accept, mode.x, z0), jnp.where(accept, unit, 1.0), accept


class AutoFamily:
    """An automatic guide over z; learnable state `(guide_params, model_uparams)`.

    The guide's parameters live in a frame fixed by `init`: the guide is a distribution of
    u, and z = shift + unit * u, with `shift` a mode of the target and `unit` its curvature
    scale there (`find_frame`). So the guide starts at the mode with sds of `init_scale`
    times the Laplace sds, and the optimiser's steps are in those units whatever the
    model's location and scale (a prior N(1000, 10) or 20 000 observations need no
    other learning rate). `frame` None is the identity (z = u).
    """

    has_score = False  # every draw is reparameterised

    def __init__(self, guide, ld, keyed: bool, frame=None):
        self.guide, self.ld, self.keyed = guide, ld, keyed
        self.frame = frame  # (shift, unit), set by `init`
        self._terms = None  # (z, model_uparams) -> (log_lik, log_prior), see `hoisted`

    def _run_model(self, z, uparams, key):
        extra = (PlateKeys(key),) if self.keyed else ()
        return self.ld.run(z, uparams, extra=extra)

    def _terms_of(self, tr):
        """(log likelihood, log prior) of a model trace: the prior in unconstrained space
        (with the Jacobian) unless the guide is a point."""
        return self._parts(log_joint_of(tr, self.ld.spec.checked_supports))

    def _parts(self, lj):
        return lj.likelihood, (lj.prior if self.guide.point else lj.prior + lj.jacobian)

    @property
    def _summed(self) -> bool:
        """The model's discrete sites are summed out of `ld` (a `MarginalLogDensity`): its
        terms come from `ld.log_joint`, not from one run's trace."""
        return isinstance(self.ld, MarginalLogDensity)

    def _terms_at(self, z, uparams, key):
        if self._summed:
            return self._parts(self.ld.log_joint(z, uparams))
        return self._terms_of(self._run_model(z, uparams, key))

    def _log_terms(self, x, ld):
        """`_terms_of` the model at ``x = (z, model_uparams)`` over the data of ``ld``."""
        return self._parts(ld.log_joint(*x)) if self._summed else self._terms_of(ld.run(*x))

    def hoisted(self, state):
        """Compute the model's data-only work once, here (`ppl.compile.hoist`), for the
        particles of the fit (not for `particles_values`, which also records site values).
        Call it at the program's top level, with the initial state; a model that subsamples
        (its data change from step to step) is left as it is."""
        if not self.keyed:
            z0 = jnp.zeros((self.ld.dim,), jnp.result_type(float))
            self._terms = hoist(self._log_terms, (z0, state[1]), self.ld)
        return self

    def _constraints(self):
        z = jnp.zeros((self.ld.dim,), jnp.result_type(float))
        box = {}
        jax.eval_shape(lambda: box.update(_constraints_of(self._run_model(z, None, jax.random.PRNGKey(0)), self.ld.spec.params)))
        return box

    def init(self, key, z0=None, climb=True):
        """Initial learnable state and whether the start point is finite; fixes `frame`.
        `z0`, if given, is where the climb starts (`ppl.infer.autoguide`'s `init_loc_fn`);
        a start whose density is not finite is replaced as below. `climb=False` skips the
        climb: the frame is the start with unit scales, so the guide starts at `z0` with
        sds of `init_scale` in unconstrained space (NumPyro's autoguides; `ppl.infer.SVI`).

        The climb to the frame's mode starts at the first finite of 0 and uniform draws in
        unconstrained space, and climbs the density the guide targets (the unconstrained log
        joint, or the constrained one for a point guide) with the model's params at their
        initial values; an improper flat prior needs nothing else. (A prior median as the
        start, as NumPyro's `init_to_median`, cost a second of compilation per fit for
        models with Gamma priors, and the climb reaches the mode from 0 on the cases tried.)
        """
        k_z, k_g, k_m, k_h = jax.random.split(key, 4)
        model_u = {k: jax.tree.map(biject_to(c).inv, self.ld.params[k]) for k, c in self._constraints().items()}
        log_prob = lambda z: sum(self._terms_at(z, model_u or None, k_m))
        if z0 is None:
            z0, ok = _first_finite(log_prob, self.ld.dim, k_z)
        else:
            z_any, ok_any = _first_finite(log_prob, self.ld.dim, k_z)
            given = jnp.isfinite(log_prob(z0))
            z0, ok = jnp.where(given, z0, z_any), given | ok_any
        if climb:
            shift, unit, _ = find_frame(log_prob, z0, k_h)
        else:
            shift, unit = z0, jnp.ones_like(z0)
        self.frame = (shift, unit)
        return (self.guide.init(k_g, jnp.zeros_like(z0)), model_u), ok

    def _draw(self, phi, key, n=None):
        """Draws z of the guide (`n` of them, or one) and their log densities: u from the
        guide, mapped through the frame."""
        u, log_q = guides.sample(self.guide, phi, key, n)
        if self.frame is None:
            return u, log_q
        shift, unit = self.frame
        return shift + unit * u, log_q - jnp.sum(jnp.log(unit))

    def _finish(self, z, log_q, model_u, key):
        tr = self._run_model(z, model_u, key)
        if self._summed:  # values without the placeholders of the summed-out sites
            plan = self.ld.plan
            values = {k: v for k, v in _values_of(tr).items() if k not in plan.discrete and k not in plan.deterministic}
            return _particle(*self._terms_at(z, model_u, key), log_q), values
        return _particle(*self._terms_of(tr), log_q), _values_of(tr)

    def particle_values(self, state, key, plate=None, batch_key=None):
        """One particle's `Particle` and its site values (latents and deterministic);
        `batch_key`, if given, picks the minibatch (shared by the particles of one step)."""
        phi, model_u = state
        k_g, k_m = _split(key, self.keyed)
        z, log_q = self._draw(phi, k_g)
        return self._finish(z, log_q, model_u, k_m if batch_key is None else batch_key)

    def particle(self, state, key, plate=None, batch_key=None) -> Particle:
        if self._terms is None or plate is not None:
            return self.particle_values(state, key, plate, batch_key)[0]
        phi, model_u = state
        z, log_q = self._draw(phi, key)
        return self._particle_from_terms(z, log_q, model_u)

    def particles(self, state, key, n, plate=None, batch_keys=None) -> Particle:
        """`particles_values` without the site values."""
        if self._terms is None or plate is not None:
            return self.particles_values(state, key, n, plate, batch_keys)[0]
        phi, model_u = state
        z, log_q = self._draw(phi, key, n)
        return jax.vmap(lambda zi, lq: self._particle_from_terms(zi, lq, model_u))(z, log_q)

    def _particle_from_terms(self, z, log_q, model_u) -> Particle:
        return _particle(*self._terms((z, model_u)), log_q)

    def particles_values(self, state, key, n, plate=None, batch_keys=None):
        """`n` particles (a leading axis), their noise from one random call; `batch_keys`
        (n keys) pick the minibatches."""
        phi, model_u = state
        k_g, k_m = _split(key, self.keyed)
        z, log_q = self._draw(phi, k_g, n)
        if not self.keyed:
            return jax.vmap(lambda zi, lq: self._finish(zi, lq, model_u, None))(z, log_q)
        mkeys = jax.random.split(k_m, n) if batch_keys is None else batch_keys
        return jax.vmap(lambda zi, lq, k: self._finish(zi, lq, model_u, k))(z, log_q, mkeys)

    def named(self, state) -> dict:
        """Learned values (constrained): the model's params and the guide's `auto_*`."""
        phi, model_u = state
        model = {k: jax.tree.map(biject_to(c), model_u[k]) for k, c in self._constraints().items()}
        return {**model, **guides.in_frame(self.guide.named(phi), self.frame)}


class FunctionFamily:
    """A user's guide function; learnable state: one dict of unconstrained params
    (guide's and model's)."""

    def __init__(self, guide, ld, keyed: bool):
        self.guide, self.ld, self.keyed = guide, ld, keyed
        self._zeros = lambda: jnp.zeros((ld.dim,), jnp.result_type(float))

    @property
    def has_score(self) -> bool:
        """Whether some guide site is drawn without reparameterisation (trace-time check)."""
        box = []
        jax.eval_shape(lambda: box.append(any(s.infer.get("score") for s in
                                              self._run_guide(None, jax.random.PRNGKey(0))[0].sites("latent"))))
        return box[0]

    def _run_guide(self, uparams, key, batch_key=None):
        args, kwargs = self.ld.arguments()
        plates = RecordPlates()
        batch = PlateKeys(batch_key) if batch_key is not None else _Null()
        with handlers.trace() as tr, H.ParamsFromFlat(uparams or {}), plates, ScoreSites(), handlers.seed(rng_seed=key), batch:
            self.guide(*args, **kwargs)
        return tr, plates.indices

    def _run_model(self, values, plate_indices, uparams, key):
        extra = [handlers.substitute(data={**values, **plate_indices})]
        if self.keyed:
            extra.append(PlateKeys(key))
        return self.ld.run(self._zeros(), uparams, extra=tuple(extra))

    def _traces(self, state, key, batch_key=None):
        """Guide and model traces; `batch_key`, if given, picks the minibatches (guide
        plates, then the model's other plates), else the particle's key does."""
        k_g, k_m = _split(key, self.keyed)
        if batch_key is not None:
            k_m = jax.random.fold_in(batch_key, 1)
        gtr, idx = self._run_guide(state, k_g, batch_key)
        values = {s.name: s.value for s in gtr.sites("latent")}
        return gtr, self._run_model(values, idx, state, k_m)

    def _constraints(self):
        box = {}

        def probe():
            gtr, tr = self._traces(None, jax.random.PRNGKey(0))
            box.update({**_constraints_of(tr, self.ld.spec.params), **_constraints_of(gtr)})

        jax.eval_shape(probe)
        return box

    def init(self, key):
        """The params' initial values (model's from `ld.params`, the guide's from its
        initialisers); only those are computed: the rest of the runs is dead code."""
        gtr, tr = self._traces(None, key)
        return {**_uparams_of(tr, self.ld.spec.params), **_uparams_of(gtr)}, jnp.bool_(True)

    def particle_values(self, state, key, plate=None, batch_key=None):
        """One particle's `Particle` (per element of `plate` if given) and its site values."""
        gtr, tr = self._traces(state, key, batch_key)
        score = [s for s in gtr.sites("latent") if s.infer.get("score")]
        if plate is None:
            lj, values = self._log_joint(tr, gtr, state)
            log_q = gtr.log_joint(("latent",))
            log_q_score = sum((s.log_prob_sum() for s in score), jnp.zeros((), log_q.dtype)) if score else None
            return Particle(_nan_to_neg_inf(lj.likelihood), _nan_to_neg_inf(lj.prior), log_q, log_q_score), values
        if isinstance(self.ld, MarginalLogDensity):
            raise ValueError(f"IWAE(plate={plate!r}) with the model's discrete sites summed out is not supported; "
                             f"use plate=None.")
        owner, dtype = f"IWAE(plate={plate!r})", jnp.result_type(float)
        lik, _ = sum_per_element(tr.sites("observed", "factor"), plate, owner, dtype)
        prior, _ = sum_per_element(tr.sites("latent"), plate, owner, dtype)
        log_q, scale = sum_per_element(gtr.sites("latent"), plate, owner, dtype)
        log_q_score = sum_per_element(score, plate, owner, dtype)[0] if score else None
        p = Particle(_nan_to_neg_inf(lik), _nan_to_neg_inf(prior), log_q, log_q_score, jnp.full_like(log_q, scale))
        return p, _values_of(tr)

    def _log_joint(self, tr, gtr, state):
        """The model's log joint at the guide's values (constrained space, no Jacobian) and
        the site values. With the model's discrete sites summed out (`ld` a
        `MarginalLogDensity`, NumPyro's TraceEnum_ELBO) the log joint is the marginal one at
        the guide's values, and the summed-out sites are left out of the values."""
        if not isinstance(self.ld, MarginalLogDensity):
            return log_joint_of(tr, self.ld.spec.checked_supports), _values_of(tr)
        plan = self.ld.plan
        latents = {s.name: s.value for s in gtr.sites("latent")}
        lj = self.ld.log_joint(self.ld.unconstrain(latents), state)
        values = {k: v for k, v in _values_of(tr).items() if k not in plan.discrete and k not in plan.deterministic}
        return lj, values

    def particle(self, state, key, plate=None, batch_key=None) -> Particle:
        return self.particle_values(state, key, plate, batch_key)[0]

    def particles(self, state, key, n, plate=None, batch_keys=None) -> Particle:
        """`particles_values` without the site values."""
        return self.particles_values(state, key, n, plate, batch_keys)[0]

    def hoisted(self, state):
        """As `AutoFamily.hoisted`; a guide function's runs are not hoisted (their model runs
        take the guide's values and plate indices through handlers)."""
        return self

    def particles_values(self, state, key, n, plate=None, batch_keys=None):
        """`n` particles (a leading axis); `batch_keys` (n keys) pick the minibatches."""
        keys = jax.random.split(key, n)
        if batch_keys is None:
            return jax.vmap(lambda k: self.particle_values(state, k, plate))(keys)
        return jax.vmap(lambda k, b: self.particle_values(state, k, plate, b))(keys, batch_keys)

    def named(self, state) -> dict:
        return {k: jax.tree.map(biject_to(c), state[k]) for k, c in self._constraints().items()}


def guide_trace(ld, guide):
    """An eager trace of the guide function on the model's arguments (key 0)."""
    args, kwargs = ld.arguments()
    return handlers.trace(handlers.seed(guide, 0)).get_trace(*args, **kwargs)


def check_guide_function(ld, guide) -> tuple[dict, list]:
    """Raise unless the guide's sample sites match the model's latent sites by name, shape and
    support; return the guide's module statics (for rebuilding learned modules) and the names
    of its point-mass sites on continuous latents (see `point_mass_sites`).

    The supports must be the same set: a guide that proposes values outside the model's
    support (a Normal for a positive latent) gives draws the model cannot take, and one that
    misses part of it cannot represent the posterior there. A point mass (`dist.Delta`) must
    sit inside the model's support. Supports set by other latents are compared at the guide's
    draw of them.

    Raises:
      ValueError: naming the site, with both supports (or shapes) and the fix.
    """
    from ppl.compile.errors import check_hint
    from ppl.compile.supports import guide_support_problems

    hint = check_hint(ld.model).replace("**kwargs)", f"guide={getattr(guide, '__name__', 'guide')}, **kwargs)")
    try:
        gtr = guide_trace(ld, guide)
    except Exception as e:
        try:
            error = type(e)(f"running the guide function {getattr(guide, '__name__', guide)!r} on the "
                            f"model's arguments failed: {e}")
        except Exception:  # noqa: BLE001 - an exception type that takes other arguments
            error = ValueError(f"running the guide function {getattr(guide, '__name__', guide)!r} on "
                               f"the model's arguments failed: {type(e).__name__}: {e}")
        raise error from e
    guide_sites = {s.name: s for s in gtr.sites("latent")}
    model_sites = {lat.name: lat for lat in ld.spec.latents}
    missing = sorted(set(model_sites) - set(guide_sites))
    extra = sorted(set(guide_sites) - set(model_sites))
    if missing or extra:
        raise ValueError(
            f"the guide's sample sites must match the model's latent sites: missing from the "
            f"guide {missing}, in the guide but not latent in the model {extra}; give the guide "
            f"one ppl.sample site per model latent, with the same name. {hint}"
        )
    for name, s in guide_sites.items():
        want = tuple(model_sites[name].shape)
        got = tuple(jnp.shape(s.value))
        if got != want:
            raise ValueError(
                f"guide site '{name}' has shape {got} but the model's latent '{name}' has shape "
                f"{want}; make the guide's distribution (and plates) produce the model's shape. {hint}"
            )
    problems = guide_support_problems(ld, gtr)
    if problems:
        raise ValueError(f"{problems[0][1]} {hint}")
    statics = {s.name: s.infer["module_static"] for s in gtr.sites("param") if "module_static" in s.infer}
    return statics, point_mass_sites(ld, gtr)


def point_mass_sites(ld, gtr) -> list:
    """Names of the guide's sites that put a point mass (`dist.Delta`) on a continuous latent.

    Such a guide has no evidence bound: a point mass has entropy -inf on a continuous space,
    and the "ELBO" it computes, log p(x, z*), is the MAP objective, not a bound on log p(x).
    (A point mass on a discrete latent is a proper guide: its bound is valid.)
    """
    continuous = {lat.name for lat in ld.spec.continuous}
    names = []
    for site in gtr.sites("latent"):
        if isinstance(user_dist(site.dist), Delta) and site.name in continuous:
            names.append(site.name)
    return names
