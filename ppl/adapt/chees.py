"""The trajectory length of HMC adapted across chains by the ChEES criterion.

Reference: Hoffman, Radul & Sountsov (2021), "An adaptive MCMC scheme for setting
trajectory lengths in Hamiltonian Monte Carlo", AISTATS, PMLR 130:3907-3915 (ChEES-HMC,
their Algorithm 1). The formulas are written out below as this module computes them.

The criterion is the Change in the Estimator of the Expected Square of a transition from
theta to theta' (the proposal at the end of a trajectory of integration time t):

    ChEES = 1/4 E[ (||theta' - E theta||^2 - ||theta - E theta||^2)^2 ].

With d theta'/dt = v' (the velocity M^{-1} p' at the trajectory's end), its derivative in t
has the one-transition estimate

    g_c = (||theta'_c - mean'||^2 - ||theta_c - mean||^2) (theta'_c - mean') . v'_c

for chain c, where the expectations are replaced by means across the chains: ``mean`` of
the current states, ``mean'`` of the proposals weighted by their acceptance probabilities
alpha_c. The chains' estimates are averaged with the same weights,
g = sum_c alpha_c g_c / sum_c alpha_c (a proposal that is rejected does not move the chain).
Each transition integrates for t = h T, a fraction h in (0, 1] of the adapted length T (the
jitter, which breaks the resonances of a fixed length), so d/dT = h d/dt, and the gradient
in log T is h T g. log T climbs it by Adam without momentum (Kingma & Ba 2015, algorithm
1, beta1 = 0, beta2 = 0.95, learning rate 0.025), each step clipped to +-0.35, and T is kept
between one step and ``max_steps`` steps of the step size. The jitter h is the base-2
Halton (van der Corput) sequence at the iteration, the same for every chain: quasi-random
fractions cover (0, 1] more evenly than uniform draws, which makes the gradient less noisy.
Sampling uses the iterate average of log T (weights n^{-1/2} over the n updates since the
last restart), which smooths the last updates' noise. These constants are those of the
authors' implementation (TensorFlow Probability's
``GradientBasedTrajectoryLengthAdaptation``).

Distances are measured in the metric of the mass matrix M (||x||^2 = x^T M x): the
criterion above in the preconditioned coordinates y = L^{-1} theta (M^{-1} = L L^T), where
the dynamics have a unit metric. Then (y' - mean_y') . dy'/dt = (theta' - mean') . p', and a
coordinate counts in proportion to its posterior variance, whatever its scale.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl.adapt.dual_averaging import quantize

LEARNING_RATE = 0.025
BETA2 = 0.95
MAX_LOG_UPDATE = 0.35  # ~ log(2) / 2: T changes by at most a factor 1.42 per iteration
MIN_WEIGHT = 1e-4  # proposals accepted with a lower probability do not enter the gradient


class TrajectoryState(NamedTuple):
    """The adapted trajectory length (the same in every chain).

    Fields:
      log_length: log T, the length used during warmup; -inf before the first update (the
        trajectory is then one step of the step size).
      log_length_avg: the iterate average of log T (what sampling uses).
      avg_count: updates in the average since it was last restarted.
      sq_grad: Adam's moving average of the squared gradient (its second moment).
      count: Adam's update count (its bias correction).
      log_floor: log of the step size the step-size heuristic last found (-inf before):
        T stays above one step of it or of the current step size, whichever is smaller.
    """

    log_length: jax.Array
    log_length_avg: jax.Array
    avg_count: jax.Array
    sq_grad: jax.Array
    count: jax.Array
    log_floor: jax.Array


def init(dtype=jnp.float32) -> TrajectoryState:
    """No length yet: one step of the step size until the first update."""
    zero = jnp.zeros((), dtype)
    count = jnp.zeros((), jnp.int32)
    none = jnp.full((), -jnp.inf, dtype)
    return TrajectoryState(none, zero, count, zero, count, none)


def halton(i, dtype=jnp.float32):
    """The base-2 Halton (van der Corput) sequence at ``i`` (an int >= 1, may be traced):
    the bits of ``i`` mirrored about the binary point, a number in (0, 1). Consecutive
    values fill (0, 1) evenly: 1/2, 1/4, 3/4, 1/8, 5/8, ..."""
    x = jnp.asarray(i).astype(jnp.uint32)
    for shift, mask in ((1, 0x55555555), (2, 0x33333333), (4, 0x0F0F0F0F), (8, 0x00FF00FF)):
        m = jnp.uint32(mask)
        x = ((x >> jnp.uint32(shift)) & m) | ((x & m) << jnp.uint32(shift))
    x = (x >> jnp.uint32(16)) | (x << jnp.uint32(16))
    return x.astype(dtype) * jnp.asarray(2.0 ** -32, dtype)


def length(state: TrajectoryState, adapting):
    """log T for the next transition: the current iterate while ``adapting`` (warmup), its
    average afterwards (the iterate itself if no update was averaged)."""
    final = jnp.where(state.avg_count > 0, state.log_length_avg, state.log_length)
    return jnp.where(adapting, state.log_length, final)


def num_steps(log_length, step_size, jitter, max_steps: int):
    """Leapfrog steps for integration time ``jitter * T``: ceil(h T / step size), between 1
    and ``max_steps`` (1 before T is set)."""
    steps = jnp.ceil(jitter * jnp.exp(log_length) / step_size)
    steps = jnp.where(jnp.isfinite(steps), steps, 1.0)
    return jnp.clip(steps, 1, max_steps).astype(jnp.int32)


def _squared_norm(d, inverse_mass_matrix):
    """``d^T M d`` for M the inverse of ``inverse_mass_matrix`` (a vector: diagonal)."""
    imm = jnp.asarray(inverse_mass_matrix, d.dtype)
    if imm.ndim == 1:
        return jnp.sum(d * d / imm)
    chol = jnp.linalg.cholesky(imm)
    y = jax.scipy.linalg.solve_triangular(chol, d, lower=True)
    return jnp.sum(y * y)


def gradient(position, proposal, momentum, accept_prob, inverse_mass_matrix, jitter, log_length, axis_name):
    """The ChEES gradient in log T from one transition of every chain (see the module
    docstring); called once per chain under ``vmap`` over ``axis_name``, it returns the
    same value in every chain.

    Args:
      position: this chain's state before the transition (theta).
      proposal, momentum: the position and momentum at the trajectory's end (theta', p').
      accept_prob: the proposal's acceptance probability (alpha); 0 for a divergent or
        failed trajectory.
      inverse_mass_matrix: the metric the trajectory used.
      jitter: h, the fraction of T integrated.
      log_length: log T.
      axis_name: the vmap axis over chains.

    Returns:
      h T sum_c alpha_c g_c / sum_c alpha_c, 0 where no proposal had weight, rounded as
      :func:`ppl.adapt.dual_averaging.quantize` (the same value whatever the chain layout).
    """
    finite = jnp.all(jnp.isfinite(proposal)) & jnp.all(jnp.isfinite(momentum))
    weight = jnp.where(finite & (accept_prob > MIN_WEIGHT), accept_prob, 0.0)
    proposal = jnp.where(finite, proposal, 0.0)
    momentum = jnp.where(finite, momentum, 0.0)
    total = jax.lax.psum(weight, axis_name)
    safe_total = jnp.where(total > 0, total, 1.0)
    centre = jax.lax.pmean(position, axis_name)
    centre_new = jax.lax.psum(weight * proposal, axis_name) / safe_total
    d, d_new = position - centre, proposal - centre_new
    change = _squared_norm(d_new, inverse_mass_matrix) - _squared_norm(d, inverse_mass_matrix)
    g = change * jnp.dot(d_new, momentum)
    g = jnp.where(jnp.isfinite(g) & (weight > 0), g, 0.0)
    mean = jax.lax.psum(weight * g, axis_name) / safe_total
    out = jitter * jnp.exp(log_length) * mean
    return quantize(jnp.where(jnp.isfinite(out) & (total > 0), out, 0.0))


def start(state: TrajectoryState, step_size, searched) -> TrajectoryState:
    """Before an update: where T is not set yet, it is one step of ``step_size`` (what the
    transition did); where the step-size heuristic ran (``searched``), the floor becomes the
    step size it found."""
    log_eps = jnp.log(step_size).astype(state.log_length.dtype)
    floor = jnp.where(searched | ~jnp.isfinite(state.log_floor), log_eps, state.log_floor)
    return state._replace(log_length=jnp.where(jnp.isfinite(state.log_length), state.log_length, log_eps),
                          log_floor=floor)


def slowest_ratio(old_imm, new_imm):
    """How much slower the target's slowest direction becomes when the metric changes from
    ``old_imm`` to ``new_imm`` (inverse mass matrices, the new one an estimate of the
    posterior covariance Sigma): the largest eigenvalue of old_imm^{-1} new_imm (diagonal:
    max_j new_j / old_j).

    Under the metric M^{-1}, a Gaussian direction of variance s^2 oscillates with angular
    frequency sqrt(M^{-1}_jj) / s, so its time scale is s / sqrt(M^{-1}_jj); taking Sigma =
    new_imm, the slowest time scale is sqrt(this ratio) under the old metric and 1 under the
    new one."""
    old = jnp.asarray(old_imm)
    new = jnp.asarray(new_imm, old.dtype)
    if old.ndim == 1:
        return jnp.max(new / old)
    chol = jnp.linalg.cholesky(old)
    a = jax.scipy.linalg.solve_triangular(chol, new, lower=True)
    b = jax.scipy.linalg.solve_triangular(chol, a.T, lower=True)  # L^{-1} new L^{-T}
    return jnp.max(jnp.linalg.eigvalsh(0.5 * (b + b.T)))


def rescale(state: TrajectoryState, old_imm, new_imm) -> TrajectoryState:
    """The metric changed (a warmup window ended): T is divided by sqrt(:func:`slowest_ratio`),
    the change of the slowest time scale it was adapted to, and Adam and the average restart.

    Without it, T adapted under a poor metric (the identity at the start, where a scale of
    10 needs T ~ 22) is many times the new optimum, and the jittered criterion, whose
    expectation over h oscillates in T (for one Gaussian direction E_h sin^2(h T) = 1/2 -
    sin(2T) / (4T): local maxima at tan 2T = 2T), holds it at a far local maximum (measured:
    T ~ 29 against the optimum 2.25, for 300 iterations)."""
    ratio = slowest_ratio(old_imm, new_imm)
    ok = jnp.isfinite(ratio) & (ratio > 0) & jnp.isfinite(state.log_length)
    shift = jnp.where(ok, 0.5 * jnp.log(jnp.where(ok, ratio, 1.0)), 0.0).astype(state.log_length.dtype)
    zero = jnp.zeros_like(state.count)
    return TrajectoryState(state.log_length - shift, state.log_length_avg, zero, jnp.zeros_like(state.sq_grad), zero,
                           state.log_floor)


def update(state: TrajectoryState, grad, step_size, max_steps: int,
           learning_rate: float = LEARNING_RATE) -> TrajectoryState:
    """One Adam ascent step of log T along ``grad`` (from :func:`gradient`), then the
    iterate average.

    Adam with beta1 = 0: v = beta2 v + (1 - beta2) g^2, step = rate g / sqrt(v / (1 -
    beta2^n)), clipped to +-``MAX_LOG_UPDATE``; T is then kept between one step (of the
    step size, or of the heuristic's last one if smaller) and ``max_steps`` step sizes. The
    average: log T_avg = (1 - w) log T_avg + w log T with w = n^{-1/2}.

    The floor: below one step of the step size every T means the same single step, the
    criterion is flat and T would wander (measured: T at 0.03 against a step size of 1,
    after a metric change). The heuristic's step size bounds it too because right after
    dual averaging restarts, its first steps try sizes ten times the heuristic's, which
    would otherwise push T up with them (measured: T pushed to 7.9 against an optimum of
    ~1.5, then held at a far local maximum of the jittered criterion).
    """
    dtype = state.log_length.dtype
    count = state.count + 1
    sq_grad = BETA2 * state.sq_grad + (1.0 - BETA2) * grad * grad
    corrected = sq_grad / (1.0 - jnp.asarray(BETA2, dtype) ** count.astype(dtype))
    step = learning_rate * grad / jnp.sqrt(corrected + 1e-20)
    step = jnp.clip(jnp.where(jnp.isfinite(step), step, 0.0), -MAX_LOG_UPDATE, MAX_LOG_UPDATE)
    log_eps = jnp.log(step_size).astype(dtype)
    low = jnp.minimum(log_eps, state.log_floor)
    log_length = jnp.clip(state.log_length + step, low, log_eps + jnp.log(jnp.asarray(max_steps, dtype)))
    n = state.avg_count + 1
    w = jax.lax.rsqrt(n.astype(dtype))
    average = jnp.where(n == 1, log_length, (1.0 - w) * state.log_length_avg + w * log_length)
    return TrajectoryState(log_length, average, n, sq_grad, count, state.log_floor)
