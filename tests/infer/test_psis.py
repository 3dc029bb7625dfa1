"""PSIS (ppl.method.psis): k̂ and smoothed log weights against ArviZ and known generalized
Pareto samples; `diagnostics["pareto_k"]` and its flag for importance sampling.

Tolerances: against `arviz.psislw` the algorithms are the same (Zhang and Stephens 2009 with
the same prior), so only float64 rounding separates them (1e-10). Against known shapes, the
fitted k's standard error is about (1 + k) / sqrt(n) for n exceedances (the maximum
likelihood rate, which Zhang and Stephens' estimator nearly attains); tests allow 4 of them.
"""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.method import psis as P
from ppl.method.flags import PplWarning


def gpd_draws(rng, k, sigma, n):
    """n draws of a GPD with shape k and scale sigma, by its quantile function."""
    u = rng.uniform(size=n)
    return sigma * np.expm1(-k * np.log1p(-u)) / k if k != 0 else -sigma * np.log1p(-u)


def weight_vectors():
    rng = np.random.default_rng(0)
    return {
        "light_tail": rng.normal(size=4000),  # log-normal weights with sd 1: k about 0.1
        "heavy_tail": rng.normal(0.0, 3.0, 4000),  # sd 3: k about 0.8
        "student_t": rng.standard_t(3, 2000),
        "one_dominates": np.r_[rng.normal(size=2999), 40.0],
        "bounded": np.log(rng.uniform(size=1000)),  # weights uniform on (0, 1): k < 0
        "few": rng.normal(size=60),
    }


@pytest.mark.parametrize("name", list(weight_vectors()))
def test_same_k_and_smoothed_weights_as_arviz(name):
    az = pytest.importorskip("arviz")
    lw = weight_vectors()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about large k
        ref_lw, ref_k = az.psislw(lw.copy(), normalize=False)
    got = P.psis(lw)
    assert got.pareto_k == pytest.approx(float(ref_k), abs=1e-10)
    np.testing.assert_allclose(got.log_weights, ref_lw, atol=1e-10)
    assert got.tail_length == P.tail_length(lw.size)


def test_k_orders_the_cases():
    ks = {name: P.pareto_k(lw) for name, lw in weight_vectors().items()}
    assert ks["bounded"] < 0 < ks["light_tail"] < 0.5 < ks["heavy_tail"]
    assert ks["one_dominates"] > 1.0


@pytest.mark.parametrize("k", [-0.3, 0.3, 0.8])
def test_fit_recovers_a_known_shape(k):
    n = 20_000
    x = gpd_draws(np.random.default_rng(1), k, 2.0, n)
    k_hat, sigma_hat = P.fit_generalized_pareto(x)
    se = (1 + k) / np.sqrt(n)
    assert abs(k_hat - k) < 4 * se
    assert abs(sigma_hat / 2.0 - 1) < 4 * np.sqrt(2 * (1 + k) / n)  # MLE se of log sigma


@pytest.mark.parametrize("k", [0.2, 0.6, 0.9])
def test_psis_on_pareto_distributed_weights(k):
    # Weights that are GPD-distributed throughout: their tail has shape k exactly. The prior
    # pulls k̂ towards 0.5 by 10 / (M + 10) of the difference (at most 0.004 here).
    s = 100_000
    lw = np.log(gpd_draws(np.random.default_rng(2), k, 1.0, s))
    m = P.tail_length(s)
    assert m == int(np.ceil(3 * np.sqrt(s)))
    assert abs(P.pareto_k(lw) - k) < 4 * (1 + k) / np.sqrt(m)


def test_smoothing_keeps_the_body_and_caps_the_tail():
    lw = weight_vectors()["one_dominates"]
    out = P.psis(lw)
    m = out.tail_length
    body = np.argsort(lw)[: lw.size - m]
    np.testing.assert_allclose(out.log_weights[body], lw[body], rtol=0, atol=1e-12)
    assert out.log_weights.max() <= lw.max()
    assert out.log_weights.max() < lw.max() - 1.0  # the dominating weight is pulled in


def test_special_values():
    rng = np.random.default_rng(3)
    assert np.isnan(P.pareto_k(rng.normal(size=20)))  # M = 4 < 5: cannot fit
    assert P.pareto_k(np.r_[rng.normal(size=999), np.inf]) == np.inf
    assert P.pareto_k(np.r_[np.full(997, -np.inf), 0.0, 1.0, 2.0]) == np.inf  # collapsed
    assert P.pareto_k(-1000.0 * np.arange(1000.0)) == np.inf  # all but one underflow
    assert np.isnan(P.pareto_k(np.r_[np.zeros(500), rng.normal(-5, 1, 500)]))  # tied largest
    lw = rng.normal(size=1000)
    with_nan = lw.copy()
    with_nan[:10] = np.nan
    as_zero = lw.copy()
    as_zero[:10] = -np.inf
    assert P.pareto_k(with_nan) == P.pareto_k(as_zero)
    with pytest.raises(ValueError, match="one-dimensional"):
        P.psis(np.zeros((10, 10)))


def test_nearly_uniform_weights_are_not_flagged_whatever_k():
    # A normal guide N(1.16, 0.2^2) fitted to log(lambda), lambda ~ Gamma(26, 8) (the fit's
    # ELBO is 0.005 nats below log p): all 1 000 weights lie within a factor of about 2 of
    # their mean, yet k̂ exceeds 0.7 (with 10^6 draws it is 0.29).
    v = np.random.default_rng(0).normal(1.1606, 0.2008, 1000)
    lw = 26 * v - 8 * np.exp(v) + 0.5 * ((v - 1.1606) / 0.2008) ** 2
    assert P.pareto_k(lw) > P.K_UNRELIABLE
    assert P.relative_ess(lw) > P.NEAR_UNIFORM_ESS
    assert not P.unreliable(P.pareto_k(lw), lw)
    heavy = weight_vectors()["heavy_tail"]
    assert P.unreliable(P.pareto_k(heavy), heavy)


# -- importance sampling --------------------------------------------------------------------

def regression(x, y):
    a = ppl.sample("a", dist.Normal(0.0, 10.0))
    b = ppl.sample("b", dist.Normal(0.0, 10.0))
    with ppl.plate("n", x.shape[0]):
        ppl.observe("y", dist.Normal(a + b * x, 0.5), y)


X = jnp.linspace(-1.0, 1.0, 20)
Y = 0.4 + 1.5 * X + 0.5 * jnp.asarray(np.random.default_rng(5).normal(size=20), jnp.float32)


def test_importance_from_a_vague_prior_is_flagged_with_k_hat():
    with pytest.warns(PplWarning, match=r"importance: Pareto k̂ = .* > 0.7.*more particles will not fix"):
        r = ppl.infer(regression, X, Y, method=ppl.Importance(num_particles=2000), key=0)
    assert r.diagnostics["pareto_k"] > 0.7
    assert any("Pareto k̂" in w for w in r.diagnostics["warnings"])


def test_importance_from_a_good_proposal_is_not_flagged():
    # The exact posterior as proposal (conjugate normal-normal): constant weights, k̂ < 0.5.
    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(mu, 1.0), y)

    def posterior(y):
        ppl.sample("mu", dist.Normal(y / 2, np.sqrt(0.5)))

    with warnings.catch_warnings():
        warnings.simplefilter("error", PplWarning)
        r = ppl.infer(model, 1.0, method=ppl.Importance(num_particles=2000, proposal=posterior), key=0)
    assert isinstance(r.diagnostics["pareto_k"], float)
    assert not r.diagnostics.get("warnings")


def test_demo_note_is_the_short_k_hat():
    from ppl.demo import _note

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = ppl.infer(regression, X, Y, method=ppl.Importance(num_particles=2000), key=0)
    assert _note(r, caught) == f"k̂={r.diagnostics['pareto_k']:.2f}: unreliable"
