"""The compile caches: in memory within a process, on disk across processes."""
import jax
import optax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.runtime import program as _program


def model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


Y = jnp.array([0.3, -0.1, 0.8])
pytestmark = pytest.mark.filterwarnings("ignore:nuts. r_hat")

METHOD = ppl.NUTS(num_warmup=50, num_samples=50, num_chains=2, progress_bar=False)


@pytest.fixture
def cache(tmp_path):
    previous = _program.compile_cache_dir()  # the suite's own (tests/conftest.py), restored after
    _program.set_compile_cache(tmp_path)
    _program.clear_cache()
    yield tmp_path
    _program.set_compile_cache(previous)
    _program.clear_cache()


def run(method=METHOD, key=0):
    return ppl.infer(model, Y, method=method, key=key)


def test_a_new_process_loads_the_program_from_disk(cache):
    first = run()
    assert first.timing["compile_source"] == "compiled"
    # the model's inspection (ppl.compile), the chains' initialisation and their chunk program
    assert len(list(cache.glob("*.xla"))) == 3
    assert run().timing["compile_source"] == "memory"
    _program.clear_cache()  # what a new process starts with
    again = run()
    assert again.timing["compile_source"] == "disk"
    np.testing.assert_array_equal(first.samples["mu"], again.samples["mu"])


def test_a_damaged_cache_file_is_recompiled_not_an_error(cache):
    run()
    for path in cache.glob("*.xla"):
        path.write_bytes(b"not an executable")
    _program.clear_cache()
    r = run()
    assert r.timing["compile_source"] == "compiled"
    assert r.samples["mu"].shape == (2, 50)
    _program.clear_cache()
    assert run().timing["compile_source"] == "disk"  # rewritten


def test_programs_with_a_progress_bar_are_stored_like_the_rest(cache):
    # The bar is updated from Python between chunks (no host callback in the program), so
    # the program is the same with and without it, and it is kept on disk.
    r = run(ppl.NUTS(num_warmup=50, num_samples=50, num_chains=2, progress_bar=True))
    assert r.timing["compile_source"] == "compiled"
    assert list(cache.glob("*.xla"))
    _program.clear_cache()  # what a new process starts with
    r = run(ppl.NUTS(num_warmup=50, num_samples=50, num_chains=2, progress_bar=False))
    assert r.timing["compile_source"] == "disk"


def test_the_cache_keeps_its_size_bound(cache, monkeypatch):
    run()
    monkeypatch.setattr(_program, "CACHE_MAX_BYTES", 1)
    run(ppl.NUTS(num_warmup=60, num_samples=50, num_chains=2, progress_bar=False))
    assert len(list(cache.glob("*.xla"))) <= 1


def test_the_environment_variable_switches_it_off(monkeypatch, tmp_path):
    monkeypatch.setattr(_program, "_cache_dir", [])
    monkeypatch.setenv("PPL_COMPILE_CACHE", "0")
    assert _program.compile_cache_dir() is None
    monkeypatch.setattr(_program, "_cache_dir", [])
    monkeypatch.setenv("PPL_COMPILE_CACHE", str(tmp_path / "c"))
    assert _program.compile_cache_dir() == tmp_path / "c"
    monkeypatch.setattr(_program, "_cache_dir", [])
    monkeypatch.delenv("PPL_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _program.compile_cache_dir() == tmp_path / "ppl" / "executables"


def test_emitter_choice_follows_expected_work():
    """Short runs on small data compile with XLA's faster-compiling emitters and LLVM level 1
    (level 0 for a program run once);
    long runs over large data get the emitters with faster loops and full LLVM optimisation;
    every CPU program gets the memory-optimised scheduler; other platforms get no options."""
    data = [jax.ShapeDtypeStruct((5000, 25), jnp.float32), jax.ShapeDtypeStruct((5000,), jnp.float32)]
    short = ppl.NUTS(num_warmup=1000, num_samples=1000, num_chains=1)
    long = ppl.NUTS(num_warmup=1000, num_samples=20000, num_chains=4)
    legacy = {"xla_cpu_use_fusion_emitters": False}
    quick = {"xla_backend_optimization_level": 1}
    sched = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}  # every CPU program
    assert _program._compiler_options(data, "cpu", short.expected_evaluations()) == {**sched, **legacy, **quick}
    assert _program._compiler_options(data, "cpu", long.expected_evaluations()) == sched
    medium = ppl.NUTS(num_warmup=1000, num_samples=5000, num_chains=4)  # 240k x 125k elements
    assert _program._compiler_options(data, "cpu", medium.expected_evaluations()) == {**sched, **quick}
    assert _program._compiler_options(data, "gpu", short.expected_evaluations()) == {}
    # Unknown work: decided by the data size alone.
    small = [jax.ShapeDtypeStruct((100,), jnp.float32)]
    assert _program._compiler_options(small, "cpu", None) == {**sched, **legacy}
    assert _program._compiler_options(data, "cpu", None) == sched
    # A program run once (a model's inspection, a sampler's initialisation): LLVM level 0.
    once = {"xla_backend_optimization_level": 0}
    assert _program._compiler_options(data, "cpu", _program.ONE_SHOT_EVALUATIONS) == {**sched, **legacy, **once}
    assert ppl.HMC(num_steps=8, num_chains=2).expected_evaluations() == 2 * 2000 * 8
    # Point estimates: one evaluation a step, about three for L-BFGS's line search.
    assert ppl.MAP(optimizer=optax.adam(1e-2), num_steps=2000).expected_evaluations() == 2000
    assert ppl.MLE(num_steps=500).expected_evaluations() == 1500
    # VI: the particles of every step, then the final bound's particles and the draws.
    assert ppl.VI(num_steps=100, num_draws=50, num_eval_particles=200,
                  objective=ppl.ELBO(num_particles=4)).expected_evaluations() == 100 * 4 + 200 + 50
    assert ppl.Importance(num_particles=3000).expected_evaluations() == 3000


def test_gibbs_counts_its_blocks_evaluations():
    """Gibbs's expected work (for the compile choices) counts each block of its schedule:
    a NUTS block as a NUTS transition, an enumeration block by its number of values."""
    def mixture(y):
        z = ppl.sample("z", dist.Bernoulli(0.5))
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu + 2.0 * z, 1.0), y)

    from ppl.mcmc.gibbs import _GibbsProgram
    g = ppl.Gibbs(num_warmup=10, num_samples=20, num_chains=3)
    ld = ppl.compile(mixture, Y)
    program = _GibbsProgram(g, g.schedule(ld))
    assert program.expected_evaluations() == 3 * 30 * (2 + 10)


def test_an_option_this_xla_does_not_know_is_dropped_and_the_others_kept():
    """`_compile` drops only the options XLA rejects by name, and still compiles."""
    lowered = jax.jit(lambda x: jnp.sin(x) * 2.0).lower(jnp.ones(3))
    seen = []
    real = type(lowered).compile

    def spy(self, compiler_options=None):
        seen.append(dict(compiler_options or {}))
        return real(self, compiler_options=compiler_options)

    options = {"xla_backend_optimization_level": 1, "xla_cpu_no_such_option": True}
    try:
        type(lowered).compile = spy
        compiled = _program._compile(lowered, options)
    finally:
        type(lowered).compile = real
    np.testing.assert_allclose(compiled(jnp.ones(3)), 2 * np.sin(np.ones(3)), rtol=1e-6)
    assert seen[-1] == {"xla_backend_optimization_level": 1}


def test_chains_count_one_chains_state_per_evaluation():
    """A chain's log-density evaluation works over the data and its own state, not every
    chain's: 256 chains of a small model keep the faster-compiling emitters (measured: the
    newer ones cost 1-2 s of compile and saved less of the run), while large data still
    decides as before."""
    small = (jax.ShapeDtypeStruct((8,), jnp.float32), jax.ShapeDtypeStruct((8,), jnp.float32))
    large = (jax.ShapeDtypeStruct((5000, 25), jnp.float32),)
    state = (jax.ShapeDtypeStruct((256, 64, 20), jnp.float32), jax.ShapeDtypeStruct((256, 10), jnp.float32))
    chains = jax.ShapeDtypeStruct((256,), jnp.int32)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    method = ppl.NUTS(num_warmup=500, num_samples=500, num_chains=256, chain_method="vectorized")
    assert method.evaluation_elements(key, small, chains, state) == 16 + 64 * 20 + 10
    assert method.evaluation_elements(key, large, chains, state) == 125000 + 64 * 20 + 10
    every = list(jax.tree.leaves((key, small, chains, state)))
    legacy = {"xla_cpu_use_fusion_emitters": False}
    work = method.expected_evaluations()
    elements = method.evaluation_elements(key, small, chains, state)
    assert legacy.items() <= _program._compiler_options(every, "cpu", work, 10, elements).items()
    assert not legacy.items() <= _program._compiler_options(every, "cpu", work, 10).items()  # all inputs
    assert ppl.METHODS["map"]().evaluation_elements(key, small) is None  # not chains: every input
