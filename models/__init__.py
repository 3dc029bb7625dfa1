"""The model zoo: one model per module, each exposing the same names.

Every module has
- `NAME` (str), the key in `ZOO`;
- `model(...)`, written with ppl primitives (observed data as keywords where the model can
  simulate them with `None`);
- `load(...) -> (args, kwargs)`, the data to call it with: `ppl.infer(m.model, *args, **kwargs)`.
  Synthetic models simulate with a fixed numpy seed and accept size arguments.
Known answers, each taking the model's own `(*args, **kwargs)`:
- conjugate models (`beta_bernoulli`, `normal_normal`, `gamma_poisson`, and
  `linear_regression` with `sigma` given): `exact_posterior` (site -> frozen scipy
  distribution), `exact_mode` (site -> MAP value), `exact_log_evidence` (float);
- `linear_regression`: `least_squares` (the MLE) and `ridge` (the MAP under the normal prior);
- reference models (`REFERENCE_MODELS`): `REFERENCE` (the posteriordb folder name) and
  `to_reference(samples) -> {label: (chains, draws)}` with the reference's 1-based labels;
  compare with `models._reference.compare(m.to_reference(r.samples), m.REFERENCE)`.
"""
from models import (
    ark,
    beta_bernoulli,
    eight_schools_centered,
    eight_schools_noncentered,
    gamma_poisson,
    gp_regr,
    hmm_example,
    kidiq_kidscore_momiq,
    linear_regression,
    logistic_regression,
    low_dim_gauss_mix,
    nes2000_nes,
    normal_normal,
    sblri_blr,
)

_ALL = (
    beta_bernoulli, normal_normal, gamma_poisson, linear_regression, logistic_regression,
    sblri_blr, kidiq_kidscore_momiq, nes2000_nes, eight_schools_noncentered, eight_schools_centered,
    ark, low_dim_gauss_mix, gp_regr, hmm_example,
)
ZOO = {m.NAME: m for m in _ALL}
REFERENCE_MODELS = tuple(m.NAME for m in _ALL if hasattr(m, "REFERENCE"))
CONJUGATE_MODELS = ("beta_bernoulli", "normal_normal", "gamma_poisson")

__all__ = ["ZOO", "REFERENCE_MODELS", "CONJUGATE_MODELS"]
