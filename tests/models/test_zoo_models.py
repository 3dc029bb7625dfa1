"""Every zoo model: module convention, compilation, a finite log density, MAP runs; the
reference helpers (`models._reference`)."""
import jax
import numpy as np
import pytest

import ppl
from models import CONJUGATE_MODELS, REFERENCE_MODELS, ZOO
from models import _reference as ref

NAMES = sorted(ZOO)


@pytest.mark.parametrize("name", NAMES)
def test_module_convention(name):
    m = ZOO[name]
    assert m.NAME == name
    assert callable(m.model) and callable(m.load)
    args, kwargs = m.load()
    assert isinstance(args, tuple) and isinstance(kwargs, dict)
    if name in REFERENCE_MODELS:
        assert isinstance(m.REFERENCE, str) and callable(m.to_reference)
        assert (ref.folder(m.REFERENCE) / "model.md").is_file()
    if name in CONJUGATE_MODELS:
        for fn in ("exact_posterior", "exact_mode", "exact_log_evidence"):
            assert callable(getattr(m, fn))


@pytest.mark.parametrize("name", NAMES)
def test_compiles_with_finite_log_prob(name):
    m = ZOO[name]
    args, kwargs = m.load()
    ld = ppl.compile(m.model, *args, **kwargs)
    z = ld.init(0)
    assert z.shape == (ld.dim,) and ld.dim == sum(lat.size for lat in ld.spec.latents)
    assert np.isfinite(jax.jit(ld.log_prob)(z))  # init also checked the gradient is finite


@pytest.mark.parametrize("name", NAMES)
def test_map_runs(name, zoo_map):
    r = zoo_map(name)
    assert set(r.params) == {lat.name for lat in r.log_density.spec.latents}
    for site, value in r.params.items():
        assert np.all(np.isfinite(value)), site
        assert r.samples[site].shape[:2] == (1, 1)


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_to_reference_labels(name, zoo_map):
    m = ZOO[name]
    labels = m.to_reference(zoo_map(name).samples)
    reference = ref.load_reference(m.REFERENCE)
    assert set(labels) == set(reference), set(labels) ^ set(reference)
    assert all(np.shape(v) == (1, 1) for v in labels.values())
    ref.compare(labels, reference)  # accepts them


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_compare_on_reference_draws(name):
    # draws.npz holds 1000 of the 10 000 near-independent draws that reference.json summarises, so
    # |mean diff| / sd ~ N(0, sqrt(1/1000 - 1/10000)) = N(0, 0.03): 0.15 is 5 standard errors.
    # The sd ratio of 1000 draws has relative error ~ 1/sqrt(2 * 1000) = 0.022 for a normal;
    # 0.2 allows the heavier tails (tau's half-Cauchy tail).
    m = ZOO[name]
    draws = ref.load_draws(m.REFERENCE)
    assert all(v.shape == (10, 100) for v in draws.values())
    table = ref.compare(draws, m.REFERENCE)
    assert set(table.index) == set(draws)
    assert (table["z"] < 0.15).all(), table
    assert (np.abs(table["sd_ratio"] - 1) < 0.2).all(), table


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_labels_round_trip(name):
    m = ZOO[name]
    draws = ref.load_draws(m.REFERENCE)
    point = {k: v[3, 7] for k, v in draws.items()}
    values = ref.from_labels(point, m.REFERENCE)
    back = ref.to_labels({k: np.asarray(v) for k, v in values.items()}, {k: k for k in values}, sample_dims=0)
    assert back.keys() == point.keys()
    assert all(back[k] == point[k] for k in point)


def test_reference_dir_env(monkeypatch, tmp_path):
    real = ref.reference_dir()  # the folder this run uses (the variable, or ../shared/reference)
    monkeypatch.setenv(ref.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as e:
        ref.reference_dir()
    assert "nowhere" in str(e.value) and str(ref.REPO_ROOT.parent / "shared" / "reference") in str(e.value)
    monkeypatch.setenv(ref.ENV_VAR, str(real))
    assert ref.reference_dir() == real and (real / "sblri-blr").is_dir()
    with pytest.raises(FileNotFoundError, match="no reference posterior"):
        ref.folder("no-such-posterior")


def test_compare_requires_reference_scalars():
    with pytest.raises(KeyError, match="sigma"):
        ref.compare({"beta[1]": np.zeros(3)}, "kidiq-kidscore_momiq")


def test_ordered_normal():
    import jax.numpy as jnp
    from numpyro.distributions import constraints

    from models._dists import OrderedNormal

    n = 20_000
    d = OrderedNormal(jnp.zeros(2), 2.0)
    assert d.support is constraints.ordered_vector and d.event_shape == (2,)
    x = np.asarray(jax.jit(lambda k: d.sample(k, (n,)))(jax.random.PRNGKey(0)))
    assert np.all(x[:, 0] < x[:, 1])
    # The first of two sorted iid N(0, s) has mean -s / sqrt(pi) and variance s^2 (1 - 1/pi);
    # 5 standard errors.
    assert abs(x[:, 0].mean() + 2 / np.sqrt(np.pi)) < 5 * 2 * np.sqrt((1 - 1 / np.pi) / n)
    dp = OrderedNormal(jnp.array([3.0, 10.0]), 1.0, positive=True)
    assert dp.support is constraints.positive_ordered_vector
    xp = np.asarray(dp.sample(jax.random.PRNGKey(1), (1000,)))
    assert np.all((0 < xp[:, 0]) & (xp[:, 0] < xp[:, 1]))
    v = jnp.array([1.0, 9.0])
    expected = float(jax.scipy.stats.norm.logpdf(v, jnp.array([3.0, 10.0]), 1.0).sum())
    assert float(jax.jit(lambda dist_, v: dist_.log_prob(v))(dp, v)) == pytest.approx(expected, rel=1e-6)
