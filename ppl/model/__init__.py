"""Modelling language: primitives, sites and effect handlers."""
