"""NumPyro's `numpyro.contrib` import paths under ppl (only `control_flow.scan`)."""
