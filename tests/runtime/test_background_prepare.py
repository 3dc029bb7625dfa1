"""A sampler's initialisation program is prepared on a thread of its own while the chunk
program is traced and compiled (`ppl.runtime.program.prepare_in_background`): a stress test
of that concurrency. Many first calls (every compiled program forgotten before each) of
several models and methods (three each), each compared with the draws of a run prepared in
one thread; errors raised while the other program compiles leave no thread behind.
"""
import threading

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.runtime import program as _program

X = jnp.linspace(-3.0, 3.0, 8)
Y = jnp.asarray(np.random.default_rng(1).normal(size=8))
K = jnp.asarray([3, 0, 2, 5, 1, 4, 2, 3], dtype=jnp.int32)


def normal(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(2.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, sigma), y)


def schools(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("j", y.shape[0]):
        theta = ppl.sample("theta", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(mu + tau * theta, 1.0), y)


def gp(x, k):  # a Cholesky factor: its programs never run beside another one
    n = x.shape[0]
    alpha = ppl.sample("alpha", dist.HalfNormal(2.0))
    with ppl.plate("latent", n):
        f_tilde = ppl.sample("f_tilde", dist.Normal(0.0, 1.0))
    cov = alpha ** 2 * jnp.exp(-0.5 * (x[:, None] - x[None, :]) ** 2) + 1e-3 * jnp.eye(n)
    f = ppl.deterministic("f", jnp.linalg.cholesky(cov) @ f_tilde)
    with ppl.plate("obs", n):
        ppl.observe("k", dist.Poisson(jnp.exp(f)), k)


def mixture(y):  # a discrete site: Gibbs
    p = ppl.sample("p", dist.Beta(1.0, 1.0))
    z = ppl.sample("z", dist.Bernoulli(p))
    ppl.observe("y", dist.Normal(3.0 * z, 1.0).expand([y.shape[0]]).to_event(1), y)


CASES = [
    (normal, (Y,), ppl.NUTS(num_warmup=100, num_samples=100, num_chains=2, progress_bar=False)),
    (schools, (Y,), ppl.HMC(num_warmup=100, num_samples=100, num_chains=4, progress_bar=False)),
    (gp, (X, K), ppl.NUTS(num_warmup=50, num_samples=50, num_chains=2, progress_bar=False)),
    (normal, (Y,), ppl.MH(num_warmup=200, num_samples=200, num_chains=2, progress_bar=False)),
    (mixture, (Y,), ppl.Gibbs(num_warmup=100, num_samples=100, num_chains=2, progress_bar=False)),
]


def _first_call(model, args, method, key):
    _program.clear_cache()
    return ppl.infer(model, *args, method=method, key=key)


@pytest.fixture
def no_disk_cache():
    _program.set_compile_cache(None)
    yield
    _program._cache_dir.clear()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{c[0].__name__}-{c[2].name}" for c in CASES])
def test_first_calls_prepared_at_once_give_the_draws_of_one_thread(case, no_disk_cache, monkeypatch):
    model, args, method = CASES[case]
    monkeypatch.setattr(_program, "BACKGROUND_PREPARE", False)
    expected = _first_call(model, args, method, 3).samples
    monkeypatch.setattr(_program, "BACKGROUND_PREPARE", True)
    for repeat in range(2):
        got = _first_call(model, args, method, 3)
        assert got.timing["compile_source"] == "compiled"
        for name, value in expected.items():
            np.testing.assert_array_equal(np.asarray(got.samples[name]), np.asarray(value),
                                          err_msg=f"repeat {repeat}, site {name}")


def test_an_error_while_the_initialisation_compiles_leaves_no_thread(no_disk_cache):
    def broken(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(mu, 1.0), y)

    calls = []

    def move_that_fails(self, ld, log_density):
        if threading.current_thread() is threading.main_thread():
            calls.append("main")  # the first: the state's shapes; the second: the chunk program
        if len(calls) == 2:
            raise RuntimeError("the chunk program failed to trace")
        return original(self, ld, log_density)

    original = ppl.NUTS._move
    ppl.NUTS._move = move_that_fails
    try:
        with pytest.raises(RuntimeError, match="chunk program failed"):
            _first_call(broken, (Y,), ppl.NUTS(num_warmup=10, num_samples=10, num_chains=1, progress_bar=False), 0)
    finally:
        ppl.NUTS._move = original
    assert len(calls) == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("ppl-prepare")]
