"""Checkpoint draws on disk at their edges: results of earlier calls on a checkpoint that a
later call extends, and site names that netCDF refuses or misreads (``scope``'s ``a/b``)."""
import arviz as az
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.runtime.store import _within, decode, encode

Y = jnp.array([0.3, 1.2, -0.4])


def normal_mean(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


def odd_names(y):
    """Sites named as netCDF cannot store them as they are: a group path (``a/b``, as NumPyro's
    ``scope`` names them), a coordinate's name, a dimension's name (of ``x``'s axis), ``%``."""
    a = ppl.sample("a/b", dist.Normal(0.0, 1.0))
    c = ppl.sample("chain", dist.Normal(0.0, 1.0))
    x = ppl.sample("x", dist.Normal(jnp.zeros(3), 1.0))
    d = ppl.sample("x_dim_0", dist.Normal(0.0, 1.0))
    p = ppl.sample("50%", dist.Normal(0.0, 1.0))
    ppl.observe("y", dist.Normal(a + c + x.sum() + d + p, 1.0), y)


def nuts(n):
    return ppl.NUTS(num_warmup=100, num_samples=n, num_chains=2, progress_bar=False)


@pytest.mark.timeout(300)
def test_extending_a_checkpoint_leaves_the_earlier_result_as_it_was(tmp_path):
    path = tmp_path / "c"
    first = ppl.infer(normal_mean, Y, method=nuts(100), key=0, checkpoint=path)
    mu = np.asarray(first.samples["mu"])
    energy = np.asarray(first.diagnostics["sample_stats"]["energy"])
    summary = first.summary()
    longer = ppl.infer(normal_mean, Y, method=nuts(160), key=0, checkpoint=path)
    assert np.asarray(longer.samples["mu"]).shape == (2, 160)
    # the draws file now holds 160 draws per chain; the first result still reads its 100
    assert first.samples["mu"].shape == (2, 100)
    np.testing.assert_array_equal(np.asarray(first.samples["mu"]), mu)
    np.testing.assert_array_equal(mu, np.asarray(longer.samples["mu"])[:, :100])
    np.testing.assert_array_equal(np.asarray(first.diagnostics["sample_stats"]["energy"]), energy)
    # indexing: relative to its own draws (the last is draw 99, not 159)
    np.testing.assert_array_equal(first.samples["mu"][0], mu[0])
    np.testing.assert_array_equal(first.samples["mu"][:, -1], mu[:, -1])
    np.testing.assert_array_equal(first.samples["mu"][..., 90:], mu[..., 90:])
    np.testing.assert_array_equal(first.samples["mu"][:, ::-7], mu[:, ::-7])
    with pytest.raises(IndexError):
        first.samples["mu"][0, 100]
    idata = first.to_arviz()
    assert idata.posterior.sizes["draw"] == 100 and idata.sample_stats.sizes["draw"] == 100
    np.testing.assert_array_equal(idata.posterior["mu"].values, mu)
    assert first.summary().equals(summary)
    # a later call asking for fewer draws views fewer of the same file (which keeps every
    # draw on disk): the results of more still read theirs
    longer_mu = np.asarray(longer.samples["mu"])
    shorter = ppl.infer(normal_mean, Y, method=nuts(50), key=0, checkpoint=path)
    assert shorter.samples["mu"].shape == (2, 50)
    np.testing.assert_array_equal(np.asarray(shorter.samples["mu"]), mu[:, :50])
    np.testing.assert_array_equal(np.asarray(longer.samples["mu"]), longer_mu)
    assert np.asarray(longer.samples["mu"]).shape == (2, 160)
    np.testing.assert_array_equal(np.asarray(first.samples["mu"]), mu)
    assert shorter.to_arviz().posterior.sizes["draw"] == 50 and shorter.summary().shape[0] == 1


@pytest.mark.timeout(300)
def test_site_names_netcdf_refuses_are_checkpointed_and_resumed(tmp_path, x64):
    y = jnp.array(1.0)
    path = tmp_path / "c"
    whole = ppl.infer(odd_names, y, method=nuts(100), key=0)
    ran = ppl.infer(odd_names, y, method=nuts(100), key=0, checkpoint=path)
    assert list(ran.samples) == list(whole.samples)
    assert set(whole.samples) == {"a/b", "chain", "x", "x_dim_0", "50%"}
    for site in whole.samples:
        np.testing.assert_array_equal(np.asarray(ran.samples[site]), whole.samples[site])
    # the finished checkpoint returns at once, by the same names
    again = ppl.infer(odd_names, y, method=nuts(100), key=0, checkpoint=path)
    assert again.timing["run_s"] == 0.0 and list(again.samples) == list(whole.samples)
    for site in whole.samples:
        np.testing.assert_array_equal(np.asarray(again.samples[site]), whole.samples[site])
    # resumed for more draws: those of a run that made them all at once
    longer = ppl.infer(odd_names, y, method=nuts(150), key=0)
    extended = ppl.infer(odd_names, y, method=nuts(150), key=0, checkpoint=path)
    assert list(extended.samples) == list(whole.samples)
    for site in whole.samples:
        np.testing.assert_allclose(np.asarray(extended.samples[site]), longer.samples[site], rtol=0, atol=1e-9)
    # the file stays readable by ArviZ, the names encoded
    posterior = az.from_netcdf(path / "draws.nc").posterior
    assert set(posterior.data_vars) == {encode(site) for site in whole.samples}
    np.testing.assert_array_equal(posterior[encode("a/b")].values, np.asarray(extended.samples["a/b"]))


def test_encoded_names_decode_to_themselves_and_differ():
    names = ["mu", "a/b", "a%2Fb", "%", "", " a", "a ", ".", "..", "-a", "chain", "draw", "a_dim_0",
             "_dim_12", "x_dim_", "é", "a\x01b", "_a", "[x]", "scope/inner/x_dim_3", "a b", "theta.1"]
    encoded = [encode(n) for n in names]
    assert [decode(e) for e in encoded] == names
    assert len(set(encoded)) == len(names)
    assert encode("mu") == "mu" and encode("a b") == "a b" and encode("theta.1") == "theta.1"
    for e in encoded:
        assert "/" not in e and e not in ("chain", "draw", ".") and not e.endswith(("_dim_0", "_dim_12", "_dim_3"))


def test_an_index_into_fewer_draws_is_the_same_index_into_more():
    held = np.arange(2 * 10 * 3).reshape(2, 10, 3)
    mine = held[:, :7]
    for index in [0, -1, (1, 3), (1, -1), (slice(None), 2), Ellipsis, (Ellipsis, 1), (0, Ellipsis, 2),
                  (slice(None), slice(2, 100)), (slice(None), slice(-3, None)), (slice(None), slice(None, None, 2)),
                  (slice(None), slice(5, 2)), (np.int64(1), np.int64(-7)),
                  (slice(None), slice(None, None, -1)), (slice(None), [1, 2]), None]:
        within = _within(index, mine.shape)
        got = held[within] if within is not None else mine[index]
        np.testing.assert_array_equal(got, mine[index])
    for index in [(0, 7), (0, -8)]:
        with pytest.raises(IndexError):
            _within(index, mine.shape)
