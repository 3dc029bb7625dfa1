"""Compilation: inspect a model once, then evaluate it as a pure function of a flat vector."""
