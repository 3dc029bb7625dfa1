"""Inference: the method registry, `infer`, `Result` and diagnostics."""
