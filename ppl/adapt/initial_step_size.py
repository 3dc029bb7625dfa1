"""The initial step-size heuristic: double or halve until one move's acceptance crosses 0.8.

Reference: Hoffman & Gelman (2014), "The No-U-Turn Sampler", algorithm 4 (heuristic for
choosing an initial value of epsilon); Stan's ``base_hmc::init_stepsize`` (threshold
log(0.8), a fresh momentum at each trial, give up beyond 1e7).

The search is written as a state (:class:`Search`) and an update per trial, so that a
driver can run the trials through the kernel it already has (``ppl.mcmc.driver.
search_then_move``, used by NUTS/HMC/MH and Gibbs: one compiled copy of the model's gradient
instead of two); :func:`find_reasonable_step_size` runs the same search with a probe
function of its own.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl import _counter_rng

MAX_TRIALS = 64  # 2**63 covers any float range


class Search(NamedTuple):
    """Where the search stands: ``trial`` (trials done), ``step_size`` (the next one to try,
    or the answer once ``done``), ``up`` (doubling, set by the first trial), ``done``."""

    trial: jax.Array
    step_size: jax.Array
    up: jax.Array
    done: jax.Array


def start(step_size, active=True) -> Search:
    """A search from ``step_size``; finished at once when not ``active`` or when the step
    size is 0, NaN or > 1e7 (left unchanged, as Stan)."""
    step_size = jnp.asarray(step_size)
    skip = ~(step_size > 0) | ~(step_size <= 1e7) | ~jnp.asarray(active)
    return Search(jnp.zeros((), jnp.int32), step_size, jnp.zeros((), bool), skip)


def update(s: Search, accept_prob) -> Search:
    """Record one trial at ``s.step_size`` whose acceptance probability min(1, exp(H0 - H))
    was ``accept_prob`` (0 for a NaN or divergent move).

    As Stan: the first trial sets the direction (up if above 0.8); each further trial either
    stops (it crossed) or doubles/halves. Doubling stops at the first value above 1e7 (where
    Stan raises "posterior is improper"; here the run goes on and its diagnostics show it),
    halving at the dtype's smallest normal number, and the search at ``MAX_TRIALS``.
    """
    eps = s.step_size
    above = jnp.asarray(accept_prob) > 0.8
    first = s.trial == 0
    up = jnp.where(first, above, s.up)
    crossed = ~first & (above != up)
    new_eps = jnp.where(crossed | first, eps, jnp.where(up, 2.0 * eps, 0.5 * eps))
    done = (crossed | (new_eps > 1e7) | (new_eps < jnp.finfo(eps.dtype).tiny)
            | (s.trial + 1 >= MAX_TRIALS))
    return Search(s.trial + 1, new_eps, up, done)


def trial_key(words, trial):
    """The raw key of trial ``trial`` (its own counter stream of the key ``words``)."""
    return _counter_rng.subkey(words, trial, _counter_rng.STEP_SIZE)


def find_reasonable_step_size(key, probe_fn, step_size):
    """Double or halve ``step_size`` until the log acceptance ratio crosses log(0.8).

    Args:
      key: a PRNG key.
      probe_fn: ``(key, step_size) -> log acceptance ratio`` of one elementary move (one
        leapfrog for HMC/NUTS: H0 - H), -inf for a NaN or divergent move.
      step_size: the starting step size (a positive scalar).

    Returns:
      The new step size (same dtype as ``step_size``); see :func:`update`.
    """
    words = _counter_rng.key_words(key)

    def body(s):
        log_ratio = probe_fn(trial_key(words, s.trial), s.step_size)
        return update(s, jnp.exp(jnp.minimum(log_ratio, 0.0)))

    return jax.lax.while_loop(lambda s: ~s.done, body, start(step_size)).step_size
