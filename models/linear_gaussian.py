"""A linear-Gaussian latent model with closed-form evidence and posterior: the test bed for
variational bounds.

    z ~ N(0, s0^2 I_d),    x_n | z ~ N(A z + b, sigma^2 I_p),   n = 1..N

Everything is Gaussian, so (Bishop 2006, "Pattern recognition and machine learning", 2.3.3)

    posterior   p(z | x) = N(m, Λ^-1),  Λ = I / s0^2 + N A^T A / sigma^2,
                                        m = Λ^-1 A^T sum_n (x_n - b) / sigma^2
    evidence    log p(x) = log p(x | z) + log p(z) - log p(z | x)   at any z
    mean-field  the optimal factorised Gaussian has means m and variances 1 / Λ_ii
                (Bishop 2006, 10.1.2; Blei, Kucukelbir and McAuliffe 2017)
    beta-ELBO   for beta > 0 the optimum is the posterior with likelihood ^ (1/beta):
                Λ_β = I / s0^2 + N A^T A / (beta sigma^2), m_β = Λ_β^-1 A^T sum_n (x_n - b) / (beta sigma^2)
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import stats

import ppl
from ppl import dist


def model(A, b, sigma, s0, x=None, n: int = 10):
    """`x` of shape (n, p), or None to simulate; A (p, d), b (p,), sigma and s0 scalars."""
    d = A.shape[1]
    z = ppl.sample("z", dist.Normal(jnp.zeros(d), s0).to_event(1))
    mean = A @ z + b
    with ppl.plate("obs", n if x is None else x.shape[0]):
        ppl.observe("x", dist.Normal(mean, sigma).to_event(1), x)


def simulate(seed: int = 0, d: int = 3, p: int = 2, n: int = 10, sigma: float = 1.0, s0: float = 1.0):
    """Data and constants: dict(A, b, sigma, s0, x, z_true), float32 arrays."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(p, d))
    b = rng.normal(size=p)
    z = rng.normal(size=d) * s0
    x = A @ z + b + sigma * rng.normal(size=(n, p))
    f = lambda v: jnp.asarray(v, jnp.float32)
    return dict(A=f(A), b=f(b), sigma=f(sigma), s0=f(s0), x=f(x), z_true=f(z))


def _np(*vs):
    return [np.asarray(v, np.float64) for v in vs]


def posterior(A, b, sigma, s0, x, beta: float = 1.0):
    """Mean and covariance of p(z | x) (of the beta-tempered posterior for beta != 1)."""
    A, b, sigma, s0, x = _np(A, b, sigma, s0, x)
    prec = np.eye(A.shape[1]) / s0**2 + x.shape[0] * A.T @ A / (beta * sigma**2)
    cov = np.linalg.inv(prec)
    mean = cov @ A.T @ (x - b).sum(0) / (beta * sigma**2)
    return mean, cov


def mean_field_optimum(A, b, sigma, s0, x):
    """Means and variances of the optimal fully factorised Gaussian (reverse KL)."""
    mean, cov = posterior(A, b, sigma, s0, x)
    return mean, 1.0 / np.diag(np.linalg.inv(cov))


def log_evidence(A, b, sigma, s0, x):
    """log p(x), exactly."""
    A, b, sigma, s0, x = _np(A, b, sigma, s0, x)
    mean, cov = posterior(A, b, sigma, s0, x)
    lik = stats.norm(A @ mean + b, sigma).logpdf(x).sum()
    prior = stats.norm(0, s0).logpdf(mean).sum()
    return float(lik + prior - stats.multivariate_normal(mean, cov).logpdf(mean))


def args(data):
    """(args, kwargs) for `ppl.infer(model, *args, **kwargs)`."""
    return (data["A"], data["b"], data["sigma"], data["s0"]), {"x": data["x"]}
