"""How a guide meets the model: one particle's log-weight terms, draws and learned values.

Two kinds of guide, one interface (`init`, `particle`, `particle_values`, `named`):

* `AutoFamily`: an automatic guide (`ppl.vi.guides`) over the flat unconstrained vector z.
  Its density is in unconstrained space, so the model's prior term is the unconstrained
  one, log p(T(z)) + log|det J_T(z)| (`LogJoint.prior + LogJoint.jacobian`); a point guide
  (`Delta`) uses log p(T(z)) alone (MAP, as `ppl.MAP`).
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

from ppl.compile import _handlers as H
from ppl.compile.hoist import hoist
from ppl.compile.logdensity import log_joint_of
from ppl.model import handlers
from ppl.model.sites import user_dist
from ppl.model._runtime import Message, Messenger
from ppl.vi import guides
from ppl.vi.objectives import Particle
from ppl.vi.plates import sum_per_element

sg = jax.lax.stop_gradient


class RecordPlates(Messenger):
    """Record the subsample indices chosen by each subsampled plate."""

    def __init__(self):
        super().__init__(None)
        self.indices = {}

    def postprocess(self, msg: Message) -> None:
        if msg.kind == "plate":
            self.indices[msg.name] = msg.value


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


def subsampled_plates(ld) -> bool:
    """Whether the model has a subsampled plate (its runs then need a key)."""
    rec = RecordPlates()
    args, kwargs = ld.arguments()
    with rec, handlers.substitute(data=ld.params), handlers.seed(rng_seed=0):
        with H.FromFlat(jnp.zeros((ld.dim,), jnp.result_type(float)), ld.spec):
            ld.model(*args, **kwargs)
    return bool(rec.indices)


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
    else the first of `num_tries` uniform(-radius, radius) draws (what `ppl.compile.init`
    draws for continuous sites) with a finite log density and gradient; all tries come from
    one random call, scanned by a while loop."""
    dtype = jnp.result_type(float)
    cands = jax.random.uniform(key, (num_tries, dim), dtype, -radius, radius).at[0].set(0.0)

    def finite(z):
        lp, g = jax.value_and_grad(log_prob)(z)
        return jnp.isfinite(lp) & jnp.all(jnp.isfinite(g))

    def cond(c):
        i, ok = c
        return (i < num_tries - 1) & ~ok

    def body(c):
        i, _ = c
        return i + 1, finite(cands[i + 1])

    i, ok = jax.lax.while_loop(cond, body, (jnp.int32(0), finite(cands[0])))
    return cands[i], ok


class AutoFamily:
    """An automatic guide over z; learnable state `(guide_params, model_uparams)`."""

    has_score = False  # every draw is reparameterised

    def __init__(self, guide, ld, keyed: bool):
        self.guide, self.ld, self.keyed = guide, ld, keyed
        self._terms = None  # (z, model_uparams) -> (log_lik, log_prior), see `hoisted`

    def _run_model(self, z, uparams, key):
        extra = (PlateKeys(key),) if self.keyed else ()
        return self.ld.run(z, uparams, extra=extra)

    def _terms_of(self, tr):
        """(log likelihood, log prior) of a model trace: the prior in unconstrained space
        (with the Jacobian) unless the guide is a point."""
        lj = log_joint_of(tr, self.ld.spec.checked_supports)
        return lj.likelihood, (lj.prior if self.guide.point else lj.prior + lj.jacobian)

    def _log_terms(self, x, ld):
        """`_terms_of` the model at ``x = (z, model_uparams)`` over the data of ``ld``."""
        return self._terms_of(ld.run(*x))

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

    def init(self, key):
        """Initial learnable state and whether the start point is finite."""
        k_z, k_g, k_m = jax.random.split(key, 3)
        log_prob = lambda z: log_joint_of(self._run_model(z, None, k_m), self.ld.spec.checked_supports).total
        z0, ok = _first_finite(log_prob, self.ld.dim, k_z)
        model_u = {k: jax.tree.map(biject_to(c).inv, self.ld.params[k]) for k, c in self._constraints().items()}
        return (self.guide.init(k_g, z0), model_u), ok

    def _finish(self, z, log_q, model_u, key):
        tr = self._run_model(z, model_u, key)
        return _particle(*self._terms_of(tr), log_q), _values_of(tr)

    def particle_values(self, state, key, plate=None, batch_key=None):
        """One particle's `Particle` and its site values (latents and deterministic);
        `batch_key`, if given, picks the minibatch (shared by the particles of one step)."""
        phi, model_u = state
        k_g, k_m = _split(key, self.keyed)
        z, log_q = guides.sample(self.guide, phi, k_g)
        return self._finish(z, log_q, model_u, k_m if batch_key is None else batch_key)

    def particle(self, state, key, plate=None, batch_key=None) -> Particle:
        if self._terms is None or plate is not None:
            return self.particle_values(state, key, plate, batch_key)[0]
        phi, model_u = state
        z, log_q = guides.sample(self.guide, phi, key)
        return self._particle_from_terms(z, log_q, model_u)

    def particles(self, state, key, n, plate=None, batch_keys=None) -> Particle:
        """`particles_values` without the site values."""
        if self._terms is None or plate is not None:
            return self.particles_values(state, key, n, plate, batch_keys)[0]
        phi, model_u = state
        z, log_q = guides.sample(self.guide, phi, key, n)
        return jax.vmap(lambda zi, lq: self._particle_from_terms(zi, lq, model_u))(z, log_q)

    def _particle_from_terms(self, z, log_q, model_u) -> Particle:
        return _particle(*self._terms((z, model_u)), log_q)

    def particles_values(self, state, key, n, plate=None, batch_keys=None):
        """`n` particles (a leading axis), their noise from one random call; `batch_keys`
        (n keys) pick the minibatches."""
        phi, model_u = state
        k_g, k_m = _split(key, self.keyed)
        z, log_q = guides.sample(self.guide, phi, k_g, n)
        if not self.keyed:
            return jax.vmap(lambda zi, lq: self._finish(zi, lq, model_u, None))(z, log_q)
        mkeys = jax.random.split(k_m, n) if batch_keys is None else batch_keys
        return jax.vmap(lambda zi, lq, k: self._finish(zi, lq, model_u, k))(z, log_q, mkeys)

    def named(self, state) -> dict:
        """Learned values (constrained): the model's params and the guide's `auto_*`."""
        phi, model_u = state
        model = {k: jax.tree.map(biject_to(c), model_u[k]) for k, c in self._constraints().items()}
        return {**model, **self.guide.named(phi)}


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
            lj = log_joint_of(tr, self.ld.spec.checked_supports)
            log_q = gtr.log_joint(("latent",))
            log_q_score = sum((s.log_prob_sum() for s in score), jnp.zeros((), log_q.dtype)) if score else None
            return Particle(_nan_to_neg_inf(lj.likelihood), _nan_to_neg_inf(lj.prior), log_q, log_q_score), _values_of(tr)
        owner, dtype = f"IWAE(plate={plate!r})", jnp.result_type(float)
        lik, _ = sum_per_element(tr.sites("observed", "factor"), plate, owner, dtype)
        prior, _ = sum_per_element(tr.sites("latent"), plate, owner, dtype)
        log_q, scale = sum_per_element(gtr.sites("latent"), plate, owner, dtype)
        log_q_score = sum_per_element(score, plate, owner, dtype)[0] if score else None
        p = Particle(_nan_to_neg_inf(lik), _nan_to_neg_inf(prior), log_q, log_q_score, jnp.full_like(log_q, scale))
        return p, _values_of(tr)

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
    """Raise unless the guide's sample sites match the model's latent sites by name and
    shape; return the guide's module statics (for rebuilding learned modules) and the names
    of its point-mass sites on continuous latents (see `point_mass_sites`)."""
    try:
        gtr = guide_trace(ld, guide)
    except Exception as e:
        raise type(e)(f"running the guide function {getattr(guide, '__name__', guide)!r} on the "
                      f"model's arguments failed: {e}") from e
    guide_sites = {s.name: s for s in gtr.sites("latent")}
    model_sites = {lat.name: lat for lat in ld.spec.latents}
    missing = sorted(set(model_sites) - set(guide_sites))
    extra = sorted(set(guide_sites) - set(model_sites))
    if missing or extra:
        raise ValueError(
            f"the guide's sample sites must match the model's latent sites: missing from the "
            f"guide {missing}, in the guide but not latent in the model {extra}; give the guide "
            f"one ppl.sample site per model latent, with the same name."
        )
    for name, s in guide_sites.items():
        want = tuple(model_sites[name].shape)
        got = tuple(jnp.shape(s.value))
        if got != want:
            raise ValueError(
                f"guide site '{name}' has shape {got} but the model's latent '{name}' has shape "
                f"{want}; make the guide's distribution (and plates) produce the model's shape."
            )
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
