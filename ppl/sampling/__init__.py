"""Sampling methods that need no Markov chain: importance and rejection sampling."""
