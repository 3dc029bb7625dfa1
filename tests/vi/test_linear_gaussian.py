"""VI on the linear-Gaussian test bed, against its closed forms (models/linear_gaussian.py).

The posterior (2 latents, correlation 0.92) is Gaussian, so the full-rank family contains it
and the mean-field optimum is known; the mean-field KL gap is 0.95 nats, so the IWAE
bounds have room to climb. Tolerances: `se` is the Monte Carlo standard error of a final
bound (10 000 or more particles here); parameters carry the optimiser's stationary noise at the final
learning rate, measured over keys 0-4 at under a third of each tolerance.
"""
import numpy as np
import pytest

import ppl
from models import linear_gaussian as lg

DATA = lg.simulate(seed=3, d=2, p=3, n=5)
ARGS, KWARGS = lg.args(DATA)
CONST = (DATA["A"], DATA["b"], DATA["sigma"], DATA["s0"], DATA["x"])
LOG_P = lg.log_evidence(*CONST)
MEAN, COV = lg.posterior(*CONST)
SD = np.sqrt(np.diag(COV))

MEAN_FIELD = ppl.VI(guide="mean_field", objective=ppl.ELBO(num_particles=4), num_steps=5000, num_eval_particles=10_000)


def fit(method, key=0):
    return ppl.infer(lg.model, *ARGS, method=method, key=key, **KWARGS)


@pytest.fixture(scope="module")
def mean_field():
    return fit(MEAN_FIELD)


@pytest.fixture(scope="module")
def iwae_fits():
    return {k: fit(ppl.VI(objective=ppl.IWAE(k=k), num_steps=5000, num_eval_particles=20_000)) for k in (10, 100)}


def test_elbo_below_iwae_bounds_below_log_evidence(mean_field, iwae_fits):
    bounds = [mean_field.log_evidence] + [iwae_fits[k].log_evidence for k in (10, 100)]
    ses = [mean_field.diagnostics["log_evidence_se"]] + [iwae_fits[k].diagnostics["log_evidence_se"] for k in (10, 100)]
    # Increasing in k, each step by more than 3 standard errors of the difference.
    for (a, sa), (b, sb) in zip(zip(bounds, ses), zip(bounds[1:], ses[1:])):
        assert b - a > 3 * np.hypot(sa, sb), bounds
    # All below log p(x), up to 3 se; and approaching it: the k=100 gap is a fraction of the ELBO's.
    assert all(b <= LOG_P + 3 * s for b, s in zip(bounds, ses)), (bounds, LOG_P)
    assert LOG_P - bounds[-1] < 0.25 * (LOG_P - bounds[0])
    # The ELBO gap is the KL of the mean-field optimum, 0.5 (sum log Λ_ii - log det Λ).
    prec = np.linalg.inv(COV)
    kl = 0.5 * (np.log(np.diag(prec)).sum() - np.linalg.slogdet(prec)[1])
    assert abs((LOG_P - bounds[0]) - kl) < 0.05 + 3 * ses[0]


def test_mean_field_matches_the_mean_field_optimum(mean_field):
    m, var = lg.mean_field_optimum(*CONST)
    loc, scale = mean_field.params["auto_loc"], mean_field.params["auto_scale"]
    np.testing.assert_allclose(loc, m, atol=0.1 * SD.min())
    np.testing.assert_allclose(scale, np.sqrt(var), rtol=0.08)
    # ...which is much narrower than the exact posterior (correlation 0.92).
    assert np.all(scale < 0.5 * SD)


def test_full_rank_recovers_the_exact_posterior():
    r = fit(ppl.VI(guide="full_rank", objective=ppl.ELBO(num_particles=4), num_steps=5000))
    L = r.params["auto_scale_tril"]
    np.testing.assert_allclose(r.params["auto_loc"], MEAN, atol=0.1 * SD.min())
    assert np.all(np.abs(L @ L.T - COV) < 0.01 + 0.08 * np.abs(COV)), (L @ L.T, COV)
    # KL(q || p) ~ 0: the ELBO equals log p(x) within its Monte Carlo error (plus 0.02 nats).
    assert abs(r.log_evidence - LOG_P) < 0.02 + 3 * r.diagnostics["log_evidence_se"]
    # Draws: shape (1, num_draws, 2) and moments within 4 Monte Carlo se of the truth.
    z = r.samples["z"]
    assert z.shape == (1, 1000, 2)
    assert np.all(np.abs(z.mean((0, 1)) - MEAN) < 4 * SD / np.sqrt(1000) + 0.1 * SD)


def test_beta_greater_than_one_fits_the_tempered_posterior():
    """beta multiplies (log q - log prior); the optimum is p(z) p(x|z)^(1/beta), normalised."""
    beta = 4.0
    r = fit(ppl.VI(guide="full_rank", objective=ppl.ELBO(beta=beta, num_particles=4), num_steps=5000))
    m4, c4 = lg.posterior(*CONST, beta=beta)
    L = r.params["auto_scale_tril"]
    np.testing.assert_allclose(r.params["auto_loc"], m4, atol=0.1 * np.sqrt(np.diag(c4)).min())
    assert np.all(np.abs(L @ L.T - c4) < 0.01 + 0.08 * np.abs(c4)), (L @ L.T, c4)
    assert np.all(np.diag(c4) > 1.5 * np.diag(COV))  # wider than the posterior, as documented
    # log_evidence is still the beta = 1 ELBO: a bound, below log p(x).
    assert r.log_evidence <= LOG_P + 3 * r.diagnostics["log_evidence_se"]


def test_beta_zero_collapses_to_maximum_likelihood():
    r = fit(ppl.VI(guide="mean_field", objective=ppl.ELBO(beta=0.0), num_steps=5000))
    A, b, x = (np.asarray(DATA[k], np.float64) for k in ("A", "b", "x"))
    mle = np.linalg.solve(A.T @ A, A.T @ (x - b).mean(0))
    np.testing.assert_allclose(r.params["auto_loc"], mle, atol=0.02)
    assert np.all(r.params["auto_scale"] < 0.05 * SD)  # the beta=1 optimum is ~0.4 SD


def test_same_key_same_result_and_other_key_differs(mean_field):
    again = fit(MEAN_FIELD, key=0)  # cached program: no recompilation
    assert again.timing["compile_s"] < mean_field.timing["compile_s"]
    np.testing.assert_array_equal(again.samples["z"], mean_field.samples["z"])
    np.testing.assert_array_equal(again.diagnostics["loss"], mean_field.diagnostics["loss"])
    assert again.log_evidence == mean_field.log_evidence
    other = fit(MEAN_FIELD, key=1)
    assert not np.array_equal(other.samples["z"], mean_field.samples["z"])


def test_result_fields(mean_field):
    r = mean_field
    assert r.diagnostics["loss"].shape == (5000,)
    assert r.diagnostics["num_nonfinite_steps"] == 0
    assert r.diagnostics["loss"][-100:].mean() < r.diagnostics["loss"][:100].mean()
    assert set(r.params) == {"auto_loc", "auto_scale"}
    assert r.summary().shape[0] == 2
    assert r.to_arviz().posterior["z"].shape == (1, 1000, 2)
