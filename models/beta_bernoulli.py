"""Beta-Bernoulli coin: p ~ Beta(alpha, beta), y[i] ~ Bernoulli(p), i = 1..n.

Conjugate: p | y ~ Beta(alpha + k, beta + n - k) with k = sum(y), and
p(y) = B(alpha + k, beta + n - k) / B(alpha, beta) (Gelman et al., BDA3 §2.4).
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats

import ppl
from ppl import dist

NAME = "beta_bernoulli"
ALPHA, BETA = 2.0, 2.0
TRUE_P = 0.3


def model(n, y=None, alpha=ALPHA, beta=BETA):
    """`n` flips (static int); `y` the 0/1 outcomes (None simulates them)."""
    p = ppl.sample("p", dist.Beta(alpha, beta))
    with ppl.plate("flips", n):
        ppl.observe("y", dist.Bernoulli(probs=p), y)


def load(n: int = 50, seed: int = 0):
    """`n` flips of a coin with p = 0.3, from numpy seed `seed`."""
    y = (np.random.default_rng(seed).random(n) < TRUE_P).astype(np.float64)
    return (n,), {"y": y}


def _counts(n, y):
    k = float(np.sum(y))
    return k, n - k


def exact_posterior(n, y, alpha=ALPHA, beta=BETA) -> dict:
    """Site -> exact posterior as a frozen scipy distribution (`.mean()`, `.std()`, ...)."""
    k, f = _counts(n, y)
    return {"p": stats.beta(alpha + k, beta + f)}


def exact_mode(n, y, alpha=ALPHA, beta=BETA) -> dict:
    """Site -> posterior mode (the MAP of the constrained parameter)."""
    k, f = _counts(n, y)
    return {"p": (alpha + k - 1.0) / (alpha + beta + n - 2.0)}


def exact_log_evidence(n, y, alpha=ALPHA, beta=BETA) -> float:
    """log p(y) = log B(alpha + k, beta + n - k) - log B(alpha, beta)."""
    k, f = _counts(n, y)
    return float(special.betaln(alpha + k, beta + f) - special.betaln(alpha, beta))
