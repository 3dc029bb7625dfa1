"""Numerical trouble in a run is counted, named and explained, never passed off as something
else: non-finite gradients apart from divergences; a static trajectory that resonates."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist


@jax.custom_jvp
def _nan_gradient_below(t):
    return 0.0 * t


@_nan_gradient_below.defjvp
def _nan_gradient_below_jvp(primals, tangents):
    (t,), (dt,) = primals, tangents
    return _nan_gradient_below(t), jnp.where(t < -0.5, jnp.nan, 0.0) * dt


def trouble_model():
    x = ppl.sample("x", dist.Normal(0.0, 1.0))
    ppl.factor("trouble", _nan_gradient_below(x))  # value 0 everywhere, gradient NaN for x < -0.5


@pytest.mark.parametrize("method", [ppl.NUTS, ppl.HMC])
def test_nan_gradients_are_counted_apart_from_divergences_and_the_site_is_named(method):
    options = dict(num_warmup=200, num_samples=200, num_chains=2, progress_bar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = ppl.infer(trouble_model, method=method(**options), key=0)
    d = r.diagnostics
    assert d["nonfinite"] > 0 and d["divergences"] == 0
    assert d["nonfinite_sites"] == ["trouble (gradient)"]
    texts = [str(w.message) for w in caught if "NaN or infinite" in str(w.message)]
    assert len(texts) == 1 and "'trouble (gradient)'" in texts[0]
    assert "raise target_accept" not in texts[0] and "float64" in texts[0]
    assert texts[0] in r.warnings and texts[0] in str(r)
    assert not any("divergent" in str(w.message) for w in caught)
    # The failing region is never entered: the draws stop at x = -0.5.
    assert r.samples["x"].min() >= -0.5


def test_a_resonant_trajectory_length_is_broken_by_the_default_jitter():
    # y_i ~ N(mu, 1), 20 points, prior N(0, 10): posterior sd 0.2236. With a fixed 4 steps
    # warmup settles near half a period of the (mass-adapted) oscillation, where each
    # transition maps mu - m to about -(mu - m) whatever the momentum: the chain flips
    # between two points and its sd is wrong. The default jitter draws 2..6 steps.
    y = jnp.array(np.random.default_rng(0).normal(1.0, 1.0, 20))

    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, 1.0), y)

    exact_sd = 1.0 / np.sqrt(20.0 + 1.0 / 100.0)
    r = ppl.infer(model, y, method=ppl.HMC(num_steps=4, progress_bar=False), key=0)
    ess = float(r.diagnostics["ess"]["mu"])
    assert ess > 1000  # of 4000 draws
    # sd of a sample sd ~ sd / sqrt(2 ESS): five of those
    assert abs(r.samples["mu"].std() - exact_sd) < 5 * exact_sd / np.sqrt(2 * ess)
    # warmup's step sizes are those of a stable integrator (eps < 2 in the adapted metric)
    eps_scaled = r.diagnostics["step_size"] * np.sqrt(r.diagnostics["inverse_mass_matrix"][:, 0]) / exact_sd
    assert np.all(eps_scaled < 2.0), eps_scaled


def test_hmc_rejects_a_bad_jitter():
    with pytest.raises(ValueError, match="jitter"):
        ppl.infer(trouble_model, method=ppl.HMC(jitter=1.5))
