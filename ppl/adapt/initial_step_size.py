"""The initial step-size heuristic: double or halve until one move's acceptance crosses 0.8.

Reference: Hoffman & Gelman (2014), "The No-U-Turn Sampler", algorithm 4 (heuristic for
choosing an initial value of epsilon); Stan's ``base_hmc::init_stepsize`` (threshold
log(0.8), a fresh momentum at each trial, give up beyond 1e7).
"""
import jax
import jax.numpy as jnp

from ppl import _counter_rng


def find_reasonable_step_size(key, probe_fn, step_size, max_iterations: int = 64):
    """Double or halve ``step_size`` until the log acceptance ratio crosses log(0.8).

    As Stan: a first trial sets the direction (up if the log ratio exceeds log 0.8); each
    further trial, with fresh randomness, at the current step size either stops (it crossed)
    or doubles/halves it.

    Args:
      key: a PRNG key.
      probe_fn: ``(key, step_size) -> log acceptance ratio`` of one elementary move (one
        leapfrog for HMC/NUTS: H0 - H), -inf for a NaN or divergent move.
      step_size: the starting step size (a positive scalar).
      max_iterations: bound on the number of trials (2**63 covers any float range).

    Returns:
      The new step size (same dtype as ``step_size``); unchanged if it is 0, NaN or > 1e7,
      as Stan. Doubling stops at the first value above 1e7 (where Stan raises "posterior is
      improper"; here the run goes on and its diagnostics show it), halving at the dtype's
      smallest normal number.
    """
    step_size = jnp.asarray(step_size)
    log_threshold = jnp.log(jnp.asarray(0.8, step_size.dtype))
    words = _counter_rng.key_words(key)  # trial i's key is a counter-based subkey
    skip = ~(step_size > 0) | ~(step_size <= 1e7)

    def cond(carry):
        i, _, _, stop = carry
        return (~stop) & (i < max_iterations)

    def body(carry):
        i, eps, up, _ = carry
        above = probe_fn(_counter_rng.subkey(words, i, _counter_rng.STEP_SIZE), eps) > log_threshold
        up = jnp.where(i == 0, above, up)
        crossed = (i > 0) & (above != up)
        new_eps = jnp.where(crossed | (i == 0), eps, jnp.where(up, 2.0 * eps, 0.5 * eps))
        stop = crossed | (new_eps > 1e7) | (new_eps < jnp.finfo(eps.dtype).tiny)
        return i + 1, new_eps, up, stop

    init = (jnp.zeros((), jnp.int32), step_size, jnp.zeros((), bool), skip)
    return jax.lax.while_loop(cond, body, init)[1]
