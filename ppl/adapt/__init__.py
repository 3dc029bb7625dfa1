"""Warmup adaptation: step size by dual averaging, mass matrix by Welford estimates over
Stan's windowed schedule, the initial step-size heuristic, and ChEES-HMC's trajectory length
adapted across chains."""
from ppl.adapt import chees, dual_averaging, initial_step_size, welford, window

__all__ = ["chees", "dual_averaging", "initial_step_size", "welford", "window"]
