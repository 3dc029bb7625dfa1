"""Convergence diagnostics against ArviZ's (Vehtari et al. 2021, as Stan computes them)."""
import arviz as az
import numpy as np
import pytest

from ppl.method.diagnostics import scalar_diagnostics


def _ar1(phi, chains=4, draws=500, seed=0):
    """Chains of an AR(1) process x_t = phi x_{t-1} + e_t (antithetic for phi < 0)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, draws))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=chains)
    return x


@pytest.mark.parametrize("phi", [0.9, 0.0, -0.5, -0.95])
def test_rhat_and_ess_match_arviz(phi):
    """Bulk and tail ESS and R-hat equal ArviZ's, including antithetic chains, whose ESS
    Stan and ArviZ bound by n log10(n) (NumPyro's raw estimate is then negative). R-hat is
    computed once over chain halves (not over quarters, as halving twice would give)."""
    x = _ar1(phi)
    ours = scalar_diagnostics(x[..., None])
    data = az.convert_to_dataset(x)
    np.testing.assert_allclose(ours["ess_bulk"][0], float(az.ess(data, method="bulk")["x"]), rtol=1e-6)
    # Tail ESS reads 0/1 indicators of the 5% and 95% quantiles; ArviZ's quantile convention
    # can move a draw or two across them.
    np.testing.assert_allclose(ours["ess_tail"][0], float(az.ess(data, method="tail")["x"]), rtol=1e-2)
    np.testing.assert_allclose(ours["r_hat"][0], float(az.rhat(data)["x"]), rtol=1e-6)
    assert 0 < ours["ess_bulk"][0] <= x.size * np.log10(x.size)


def test_constant_and_short_chains_have_no_diagnostics():
    x = np.ones((2, 50, 1))
    assert all(np.isnan(v[0]) for v in scalar_diagnostics(x).values())
    assert all(np.isnan(v[0]) for v in scalar_diagnostics(np.zeros((2, 3, 1)) + np.arange(3)[:, None]).values())


def test_average_ranks_match_scipy():
    """The rank-normalisation's ranks (numpy, so `import ppl` need not load scipy.stats) equal
    scipy's rankdata(method="average"), ties and NaN columns included."""
    from scipy.stats import rankdata

    from ppl.method.diagnostics import _average_ranks

    rng = np.random.default_rng(0)
    for trial in range(100):
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 4))
        a = rng.integers(0, 4, size=(n, k)).astype(float) if trial % 2 else rng.normal(size=(n, k))
        if trial % 5 == 0:
            a[rng.integers(n), 0] = np.nan
        np.testing.assert_array_equal(_average_ranks(a), rankdata(a, axis=0, method="average"))


def test_import_loads_neither_scipy_stats_nor_equinox():
    """`import ppl` leaves scipy.stats (0.4 s) and Equinox (0.2 s) to the code that needs them
    (SBC's uniformity test; models with `ppl.module`)."""
    import subprocess
    import sys

    code = "import sys, ppl, ppl.infer, ppl.optim; print(sorted(m for m in ('scipy.stats', 'equinox') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_fast_sort_ess_and_quantiles_match_numpy_and_numpyro():
    """The diagnostics' own sort (64-bit keys: a value's top bits, then its index), the ESS
    (the chains' power spectra averaged before one inverse FFT) and the quantiles read off the
    sorted draws give what np.argsort, NumPyro's effective_sample_size and np.quantile give:
    on float32 draws, on float64 draws closer together than the keys' value bits can tell
    apart (1 + 1e-12 x), with ties, -0.0 beside 0.0, and one chain."""
    from numpyro.diagnostics import effective_sample_size

    from ppl.method.diagnostics import _ess, _quantiles, _sorted

    rng = np.random.default_rng(0)
    for trial in range(40):
        c, s, k = int(rng.integers(1, 6)), int(rng.integers(4, 400)), int(rng.integers(1, 4))
        x = rng.normal(size=(c, s, k)).cumsum(axis=1)
        if trial % 4 == 0:
            x = x.astype(np.float32).astype(float)
        elif trial % 4 == 1:
            x = 1.0 + 1e-12 * x  # many values within a key's dropped bits of one another
        elif trial % 4 == 2:
            x = np.round(x)  # ties
            x[0, 0, 0], x[-1, -1, 0] = -0.0, 0.0
        t = np.ascontiguousarray(x.reshape(c * s, k).T)
        order, ordered = _sorted(t)
        np.testing.assert_array_equal(ordered, np.sort(t, axis=1))
        np.testing.assert_array_equal(np.take_along_axis(t, order, axis=1), ordered)
        assert all(np.array_equal(np.sort(o), np.arange(c * s)) for o in order)  # a permutation
        np.testing.assert_allclose(_quantiles(ordered, [0.05, 0.5, 0.95]),
                                   np.quantile(t, [0.05, 0.5, 0.95], axis=1), rtol=1e-12, atol=0)
        if np.ptp(x) > 0:
            with np.errstate(invalid="ignore", divide="ignore"):
                theirs = np.asarray(effective_sample_size(x), float)
            n = c * s
            theirs = np.where((theirs > 0) & (theirs < n * np.log10(n)), theirs, n * np.log10(n))
            np.testing.assert_allclose(_ess(x), theirs, rtol=1e-7)
