"""Fixtures shared by the whole suite."""
import os

# Every test compiles for real (and nothing is written under ~/.cache): the disk compile
# cache is tested on its own, in a temporary directory (tests/infer/test_compile_cache.py).
os.environ.setdefault("PPL_COMPILE_CACHE", "0")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test with float64 enabled, restoring the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
