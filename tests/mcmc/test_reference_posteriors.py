"""Every reference posterior with NUTS at default settings (slow: deselected in CI).

Pass rule (Stan's benchmark rule, issue 3): for every reference scalar,
|mean - reference mean| / reference sd < 0.25 and sd within 20% of the reference sd. With
4 x 1000 draws and ESS of several hundred or more, the Monte Carlo error of the mean is
about sd / sqrt(ESS) < 0.05 sd, so 0.25 sd leaves five standard errors of room, and the sd's
relative Monte Carlo error is about 1 / sqrt(2 ESS) < 5%, so 20% leaves four.
The centred eight schools is a funnel: its divergences must be reported (counted and warned).
"""
import warnings

import numpy as np
import pytest

import ppl
from models import REFERENCE_MODELS, ZOO
from models._reference import compare

pytestmark = pytest.mark.slow

CAN_FALL_SHORT = {"eight_schools_centered"}


def _outside_the_rule(m, samples):
    table = compare(m.to_reference(samples), m.REFERENCE)
    return table[(table.z >= 0.25) | (np.abs(table.sd_ratio - 1) > 0.2)]


@pytest.mark.parametrize("name", [n for n in REFERENCE_MODELS if n not in CAN_FALL_SHORT])
def test_nuts_matches_reference(name):
    """Right, or says it is not: the four chains pass the rule, or ONE chain sits apart (a
    local mode) and the run names it (``diagnostics["outlier_chain"]``, and the warning)
    while the other three pass the rule. Measured on low_dim_gauss_mix (16 chains, keys 0-3):
    1 of 64 ppl chains ends warmup in a local mode (both means at -2.3 under the ordering,
    one component 4 wide), key 0's chain 2; NumPyro's NUTS on the same model 0 of 32."""
    m = ZOO[name]
    args, kwargs = m.load()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = ppl.infer(m.model, *args, method="nuts", key=0, **kwargs)
    bad = _outside_the_rule(m, r.samples)
    odd = r.diagnostics["outlier_chain"]
    if bad.empty or odd is None:
        assert bad.empty, f"{name}: outside the pass rule\n{bad}"
        return
    assert any(f"chain {odd} disagrees with the others" in str(w.message) for w in caught)
    rest = {k: np.delete(np.asarray(v), odd, axis=0) for k, v in r.samples.items()}
    bad = _outside_the_rule(m, rest)
    assert bad.empty, f"{name}: without chain {odd}, outside the pass rule\n{bad}"


def test_centred_eight_schools_reports_divergences():
    m = ZOO["eight_schools_centered"]
    args, kwargs = m.load()
    with pytest.warns(UserWarning, match="divergent"):
        r = ppl.infer(m.model, *args, method="nuts", key=0, **kwargs)
    assert r.diagnostics["divergences"] > 0
    assert r.to_arviz().sample_stats["diverging"].values.sum() == r.diagnostics["divergences"]
