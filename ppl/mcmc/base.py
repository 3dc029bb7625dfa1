"""The kernel record shared by every MCMC transition in ``ppl.mcmc``.

Every kernel module (``hmc``, ``nuts``, ``mh``) exports ``State``, ``Info``, ``init`` and
``build_kernel``; ``build_kernel(...)`` returns a :class:`Kernel`, which is called as the
step function ``step(key, state, logdensity_fn, step_size, inverse_mass_matrix)`` and also
carries the kernel's ``init`` and ``probe`` so that a driver never special-cases a kernel.
Every ``Info`` starts with the core fields ``acceptance_rate, is_divergent, num_grad_evals``.
"""
import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A pure MCMC transition; calling it performs one step.

    Fields:
      step: ``(key, state, logdensity_fn, step_size, inverse_mass_matrix) -> (State, Info)``.
      init: ``(position, logdensity_fn) -> State``.
      probe: ``(key, state, logdensity_fn, step_size, inverse_mass_matrix) -> log ratio``: the
        log acceptance ratio of one elementary move (one leapfrog for HMC/NUTS, one proposal
        for MH), NaN mapped to -inf; the initial step-size heuristic doubles or halves the
        step size on it.
      name: a short label, e.g. ``"nuts"``.
      restart_at_windows: when a slow warmup window ends and the mass matrix changes,
        re-initialise the step size by the heuristic and restart dual averaging (Stan's
        HMC/NUTS warmup). False keeps one dual-averaging run over the whole warmup, which
        suits the noisy 0/1-like acceptance of random-walk Metropolis.
    """

    step: Callable
    init: Callable
    probe: Callable
    name: str
    restart_at_windows: bool = True

    def __call__(self, key, state, logdensity_fn, step_size, inverse_mass_matrix):
        return self.step(key, state, logdensity_fn, step_size, inverse_mass_matrix)
