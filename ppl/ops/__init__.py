"""NumPyro's `numpyro.ops` import paths under ppl (only `indexing`)."""
