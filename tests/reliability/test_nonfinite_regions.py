"""Models whose log density is NaN or -inf in part of the space: methods give the posterior
on the rest (tolerances from Monte Carlo error), and a model with no finite point at all is an
error naming the site, pointing to `ppl.check`."""
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist

HALF_NORMAL_MEAN, HALF_NORMAL_SD = np.sqrt(2 / np.pi), np.sqrt(1 - 2 / np.pi)


def nan_below_zero():
    """N(0, 1) with the density NaN for a < 0: the posterior is the half-normal."""
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    ppl.factor("f", jnp.where(a > 0, 0.0, jnp.nan))


def test_importance_weights_the_nan_region_zero():
    r = ppl.infer(nan_below_zero, method=ppl.Importance(num_particles=20_000), key=0)
    a = np.asarray(r.samples["a"]).ravel()
    ess = r.diagnostics["ess_weights"]
    assert np.all(a > 0) and 8_000 < ess < 12_000
    assert abs(a.mean() - HALF_NORMAL_MEAN) < 5 * HALF_NORMAL_SD / np.sqrt(ess)
    # log p = log P(a > 0) = log 1/2, to Monte Carlo error (binomial sd of the fraction kept)
    assert abs(r.log_evidence - np.log(0.5)) < 5 * np.sqrt(0.25 / 20_000) / 0.5


@pytest.mark.parametrize("method", ["nuts", "mh"])
def test_samplers_stay_in_the_finite_region(method):
    options = dict(num_warmup=300, num_samples=500, num_chains=2)
    m = ppl.NUTS(**options) if method == "nuts" else ppl.MH(**options)
    r = ppl.infer(nan_below_zero, method=m, key=1)
    a = np.asarray(r.samples["a"]).ravel()
    assert np.all(a > 0)
    # 5 standard errors with a conservative ESS of 50 (MH) / 150 (NUTS) for 1000 draws
    ess = 150 if method == "nuts" else 50
    assert abs(a.mean() - HALF_NORMAL_MEAN) < 5 * HALF_NORMAL_SD / np.sqrt(ess)


def test_a_model_finite_nowhere_names_the_site_and_points_to_the_doctor():
    def hopeless(y):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(a, 1.0), y)
        ppl.factor("f", jnp.nan * a)

    with pytest.raises(ValueError, match=r"no finite starting point.*\['f'\].*Run ppl.check\(hopeless, \*args, \*\*kwargs\)"):
        ppl.infer(hopeless, jnp.array(0.3), method=ppl.NUTS(num_warmup=10, num_samples=10, num_chains=1))


def test_a_support_bound_set_by_a_latent_cuts_the_posterior():
    """y ~ Uniform(0, a): the density is -inf for a < max(y); MAP finds the mode a = max(y)."""
    def tank(y):
        a = ppl.sample("a", dist.Exponential(0.5))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Uniform(0.0, a), y)

    r = ppl.infer(tank, jnp.array([0.5, 1.3, 2.2]), method=ppl.MAP(), key=0)
    seen = {k: r.diagnostics.get(k) for k in ("final_loss", "num_steps", "converged", "grad_norm", "warnings")}
    assert 2.2 <= float(r.params["a"]) < 2.2 + 1e-2, (float(r.params["a"]), seen, r.diagnostics["loss"][-5:])
