"""Results never depend on NumPyro's process-wide validation flag, and ppl's use of it is
safe across threads (NumPyro's save-and-restore context left it off for good when two
threads overlapped: a latent-dependent support then lost its mask, and MAP on
y ~ Uniform(0, a) ran a to 0 at a finite, huge density)."""
import threading

import jax.numpy as jnp
import numpyro
import numpyro.distributions.distribution as numpyro_distribution
import pytest

import ppl
from ppl import dist
from ppl.model import validation


def tank(y):
    a = ppl.sample("a", dist.Exponential(0.5))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Uniform(0.0, a), y)


@pytest.fixture
def numpyro_validation_off():
    previous = numpyro_distribution._VALIDATION_ENABLED
    numpyro.enable_validation(False)
    yield
    numpyro.enable_validation(previous)


def test_supports_are_masked_with_numpyros_validation_off(numpyro_validation_off):
    y = jnp.array([0.5, 1.3, 2.2])
    ld = ppl.compile(tank, y)
    assert ld.log_prob(jnp.log(jnp.array([1.0]))) == -jnp.inf  # a = 1 < max(y)
    assert ld.log_prob(jnp.array([-50.0])) == -jnp.inf
    r = ppl.infer(tank, y, method=ppl.MAP(), key=0)
    assert 2.2 <= float(r.params["a"]) < 2.2 + 1e-2
    assert numpyro_distribution._VALIDATION_ENABLED is False  # the user's setting is kept


def test_overlapping_switches_restore_the_flag():
    before = numpyro_distribution._VALIDATION_ENABLED
    entered, release = threading.Barrier(2), threading.Event()

    def hold():
        with validation.off():
            entered.wait(timeout=10)
            release.wait(timeout=10)

    t = threading.Thread(target=hold)
    t.start()
    with validation.off():
        entered.wait(timeout=10)
        assert numpyro_distribution._VALIDATION_ENABLED is False
    # This thread left first: the other is still inside, so the flag stays off...
    assert numpyro_distribution._VALIDATION_ENABLED is False
    release.set()
    t.join(timeout=10)
    # ...and the last to leave restores what the first found.
    assert numpyro_distribution._VALIDATION_ENABLED is before
