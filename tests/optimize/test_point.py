"""MLE/MAP return the best point the optimiser saw (lowest finite loss), not its last iterate,
with diagnostics that describe that point."""
import warnings

import jax.numpy as jnp
import numpy as np
import optax

import ppl
from ppl import dist

Y = np.array([1.0, 2.0, 3.0])


def location(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


def scale(y):
    s = ppl.sample("s", dist.LogNormal(0.0, 1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(0.0, s), y)


def fit(model, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # these runs do not converge, by design
        return ppl.infer(model, jnp.asarray(Y, jnp.float32), method=method, key=0)


def test_a_run_that_ends_worse_returns_the_best_point_and_its_loss():
    # Gradient descent with too large a step on a quadratic: every step raises the loss, so
    # the best point is the start and the last iterate is the worst.
    r = fit(location, ppl.MLE(optimizer=optax.sgd(0.8), num_steps=5))
    trace = r.diagnostics["loss"]
    assert np.all(np.diff(trace) > 0)
    mu = float(r.params["mu"])
    loss_there = 0.5 * np.sum((Y - mu) ** 2) + 1.5 * np.log(2 * np.pi)  # -log likelihood
    assert r.diagnostics["final_loss"] == trace.min()
    np.testing.assert_allclose(loss_there, trace.min(), rtol=1e-5)
    np.testing.assert_allclose(r.samples["mu"][0, 0], mu)
    assert not r.diagnostics["converged"]
    # the gradient norm reported is the one at the point returned: |sum(y - mu)|
    np.testing.assert_allclose(r.diagnostics["grad_norm"], abs(np.sum(Y - mu)), rtol=1e-4)


def test_a_non_finite_loss_never_becomes_the_result():
    # A huge step sends the scale to 0 (log scale to -inf): the loss there is not finite.
    r = fit(scale, ppl.MLE(optimizer=optax.sgd(100.0), num_steps=20))
    assert not np.all(np.isfinite(r.diagnostics["loss"]))
    s = float(r.params["s"])
    assert np.isfinite(s) and s > 0
    assert np.isfinite(r.diagnostics["final_loss"]) and np.isfinite(r.diagnostics["grad_norm"])
    assert r.diagnostics["final_loss"] == np.nanmin(r.diagnostics["loss"])
    assert not r.diagnostics["converged"]


def test_a_converging_run_still_reports_converged_at_its_optimum():
    r = ppl.infer(location, jnp.asarray(Y, jnp.float32), method="mle", key=0)
    assert r.diagnostics["converged"]
    np.testing.assert_allclose(r.params["mu"], Y.mean(), rtol=1e-5)
    # the lowest loss seen, up to float32 rounding (of equals the latest point is kept)
    lowest = np.nanmin(r.diagnostics["loss"])
    assert r.diagnostics["final_loss"] <= lowest + 10 * np.finfo(np.float32).eps * max(1.0, abs(lowest))
