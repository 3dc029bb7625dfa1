"""`ppl.infer` from several Python threads at once, on a couple of models, while their
programs are traced and compiled for the first time: every run finishes, with the draws it
gives alone."""
import threading

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist


def _models():
    """Fresh model functions (new compile-cache entries), so the threads compile concurrently."""
    def normal(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, 1.0), y)

    def poisson(k):
        r = ppl.sample("r", dist.Gamma(2.0, 1.0))
        with ppl.plate("n", k.shape[0]):
            ppl.observe("k", dist.Poisson(r), k)

    return normal, poisson


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::UserWarning")  # short chains: r_hat flags are expected
def test_threads_running_infer_at_once_finish_with_the_draws_they_give_alone():
    normal, poisson = _models()
    y, k = jnp.array([0.3, -0.2, 1.1]), jnp.array([1, 4, 2, 0])
    short = dict(num_warmup=100, num_samples=100, num_chains=2)
    jobs = [
        (normal, y, ppl.NUTS(**short)),
        (normal, y, ppl.NUTS(**short)),  # the same model and method as the first, at the same time
        (poisson, k, ppl.HMC(num_steps=5, **short)),
        (poisson, k, ppl.Importance(num_particles=1000)),
    ]
    results, errors = [None] * len(jobs), []

    def run(i):
        try:
            model, data, method = jobs[i]
            results[i] = ppl.infer(model, data, method=method, key=i % 3)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not any(t.is_alive() for t in threads), "a concurrent run did not finish"
    assert not errors, errors
    for i, (model, data, method) in enumerate(jobs):
        alone = ppl.infer(model, data, method=method, key=i % 3)
        for name, draws in alone.samples.items():
            np.testing.assert_array_equal(results[i].samples[name], draws, err_msg=f"job {i}, site {name}")
