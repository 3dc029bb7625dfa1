"""Stan's windowed warmup schedule: a fast initial buffer, doubling slow windows for the mass
matrix, a fast terminal buffer.

Reference: Stan Reference Manual, "HMC algorithm parameters: automatic parameter tuning"
(adaptation windows); Stan's ``windowed_adaptation`` (init_buffer 75, term_buffer 50,
base_window 25; 15% / 75% / 10% when num_warmup is too small; none below 20).
"""
from typing import NamedTuple, Tuple

import numpy as np


class Schedule(NamedTuple):
    """Per-iteration flags of a warmup of ``len(in_window)`` iterations.

    Fields:
      in_window: bool array: the iteration's draw enters the mass-matrix estimate.
      window_end: bool array: after this iteration the mass matrix is updated and step-size
        adaptation restarts.
      windows: the slow windows as ``(start, stop)`` half-open iteration ranges.
    """

    in_window: np.ndarray
    window_end: np.ndarray
    windows: Tuple[Tuple[int, int], ...]


def buffers(num_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25):
    """Stan's ``set_window_params``: the (init_buffer, term_buffer, base_window) in use.

    Returns ``None`` when ``num_warmup < 20`` (no mass-matrix adaptation, as Stan).
    """
    if num_warmup < 20:
        return None
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer = int(0.15 * num_warmup)
        term_buffer = int(0.1 * num_warmup)
        base_window = num_warmup - (init_buffer + term_buffer)
    return init_buffer, term_buffer, base_window


def build_schedule(num_warmup: int, init_buffer: int = 75, term_buffer: int = 50,
                   base_window: int = 25) -> Schedule:
    """Build Stan's adaptation schedule for ``num_warmup`` iterations.

    Args:
      num_warmup: number of warmup iterations (a non-negative Python int).
      init_buffer, term_buffer, base_window: Stan's defaults 75, 50, 25.

    Returns:
      A :class:`Schedule`. For ``num_warmup=1000`` the slow windows are
      (75, 100), (100, 150), (150, 250), (250, 450), (450, 950).

    Raises:
      ValueError: if ``num_warmup`` is negative or not an int.
    """
    if not isinstance(num_warmup, (int, np.integer)) or isinstance(num_warmup, bool) or num_warmup < 0:
        raise ValueError(f"num_warmup must be a non-negative int; received {num_warmup!r}.")
    num_warmup = int(num_warmup)
    in_window = np.zeros(num_warmup, bool)
    window_end = np.zeros(num_warmup, bool)
    params = buffers(num_warmup, init_buffer, term_buffer, base_window)
    if params is None:
        return Schedule(in_window, window_end, ())
    init_buffer, term_buffer, base_window = params
    last = num_warmup - term_buffer - 1  # last iteration of the last slow window
    windows = []
    start, size = init_buffer, base_window
    next_end = init_buffer + base_window - 1
    while True:
        windows.append((start, next_end + 1))
        if next_end >= last:
            break
        # Stan's compute_next_window: double, and stretch the window that would leave
        # less than twice its size before the terminal buffer.
        start, size = next_end + 1, 2 * size
        next_end = next_end + size
        if next_end + 2 * size >= num_warmup - term_buffer:
            next_end = last
    for lo, hi in windows:
        in_window[lo:hi] = True
        window_end[hi - 1] = True
    return Schedule(in_window, window_end, tuple(windows))
