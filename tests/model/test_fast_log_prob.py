"""Hand-derived log probabilities give NumPyro's values and derivatives, wrappers included."""
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pytest

import ppl
from ppl import dist
from ppl.model import fast_log_prob

rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(7,)) * 3, jnp.float32)
Y01 = jnp.asarray(rng.random(7) < 0.5)
N = jnp.asarray(rng.integers(0, 12, size=7))
K = jnp.asarray(rng.integers(0, 12, size=7)) % (N + 1)

CASES = {
    "bernoulli": (lambda p: nd.Bernoulli(logits=p), Y01.astype(jnp.float32)),
    "bernoulli, int values": (lambda p: nd.Bernoulli(logits=p), Y01.astype(jnp.int32)),
    "bernoulli, bool values": (lambda p: nd.Bernoulli(logits=p), Y01),
    "bernoulli, iid copies of the data": (lambda p: nd.Bernoulli(logits=p), jnp.stack([Y01, ~Y01]).astype(jnp.float32)),
    "bernoulli, one logit for all": (lambda p: nd.Bernoulli(logits=p[0]), Y01.astype(jnp.float32)),
    "bernoulli, expand + to_event": (lambda p: nd.Bernoulli(logits=p[0]).expand([7]).to_event(1), Y01.astype(jnp.float32)),
    "bernoulli, large logits": (lambda p: nd.Bernoulli(logits=40 * p), Y01.astype(jnp.float32)),
    "binomial": (lambda p: nd.Binomial(N, logits=p), K),
    "binomial, float counts": (lambda p: nd.Binomial(N.astype(jnp.float32), logits=p), K.astype(jnp.float32)),
    "binomial, one total count": (lambda p: nd.Binomial(20, logits=p), K),
    "binomial, to_event": (lambda p: nd.Binomial(N, logits=p).to_event(1), K),
}


@pytest.mark.parametrize("name", list(CASES))
def test_values_and_derivatives_equal_numpyros(name):
    make, value = CASES[name]
    ours = lambda p: fast_log_prob.log_prob(make(p), value)
    theirs = lambda p: make(p).log_prob(value)
    with numpyro.validation_enabled(False):
        assert type(make(X)).__name__ in ("BernoulliLogits", "BinomialLogits", "Independent", "ExpandedDistribution")
        np.testing.assert_allclose(ours(X), theirs(X), rtol=1e-6, atol=1e-6)
        assert jnp.shape(ours(X)) == jnp.shape(theirs(X))
        total = lambda f: (lambda p: jnp.sum(f(p)))
        np.testing.assert_allclose(jax.grad(total(ours))(X), jax.grad(total(theirs))(X), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jax.hessian(total(ours))(X), jax.hessian(total(theirs))(X), rtol=1e-4, atol=1e-6)
        batched = jax.jit(jax.vmap(jax.grad(total(ours))))(jnp.stack([X, -X]))
        np.testing.assert_allclose(batched[1], jax.grad(total(theirs))(-X), rtol=1e-5, atol=1e-6)


def test_infinite_logits_are_certain_outcomes():
    x = jnp.array([jnp.inf, jnp.inf, -jnp.inf, -jnp.inf])
    y = jnp.array([1.0, 0.0, 1.0, 0.0])
    with numpyro.validation_enabled(False):
        lp = fast_log_prob.log_prob(nd.Bernoulli(logits=x), y)
    np.testing.assert_array_equal(lp, [0.0, -jnp.inf, -jnp.inf, 0.0])


def test_values_outside_the_support_get_minus_inf_under_validation():
    # NumPyro's validate_sample masks them inside jit; the rules do the same.
    f = jax.jit(lambda p, y: fast_log_prob.log_prob(nd.Bernoulli(logits=p), y))
    with numpyro.validation_enabled(True):
        lp = f(jnp.zeros(3), jnp.array([0.0, 2.0, 1.0]))
    assert jnp.isneginf(lp[1]) and jnp.all(jnp.isfinite(lp[::2]))


def test_a_subclass_keeps_its_own_log_prob():
    class Tempered(nd.BernoulliLogits):
        def log_prob(self, value):
            return 0.5 * super().log_prob(value)

    d = Tempered(X)
    np.testing.assert_allclose(fast_log_prob.log_prob(d, Y01), d.log_prob(Y01))


def test_a_model_with_the_rules_has_numpyros_log_joint():
    """End to end: the compiled logistic regression's log density and gradient are those of
    the NumPyro model (with the data's support checked once, at compile time)."""
    from numpyro.infer.util import potential_energy

    Xd = jnp.asarray(rng.normal(size=(40, 3)), jnp.float32)
    y = jnp.asarray(rng.random(40) < 0.4, jnp.float32)

    def logreg(X, y):
        w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        with ppl.plate("n", X.shape[0]):
            ppl.observe("y", dist.Bernoulli(logits=X @ w), y)

    def logreg_np(X, y):
        w = numpyro.sample("w", nd.Normal(0.0, 1.0).expand([3]).to_event(1))
        with numpyro.plate("n", X.shape[0]):
            numpyro.sample("y", nd.Bernoulli(logits=X @ w), obs=y)

    ld = ppl.compile(logreg, Xd, y)
    assert ld.spec.checked_supports == ("y",)
    z = jnp.array([0.3, -1.2, 0.8])
    neg = lambda z: potential_energy(logreg_np, (Xd, y), {}, {"w": z})
    np.testing.assert_allclose(ld.log_prob(z), -neg(z), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(ld.log_prob)(z), -jax.grad(neg)(z), rtol=1e-4, atol=1e-5)


def test_supports_moved_by_a_latent_are_not_trusted():
    def tank(y):
        a = ppl.sample("a", dist.Exponential(0.5))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Uniform(0.0, a), y)

    ld = ppl.compile(tank, jnp.array([0.5, 2.2]))
    assert ld.spec.checked_supports == ()
    assert ld.log_prob(jnp.zeros(1)) == -jnp.inf  # a = 1 < 2.2: the mask still applies


def test_observed_values_computed_from_a_latent_are_not_trusted():
    # The observed value itself moves with mu: its support check must stay in the density.
    def gap(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.observe("gap", dist.Exponential(1.0), y - mu)

    ld = ppl.compile(gap, jnp.array(0.5))
    assert ld.spec.checked_supports == ()
    assert ld.log_prob(jnp.array([2.0])) == -jnp.inf


def test_error_messages_name_the_users_distribution():
    # Wrappers (plates, expand, to_event, mask) are looked through; a transformed
    # distribution keeps its own name (a LogNormal is not reported as its base Normal).
    from ppl.model.sites import dist_name

    assert dist_name(nd.LogNormal(0.0, 1.0).expand([3]).to_event(1)) == "LogNormal"
    assert dist_name(nd.Normal(0.0, 1.0).mask(False)) == "Normal"
