"""Benchmarks of ppl against NumPyro: see README and `python -m benchmarks --help`.

Every compile time measured here is a cold compile: ppl's disk compile cache is switched
off for benchmark runs (bench_mcmc measures a warm disk cache separately, in a directory of
its own).
"""
from ppl.runtime import program as _ppl_program

_ppl_program.set_compile_cache(None)
