"""Linear regression: y[i] ~ N(alpha + X[i] . beta, sigma), i = 1..n.

Priors alpha ~ N(0, s), beta[d] ~ N(0, s) (s = `prior_scale`) and, unless `sigma` is given
(known noise), sigma ~ Half-N(0, SIGMA_SCALE). Closed forms, with A = [1, X] and w = (alpha, beta):
- MLE: w = least squares, sigma^2 = RSS / n (`least_squares`);
- known sigma: the posterior of w is Gaussian with precision A'A / sigma^2 + I / s^2, and its
  mean and mode is the ridge solution (A'A + (sigma/s)^2 I)^-1 A'y (`ridge`, `exact_posterior`);
  marginally y ~ N(0, sigma^2 I + s^2 A A') (`exact_log_evidence`) (Bishop 2006, §3.3, §3.5).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

import ppl
from ppl import dist

NAME = "linear_regression"
PRIOR_SCALE = 10.0
SIGMA_SCALE = 5.0


def model(X, y=None, sigma=None, prior_scale=PRIOR_SCALE):
    """`X` (n, d) design without intercept column; `sigma` a float fixes the noise sd."""
    n, d = X.shape
    alpha = ppl.sample("alpha", dist.Normal(0.0, prior_scale))
    beta = ppl.sample("beta", dist.Normal(0.0, prior_scale).expand([d]).to_event(1))
    if sigma is None:
        sigma = ppl.sample("sigma", dist.HalfNormal(SIGMA_SCALE))
    with ppl.plate("data", n):
        ppl.observe("y", dist.Normal(alpha + X @ beta, sigma), y)


def simulate(n: int = 100, d: int = 5, seed: int = 0):
    """(X, y, truth) with X ~ N(0, 1), beta ~ N(0, 1), alpha = 0.5, sigma = 0.7."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    truth = {"alpha": 0.5, "beta": rng.standard_normal(d), "sigma": 0.7}
    y = truth["alpha"] + X @ truth["beta"] + truth["sigma"] * rng.standard_normal(n)
    return X, y, truth


def load(n: int = 100, d: int = 5, seed: int = 0):
    """Simulated data of size n x d (benchmarks: e.g. n=5000, d=25)."""
    X, y, _ = simulate(n, d, seed)
    return (X,), {"y": y}


def _design(X):
    X = np.asarray(X, dtype=np.float64)
    return np.column_stack([np.ones(X.shape[0]), X])


def _split(w):
    return {"alpha": float(w[0]), "beta": np.asarray(w[1:])}


def least_squares(X, y, **_) -> dict:
    """The MLE: alpha, beta by least squares and sigma = sqrt(RSS / n)."""
    A, y = _design(X), np.asarray(y, dtype=np.float64)
    w = np.linalg.lstsq(A, y, rcond=None)[0]
    rss = float(np.sum((y - A @ w) ** 2))
    return {**_split(w), "sigma": float(np.sqrt(rss / len(y)))}


def _need_sigma(sigma):
    if sigma is None:
        raise ValueError("the closed forms need the noise sd known: pass sigma=<float> (as to the model).")


def ridge(X, y, sigma, prior_scale=PRIOR_SCALE) -> dict:
    """Posterior mode (= mean) of alpha, beta for known sigma: (A'A + (sigma/s)^2 I)^-1 A'y."""
    _need_sigma(sigma)
    A, y = _design(X), np.asarray(y, dtype=np.float64)
    lam = (sigma / prior_scale) ** 2
    return _split(np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ y))


def exact_posterior(X, y, sigma, prior_scale=PRIOR_SCALE) -> dict:
    """Known sigma: site -> exact posterior (scipy normal for alpha, multivariate normal for beta)."""
    _need_sigma(sigma)
    A, y = _design(X), np.asarray(y, dtype=np.float64)
    cov = np.linalg.inv(A.T @ A / sigma**2 + np.eye(A.shape[1]) / prior_scale**2)
    mean = cov @ A.T @ y / sigma**2
    return {"alpha": stats.norm(mean[0], np.sqrt(cov[0, 0])),
            "beta": stats.multivariate_normal(mean[1:], cov[1:, 1:])}


def exact_mode(X, y, sigma, prior_scale=PRIOR_SCALE) -> dict:
    return ridge(X, y, sigma, prior_scale)


def exact_log_evidence(X, y, sigma, prior_scale=PRIOR_SCALE) -> float:
    """Known sigma: log N(y | 0, sigma^2 I + s^2 A A')."""
    _need_sigma(sigma)
    A, y = _design(X), np.asarray(y, dtype=np.float64)
    n = len(y)
    C = sigma**2 * np.eye(n) + prior_scale**2 * A @ A.T
    _, logdet = np.linalg.slogdet(C)
    return float(-0.5 * (n * np.log(2 * np.pi) + logdet + y @ np.linalg.solve(C, y)))
