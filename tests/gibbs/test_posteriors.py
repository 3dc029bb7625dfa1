"""Gibbs against exact answers. Tolerances are stated in Monte Carlo standard errors
(sd / sqrt(ESS) from the run's own diagnostics); keys are fixed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from models import bayes_net, gmm, hmm, random_graph, sbm


def _mcse(r, site):
    x = np.asarray(r.samples[site], float)
    ess = np.asarray(r.diagnostics["ess"][site], float)
    return x.reshape((-1,) + x.shape[2:]).std(0) / np.sqrt(ess)


@pytest.mark.parametrize("max_joint_states", [1024, 1])
def test_bayes_net_marginals_equal_exact_enumeration(max_joint_states):
    args, kwargs = bayes_net.load()
    g = ppl.Gibbs(num_warmup=50, num_samples=2000, max_joint_states=max_joint_states)
    r = ppl.infer(bayes_net.model, *args, method=g, key=0, **kwargs)
    exact, _ = bayes_net.exact_posterior(1)
    for name in bayes_net.LATENTS:
        assert r.samples[name].shape == (4, 2000)
        assert abs(r.samples[name].mean() - exact[name]) < 4.5 * _mcse(r, name), name
    assert r.log_evidence is None and set(r.summary().index) == set(bayes_net.LATENTS)


def test_mixture_assignments_with_fixed_parameters_equal_closed_form():
    rng = np.random.default_rng(1)
    weights, mu, sigma = np.array([0.5, 0.3, 0.2]), np.array([-1.0, 0.0, 1.5]), np.array([1.0, 0.7, 0.5])
    x = rng.normal(0.0, 1.5, size=40).astype(np.float32)
    r = ppl.infer(gmm.fixed_model, jnp.asarray(x), jnp.asarray(weights), jnp.asarray(mu), jnp.asarray(sigma),
                  method=ppl.Gibbs(num_warmup=0, num_samples=1500, num_chains=2), key=1)
    z = r.samples["z"].reshape(-1, 40)
    exact = gmm.assignment_probs(x.astype(float), weights, mu, sigma)
    freq = np.stack([(z == k).mean(0) for k in range(3)], 1)
    se = np.sqrt(exact * (1 - exact) / z.shape[0]) + 1e-12  # each sweep is an exact, independent draw
    assert np.max(np.abs(freq - exact) / se) < 5.0  # 120 comparisons
    assert r.to_arviz().posterior["z"].shape == (2, 1500, 40)


def test_hmm_gibbs_agrees_with_forward_algorithm_nuts():
    (y,), _ = hmm.load(8)
    gibbs = ppl.infer(hmm.model, y, method=ppl.Gibbs(num_warmup=300, num_samples=1000), key=2)
    nuts = ppl.infer(hmm.forward_model, y, method=ppl.NUTS(num_warmup=300, num_samples=1000), key=3)
    assert gibbs.diagnostics["schedule"][0].startswith("forward-filtering backward-sampling")
    for site in ("theta1", "theta2", "mu"):
        a, b = gibbs.samples[site].mean((0, 1)), nuts.samples[site].mean((0, 1))
        se = np.sqrt(_mcse(gibbs, site) ** 2 + _mcse(nuts, site) ** 2)
        assert np.all(np.abs(a - b) < 4.5 * se), (site, a, b, se)
    assert gibbs.diagnostics["divergences"] < 0.01 * 4000


@pytest.mark.filterwarnings("ignore:gibbs. r_hat")  # block labels differ between chains: expected
def test_block_model_recovers_planted_blocks():
    adj, truth = sbm.simulate(seed=3, num_nodes=20, b=[[0.8, 0.1], [0.1, 0.8]])
    # inner NUTS: with a random-walk inner kernel a chain can stay for hundreds of sweeps in
    # the one-block mode (all nodes together, the empty block's rates wandering in the prior).
    r = ppl.infer(sbm.model, jnp.asarray(adj), method=ppl.Gibbs(num_warmup=200, num_samples=100, num_chains=4),
                  key=4)
    z = r.samples["z"]
    acc = [sbm.co_assignment_accuracy(z[c, s], truth) for c in range(4) for s in range(0, 100, 10)]
    assert np.mean(acc) > 0.98


def test_user_conjugate_sampler_block_with_enumerated_missing_edges():
    (edges,), kwargs = random_graph.load(num_missing=5)

    def p_given_rest(key, v):  # Beta conditional given observed and imputed edges
        s = jnp.sum(edges) + jnp.sum(v["missing_edges"])
        m = edges.shape[0] + 5
        return {"p": jax.random.beta(key, 1.0 + s, 1.0 + m - s)}

    g = ppl.Gibbs(blocks=[("p", p_given_rest)], num_warmup=50, num_samples=2000)
    r = ppl.infer(random_graph.model, edges, method=g, key=5, **kwargs)
    assert r.diagnostics["schedule"] == [
        "user sampler p_given_rest on {p}", "enumerate missing_edges (2 values), vectorised over plate(s) ['missing']"]
    (a, b), _ = random_graph.posterior(edges)
    assert abs(r.samples["p"].mean() - a / (a + b)) < 4.5 * _mcse(r, "p")
    assert np.all(np.abs(r.samples["missing_edges"].mean((0, 1)) - a / (a + b)) < 4.5 * _mcse(r, "missing_edges"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:gibbs. r_hat")  # topic labels differ between chains: expected
def test_lda_held_out_perplexity_near_oracle():
    from models import lda

    train, test, theta, phi = lda.simulate(0)
    w = jnp.asarray(train)
    g = ppl.Gibbs(blocks=lda.conjugate_blocks(w), num_warmup=200, num_samples=200, num_chains=2)
    r = ppl.infer(lda.model, w, method=g, key=7)
    th = r.samples["theta"].reshape((-1,) + r.samples["theta"].shape[2:])
    ph = r.samples["phi"].reshape((-1,) + r.samples["phi"].shape[2:])
    assert lda.perplexity(th, ph, test) < 1.15 * lda.perplexity(theta, phi, test) < 30


def test_gibbs_with_random_walk_inner_kernel_matches_exact_enumeration():
    from itertools import product
    from math import lgamma

    y = np.array([0.9, 0.1, 1.2, -0.3, 0.7], np.float32)

    def model(y):
        p = ppl.sample("p", ppl.dist.Beta(2.0, 2.0))
        with ppl.plate("i", y.shape[0]):
            z = ppl.sample("z", ppl.dist.Bernoulli(p))
            ppl.observe("y", ppl.dist.Normal(z.astype(y.dtype), 0.5), y)

    weights, means = [], []
    for z in product([0, 1], repeat=5):  # p | z, y ~ Beta(2 + s, 2 + 5 - s)
        s = sum(z)
        log_beta = lgamma(2 + s) + lgamma(7 - s) - lgamma(9)
        weights.append(log_beta - 0.5 * np.sum(((y - np.array(z)) / 0.5) ** 2))
        means.append((2 + s) / 9)
    w = np.exp(np.array(weights) - max(weights))
    exact = float(np.dot(w / w.sum(), means))
    r = ppl.infer(model, jnp.asarray(y), method=ppl.Gibbs(num_warmup=500, num_samples=2000, inner="mh"), key=6)
    assert abs(r.samples["p"].mean() - exact) < 4.5 * _mcse(r, "p")


@pytest.mark.parametrize("inner", ["nuts", "mh"])
def test_chain_groups_do_not_change_the_draws(monkeypatch, inner, x64):
    # Chain c's keys are folded from the run key and c: running the four chains as two
    # concurrent groups (two cores) or in one program (one core) gives the same draws, in
    # float64 to rounding through a whole warmup (adaptation rounds what it feeds back).
    from ppl.runtime import program as _program

    y = jnp.array([0.9, 0.1, 1.2, -0.3, 0.7])

    def model(y):
        p = ppl.sample("p", ppl.dist.Beta(2.0, 2.0))
        with ppl.plate("i", y.shape[0]):
            z = ppl.sample("z", ppl.dist.Bernoulli(p))
            ppl.observe("y", ppl.dist.Normal(z.astype(y.dtype), 0.5), y)

    method = ppl.Gibbs(num_warmup=300, num_samples=50, num_chains=4, inner=inner, progress_bar=False)
    runs = []
    for cores in (2, 1):
        monkeypatch.setattr(_program, "_cpu_cores", lambda cores=cores: cores)
        runs.append(ppl.infer(model, y, method=method, key=3))
    for site in ("p", "z"):
        assert runs[0].samples[site].shape[:2] == (4, 50)
        np.testing.assert_allclose(runs[0].samples[site], runs[1].samples[site], rtol=0, atol=1e-6)
