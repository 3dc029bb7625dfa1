"""Regression models against closed forms: MLE = least squares, MAP = ridge (known and unknown
noise), the known-noise Gaussian posterior and evidence, and the logistic MAP's stationarity."""
import warnings

import numpy as np
import pytest
from scipy import special, stats

import ppl
from models import linear_regression as linreg
from models import logistic_regression as logreg


def _vector(values):
    return np.concatenate([[float(values["alpha"])], np.asarray(values["beta"], dtype=np.float64)])


def test_mle_is_least_squares():
    (X,), kw = linreg.load()
    r = ppl.infer(linreg.model, X, method="mle", key=0, **kw)
    ls = linreg.least_squares(X, **kw)
    np.testing.assert_allclose(_vector(r.params), _vector(ls), rtol=1e-3, atol=1e-4)
    assert float(r.params["sigma"]) == pytest.approx(ls["sigma"], rel=1e-3)
    # and agrees with numpy's solver (least_squares is built on it, with the intercept column)
    w = np.linalg.lstsq(np.column_stack([np.ones(len(X)), X]), kw["y"], rcond=None)[0]
    np.testing.assert_allclose(_vector(ls), w, rtol=1e-12)


def test_map_known_noise_is_ridge():
    # A strong prior (s = 0.3, sigma = 0.7: penalty (sigma/s)^2 = 5.4 on each coefficient) makes
    # ridge differ from least squares by far more than the tolerance.
    (X,), kw = linreg.load()
    sigma, s = 0.7, 0.3
    r = ppl.infer(linreg.model, X, method="map", key=0, sigma=sigma, prior_scale=s, **kw)
    rid = _vector(linreg.ridge(X, kw["y"], sigma, s))
    assert np.max(np.abs(rid - _vector(linreg.least_squares(X, **kw)))) > 0.05
    np.testing.assert_allclose(_vector(r.params), rid, rtol=1e-3, atol=1e-4)


def test_map_unknown_noise_is_ridge_at_its_sigma(zoo_map):
    # At the joint mode, (alpha, beta) is the conditional mode given sigma: ridge with that sigma;
    # and sigma solves d/dsigma [-n log sigma - RSS / (2 sigma^2) - sigma^2 / (2 S^2)] = 0.
    (X,), kw = linreg.load()
    r = zoo_map("linear_regression")
    sig = float(r.params["sigma"])
    np.testing.assert_allclose(_vector(r.params), _vector(linreg.ridge(X, kw["y"], sig)), rtol=1e-3, atol=1e-4)
    rss = float(np.sum((kw["y"] - r.params["alpha"] - X @ np.asarray(r.params["beta"], np.float64)) ** 2))
    n = len(kw["y"])
    score = -n / sig + rss / sig**3 - sig / linreg.SIGMA_SCALE**2
    assert abs(score) < 1e-3 * n / sig


def test_known_noise_posterior_and_evidence_satisfy_bayes():
    # log p(y) = log p(y | w) + log p(w) - log p(w | y) at any w (here two points): checks
    # exact_posterior and exact_log_evidence against each other and the model's densities.
    (X,), kw = linreg.load(n=30, d=3)
    y, sigma, s = kw["y"], 0.7, 2.0
    post = linreg.exact_posterior(X, y, sigma, s)
    evidence = linreg.exact_log_evidence(X, y, sigma, s)
    rid = linreg.ridge(X, y, sigma, s)
    assert post["alpha"].mean() == pytest.approx(rid["alpha"], rel=1e-10)
    np.testing.assert_allclose(post["beta"].mean, rid["beta"], rtol=1e-10)
    for shift in (0.0, 0.1):
        a, b = rid["alpha"] + shift, rid["beta"] - shift
        lik = stats.norm.logpdf(y, a + X @ b, sigma).sum()
        prior = stats.norm.logpdf(a, 0, s) + stats.norm.logpdf(b, 0, s).sum()
        A = np.column_stack([np.ones(len(y)), X])
        cov = np.linalg.inv(A.T @ A / sigma**2 + np.eye(4) / s**2)
        mean = cov @ A.T @ y / sigma**2
        log_post = stats.multivariate_normal.logpdf(np.concatenate([[a], b]), mean, cov)
        assert lik + prior - log_post == pytest.approx(evidence, abs=1e-8)
        assert post["alpha"].logpdf(a) == pytest.approx(stats.norm.logpdf(a, mean[0], np.sqrt(cov[0, 0])), abs=1e-10)
        beta_logpdf = stats.multivariate_normal.logpdf(b, mean[1:], cov[1:, 1:])
        assert post["beta"].logpdf(b) == pytest.approx(beta_logpdf, abs=1e-10)


def test_logistic_map_is_stationary(zoo_map):
    # The MAP solves X1'(y - p) = w / s^2. The remaining Newton step H^-1 g (float64, from numpy) is
    # the distance to the exact optimum; require < 1e-3, about 1% of the posterior sds (~0.1 here).
    (X,), kw = logreg.load()
    r = zoo_map("logistic_regression")
    g = logreg.map_gradient(r.params, X, kw["y"])
    A = np.column_stack([np.ones(len(X)), X])
    p = special.expit(A @ _vector(r.params))
    H = A.T @ (A * (p * (1 - p))[:, None]) + np.eye(A.shape[1]) / logreg.PRIOR_SCALE**2
    assert np.max(np.abs(np.linalg.solve(H, g))) < 1e-3
    assert np.min(np.sqrt(np.diag(np.linalg.inv(H)))) > 0.05


def test_sizes_for_benchmarks():
    for mod in (linreg, logreg):
        (X,), kw = mod.load(n=5000, d=25)
        assert X.shape == (5000, 25) and kw["y"].shape == (5000,)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ppl.compile(mod.model, X, **kw)
