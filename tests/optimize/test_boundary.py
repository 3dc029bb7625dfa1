"""MLE/MAP: a site whose unconstrained value runs off to infinity while the objective keeps
improving (an unbounded likelihood or posterior density) is flagged by name, and the run is
not `converged`; an optimum that merely lies far out is not flagged."""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.method.flags import PplWarning


def scale_only(y):
    s = ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(0.0, s), y)


def location_and_scale(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    s = ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, s), y)


@pytest.mark.parametrize("model, y", [
    (scale_only, [0.0]),  # the reproducer: s -> 0 returned 5e-20 with converged=True
    (location_and_scale, [1.3]),  # mu at the point, s -> 0: the likelihood grows without bound
])
def test_mle_of_a_scale_on_too_little_data_is_flagged(model, y):
    with pytest.warns(PplWarning, match=r"mle: latent site 's' ran to the boundary of its support.*method=\"map\""):
        r = ppl.infer(model, jnp.asarray(y), method="mle", key=0)
    assert r.diagnostics["converged"] is False
    assert r.diagnostics["boundary_sites"] == ["s"]
    assert any("'s'" in w for w in r.diagnostics["warnings"])


def test_map_of_a_hierarchical_scale_is_flagged():
    # Centered hierarchy: the posterior density grows without bound as tau -> 0 with the
    # thetas at mu (the funnel's neck), so MAP has no answer there.
    def hierarchy(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
        tau = ppl.sample("tau", dist.HalfCauchy(5.0))
        with ppl.plate("j", y.shape[0]):
            theta = ppl.sample("theta", dist.Normal(mu, tau))
            ppl.observe("y", dist.Normal(theta, 1.0), y)

    with pytest.warns(PplWarning, match=r"map: latent site 'tau' ran to the boundary.*prior that vanishes"):
        r = ppl.infer(hierarchy, jnp.asarray([1.0, -0.5, 2.0, 0.3]), method="map", key=0)
    assert r.diagnostics["converged"] is False and "tau" in r.diagnostics["boundary_sites"]


def test_a_bounded_likelihood_and_a_far_optimum_are_not_flagged():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PplWarning)
        r = ppl.infer(scale_only, jnp.asarray([1.3]), method="mle", key=0)
        assert r.diagnostics["converged"] and r.diagnostics["boundary_sites"] == []
        np.testing.assert_allclose(r.params["s"], 1.3, rtol=1e-4)
        # s = 1.5e-8 (log s = -18, past the 15 from which coordinates are probed): the
        # likelihood has its maximum there and falls on both sides.
        y = jnp.asarray([1e-8, -2e-8, 1.5e-8])
        r = ppl.infer(scale_only, y, method=ppl.MLE(init={"s": 1e-8}), key=0)
    assert r.diagnostics["boundary_sites"] == []
    np.testing.assert_allclose(r.params["s"], np.sqrt(np.mean(np.asarray(y, np.float64) ** 2)), rtol=1e-3)


def separable(x, y):
    w = ppl.sample("w", dist.Normal(0.0, 100.0))
    b = ppl.sample("b", dist.Normal(0.0, 100.0))
    with ppl.plate("n", x.shape[0]):
        ppl.observe("y", dist.Bernoulli(logits=b + w * x), y)


@pytest.mark.timeout(300)
def test_mle_of_a_separable_logistic_regression_is_flagged_in_float32():
    # Complete separation: the likelihood grows as w -> inf. In float32 the loss where the
    # optimiser stops (about 4e-7) improves by less than its rounding tolerance per probe, so
    # the probes' values alone did not see it (converged=True, no warning).
    x = jnp.array([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], jnp.float32)
    y = (x > 0).astype(jnp.float32)
    with pytest.warns(PplWarning, match=r"latent site 'w' ran to the boundary"):
        r = ppl.infer(separable, x, y, method="mle", key=0)
    assert "w" in r.diagnostics["boundary_sites"] and r.diagnostics["converged"] is False
