"""Shared fixtures for the zoo tests: one MAP run per model, reused by every test that needs it
(XLA compilation dominates the cost of these tests)."""
import warnings

import pytest

import ppl
from models import ZOO


@pytest.fixture(scope="session")
def zoo_map():
    """`zoo_map(name)` -> `ppl.infer(model, *load(), method="map", key=0)`, computed once."""
    cache = {}

    def get(name):
        if name not in cache:
            m = ZOO[name]
            args, kwargs = m.load()
            with warnings.catch_warnings():
                # eight_schools_centered has no mode (the density grows without bound as
                # tau -> 0 with theta = mu); the smoke test only asks that MAP runs.
                warnings.simplefilter("ignore")
                cache[name] = ppl.infer(m.model, *args, method="map", key=0, **kwargs)
        return cache[name]

    return get
