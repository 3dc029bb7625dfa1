"""The NUTS/HMC/MH methods of ppl.infer: sharding, progress, errors, ArviZ export."""
import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.runtime import program as _program
from ppl.runtime import progress

FAST = dict(num_warmup=100, num_samples=100, num_chains=4, progress_bar=False)


def normal_model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


Y = jnp.array([0.3, -0.2, 1.1, 0.5])

SHARDED = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np
    import ppl
    from ppl import dist
    def model(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        sigma = ppl.sample("sigma", dist.HalfNormal(5.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, sigma), y)
    y = jnp.array(np.random.default_rng(0).normal(1.0, 2.0, 20))
    out = {"devices": jax.device_count()}
    for method in (ppl.NUTS(num_warmup=500, num_samples=200, progress_bar=False),
                   ppl.HMC(num_warmup=500, num_samples=200, progress_bar=False),
                   ppl.MH(num_warmup=500, num_samples=500, progress_bar=False)):
        r = ppl.infer(model, y, method=method, key=3)
        out[method.name] = np.asarray(r.samples["mu"]).tolist()
    print(json.dumps(out))
""")


def _start(env_flags):
    env = dict(os.environ, XLA_FLAGS=env_flags, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-c", SHARDED], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(child):
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_chains_sharded_across_devices_give_the_same_draws():
    # Chain c's key is fold_in(key, c), so splitting the chain axis over 4 devices must not
    # change a draw: in float64 the two programs' rounding differences (~1e-15) stay that
    # small, because adaptation rounds what enters its feedback loop (dual_averaging.quantize).
    children = [_start(f"--xla_force_host_platform_device_count={n}") for n in (4, 1)]  # side by side
    sharded, single = map(_result, children)
    assert sharded["devices"] == 4 and single["devices"] == 1
    for name in ("nuts", "hmc", "mh"):
        np.testing.assert_allclose(sharded[name], single[name], rtol=0, atol=1e-6, err_msg=name)


def two_parameter_model(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(5.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, sigma), y)


Y2 = np.random.default_rng(0).normal(1.0, 2.0, 20)


@pytest.mark.parametrize("method", [ppl.NUTS, ppl.HMC, ppl.MH])
def test_every_chain_layout_gives_the_same_draws_in_float64(method, x64, monkeypatch):
    # The contract: the same key gives the same draws whatever the layout. In float64 the
    # programs' rounding differences (batched and single-chain arithmetic differ in the last
    # bit) stay ~1e-15 through a full warmup: adaptation rounds the acceptance statistic and
    # the mass matrix to 20 bits, so its feedback loop cannot amplify them (it did, to O(1)).
    cores = {"n": 2}
    monkeypatch.setattr(_program, "_cpu_cores", lambda: cores["n"])  # "auto", "vectorized": two groups at once
    options = dict(num_warmup=500, num_samples=200, num_chains=4, progress_bar=False)
    runs = {m: ppl.infer(two_parameter_model, jnp.asarray(Y2), method=method(chain_method=m, **options), key=2)
            for m in ("vectorized", "sequential", "auto")}
    cores["n"] = 1  # one vectorised batch of the four chains
    runs["one batch"] = ppl.infer(two_parameter_model, jnp.asarray(Y2),
                                  method=method(chain_method="vectorized", **options), key=2)
    for m in ("sequential", "auto", "one batch"):
        for site in ("mu", "sigma"):
            np.testing.assert_allclose(runs[m].samples[site], runs["vectorized"].samples[site], rtol=0, atol=1e-6)
        np.testing.assert_allclose(runs[m].diagnostics["step_size"], runs["vectorized"].diagnostics["step_size"],
                                   rtol=1e-9)
    with pytest.raises(ValueError, match="chain_method"):
        ppl.infer(normal_model, Y, method=method(chain_method="parallel", **FAST))


@pytest.mark.parametrize("cores,chains,groups", [(2, 4, 2), (8, 4, 4), (2, 3, 1), (1, 4, 1), (4, 6, 3)])
def test_auto_chain_groups_follow_the_cpu_cores(monkeypatch, cores, chains, groups):
    monkeypatch.setattr(_program, "_cpu_cores", lambda: cores)
    assert ppl.NUTS(num_chains=chains)._groups() == groups
    assert ppl.NUTS(num_chains=chains, chain_method="sequential")._groups() == 1


@pytest.mark.parametrize("method", [ppl.NUTS, ppl.MH])
def test_concurrent_chain_groups_give_the_draws_of_one_program(monkeypatch, method):
    # Four chains as two groups of two, run at once from two threads, against the same chains
    # in one program: chain c's keys do not depend on its group, the per-chain code is the same.
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 2)
    options = dict(FAST, num_chains=4)
    grouped = ppl.infer(normal_model, Y, method=method(**options), key=5)
    single = ppl.infer(normal_model, Y, method=method(chain_method="sequential" if method is ppl.NUTS
                                                       else "vectorized", **options), key=5)
    assert grouped.samples["mu"].shape == single.samples["mu"].shape
    np.testing.assert_allclose(grouped.samples["mu"], single.samples["mu"], rtol=1e-5, atol=1e-5)
    for field in ("step_size", "num_grad_evals", "num_warmup_grad_evals"):
        np.testing.assert_allclose(grouped.diagnostics[field], single.diagnostics[field], rtol=1e-5)


@pytest.mark.parametrize("cores,chains,width,groups", [
    (2, 4096, 256, 16), (2, 1000, 256, 4), (2, 1021, 256, 1), (2, 4, 2, 2), (2, 8, 2, 4), (4, 64, 64, 4),
    (2, 600, 256, 3)])
def test_vectorised_groups_are_no_wider_than_asked(monkeypatch, cores, chains, width, groups):
    # One group per core where that is narrow enough; else the smallest divisor of the chains
    # that is, keeping groups at least a quarter of the width (1021 chains: none, one per core).
    monkeypatch.setattr(_program, "_cpu_cores", lambda: cores)
    assert _program.chain_groups(chains, width) == groups
    assert _program.chain_groups(chains) == max(g for g in range(1, min(cores, chains) + 1) if chains % g == 0)
    assert _program.chain_workers(groups) == min(groups, cores)


def test_narrow_vectorised_groups_give_the_draws_of_one_program(monkeypatch):
    # Eight vectorised chains as four groups of two (`_max_width`) taken in turn by two
    # threads, against the same chains as one batch: the same draws, step sizes and work.
    from ppl.mcmc.chains import ChainMethod

    options = dict(FAST, num_chains=8, chain_method="vectorized")
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 1)
    single = ppl.infer(normal_model, Y, method=ppl.NUTS(**options), key=3)
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 2)
    monkeypatch.setattr(ChainMethod, "_max_width", staticmethod(lambda ld: 2))
    narrow = ppl.infer(normal_model, Y, method=ppl.NUTS(**options), key=3)
    assert ppl.NUTS(**options)._groups(narrow.log_density) == 4
    np.testing.assert_allclose(narrow.samples["mu"], single.samples["mu"], rtol=1e-6, atol=1e-6)
    for field in ("step_size", "num_grad_evals", "num_warmup_grad_evals"):
        np.testing.assert_allclose(narrow.diagnostics[field], single.diagnostics[field], rtol=1e-6)
    assert 0 < narrow.diagnostics["lane_utilization"] <= 1


def test_narrow_groups_share_one_progress_bar(monkeypatch):
    # More groups than threads: one bar over the run's iterations, each group's chunk a
    # fraction of it, with the run's divergences.
    from ppl.mcmc.chains import ChainMethod

    seen = []

    class Bars(progress.Bars):
        def __init__(self, on, descriptions, totals, initial=None):
            super().__init__(False, descriptions, totals, initial)
            seen.append((descriptions, totals))

        def update(self, group, n, **postfix):
            seen.append((group, n, postfix))

    monkeypatch.setattr(progress, "Bars", Bars)
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 2)
    monkeypatch.setattr(ChainMethod, "_max_width", staticmethod(lambda ld: 2))
    ppl.infer(normal_model, Y, method=ppl.NUTS(num_warmup=100, num_samples=100, num_chains=8, progress_bar=True,
                                              chunk_size=50, chain_method="vectorized"), key=0)
    (descriptions, totals), updates = seen[0], seen[1:]
    assert len(descriptions) == 1 and "4 groups of 2 chains" in descriptions[0] and totals == [200]
    assert {g for g, _, _ in updates} == {0} and sum(n for _, n, _ in updates) == pytest.approx(200)
    assert all({"divergences", "step_size"} <= set(p) for _, _, p in updates)


def test_progress_bars_follow_each_group_between_chunks(monkeypatch):
    # No host callback: the bars are updated from Python after each chunk, one per group of
    # chains, with the divergences so far and the step size.
    seen = []

    class Bars(progress.Bars):
        def __init__(self, on, descriptions, totals, initial=None):
            super().__init__(False, descriptions, totals, initial)
            self.descriptions, self.totals = descriptions, totals

        def update(self, group, n, **postfix):
            seen.append((group, n, postfix))

    monkeypatch.setattr(progress, "Bars", Bars)
    monkeypatch.setattr(_program, "_cpu_cores", lambda: 2)
    ppl.infer(normal_model, Y, method=ppl.NUTS(num_warmup=200, num_samples=200, num_chains=4, progress_bar=True,
                                              chunk_size=50), key=0)
    for group in (0, 1):
        steps = [n for g, n, _ in seen if g == group]
        assert sum(steps) == 400 and max(steps) <= 50
    assert all({"divergences", "step_size"} <= set(p) for _, _, p in seen)


def test_progress_is_off_under_tests_by_default():
    assert not progress.enabled(None)
    assert progress.enabled(True) and not progress.enabled(False)


@pytest.mark.parametrize("method", ["nuts", "hmc", "mh"])
def test_infinite_discrete_latent_names_the_site_and_suggests_gibbs(method):
    """A finite discrete site is summed out (tests/compile/test_marginal.py); an infinite
    one cannot be, and the error names it and the way out."""
    def model():
        ppl.sample("k", dist.Poisson(3.0))

    with pytest.raises(ValueError, match=r"'k' has a Poisson.*infinite.*gibbs"):
        ppl.infer(model, method=method)


def test_to_arviz_has_sample_stats_and_log_likelihood():
    r = ppl.infer(normal_model, Y, method=ppl.NUTS(**FAST), key=0)
    idata = r.to_arviz(log_likelihood=True)
    stats = idata.sample_stats
    for name in ("diverging", "energy", "tree_depth", "step_size", "acceptance_rate"):
        assert stats[name].shape == (4, 100), name
    ll = idata.log_likelihood["y"].values
    assert ll.shape == (4, 100, 4)
    mu = np.asarray(r.samples["mu"])[..., None]
    expected = -0.5 * (np.asarray(Y) - mu) ** 2 - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(ll, expected, rtol=1e-4, atol=1e-5)
    assert r.diagnostics["divergences"] == int(stats["diverging"].values.sum())
