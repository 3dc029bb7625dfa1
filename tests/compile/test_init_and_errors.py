"""Initial points (strategies, user values, retries) and invalid data caught at compile time."""
import importlib
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.compile.init import first_finite, initial_points


def model(y):
    loc = ppl.sample("loc", dist.Normal(10.0, 0.1))
    s = ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(loc, s), y)


Y = jnp.array([9.0, 10.0, 11.0])


@pytest.fixture(scope="module")
def ld():
    return ppl.compile(model, Y)


def test_uniform_init_lies_in_the_unconstrained_box(ld):
    z = ld.init(0)
    assert z.shape == (ld.dim,) and jnp.all(jnp.abs(z) < 2.0)
    assert jnp.all(jnp.abs(ld.init(1, radius=0.1)) < 0.1)
    np.testing.assert_array_equal(ld.init(0), ld.init(jax.random.PRNGKey(0)))
    assert not np.array_equal(ld.init(0), ld.init(1))


@pytest.mark.parametrize("method", [ppl.NUTS(num_chains=4, init=0.25), ppl.MAP(init=0.25)])
def test_a_number_is_the_radius_of_the_uniform_start(ld, method):
    """Stan's ``init=r`` (NumPyro's init_to_uniform(radius=r)): chains and optimisers start
    uniformly in (-r, r) in unconstrained space; 0 starts at 0."""
    from ppl.compile.init import check_init_values, init_option

    assert init_option(0.25) == ("uniform", 0.25, None) and init_option("prior")[0] == "prior"
    if isinstance(method, ppl.NUTS):
        state = method._init_program(jax.random.PRNGKey(3), ld, jnp.arange(4))
        z = np.asarray(state.move.position)
        assert z.shape == (4, ld.dim) and np.all(np.abs(z) < 0.25) and np.abs(z).max() > 0.01
        zero = type(method)(num_chains=2, init=0)._init_program(jax.random.PRNGKey(3), ld, jnp.arange(2))
        np.testing.assert_array_equal(np.asarray(zero.move.position), 0.0)
    else:
        z = np.asarray(method._initial(jax.random.PRNGKey(3), ld).z0)
        assert np.all(np.abs(z) < 0.25) and np.abs(z).max() > 0.01
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="radius"):
            check_init_values(ld, bad)
    with pytest.raises(TypeError, match="radius"):
        check_init_values(ld, True)


def test_prior_init_draws_from_the_prior(ld):
    # loc ~ Normal(10, 0.1): a prior draw is near 10, far outside the uniform box (-2, 2)
    v = ld.constrain(ld.init(0, strategy="prior"))
    assert 9.0 < v["loc"] < 11.0


def test_user_init_values_are_used(ld):
    z = ld.init(0, values={"s": 2.0})
    np.testing.assert_allclose(z[1], jnp.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(ld.constrain(z)["s"], 2.0, rtol=1e-6)
    assert jnp.abs(z[0]) < 2.0  # the other site still uniform


def test_unknown_init_strategy_is_an_error(ld):
    with pytest.raises(ValueError, match="init strategy"):
        ld.init(0, strategy="median")


def narrow():
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    ppl.factor("f", jnp.where(a > 1.5, 0.0, -jnp.inf))  # finite only for a > 1.5


def test_init_retries_until_the_log_density_is_finite():
    ld = ppl.compile(narrow)
    z = ld.init(0)
    assert z[0] > 1.5 and jnp.isfinite(ld.log_prob(z))
    zs, ok = jax.jit(initial_points, static_argnums=(2,))(ld, jax.random.PRNGKey(0), 16)
    assert zs.shape == (16, 1) and bool(jnp.all(ok)) and bool(jnp.all(zs[:, 0] > 1.5))
    assert len(set(np.asarray(zs[:, 0]).tolist())) == 16


def test_no_finite_start_names_the_site():
    def hopeless():
        ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.factor("f", -jnp.inf)

    with pytest.raises(ValueError, match=r"no finite starting point.*'f'") as e:
        ppl.compile(hopeless).init(0)
    assert "'a'" in str(e.value)  # the suggested init names a latent site


def test_init_value_outside_the_support_names_the_site_and_support(ld):
    with pytest.raises(ValueError, match=r"init value for site 's' \(-1\.\) lies outside the site's support Positive"):
        ld.init(0, values={"s": -1.0}, num_tries=3)


# --- invalid data, caught when the model is compiled --------------------------------------


def test_observed_value_outside_the_support_names_site_and_distribution():
    def counts(y):
        rate = ppl.sample("rate", dist.Exponential(1.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Poisson(rate), y)

    with pytest.raises(ValueError, match=r"observed site 'y'.*outside the support.*Poisson"):
        ppl.compile(counts, jnp.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"observed site 'y'.*outside the support"):
        ppl.compile(counts, jnp.array([1.5, 2.0]))

    def proportions(y):
        a = ppl.sample("a", dist.Exponential(1.0))
        ppl.observe("p", dist.Beta(a, 1.0), y)

    with pytest.raises(ValueError, match=r"observed site 'p'.*outside the support.*Beta"):
        ppl.compile(proportions, jnp.array(1.5))


def test_a_support_set_by_a_latent_is_not_checked_against_the_data():
    """y ~ Uniform(0, a) with `a` latent: data above some values of `a` is a zero density
    there, not invalid data; the posterior is a's prior cut at max(y). A bound set by the
    data alone is still checked."""
    y = jnp.array([0.5, 1.3, 2.2, 0.1])

    def tank(y):
        a = ppl.sample("a", dist.Exponential(0.5))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Uniform(0.0, a), y)

    ld = ppl.compile(tank, y)
    assert ld.log_prob(jnp.log(jnp.array([1.0]))) == -jnp.inf
    assert jnp.isfinite(ld.log_prob(jnp.log(jnp.array([3.0]))))
    r = ppl.infer(tank, y, method=ppl.Importance(num_particles=20000), key=0)
    grid = np.linspace(2.2, 80.0, 400001)
    dens = grid ** -4 * np.exp(-0.5 * grid)
    mean = np.trapezoid(grid * dens, grid) / np.trapezoid(dens, grid)
    sd = np.sqrt(np.trapezoid((grid - mean) ** 2 * dens, grid) / np.trapezoid(dens, grid))
    se = sd / np.sqrt(r.diagnostics["ess_weights"])
    assert abs(float(r.samples["a"].mean()) - mean) < 5 * se + 1e-3

    def fixed_by_data(y, top):
        a = ppl.sample("a", dist.Exponential(0.5))
        ppl.observe("y", dist.Uniform(0.0, top), y)

    with pytest.raises(ValueError, match=r"observed site 'y'.*outside the support"):
        ppl.compile(fixed_by_data, jnp.array(3.0), jnp.array(2.0))


def test_masked_out_invalid_values_are_accepted():
    def masked(y, m):
        rate = ppl.sample("rate", dist.Exponential(1.0))
        with ppl.plate("n", y.shape[0]), ppl.handlers.mask(mask=m):
            ppl.observe("y", dist.Poisson(rate), y)

    ld = ppl.compile(masked, jnp.array([1.0, jnp.nan, -3.0]), jnp.array([True, False, False]))
    z = jnp.zeros(1)  # rate = 1
    np.testing.assert_allclose(ld.log_prob(z), dist.Exponential(1.0).log_prob(1.0) - 1.0, rtol=1e-6)
    assert jnp.all(jnp.isfinite(jax.grad(ld.log_prob)(z)))  # no NaN leaking through the mask
    ld.init(0)


def test_nan_in_observed_data_names_the_site():
    with pytest.raises(ValueError, match=r"observed site 'y' contains NaN.*mask"):
        ppl.compile(model, Y.at[1].set(jnp.nan))


def test_plate_size_not_matching_the_data_names_site_and_plate():
    def fixed(y):
        loc = ppl.sample("loc", dist.Normal(0.0, 1.0))
        with ppl.plate("n", 3):
            ppl.observe("y", dist.Normal(loc, 1.0), y)

    with pytest.raises(ValueError, match=r"'y'.*plate 'n' of size 3"):
        ppl.compile(fixed, jnp.ones(4))
    with pytest.raises(ValueError, match=r"'y'.*plate 'n' of size 3"):
        ppl.compile(fixed, jnp.ones((3, 2)))
    # One datum under a plate of 3 would be counted three times.
    with pytest.raises(ValueError, match=r"'y'.*\(1,\).*\(3,\).*counted several times"):
        ppl.compile(fixed, jnp.ones(1))


def test_data_smaller_than_the_distribution_is_an_error_not_a_broadcast():
    """Data that would be broadcast up to the distribution's shape (each datum counted
    several times), or that does not broadcast at all, is an error naming the site."""
    def grid(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("rows", 4, dim=-2), ppl.plate("cols", 3, dim=-1):
            ppl.observe("y", dist.Normal(mu, 1.0), y)

    with pytest.raises(ValueError, match=r"'y'.*shape \(3,\).*Normal.*\(4, 3\).*counted several times"):
        ppl.compile(grid, jnp.ones(3))
    ppl.compile(grid, jnp.ones((4, 3)))
    ppl.compile(grid, jnp.ones((2, 4, 3)))  # more data than the plates: iid copies, as in NumPyro

    def mvn(y):
        loc = ppl.sample("loc", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with ppl.plate("n", 5):
            ppl.observe("y", dist.MultivariateNormal(loc, jnp.eye(2)), y)

    with pytest.raises(ValueError, match=r"'y'.*MultivariateNormal.*does not broadcast"):
        ppl.compile(mvn, jnp.ones((5, 3)))


def test_a_value_the_distribution_cannot_score_names_the_site():
    def labels(c):
        p = ppl.sample("p", dist.Dirichlet(jnp.ones(3)))
        with ppl.plate("n", c.shape[0]):
            ppl.observe("c", dist.Categorical(p), c)

    with pytest.raises(ValueError, match=r"'c'.*Categorical.*integer values"):
        ppl.compile(labels, jnp.array([0.0, 1.0, 2.0]))
    ppl.compile(labels, jnp.array([0, 1, 2]))


def test_duplicate_site_name_fails_at_compile():
    def dup(y):
        ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.observe("a", dist.Normal(0.0, 1.0), y)

    with pytest.raises(ValueError, match="'a'.*twice"):
        ppl.compile(dup, jnp.array(0.0))


def test_compile_rejects_a_non_callable():
    with pytest.raises(TypeError, match="model function"):
        ppl.compile(3)


def test_first_finite_returns_the_accepted_point_and_its_evaluation(ld):
    """A custom acceptance (a sampler passes its kernel's init): retries until it accepts,
    and hands back what the evaluation computed at that point."""
    evaluate = lambda z: (z[0] > 1.0, {"twice": 2.0 * z})
    z, ok, aux = jax.jit(lambda k: first_finite(ld, k, evaluate))(jax.random.PRNGKey(3))
    assert bool(ok) and float(z[0]) > 1.0
    np.testing.assert_allclose(aux["twice"], 2.0 * np.asarray(z))
    never = lambda z: (jnp.asarray(False), jnp.zeros(()))
    _, ok, _ = jax.jit(lambda k: first_finite(ld, k, never, num_tries=5))(jax.random.PRNGKey(3))
    assert not bool(ok)


def test_a_support_whose_dependence_cannot_be_traced_stays_in_the_density(monkeypatch):
    """If the model cannot be re-traced to see whether a support moves with a latent, its
    check stays in the log density: trusting it let MAP on y ~ Uniform(0, a) run a to 0
    (a finite, huge density below max(y))."""
    import jax
    spec = importlib.import_module("ppl.compile.spec")  # ppl.compile is also the function

    class NoRetrace:
        def __getattr__(self, name):
            return getattr(jax, name)

        @staticmethod
        def make_jaxpr(*args, **kwargs):
            raise RuntimeError("cannot re-trace")

    monkeypatch.setattr(spec, "jax", NoRetrace())

    def tank(y):
        a = ppl.sample("a", dist.Exponential(0.5))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Uniform(0.0, a), y)

    ld = ppl.compile(tank, jnp.array([0.5, 1.3, 2.2]))
    assert ld.spec.checked_supports == ()
    assert ld.log_prob(jnp.log(jnp.array([1.0]))) == -jnp.inf
    assert ld.log_prob(jnp.array([-50.0])) == -jnp.inf
