"""The initial step-size heuristic: double or halve until one move's acceptance crosses 0.8.

Reference: Hoffman & Gelman (2014), "The No-U-Turn Sampler", algorithm 4 (heuristic for
choosing an initial value of epsilon); Stan's ``base_hmc::init_stepsize`` (threshold
log(0.8), fresh momentum at each trial, give up beyond 1e7).
"""
import jax
import jax.numpy as jnp


def find_reasonable_step_size(key, probe_fn, step_size, max_iterations: int = 100):
    """Double or halve ``step_size`` until the log acceptance ratio crosses log(0.8).

    Args:
      key: a PRNG key.
      probe_fn: ``(key, step_size) -> log acceptance ratio`` of one elementary move (one
        leapfrog for HMC/NUTS: H0 - H), -inf for a NaN or divergent move.
      step_size: the starting step size (a positive scalar).
      max_iterations: safety bound on the number of doublings/halvings.

    Returns:
      The new step size (same dtype as ``step_size``); unchanged if it is 0, NaN or > 1e7,
      as Stan.
    """
    step_size = jnp.asarray(step_size)
    log_threshold = jnp.log(jnp.asarray(0.8, step_size.dtype))
    skip = ~(step_size > 0) | (step_size > 1e7)
    direction_up = probe_fn(jax.random.fold_in(key, 0), step_size) > log_threshold

    def cond(carry):
        i, _, stop = carry
        return (~stop) & (i < max_iterations)

    def body(carry):
        i, eps, _ = carry
        log_ratio = probe_fn(jax.random.fold_in(key, i + 1), eps)
        crossed = jnp.where(direction_up, ~(log_ratio > log_threshold), ~(log_ratio < log_threshold))
        new_eps = jnp.where(crossed, eps, jnp.where(direction_up, 2.0 * eps, 0.5 * eps))
        stop = crossed | (new_eps > 1e7) | (new_eps < jnp.finfo(eps.dtype).tiny)
        return i + 1, new_eps, stop

    _, eps, _ = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), step_size, skip))
    return eps
