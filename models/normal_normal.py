"""Normal mean with known variance: mu ~ N(mu0, tau0), y[i] ~ N(mu, sigma), i = 1..n, sigma known.

Conjugate (BDA3 §2.5): precision 1/tau_n^2 = 1/tau0^2 + n/sigma^2, mean
mu_n = tau_n^2 (mu0/tau0^2 + sum(y)/sigma^2). Marginally y ~ N(mu0 1, sigma^2 I + tau0^2 1 1'),
whose log density is written out in `exact_log_evidence`.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

import ppl
from ppl import dist

NAME = "normal_normal"
MU0, TAU0, SIGMA = 0.0, 2.0, 1.0
TRUE_MU = 1.0


def model(n, y=None, mu0=MU0, tau0=TAU0, sigma=SIGMA):
    """`n` observations (static int) of N(mu, sigma) with sigma known; `y` None simulates."""
    mu = ppl.sample("mu", dist.Normal(mu0, tau0))
    with ppl.plate("data", n):
        ppl.observe("y", dist.Normal(mu, sigma), y)


def load(n: int = 20, seed: int = 0):
    y = TRUE_MU + SIGMA * np.random.default_rng(seed).standard_normal(n)
    return (n,), {"y": y}


def exact_posterior(n, y, mu0=MU0, tau0=TAU0, sigma=SIGMA) -> dict:
    """Site -> exact posterior (frozen scipy normal)."""
    prec = 1.0 / tau0**2 + n / sigma**2
    mean = (mu0 / tau0**2 + float(np.sum(y)) / sigma**2) / prec
    return {"mu": stats.norm(mean, 1.0 / math.sqrt(prec))}


def exact_mode(n, y, mu0=MU0, tau0=TAU0, sigma=SIGMA) -> dict:
    return {"mu": float(exact_posterior(n, y, mu0, tau0, sigma)["mu"].mean())}


def exact_log_evidence(n, y, mu0=MU0, tau0=TAU0, sigma=SIGMA) -> float:
    """log N(y | mu0 1, sigma^2 I + tau0^2 1 1'), via the determinant lemma and Sherman-Morrison:
    -n/2 log(2 pi sigma^2) - 1/2 log(1 + n tau0^2/sigma^2)
    - 1/2 [ sum (y - ybar)^2 / sigma^2 + n (ybar - mu0)^2 / (sigma^2 + n tau0^2) ]."""
    y = np.asarray(y, dtype=np.float64)
    ybar = y.mean()
    s2, t2 = sigma**2, tau0**2
    return float(
        -0.5 * n * math.log(2 * math.pi * s2)
        - 0.5 * math.log1p(n * t2 / s2)
        - 0.5 * (np.sum((y - ybar) ** 2) / s2 + n * (ybar - mu0) ** 2 / (s2 + n * t2))
    )
