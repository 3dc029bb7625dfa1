"""Each reference model's log joint equals an independent hand-written one (numpy/scipy, from
the posterior's model.md), at reference draws and at an initial point.

We compare the constrained-space log joint `ld.log_joint(z).prior + .likelihood` (no Jacobian)
in float64, so the tolerance is float64 round-off: rtol 1e-9. Constants Stan drops are kept
consistent with NumPyro's normalised densities (half-normal/half-Cauchy include their factor 2);
the ordered-normal priors are unnormalised restrictions on both sides.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from models import REFERENCE_MODELS, ZOO
from models import _reference as ref


def normal_lik(y, loc, sd):
    return stats.norm.logpdf(y, loc, sd).sum()


def hand_sblri_blr(v, args, kw):
    (X,), y = args, kw["y"]
    prior = stats.norm.logpdf(v["beta"], 0, 10).sum() + stats.halfnorm.logpdf(v["sigma"], scale=10)
    return prior + normal_lik(y, X @ v["beta"], v["sigma"])


def hand_kidiq_kidscore_momiq(v, args, kw):
    (mom_iq,), y = args, kw["kid_score"]
    b = v["beta"]
    return stats.halfcauchy.logpdf(v["sigma"], scale=2.5) + normal_lik(y, b[0] + b[1] * mom_iq, v["sigma"])


def hand_nes2000_nes(v, args, kw):
    real_ideo, race_adj, age, educ1, gender, income = args
    b = v["beta"]
    loc = (b[0] + b[1] * real_ideo + b[2] * race_adj + b[3] * (age == 2) + b[4] * (age == 3)
           + b[5] * (age == 4) + b[6] * educ1 + b[7] * gender + b[8] * income)
    return normal_lik(kw["partyid7"], loc, v["sigma"])  # flat priors: no prior terms


def hand_eight_schools_noncentered(v, args, kw):
    (sigma,), y = args, kw["y"]
    theta = v["mu"] + v["tau"] * v["theta_trans"]
    prior = (stats.norm.logpdf(v["theta_trans"]).sum() + stats.norm.logpdf(v["mu"], 0, 5)
             + stats.halfcauchy.logpdf(v["tau"], scale=5))
    return prior + normal_lik(y, theta, sigma)


def hand_eight_schools_centered(v, args, kw):
    (sigma,), y = args, kw["y"]
    prior = (stats.norm.logpdf(v["mu"], 0, 5) + stats.halfcauchy.logpdf(v["tau"], scale=5)
             + stats.norm.logpdf(v["theta"], v["mu"], v["tau"]).sum())
    return prior + normal_lik(y, v["theta"], sigma)


def hand_ark(v, args, kw):
    K, y = args
    prior = (stats.norm.logpdf(v["alpha"], 0, 10) + stats.norm.logpdf(v["beta"], 0, 10).sum()
             + stats.halfcauchy.logpdf(v["sigma"], scale=2.5))
    lik = 0.0
    for t in range(K, len(y)):  # 0-based t = K..T-1 is Stan's t = K+1..T
        loc = v["alpha"] + sum(v["beta"][k] * y[t - k - 1] for k in range(K))
        lik += stats.norm.logpdf(y[t], loc, v["sigma"])
    return prior + lik


def hand_low_dim_gauss_mix(v, args, kw):
    (y,) = args
    mu, sigma, theta = v["mu"], v["sigma"], v["theta"]
    prior = (stats.norm.logpdf(mu, 0, 2).sum() + stats.halfnorm.logpdf(sigma, scale=2).sum()
             + stats.beta.logpdf(theta, 5, 5))
    lik = np.logaddexp(np.log(theta) + stats.norm.logpdf(y, mu[0], sigma[0]),
                       np.log1p(-theta) + stats.norm.logpdf(y, mu[1], sigma[1])).sum()
    return prior + lik


def hand_gp_regr(v, args, kw):
    (x,), y = args, kw["y"]
    rho, alpha, sigma = v["rho"], v["alpha"], v["sigma"]
    K = alpha**2 * np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * rho**2)) + sigma * np.eye(len(x))
    prior = (stats.gamma.logpdf(rho, 25, scale=1 / 4) + stats.halfnorm.logpdf(alpha, scale=2)
             + stats.halfnorm.logpdf(sigma, scale=1))
    return prior + stats.multivariate_normal.logpdf(y, np.zeros(len(x)), K)


def hand_hmm_example(v, args, kw):
    (y,) = args
    Theta = np.stack([v["theta1"], v["theta2"]])  # Theta[j, k] = P(k | j)
    mu = v["mu"]
    prior = stats.norm.logpdf(mu[0], 3, 1) + stats.norm.logpdf(mu[1], 10, 1)  # Dirichlet(1, 1) = 0
    # Scaled forward recursion on the probability scale (Rabiner 1989, eq. 91-92).
    e = stats.norm.pdf(y[:, None], mu[None, :], 1.0)
    a = e[0].copy()
    c = a.sum()
    loglik, a = np.log(c), a / c
    for t in range(1, len(y)):
        a = e[t] * (a @ Theta)
        c = a.sum()
        loglik, a = loglik + np.log(c), a / c
    return prior + loglik


HAND = {name: globals()[f"hand_{name}"] for name in REFERENCE_MODELS}


def _f64(tree):
    return {k: np.asarray(v, dtype=np.float64) for k, v in tree.items()}


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_log_joint_matches_hand_written(name):
    # Points: three reference draws (mapped to z by ld.unconstrain) and two uniform(-1.5, 1.5)
    # points in unconstrained space; everything in one jitted, vmapped call (one compilation).
    m = ZOO[name]
    args, kwargs = m.load()
    hand = HAND[name]
    draws = ref.load_draws(m.REFERENCE)
    picks = [(0, 0), (4, 50), (9, 99)]
    values = [ref.from_labels({k: v[c, d] for k, v in draws.items()}, m.REFERENCE) for c, d in picks]
    batch = {k: np.stack([v[k] for v in values]) for k in values[0]}
    with jax.enable_x64(True):
        ld = ppl.compile(m.model, *args, **kwargs)
        extra = jax.random.uniform(jax.random.PRNGKey(1), (2, ld.dim), minval=-1.5, maxval=1.5)

        def evaluate(batch, extra):
            z = jnp.concatenate([jax.vmap(ld.unconstrain)(batch), extra])
            lj = jax.vmap(ld.log_joint)(z)
            return lj.prior + lj.likelihood, jax.vmap(ld.constrain)(z)

        ours, constrained = jax.jit(evaluate)(batch, extra)
    for i, lp in enumerate(np.asarray(ours)):
        point = _f64({k: v[i] for k, v in constrained.items()})
        if i < len(picks):  # the reference draw survived the round trip through z
            for k, v in point.items():
                np.testing.assert_allclose(v, values[i][k], rtol=1e-9, atol=1e-12)
        expected = float(hand(point, args, kwargs))
        assert np.isfinite(expected)
        assert float(lp) == pytest.approx(expected, rel=1e-9, abs=1e-9), (name, i)
