"""Fixtures shared by the whole suite."""
import atexit
import os
import shutil
import tempfile

# The suite runs with the disk compile cache on, as users' runs do, in a directory of its own
# that starts empty and is removed at exit: every program compiles for real once, and a test
# that builds a program an earlier test (or its own child process) built loads it
# (tests/mcmc and tests/runtime: 300 s without, 260 s with). Nothing is written under
# ~/.cache. The cache itself is tested in tests/infer/test_compile_cache.py;
# PPL_COMPILE_CACHE=0 runs the suite without it.
if "PPL_COMPILE_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="ppl-test-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["PPL_COMPILE_CACHE"] = _cache

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test with float64 enabled, restoring the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
