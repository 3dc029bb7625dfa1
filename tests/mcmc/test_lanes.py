"""Vectorised NUTS chains run as lanes (`ppl.mcmc.lanes`): each chain's draws are exactly
those it makes alone, whatever the schedule; the lane utilisation is reported."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.mcmc import chains, driver, lanes, nuts
from ppl.runtime import program

Y = jnp.array([28.0, 8, -3, 7, -1, 1, 18, 12])
SIGMA = jnp.array([15.0, 10, 16, 11, 9, 11, 10, 18])


def schools(sigma, y=None):  # trajectories of very different lengths (the funnel's neck)
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", dist.HalfCauchy(5.0))
    with ppl.plate("j", sigma.shape[0]):
        theta = ppl.sample("theta", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(mu + tau * theta, sigma), y)


def _run(chain_method, **options):
    method = ppl.NUTS(num_warmup=150, num_samples=60, num_chains=4, chain_method=chain_method,
                      progress_bar=False, **options)
    return ppl.infer(schools, SIGMA, y=Y, method=method, key=5)


@pytest.mark.filterwarnings("ignore")
def test_lanes_give_each_chain_the_draws_it_makes_alone(x64):
    alone = _run("sequential", thinning=2)
    batch = _run("vectorized", thinning=2)
    assert "lane_utilization" in batch.diagnostics and "lane_utilization" not in alone.diagnostics
    for name in ("mu", "tau", "theta"):
        np.testing.assert_allclose(batch.samples[name], alone.samples[name], rtol=0, atol=1e-9)
    for field in ("n_steps", "tree_depth", "diverging", "acceptance_rate"):
        np.testing.assert_allclose(batch.diagnostics["sample_stats"][field],
                                   alone.diagnostics["sample_stats"][field], atol=1e-9)
    np.testing.assert_allclose(batch.diagnostics["step_size"], alone.diagnostics["step_size"], rtol=1e-12)
    assert batch.diagnostics["num_warmup_grad_evals"] == alone.diagnostics["num_warmup_grad_evals"]


def scaled(scale):
    ppl.sample("x", dist.Normal(0.0, scale))


@pytest.mark.filterwarnings("ignore")
def test_lanes_give_the_draws_alone_where_a_lone_chain_checks_fewer_levels(x64):
    # 70 coordinates: alone, a leaf checks the fewest stack levels it needs (a branch);
    # batched, every level, in another formulation of the same sums.
    scale = jnp.linspace(0.2, 3.0, 70)
    assert 70 >= nuts.RESTRICT_MIN_DIM
    runs = [ppl.infer(scaled, scale, key=5, method=ppl.NUTS(num_warmup=100, num_samples=40, num_chains=3,
                                                            chain_method=cm, progress_bar=False))
            for cm in ("sequential", "vectorized")]
    np.testing.assert_allclose(runs[1].samples["x"], runs[0].samples["x"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(runs[1].diagnostics["sample_stats"]["n_steps"],
                                  runs[0].diagnostics["sample_stats"]["n_steps"])


@pytest.mark.filterwarnings("ignore")
def test_lanes_give_the_draws_alone_with_a_dense_mass_matrix(x64):
    alone = _run("sequential", dense_mass=True)
    batch = _run("vectorized", dense_mass=True)
    np.testing.assert_allclose(batch.samples["theta"], alone.samples["theta"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(batch.diagnostics["sample_stats"]["n_steps"],
                                  alone.diagnostics["sample_stats"]["n_steps"])


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("room", [None, 3])
def test_lanes_in_chunks_give_the_draws_of_one_chunk(x64, monkeypatch, room):
    # room: how far a lane may run ahead past a chunk's end (None: the default, more than a
    # chunk here; 3: fast lanes stop there and wait)
    whole = _run("vectorized")
    if room is not None:
        monkeypatch.setattr(chains, "MAX_AHEAD", room)
        program.clear_cache()  # the state's shapes, traced once per method, hold the room
    try:
        chunked = _run("vectorized", chunk_size=37)
    finally:
        program.clear_cache()
    np.testing.assert_allclose(chunked.samples["theta"], whole.samples["theta"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(chunked.diagnostics["sample_stats"]["n_steps"],
                                  whole.diagnostics["sample_stats"]["n_steps"])


@pytest.mark.filterwarnings("ignore")
def test_lane_utilisation_counts_the_gradient_evaluations_made():
    r = _run("vectorized")
    u = r.diagnostics["lane_utilization"]
    assert 0.0 < u <= 1.0
    # No schedule passes sum / (chains x max) of the chains' own evaluations; here the
    # schedule's loss (lanes waiting to be served, trajectories dropped at chunks' ends) is
    # small: 4 chains, one chunk.
    bound = r.diagnostics["lane_utilization_bound"]
    assert u <= bound <= 1.0 and u > 0.8 * bound
    # Every gradient evaluation is counted once: transitions' (sampling and warmup) plus the
    # step-size searches' trials, so the useful work is at least the transitions'.
    grads = r.diagnostics["num_grad_evals"] + r.diagnostics["num_warmup_grad_evals"]
    assert grads > 0


def test_the_resumable_kernel_is_the_kernel_one_step_at_a_time(x64):
    def log_density(z):
        return -0.5 * jnp.sum(z ** 2 / jnp.array([1.0, 4.0, 0.25]))

    kernel = nuts.build_kernel(max_tree_depth=6)
    state = kernel.init(jnp.array([0.3, -1.0, 0.2]), log_density)
    words = jnp.array([7, 11], jnp.uint32)
    imm = jnp.array([1.0, 2.0, 0.5])
    for trial in (False, True):
        expected = kernel(words, state, log_density, 0.4, imm, trial)
        r = kernel.resumable
        tick = jax.jit(lambda c: r.tick(c, log_density, imm))
        c = r.begin(words, state, 0.4, imm, jnp.asarray(trial))
        ticks = 0
        while not bool(r.done(c)):
            c = tick(c)
            ticks += 1
        got = r.end(c)
        assert ticks == int(expected[1].num_grad_evals)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_only_single_kernel_moves_with_a_resumable_kernel_run_as_lanes():
    assert lanes.supports(driver.single(nuts.build_kernel()))
    from ppl.mcmc import mh
    assert not lanes.supports(driver.single(mh.build_kernel()))


def test_short_reductions_keep_library_fusions_for_dots_only():
    from ppl.runtime import program

    def batched_checks(v, p):  # a batched leapfrog's reductions: over 10 coordinates
        return jnp.sum(v * p, axis=-1)

    def likelihood(x, w):  # a long reduction: over 5000 terms
        return jnp.sum(jax.nn.softplus(x @ w))

    short = jax.jit(batched_checks).lower(jnp.ones((256, 10, 10)), jnp.ones((256, 10, 10))).as_text()
    long = jax.jit(likelihood).lower(jnp.ones((5000, 25)), jnp.ones(25)).as_text()
    assert program.longest_reduction(short) == 10
    assert program.longest_reduction(long) == 5000
    avals = [jax.ShapeDtypeStruct((10,), jnp.float32)]
    key = "xla_cpu_experimental_ynn_fusion_type"
    assert program._compiler_options(avals, "cpu", None, 10)[key] == program.YNN_DOTS_ONLY
    assert key not in program._compiler_options(avals, "cpu", None, 5000)
    assert key not in program._compiler_options(avals, "cpu", None, None)  # unknown: XLA's default
    assert program._compiler_options(avals, "gpu", None, 10) == {}
    # The option is one XLA accepts, and it keeps the dots' library fusions.
    dot = jax.jit(lambda a, b: a @ b).lower(jnp.ones((256, 64)), jnp.ones((64, 64)))
    assert dot.compile(compiler_options={key: program.YNN_DOTS_ONLY}) is not None


@pytest.mark.filterwarnings("ignore")
def test_one_vectorised_chain_runs_without_lanes():
    """A single chain has no lane to wait for: it runs as the plain driver (no lane count),
    with the draws it makes run sequentially."""
    method = ppl.NUTS(num_warmup=60, num_samples=30, num_chains=1, chain_method="vectorized", progress_bar=False)
    one = ppl.infer(schools, SIGMA, y=Y, method=method, key=5)
    assert "lane_utilization" not in one.diagnostics
    alone = ppl.infer(schools, SIGMA, y=Y, key=5, method=ppl.NUTS(num_warmup=60, num_samples=30, num_chains=1,
                                                                  chain_method="sequential", progress_bar=False))
    np.testing.assert_array_equal(one.samples["theta"], alone.samples["theta"])
