"""Warmup adaptation: step size by dual averaging, mass matrix by Welford estimates over
Stan's windowed schedule, and the initial step-size heuristic."""
from ppl.adapt import dual_averaging, initial_step_size, welford, window

__all__ = ["dual_averaging", "initial_step_size", "welford", "window"]
