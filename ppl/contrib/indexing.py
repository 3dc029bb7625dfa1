"""`from ppl.contrib.indexing import Vindex`, as NumPyro's older `numpyro.contrib.indexing`."""
from ppl.model.indexing import Vindex, vindex

__all__ = ["Vindex", "vindex"]
