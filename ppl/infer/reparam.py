"""NumPyro's import path for reparameterisers: `from ppl.infer.reparam import LocScaleReparam`.

The handler that applies them is `ppl.handlers.reparam` (`ppl.model.reparam`); the
reparameteriser itself lives in `ppl.model.loc_scale`.
"""
from ppl.model.loc_scale import LocScaleReparam

__all__ = ["LocScaleReparam"]
