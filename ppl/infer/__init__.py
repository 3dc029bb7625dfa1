"""The public entry, above every method: `infer` (`api`) and the `METHODS` registry
(`registry`)."""
