"""Reference models by MAP, where the mode says something about the posterior mean.

For (nearly) Gaussian posteriors of location parameters -- regression coefficients under flat or
weak priors, whose conditional posterior given sigma is normal and symmetric about a centre that
does not depend on sigma; mixture and HMM means with n = 100..1000 -- the joint mode lies within
O(n^-1/2) posterior sd of the mean: we ask |MAP - reference mean| < 0.1 reference sd (the reference
mean itself has Monte Carlo error 0.01 sd). Scale parameters have their mode below their mean
(sigma_mode^2 = RSS / n while E[sigma^2] = RSS / (n - p - 2)): we ask the MAP to lie within
0.75 sd below the mean. Skipped: eight schools (no interior mode: tau -> 0) and gp_regr (skewed).
"""
import pytest

from models import ZOO
from models import _reference as ref

LOCATION = {
    "sblri_blr": [f"beta[{i}]" for i in range(1, 6)],
    "nes2000_nes": [f"beta[{i}]" for i in range(1, 10)],
    "ark": ["alpha"] + [f"beta[{i}]" for i in range(1, 6)],
    "low_dim_gauss_mix": ["mu[1]", "mu[2]", "theta"],
    "hmm_example": ["mu[1]", "mu[2]"],
    "kidiq_kidscore_momiq": ["beta[1]", "beta[2]"],
}
SCALE = {
    "sblri_blr": ["sigma"], "nes2000_nes": ["sigma"], "ark": ["sigma"],
    "low_dim_gauss_mix": ["sigma[1]", "sigma[2]"], "kidiq_kidscore_momiq": ["sigma"],
}
# kidiq (uncentred, ill-conditioned) guards the fix of a float32 L-BFGS stall that stopped
# ~11 nats short of the optimum and still reported convergence.
@pytest.mark.parametrize("name", list(LOCATION))
def test_map_near_reference_mean(name, zoo_map):
    m = ZOO[name]
    result = zoo_map(name)
    assert result.diagnostics["converged"], result.diagnostics["grad_norm"]
    table = ref.compare(m.to_reference(result.samples), m.REFERENCE)
    assert (table.loc[LOCATION[name], "z"] < 0.1).all(), table
    scale = table.loc[SCALE.get(name, [])]
    assert ((scale["mean"] < scale["ref_mean"]) & (scale["z"] < 0.75)).all(), table
