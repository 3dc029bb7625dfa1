"""NumPyro peers: the same model (through `benchmarks.bridge.to_numpyro`) with the same settings.

`peer_name(method, ld)` says which NumPyro algorithm is the faithful twin of a ppl method
object, or None; `run_peer(method, model, args, kwargs, ld, key)` runs it and returns a
`PeerRun`. The mapping:

    ppl                         NumPyro
    NUTS                        MCMC(NUTS(target_accept_prob, max_tree_depth, dense_mass))
    HMC(num_steps)              MCMC(HMC(num_steps))                      (same leapfrog count)
    MAP(optax optimizer)        SVI(AutoDelta, the same optax object, Trace_ELBO)
    VI("mean_field", ELBO(m))   SVI(AutoNormal, the same optax object, Trace_ELBO(m))
    VI("full_rank",  ELBO(m))   SVI(AutoMultivariateNormal, ...)
    VI(..., IWAE(k))            SVI(same guide, RenyiELBO(alpha=0, num_particles=k)) (= the IWAE bound)
    Gibbs(inner="nuts")         MCMC(DiscreteHMCGibbs(NUTS)) with discrete latents, else
                                MCMC(NUTS): ppl's Gibbs on a continuous model is one NUTS block
    MH, MLE, Importance, Rejection, MAP with L-BFGS, other guides: no peer (None)

Each peer is timed two ways. `first_call_s`: NumPyro's own driver (`MCMC.run`, `SVI.run`)
called once, tracing and compilation included: what a user waits for (the driver retraces
on every call, so it has no cheaper "repeat"). For SVI peers it also counts what `ppl.infer`
returns beside the fit: the draws (`Predictive`) and, for VI, the bound's estimate.
`compile_s` and `run_s`: the same kernel (or `svi.update`) run as ONE compiled program,
warmup and draws inside `lax.scan` with the constrained draws computed inside, exactly as ppl
runs: the kernel's floor without the driver; the draws, gradient counts and accuracy come
from this run. Chains are a vmap axis there, as ppl's are (the driver vectorises them too,
except DiscreteHMCGibbs, which NumPyro runs sequentially). An SVI peer's program also draws
from the fitted guide and estimates the bound after its updates, as ppl's program does.
Initial points: NumPyro's default `init_to_uniform` (radius 2 in
unconstrained space) is ppl's default "uniform" for MCMC and MAP; VI peers start their guide
at 0 in unconstrained space (`init_to_feasible`), as ppl's VI does.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from benchmarks._common import timed
from benchmarks.bridge import to_numpyro
from ppl.mcmc.sampler import HMC, NUTS
from ppl.optimize.point import MAP
from ppl.vi import ELBO, IWAE, VI
from ppl.vi.method import default_optimizer


@dataclasses.dataclass
class PeerRun:
    """What one NumPyro run gives the harness (the same fields as ppl's `Result` it needs)."""

    peer: str
    samples: dict
    compile_s: float
    run_s: float
    first_call_s: Optional[float] = None
    grad_evals: Optional[int] = None
    sampling_grad_evals: Optional[int] = None
    log_evidence: Optional[float] = None
    divergences: Optional[int] = None


def peer_name(method, ld) -> Optional[str]:
    """The NumPyro twin of ppl method object `method` on compiled model `ld`, or None."""
    _, name = _dispatch(method, ld)
    return name


def run_peer(method, model, args, kwargs, ld, key=0) -> Optional[PeerRun]:
    """Run the NumPyro twin of `method` on `to_numpyro(model)`; None when there is none."""
    fn, name = _dispatch(method, ld)
    if fn is None:
        return None
    return fn(method, to_numpyro(model), args, kwargs, ld, key, name)


def _dispatch(method, ld):
    if isinstance(method, NUTS):
        return _mcmc, "NUTS"
    if isinstance(method, HMC):
        return _mcmc, "HMC"
    if isinstance(method, ppl.Gibbs):
        if method.inner != "nuts" or method.blocks is not None:
            return None, None
        return _mcmc, ("DiscreteHMCGibbs(NUTS)" if ld.spec.discrete else "NUTS")
    if isinstance(method, MAP):
        return (None, None) if method.optimizer is None else (_map, "SVI+AutoDelta")
    if isinstance(method, VI):
        guide = _GUIDES.get(method.guide) if isinstance(method.guide, str) else None
        if guide is None or not isinstance(method.objective, (ELBO, IWAE)):
            return None, None
        if isinstance(method.objective, ELBO) and method.objective.beta != 1.0:
            return None, None
        objective = "Trace_ELBO" if isinstance(method.objective, ELBO) else "RenyiELBO(alpha=0)"
        return _vi, f"SVI+{guide}+{objective}"
    return None, None


_GUIDES = {"mean_field": "AutoNormal", "full_rank": "AutoMultivariateNormal"}


def _kernel(method, model, ld, name):
    from numpyro.infer import HMC as NHMC
    from numpyro.infer import NUTS as NNUTS
    from numpyro.infer import DiscreteHMCGibbs

    opts = dict(target_accept_prob=method.target_accept, dense_mass=method.dense_mass)
    if isinstance(method, HMC):
        return NHMC(model, num_steps=method.num_steps, **opts)
    nuts = NNUTS(model, max_tree_depth=method.max_tree_depth, **opts)
    if name.startswith("DiscreteHMCGibbs"):
        return DiscreteHMCGibbs(nuts)
    return nuts


def _stats(state):
    """(leapfrog steps, divergence) of the last transition of an HMC/NUTS (or HMC-within-Gibbs) state."""
    hmc_state = getattr(state, "hmc_state", state)
    return (getattr(hmc_state, "num_steps", jnp.zeros((), jnp.int32)),
            getattr(hmc_state, "diverging", jnp.zeros((), bool)))


def _mcmc(method, model, args, kwargs, ld, key, name) -> PeerRun:
    from numpyro.infer import MCMC

    target = method.target_accept if method.target_accept is not None else 0.8
    method = dataclasses.replace(method, target_accept=target) if isinstance(method, ppl.Gibbs) else method
    chains, warmup, draws = method.num_chains, method.num_warmup, method.num_samples

    # 1. The user-facing driver, first call (tracing, compilation and the run).
    gibbs = name.startswith("DiscreteHMCGibbs")  # NumPyro's Gibbs kernels cannot vectorise chains
    mcmc = MCMC(_kernel(method, model, ld, name), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="sequential" if gibbs else "vectorized", progress_bar=False)
    _, first_call = timed(lambda: (mcmc.run(jax.random.PRNGKey(key), *args, **kwargs),
                                   mcmc.get_samples(group_by_chain=True))[1])

    # 2. The same kernel as ONE compiled program: warmup and draws in lax.scan, vmapped over
    #    chains (each chain initialised by NumPyro from its own key), the constrained draws
    #    (and deterministic sites) computed inside, as ppl does.
    kernel = _kernel(method, model, ld, name)
    t0 = time.perf_counter()
    keys = jax.random.split(jax.random.PRNGKey(key + 1), chains)
    states = [kernel.init(k, warmup, None, args, kwargs) for k in keys]
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    postprocess = kernel.postprocess_fn(args, kwargs)

    def one_chain(s):
        def body(c, _):
            c = kernel.sample(c, args, kwargs)
            return c, (c.z, _stats(c))

        s, (_, (warm_steps, _)) = jax.lax.scan(body, s, None, length=warmup)
        s, (zs, (steps, diverging)) = jax.lax.scan(body, s, None, length=draws)
        return jax.vmap(postprocess)(zs), warm_steps, steps, diverging

    compiled = jax.jit(jax.vmap(one_chain)).lower(state).compile()
    compile_s = time.perf_counter() - t0
    (values, warm_steps, steps, diverging), run_s = timed(lambda: compiled(state))
    samples = {k: np.asarray(v) for k, v in values.items() if k in _all_names(ld)}
    sampling = int(np.sum(steps))
    return PeerRun(peer=name, samples=samples, compile_s=compile_s, run_s=run_s, first_call_s=first_call,
                   grad_evals=sampling + int(np.sum(warm_steps)) if sampling else None,
                   sampling_grad_evals=sampling or None, divergences=int(np.sum(diverging)))


def _svi(model, guide, loss, optimizer, num_steps, args, kwargs, key, finish):
    """(params, finish(params), first_call_s, compile_s, run_s): `SVI.run` once (the driver),
    then the same updates as ONE compiled `lax.scan` followed by `finish(params)` (jittable:
    the draws and bound ppl's program returns with the fit), init time counted as compile time.
    """
    from numpyro.infer import SVI
    from numpyro.optim import optax_to_numpyro

    svi = SVI(model, guide, optax_to_numpyro(optimizer), loss)
    _, first_call = timed(lambda: svi.run(jax.random.PRNGKey(key), num_steps, *args, progress_bar=False,
                                          **kwargs).params)
    t0 = time.perf_counter()
    state = svi.init(jax.random.PRNGKey(key + 1), *args, **kwargs)

    def program(s):
        s = jax.lax.scan(lambda c, _: (svi.update(c, *args, **kwargs)[0], None), s, None, length=num_steps)[0]
        params = svi.get_params(s)
        return params, finish(params)

    compiled = jax.jit(program).lower(state).compile()
    compile_s = time.perf_counter() - t0
    (params, extra), run_s = timed(lambda: compiled(state))
    return params, extra, first_call, compile_s, run_s


def _draws(model, guide, params, n, args, kwargs, key, names) -> dict:
    """`n` draws of the sites `names` from the fitted guide (jittable; leading chain axis).
    `return_sites` is needed: by default `Predictive` leaves out the sites the guide draws."""
    from numpyro.infer import Predictive

    out = Predictive(model, guide=guide, params=params, num_samples=n, return_sites=sorted(names))(
        jax.random.PRNGKey(key + 2), *args, **kwargs)
    return {k: v[None] for k, v in out.items() if k in names}


def _all_names(ld) -> set:
    """Latent and deterministic site names of the model (from one traced run)."""
    tr = ld.run(jnp.zeros((ld.dim,), jnp.result_type(float)))
    return {s.name for s in tr.sites("latent", "deterministic")}


def _map(method, model, args, kwargs, ld, key, name) -> PeerRun:
    from numpyro.infer import Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta

    guide, names = AutoDelta(model), _all_names(ld)
    draws = lambda params: _draws(model, guide, params, 1, args, kwargs, key, names)
    params, samples, first_call, compile_s, run_s = _svi(model, guide, Trace_ELBO(), method.optimizer,
                                                         method.num_steps, args, kwargs, key, draws)
    _, draws_s = timed(lambda: draws(params))  # the driver's user draws after `SVI.run`
    return PeerRun(peer=name, samples=_numpy(samples), compile_s=compile_s, run_s=run_s,
                   first_call_s=first_call + draws_s, grad_evals=method.num_steps)


def _vi(method, model, args, kwargs, ld, key, name) -> PeerRun:
    import numpyro.infer.autoguide as ag
    from numpyro.infer import RenyiELBO, Trace_ELBO
    from numpyro.infer.initialization import init_to_feasible

    # ppl's VI starts its guide at 0 in unconstrained space (as Stan's ADVI): so does the peer.
    # (AutoNormal's default random start moves the 2000-step fit of kidiq between ELBO -1906
    # and -1e5 over seeds: a comparison from different starts measures the draw, not the library.)
    guide = getattr(ag, _GUIDES[method.guide])(model, init_loc_fn=init_to_feasible)
    obj = method.objective
    if isinstance(obj, IWAE):
        loss, per_step = RenyiELBO(alpha=0.0, num_particles=obj.k), obj.k
    else:
        loss, per_step = Trace_ELBO(num_particles=obj.num_particles), obj.num_particles
    optimizer = method.optimizer if method.optimizer is not None else default_optimizer(method.num_steps)
    names = _all_names(ld)

    def finish(params, jit_groups=False):  # what ppl's program returns with the fit
        return (_draws(model, guide, params, method.num_draws, args, kwargs, key, names),
                _bound(model, guide, params, obj, method.num_eval_particles, args, kwargs, key, jit_groups))

    params, (samples, bound), first_call, compile_s, run_s = _svi(
        model, guide, loss, optimizer, method.num_steps, args, kwargs, key, finish)
    _, finish_s = timed(lambda: finish(params, jit_groups=True))  # the driver's user, after `SVI.run`
    return PeerRun(peer=name, samples=_numpy(samples), compile_s=compile_s, run_s=run_s,
                   first_call_s=first_call + finish_s,
                   grad_evals=method.num_steps * per_step, log_evidence=float(bound))


def _bound(model, guide, params, objective, n, args, kwargs, key, jit_groups=False):
    """The fitted guide's ELBO (or IWAE k-bound, averaged over ceil(n / k) groups), as ppl's
    (jittable; `jit_groups`: the IWAE groups' vmap jitted, as a user calling it eagerly would)."""
    from numpyro.infer import RenyiELBO, Trace_ELBO

    if isinstance(objective, IWAE):
        groups = max(1, -(-n // objective.k))
        loss = RenyiELBO(alpha=0.0, num_particles=objective.k)
        keys = jax.random.split(jax.random.PRNGKey(key + 3), groups)
        values = jax.vmap(lambda k: loss.loss(k, params, model, guide, *args, **kwargs))
        return -jnp.mean((jax.jit(values) if jit_groups else values)(keys))
    loss = Trace_ELBO(num_particles=n)
    return -loss.loss(jax.random.PRNGKey(key + 3), params, model, guide, *args, **kwargs)


def _numpy(tree):
    return {k: np.asarray(v) for k, v in tree.items()}

