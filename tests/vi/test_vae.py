"""A short VAE run on the bundled digits: amortised guide (`module`), minibatches, learned
decoder; the full ELBO vs IWAE comparison is benchmarks/bench_vi.py."""
import equinox as eqx
import numpy as np
import optax
import pytest

import ppl
from models import vae_digits as V


@pytest.fixture(scope="module")
def trained():
    data = V.load()
    model, guide = V.make(0, latent_dim=4, hidden=32)
    method = ppl.VI(guide=guide, optimizer=optax.adam(3e-3), num_steps=600, num_draws=10, num_eval_particles=10)
    r = ppl.infer(model, data.train, batch_size=100, method=method, key=0)
    return data, model, r


def test_vae_learns(trained):
    data, model, r = trained
    loss = r.diagnostics["loss"]
    assert loss.shape == (600,) and r.diagnostics["num_nonfinite_steps"] == 0
    assert loss[-50:].mean() < 0.9 * loss[:50].mean()
    assert isinstance(r.params["encoder"], eqx.Module) and isinstance(r.params["decoder"], eqx.Module)
    assert r.samples["z"].shape == (1, 10, 100, 4)  # one minibatch of codes per draw
    err, baseline = V.reconstruction_error(r, data.test, data.train)
    assert err < 0.95 * baseline, (err, baseline)


def test_vae_held_out_likelihood_beats_independent_pixels(trained):
    data, model, r = trained
    x = data.test[:50]
    ll = V.held_out_log_likelihood(model, r, x, k=50)
    p = np.clip(np.asarray(data.train).mean(0), 1e-3, 1 - 1e-3)
    xs = np.asarray(x)
    independent = (xs * np.log(p) + (1 - xs) * np.log(1 - p)).sum(1).mean()
    assert np.isfinite(ll) and ll > independent + 0.5, (ll, independent)  # MC se ~0.05
