"""Bad data: invalid values, parameters fixed by the data outside their constraints, data of
the wrong type, and the empty data set (which is not bad: the posterior is the prior)."""
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist

Y = jnp.array([0.5, 1.5, 0.2])


def normal_known_scale(y, s):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", y.shape[0]):
        ppl.observe("y", dist.Normal(mu, s), y)


def counts(k):
    rate = ppl.sample("rate", dist.Gamma(2.0, 1.0))
    with ppl.plate("n", k.shape[0]):
        ppl.observe("k", dist.Poisson(rate), k)


def test_nan_in_the_data_names_the_site_and_the_mask():
    with pytest.raises(ValueError, match=r"observed site 'y' contains NaN at 1 position.*ppl.handlers.mask"):
        ppl.compile(normal_known_scale, Y.at[1].set(jnp.nan), jnp.ones(3))


@pytest.mark.parametrize("k", [[1.0, -2.0, 3.0], [1.0, 2.5, 3.0]], ids=["negative", "fractional"])
def test_counts_outside_the_support_name_the_site_and_the_distribution(k):
    with pytest.raises(ValueError, match=r"observed site 'k' has values outside the support.*Poisson.*first bad indices \[\[1\]\]"):
        ppl.infer(counts, jnp.array(k), method="importance")


@pytest.mark.parametrize("method", ["nuts", "importance", "map", "vi"])
def test_a_negative_scale_passed_as_data_is_refused_at_compile_time(method):
    """It used to read 'give init values' under NUTS and pass silently under importance."""
    with pytest.raises(ValueError, match=r"observed site 'y': parameter 'scale' of Normal is outside its constraint Positive"
                                         r".* at 1 of 3 position\(s\), first \[\[1\]\], \(got \[-1\.\]\).*a scale must be > 0"):
        ppl.infer(normal_known_scale, Y, jnp.array([1.0, -1.0, 2.0]), method=method)


def test_a_nan_scale_passed_as_data_names_the_parameter():
    with pytest.raises(ValueError, match=r"site 'y': parameter 'scale' of Normal.*\[nan\]"):
        ppl.compile(normal_known_scale, Y, jnp.array([1.0, jnp.nan, 2.0]))


def test_a_latent_prior_with_an_invalid_parameter_from_the_data():
    def prior_from_data(s):
        ppl.sample("x", dist.Normal(0.0, s))

    with pytest.raises(ValueError, match=r"latent site 'x': parameter 'scale' of Normal.*\(got -2\.\)"):
        ppl.compile(prior_from_data, jnp.array(-2.0))


def test_an_invalid_constant_parameter_names_the_site():
    """NumPyro validates a constant itself and raised naming no site."""
    def constant():
        ppl.sample("x", dist.Gamma(2.0, -1.0))

    with pytest.raises(ValueError, match=r"latent site 'x': parameter 'rate' of Gamma.*\(got -1\.\)"):
        ppl.compile(constant)


def test_probabilities_that_do_not_sum_to_one_name_the_parameter():
    def labels(c, p):
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        with ppl.plate("n", c.shape[0]):
            ppl.observe("c", dist.Categorical(probs=p), c)

    with pytest.raises(ValueError, match=r"site 'c': parameter 'probs' of CategoricalProbs is outside its constraint Simplex"):
        ppl.compile(labels, jnp.array([0, 1]), jnp.array([0.5, 0.6]))
    ppl.compile(labels, jnp.array([0, 1]), jnp.ones(3) / 3)


def test_a_probability_above_one_names_the_parameter():
    def coin(y, p):
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Bernoulli(probs=p), y)

    with pytest.raises(ValueError, match=r"site 'y': parameter 'probs' of BernoulliProbs.*UnitInterval.*1\.2"):
        ppl.compile(coin, jnp.array(1), jnp.array(1.2))


def test_a_parameter_that_moves_with_a_latent_is_not_checked_as_data():
    """scale = s * exp(a): invalid for no data, only at some latent values (not an error)."""
    def moving(y, s):
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(0.0, s * jnp.exp(a)), y)

    ppl.compile(moving, jnp.array(0.3), jnp.array(1.0))


def test_an_invalid_parameter_under_a_mask_is_accepted():
    def masked(y, s, m):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", y.shape[0]), ppl.handlers.mask(mask=m):
            ppl.observe("y", dist.Normal(mu, s), y)

    ld = ppl.compile(masked, Y, jnp.array([1.0, -1.0, 1.0]), jnp.array([True, False, True]))
    assert np.isfinite(float(ld.log_prob(jnp.zeros(1))))


def test_logits_of_minus_infinity_rule_a_category_out_and_are_accepted():
    def ruled_out(c, logits):
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        with ppl.plate("n", c.shape[0]):
            ppl.observe("c", dist.Categorical(logits=logits), c)

    ld = ppl.compile(ruled_out, jnp.array([0, 2]), jnp.array([0.0, -jnp.inf, 0.0]))
    assert np.isfinite(float(ld.log_prob(jnp.zeros(1))))


@pytest.mark.parametrize("method", ["importance", "map", "nuts"])
def test_an_empty_data_set_gives_the_prior(method):
    """y of shape (0,): the likelihood is 0 and the posterior the prior N(0, 1). It used to be
    refused ('plate size must be positive')."""
    options = {"importance": ppl.Importance(num_particles=4000),
               "map": ppl.MAP(),
               "nuts": ppl.NUTS(num_warmup=200, num_samples=500, num_chains=2)}
    r = ppl.infer(normal_known_scale, jnp.zeros((0,)), jnp.ones((0,)), method=options[method], key=0)
    mu = np.asarray(r.samples["mu"]).ravel()
    if method == "map":
        assert abs(mu[0]) < 1e-3
        return
    # 5 standard errors; NUTS draws on N(0, 1) have ESS well above 200.
    n_eff = 4000 if method == "importance" else 200
    assert abs(mu.mean()) < 5 / np.sqrt(n_eff) and abs(mu.std() - 1.0) < 5 / np.sqrt(2 * n_eff)
    if method == "importance":
        assert r.log_evidence == pytest.approx(0.0, abs=1e-6)


def test_an_array_of_strings_names_the_argument_and_the_fix():
    def labelled(y, labels):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ppl.observe("y", dist.Normal(mu, 1.0), y)

    with pytest.raises(TypeError, match=r"model positional argument 1 is an array of dtype <U1 \(strings\).*encode them as integers"):
        ppl.infer(labelled, Y, np.array(["a", "b"]), method="map")
    with pytest.raises(TypeError, match=r"model keyword argument 'labels' is an array of dtype object"):
        ppl.infer(labelled, Y, labels=np.array([{}, 1], dtype=object), method="map")
    ppl.compile(labelled, Y, ("a", "b"))  # strings as static Python values are fine


def test_a_python_list_of_numbers_names_the_argument():
    with pytest.raises(TypeError, match=r"model positional argument 0 is a Python list of numbers.*jnp.asarray"):
        ppl.compile(normal_known_scale, [0.5, 1.5], jnp.ones(2))


def test_a_pandas_series_is_data():
    pd = pytest.importorskip("pandas")
    ld = ppl.compile(normal_known_scale, pd.Series([0.5, 1.5, 0.2]), jnp.ones(3))
    ref = ppl.compile(normal_known_scale, Y, jnp.ones(3))
    z = jnp.array([0.3])
    np.testing.assert_allclose(ld.log_prob(z), ref.log_prob(z), rtol=1e-6)


def test_booleans_are_valid_binary_data_and_a_two_is_not():
    def coin(y):
        p = ppl.sample("p", dist.Beta(1.0, 1.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Bernoulli(p), y)

    ppl.compile(coin, jnp.array([True, False]))
    with pytest.raises(ValueError, match=r"observed site 'y' has values outside the support Boolean"):
        ppl.compile(coin, jnp.array([2, 0]))


def test_float_labels_for_a_categorical_say_to_pass_integers():
    def labels(c):
        p = ppl.sample("p", dist.Dirichlet(jnp.ones(3)))
        with ppl.plate("n", c.shape[0]):
            ppl.observe("c", dist.Categorical(p), c)

    with pytest.raises(ValueError, match=r"'c'.*Categorical.*integer values.*astype\(int\)"):
        ppl.compile(labels, jnp.array([0.0, 1.0, 2.0]))
