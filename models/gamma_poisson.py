"""Gamma-Poisson counts: lam ~ Gamma(a, rate=b), y[i] ~ Poisson(lam), i = 1..n.

Conjugate (BDA3 §2.6): lam | y ~ Gamma(a + S, rate = b + n), S = sum(y); the evidence is
p(y) = b^a Gamma(a + S) / (Gamma(a) (b + n)^(a + S) prod y[i]!).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

import ppl
from ppl import dist

NAME = "gamma_poisson"
A, B = 3.0, 1.0
TRUE_LAM = 4.0


def model(n, y=None, a=A, b=B):
    """`n` counts (static int); `y` None simulates them."""
    lam = ppl.sample("lam", dist.Gamma(a, b))
    with ppl.plate("data", n):
        ppl.observe("y", dist.Poisson(lam), y)


def load(n: int = 30, seed: int = 0):
    y = np.random.default_rng(seed).poisson(TRUE_LAM, n).astype(np.float64)
    return (n,), {"y": y}


def exact_posterior(n, y, a=A, b=B) -> dict:
    """Site -> exact posterior (frozen scipy gamma; scale = 1 / rate)."""
    return {"lam": stats.gamma(a + float(np.sum(y)), scale=1.0 / (b + n))}


def exact_mode(n, y, a=A, b=B) -> dict:
    return {"lam": (a + float(np.sum(y)) - 1.0) / (b + n)}


def exact_log_evidence(n, y, a=A, b=B) -> float:
    s = float(np.sum(y))
    return float(
        a * math.log(b) - special.gammaln(a) + special.gammaln(a + s)
        - (a + s) * math.log(b + n) - np.sum(special.gammaln(np.asarray(y) + 1.0))
    )
