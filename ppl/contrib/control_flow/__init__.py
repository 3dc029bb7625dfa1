"""NumPyro's import path for `scan`: `from ppl.contrib.control_flow import scan` (`ppl.scan`)."""
from ppl.model.scan import scan

__all__ = ["scan"]
