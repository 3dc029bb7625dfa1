"""`from ppl.ops.indexing import Vindex`, as NumPyro's `numpyro.ops.indexing`."""
from ppl.model.indexing import Vindex, vindex

__all__ = ["Vindex", "vindex"]
