"""Conjugate models against their closed forms: importance sampling (posterior mean, sd and
log evidence), MAP (the posterior mode), and the closed forms themselves by quadrature."""
import numpy as np
import pytest
from scipy import integrate, stats

import ppl
from models import CONJUGATE_MODELS, ZOO

# Each model's single latent, the prior and likelihood for quadrature, and the integration range.
SITE = {"beta_bernoulli": "p", "normal_normal": "mu", "gamma_poisson": "lam"}
NUM_PARTICLES = 10_000


def _log_joint_scalar(name, x, args, kwargs):
    """log p(x) + log p(y | x) for the scalar latent x, from scipy (independent of ppl)."""
    m, y, n = ZOO[name], kwargs["y"], args[0]
    if name == "beta_bernoulli":
        return stats.beta.logpdf(x, m.ALPHA, m.BETA) + stats.bernoulli.logpmf(y, x).sum()
    if name == "normal_normal":
        return stats.norm.logpdf(x, m.MU0, m.TAU0) + stats.norm.logpdf(y, x, m.SIGMA).sum()
    assert len(y) == n
    return stats.gamma.logpdf(x, m.A, scale=1 / m.B) + stats.poisson.logpmf(y, x).sum()


@pytest.mark.parametrize("name", CONJUGATE_MODELS)
def test_closed_forms_by_quadrature(name):
    # The hand-written closed forms against numerical integration of prior x likelihood
    # (quad's error estimate is far below the 1e-6 asked here).
    m = ZOO[name]
    args, kwargs = m.load()
    post = m.exact_posterior(*args, **kwargs)[SITE[name]]
    lo, hi = post.ppf(1e-12), post.ppf(1 - 1e-12)
    shift = _log_joint_scalar(name, post.mean(), args, kwargs)
    f = lambda x: np.exp(_log_joint_scalar(name, x, args, kwargs) - shift)
    z, _ = integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-10, points=[post.mean()])
    assert shift + np.log(z) == pytest.approx(m.exact_log_evidence(*args, **kwargs), abs=1e-6)
    mean, _ = integrate.quad(lambda x: x * f(x) / z, lo, hi, epsabs=0, epsrel=1e-10, points=[post.mean()])
    assert mean == pytest.approx(post.mean(), rel=1e-6)
    mode = m.exact_mode(*args, **kwargs)[SITE[name]]
    grid = np.linspace(mode - 1e-4 * post.std(), mode + 1e-4 * post.std(), 201)
    assert abs(grid[np.argmax(post.logpdf(grid))] - mode) <= 1e-6 * post.std()


@pytest.mark.parametrize("name", CONJUGATE_MODELS)
def test_importance_matches_closed_form(name):
    m, site = ZOO[name], SITE[name]
    args, kwargs = m.load()
    post = m.exact_posterior(*args, **kwargs)[site]
    r = ppl.infer(m.model, *args, method=ppl.Importance(num_particles=NUM_PARTICLES), key=0, **kwargs)
    ess = r.diagnostics["ess_weights"]
    assert ess > 500  # the prior is a reasonable proposal for these data
    w = np.exp(r.log_weights - r.log_weights.max())
    w /= w.sum()
    x = np.asarray(r.particles[site], dtype=np.float64)
    mean = float(w @ x)
    sd = float(np.sqrt(w @ (x - mean) ** 2))
    # Self-normalised IS: se(mean) ~ sd / sqrt(ESS); se(sd) / sd ~ 1 / sqrt(2 ESS) (near-normal
    # posteriors). 5 standard errors each.
    assert abs(mean - post.mean()) < 5 * post.std() / np.sqrt(ess)
    assert abs(sd / post.std() - 1) < 5 / np.sqrt(2 * ess)
    # Resampled draws add the systematic-resampling error, at most that of N more draws: x sqrt(2).
    draws = np.asarray(r.samples[site]).ravel()
    assert draws.shape == (NUM_PARTICLES,)
    assert abs(draws.mean() - post.mean()) < 5 * np.sqrt(2) * post.std() / np.sqrt(ess)
    # Log evidence: 5 delta-method standard errors, plus 1e-3 for float32 sums of the weights.
    exact = m.exact_log_evidence(*args, **kwargs)
    assert abs(r.log_evidence - exact) < 5 * r.diagnostics["log_evidence_se"] + 1e-3


@pytest.mark.parametrize("name", CONJUGATE_MODELS)
def test_map_is_posterior_mode(name, zoo_map):
    m, site = ZOO[name], SITE[name]
    args, kwargs = m.load()
    mode = m.exact_mode(*args, **kwargs)[site]
    sd = m.exact_posterior(*args, **kwargs)[site].std()
    # L-BFGS in float32: the optimum of a smooth 1-d objective to ~1e-3 posterior sd.
    assert abs(float(zoo_map(name).params[site]) - mode) < 1e-3 * sd
