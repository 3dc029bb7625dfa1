"""Chain groups run from threads at once (chain_method="auto", and "vectorized" as groups of
lanes, on a CPU): stress tests.

jax 0.10's CPU LAPACK kernels block a thread of XLA's pool while a batch of factorisations
runs on that same pool; two executions side by side on a 2-core CPU then waited on each other
for ever (default NUTS on a Gaussian-process model whose deterministic site takes a Cholesky
factor). These tests run many short runs of models with factorisations in the log density,
in deterministic sites, a solve against the data's one factor (the chains' groups at once, with
one BLAS thread while they run: `ppl.runtime.blas_threads`) and nowhere, with every MCMC method, from ppl's chain groups and from
several user threads at once, in a child process that must finish within its timeout.
"""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.runtime import program as _program
from ppl.runtime import chunks

CHILD = textwrap.dedent("""
    import json, sys, threading
    import jax, jax.numpy as jnp, numpy as np
    import ppl
    from ppl import dist
    from ppl.runtime import program as _program

    _program._cpu_cores = lambda: 2  # two groups of chains at once, whatever the machine
    from ppl.mcmc.chains import ChainMethod
    ChainMethod._max_width = staticmethod(lambda ld: 2)  # vectorised: groups of two, in turn

    x = jnp.arange(-10.0, 11.0, 2.0)
    k = jnp.asarray(np.array([30, 25, 20, 10, 5, 2, 8, 25, 60, 70, 40], dtype=np.int32))

    def gp(x, k=None):  # a Cholesky factor in a deterministic site (the reported hang)
        n = x.shape[0]
        rho = ppl.sample("rho", dist.Gamma(25.0, 4.0))
        alpha = ppl.sample("alpha", dist.HalfNormal(2.0))
        with ppl.plate("latent", n):
            f_tilde = ppl.sample("f_tilde", dist.Normal(0.0, 1.0))
        K = alpha**2 * jnp.exp(-0.5 * (x[:, None] - x[None, :])**2 / rho**2) + 1e-3 * jnp.eye(n)
        f = ppl.deterministic("f", jnp.linalg.cholesky(K) @ f_tilde)
        with ppl.plate("obs", n):
            ppl.observe("k", dist.Poisson(jnp.exp(f)), k)

    y = jnp.array(np.random.default_rng(0).normal(size=(20, 3)))

    def mvn(y):  # factorisations in the log density itself (batched under vmap)
        scale = ppl.sample("scale", dist.HalfNormal(2.0).expand([3]).to_event(1))
        corr = ppl.sample("corr", dist.LKJCholesky(3, 2.0))
        cov_chol = scale[:, None] * corr
        cov = cov_chol @ cov_chol.T + 1e-3 * jnp.eye(3)
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.MultivariateNormal(jnp.zeros(3), covariance_matrix=cov), y)

    def normal(y):  # no factorisation: the groups run at once
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, 1.0), y)

    cov = jnp.asarray(0.5 ** np.abs(np.subtract.outer(np.arange(3), np.arange(3))))

    def shared(y, cov):  # a solve against the data's factor: one LAPACK call for every chain
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0).expand([3]).to_event(1))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.MultivariateNormal(mu, covariance_matrix=cov), y)

    from ppl.runtime import blas_threads
    _ = jnp.linalg.cholesky(jnp.eye(2)).block_until_ready()  # jaxlib's BLAS loaded
    threads_before = blas_threads.blas_threads()
    cases = [(gp, (x,), {"k": k}), (mvn, (y,), {}), (normal, (jnp.array([0.3, -0.2, 1.1]),), {}),
             (shared, (y, cov), {})]
    # Enough draws that the factorisations of a group's draws are one batch large enough for
    # jaxlib to split it over the pool (2 x 1000 Cholesky factors of 11 x 11 matrices hung
    # the first MH run, without the fix, every time it was tried; 2 x 200 never did).
    methods = [ppl.NUTS(num_warmup=100, num_samples=500, num_chains=4, max_tree_depth=4),
               ppl.HMC(num_warmup=100, num_samples=1000, num_chains=4, num_steps=4),
               ppl.MH(num_warmup=200, num_samples=1000, num_chains=4),
               # vectorised NUTS: two groups of lanes at once (one, where the gradient factorises
               # a batch of matrices; two, where it solves against the data's one factor)
               ppl.NUTS(num_warmup=100, num_samples=500, num_chains=4, max_tree_depth=4, chain_method="vectorized"),
               # and eight as four groups of two lanes, taken in turn by two threads
               ppl.NUTS(num_warmup=100, num_samples=500, num_chains=8, max_tree_depth=4, chain_method="vectorized")]
    repeats = int(sys.argv[1])
    first, runs = {}, 0
    for model, args, kwargs in cases:
        for m in methods:
            for r in range(repeats):
                out = ppl.infer(model, *args, method=m, key=r % 2, **kwargs)
                name = f"{model.__name__}/{m.name}/{m.chain_method}/{m.num_chains}/{r % 2}"
                draws = np.asarray(out.samples[out.log_density.spec.latents[0].name])
                if name in first:
                    assert np.array_equal(first[name], draws), name  # one layout: the same draws
                first[name] = draws
                runs += 1

    # Users' threads: several ppl.infer calls at once, each with its own chain groups.
    results, errors = {}, []
    def user(i):
        try:
            model, args, kwargs = cases[i % len(cases)]
            out = ppl.infer(model, *args, method=methods[0], key=0, **kwargs)
            results[i] = np.asarray(out.samples[out.log_density.spec.latents[0].name]).tolist()
        except BaseException as e:
            errors.append(repr(e))
    threads = [threading.Thread(target=user, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    for i in range(6):
        model = cases[i % len(cases)][0]
        assert np.array_equal(np.asarray(results[i]), first[f"{model.__name__}/nuts/auto/4/0"]), i
    assert blas_threads.blas_threads() == threads_before  # the BLAS limit lifted after the runs
    print(json.dumps({"runs": runs + len(results)}))
""")


@pytest.mark.timeout(400)
@pytest.mark.parametrize("repeats", [2, pytest.param(8, marks=pytest.mark.slow)])
def test_chain_groups_and_user_threads_never_hang(repeats):
    """Every (model, method) run `repeats` times from the chain groups' threads, then six user
    threads at once (the default suite runs each twice; the slow one eight times)."""
    env = dict(os.environ, PYTHONPATH=os.getcwd(), PPL_COMPILE_CACHE="0")
    try:
        out = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CHILD, str(repeats)], env=env,
                             capture_output=True, text=True, timeout=360)
    except subprocess.TimeoutExpired as e:  # a hang: fail with what the child printed
        pytest.fail(f"the concurrent runs did not finish in 360 s (a deadlock?):\n{(e.stderr or '')[-3000:]}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["runs"] == 4 * 5 * repeats + 6


def test_batched_factorisations_are_found_in_a_program():
    chol = lambda a: jnp.linalg.cholesky(a)  # noqa: E731
    text = lambda f, *a: jax.jit(f).lower(*a).as_text()  # noqa: E731
    assert not _program.blocks_the_pool(text(chol, jnp.eye(3)))
    assert not _program.blocks_the_pool(text(jax.vmap(chol), jnp.ones((1, 3, 3))))
    assert _program.blocks_the_pool(text(jax.vmap(chol), jnp.ones((4, 3, 3))))
    assert _program.blocks_the_pool(text(jax.vmap(jnp.linalg.eigh), jnp.ones((2, 3, 3))))
    assert _program.blocks_the_pool(text(jax.vmap(jnp.linalg.solve), jnp.ones((2, 3, 3)), jnp.ones((2, 3))))
    assert not _program.blocks_the_pool(text(jnp.sin, jnp.ones(3)))
    assert not _program.blocks_the_pool(text(lambda v: jax.debug.callback(print, v), jnp.ones(3)))
    assert _program.calls_linalg(lambda a: jax.lax.cond(a.sum() > 0, lambda: jnp.linalg.slogdet(a)[1],
                                                        lambda: 0.0), jnp.eye(3))
    assert not _program.calls_linalg(lambda a: jnp.sin(a).sum(), jnp.eye(3))


def _factor_model(x):
    a = ppl.sample("a", dist.HalfNormal(1.0))
    K = a * jnp.exp(-((x[:, None] - x[None, :]) ** 2)) + jnp.eye(x.shape[0])
    ppl.deterministic("L", jnp.linalg.cholesky(K))
    ppl.observe("x", dist.Normal(0.0, a), x)


def test_a_model_with_factorisations_runs_its_groups_at_once_with_the_draws_of_one_program(monkeypatch):
    # The draws are constrained one at a time (unbatched factorisations), so the two groups'
    # program does not block the pool and runs from two threads, "auto" and "vectorized"
    # alike (the gradient takes no factorisation); their draws are those of the chains in
    # one program (on one core: one vectorised group).
    cores = {"n": 2}
    monkeypatch.setattr(_program, "_cpu_cores", lambda: cores["n"])
    seen = []
    real = chunks.run

    def spy(*args, concurrent, **kwargs):
        seen.append(concurrent)
        return real(*args, concurrent=concurrent, **kwargs)

    monkeypatch.setattr(chunks, "run", spy)
    x = jnp.linspace(-1.0, 1.0, 5)
    options = dict(num_warmup=50, num_samples=50, num_chains=4, progress_bar=False)
    grouped = ppl.infer(_factor_model, x, method=ppl.HMC(**options), key=1)
    vectorised_groups = ppl.infer(_factor_model, x, method=ppl.HMC(chain_method="vectorized", **options), key=1)
    cores["n"] = 1
    one = ppl.infer(_factor_model, x, method=ppl.HMC(chain_method="vectorized", **options), key=1)
    assert seen == [True, True, False]  # two groups at once (twice); then one vectorised group
    np.testing.assert_array_equal(grouped.samples["L"], one.samples["L"])
    np.testing.assert_array_equal(vectorised_groups.samples["L"], one.samples["L"])


def _factor_gradient_model(x):  # a factorisation in the gradient: batched, it blocks the pool
    a = ppl.sample("a", dist.HalfNormal(1.0))
    K = a * jnp.exp(-((x[:, None] - x[None, :]) ** 2)) + jnp.eye(x.shape[0])
    ppl.observe("x", dist.MultivariateNormal(jnp.zeros(x.shape[0]), covariance_matrix=K), x)


def test_vectorised_chains_split_into_groups_only_without_a_factorisation_in_the_gradient(monkeypatch):
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 2)
    x = jnp.linspace(-1.0, 1.0, 5)
    method = ppl.NUTS(num_chains=4, chain_method="vectorized")
    assert method._groups(ppl.compile(_factor_model, x)) == 2
    assert method._groups(ppl.compile(_factor_gradient_model, x)) == 1
    assert ppl.ChEES(num_chains=4)._groups(ppl.compile(_factor_model, x)) == 1  # pooled warmup


def _data_factor_model(x):  # a factorisation of the data alone: hoisted out of the gradient
    K = jnp.exp(-((x[:, None] - x[None, :]) ** 2)) + jnp.eye(x.shape[0])
    m = ppl.sample("m", dist.Normal(0.0, 1.0))
    ppl.observe("x", dist.Normal(m, jnp.sum(jnp.diag(jnp.linalg.cholesky(K)))), x)


def _plain_model(x):
    m = ppl.sample("m", dist.Normal(0.0, 1.0))
    ppl.observe("x", dist.Normal(m, 1.0), x)


def test_the_factorisation_check_traces_the_gradient_only_where_the_log_density_has_one(monkeypatch):
    """A model without a factorisation anywhere is told apart by one trace of its log density
    (hoisting its data-only terms and tracing its gradient cost 0.3 s of a first call); one
    whose only factorisation is of the data has it hoisted out of the gradient: its groups
    run at once."""
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 2)
    x = jnp.linspace(-1.0, 1.0, 5)
    method = ppl.NUTS(num_chains=4, chain_method="vectorized")
    hoisted = []
    real = type(method)._log_density
    monkeypatch.setattr(type(method), "_log_density", lambda self, ld, z: hoisted.append(1) or real(self, ld, z))
    assert method._groups(ppl.compile(_plain_model, x)) == 2 and not hoisted
    assert method._groups(ppl.compile(_data_factor_model, x)) == 2 and hoisted
    assert method._groups(ppl.compile(_factor_gradient_model, x)) == 1


def _shared_factor_model(x, cov):  # a solve against the data's factor: one call for all chains
    mu = ppl.sample("mu", dist.Normal(0.0, 3.0).expand([x.shape[-1]]).to_event(1))
    with ppl.plate("n", x.shape[0]):
        ppl.observe("x", dist.MultivariateNormal(mu, covariance_matrix=cov), x)


def _shared_factor_data():
    i = np.arange(4)
    cov = jnp.asarray(0.6 ** np.abs(i[:, None] - i[None]))
    x = jnp.asarray(np.random.default_rng(3).multivariate_normal(np.zeros(4), np.asarray(cov), size=6))
    return x, cov


def test_a_solve_against_the_datas_factor_runs_vectorised_groups_at_once_with_the_draws_of_one(monkeypatch):
    """The gradient solves against the covariance's Cholesky factor (hoisted: the data's):
    batched over chains that is ONE LAPACK call, which does not block XLA's pool, so the
    vectorised chains split into groups that run at once, with one BLAS thread while they do;
    their draws are those of one group (one core), which leaves BLAS as it is."""
    from ppl.runtime import blas_threads

    cores = {"n": 2}
    monkeypatch.setattr(_program, "_cpu_cores", lambda: cores["n"])
    x, cov = _shared_factor_data()
    method = ppl.NUTS(num_warmup=60, num_samples=40, num_chains=4, chain_method="vectorized", progress_bar=False)
    assert method._groups(ppl.compile(_shared_factor_model, x, cov)) == 2
    assert method._groups(ppl.compile(_factor_gradient_model, jnp.linspace(-1.0, 1.0, 5))) == 1
    limits = []
    real = blas_threads._set_limit
    monkeypatch.setattr(blas_threads, "_set_limit", lambda: limits.append(1) or real())
    before = blas_threads.blas_threads()
    two = ppl.infer(_shared_factor_model, x, cov, method=method, key=4)
    assert limits == [1]  # set once, when the second group began, and held to the run's end
    assert blas_threads.blas_threads() == before  # then lifted
    cores["n"] = 1
    one = ppl.infer(_shared_factor_model, x, cov, method=method, key=4)
    assert limits == [1]  # one program at a time: BLAS left as it is
    np.testing.assert_array_equal(two.samples["mu"], one.samples["mu"])


def test_one_blas_thread_while_two_lapack_executions_are_in_flight_held_through_a_run():
    from ppl.runtime import blas_threads

    _ = jnp.linalg.cholesky(jnp.eye(2)).block_until_ready()  # jaxlib's BLAS loaded
    before = blas_threads.blas_threads()
    if not before:
        pytest.skip("no BLAS library that threadpoolctl can steer")
    with blas_threads.lapack_execution():
        assert blas_threads.blas_threads() == before  # alone: left as it is
        with blas_threads.lapack_execution():  # a second group (or user thread) at once
            assert set(blas_threads.blas_threads()) == {1}
        assert set(blas_threads.blas_threads()) == {1}  # the first is still running
    assert blas_threads.blas_threads() == before
    with blas_threads.run_scope():  # a run's chunks: the limit is kept between them
        with blas_threads.lapack_execution(), blas_threads.lapack_execution():
            pass
        assert set(blas_threads.blas_threads()) == {1}
        with blas_threads.lapack_execution():
            assert set(blas_threads.blas_threads()) == {1}
    assert blas_threads.blas_threads() == before
