"""Logistic regression: y[i] ~ Bernoulli(logit^-1(alpha + X[i] . beta)), i = 1..n,
alpha ~ N(0, s), beta[d] ~ N(0, s) (s = `prior_scale`).

No closed form; the data are simulated from known `truth`, and the MAP satisfies
X_1'(y - p) = w / s^2 (X_1 = [1, X], w = (alpha, beta)), checked by `map_gradient`.
"""
from __future__ import annotations

import numpy as np
from scipy import special

import ppl
from ppl import dist

NAME = "logistic_regression"
PRIOR_SCALE = 2.5


def model(X, y=None, prior_scale=PRIOR_SCALE):
    """`X` (n, d) design without intercept column; `y` 0/1 (None simulates)."""
    n, d = X.shape
    alpha = ppl.sample("alpha", dist.Normal(0.0, prior_scale))
    beta = ppl.sample("beta", dist.Normal(0.0, prior_scale).expand([d]).to_event(1))
    with ppl.plate("data", n):
        ppl.observe("y", dist.Bernoulli(logits=alpha + X @ beta), y)


def simulate(n: int = 500, d: int = 5, seed: int = 0):
    """(X, y, truth) with X ~ N(0, 1), beta ~ N(0, 1/d) (logits of order 1), alpha = -0.5."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    truth = {"alpha": -0.5, "beta": rng.standard_normal(d) / np.sqrt(d)}
    p = special.expit(truth["alpha"] + X @ truth["beta"])
    y = (rng.random(n) < p).astype(np.float64)
    return X, y, truth


def load(n: int = 500, d: int = 5, seed: int = 0):
    """Simulated data of size n x d (the benchmark size is n=5000, d=25)."""
    X, y, _ = simulate(n, d, seed)
    return (X,), {"y": y}


def map_gradient(values: dict, X, y, prior_scale=PRIOR_SCALE) -> np.ndarray:
    """Gradient of the log joint at (alpha, beta) in float64; zero at the MAP."""
    A = np.column_stack([np.ones(len(y)), np.asarray(X, dtype=np.float64)])
    w = np.concatenate([[float(values["alpha"])], np.asarray(values["beta"], dtype=np.float64).ravel()])
    return A.T @ (np.asarray(y) - special.expit(A @ w)) - w / prior_scale**2
