"""Shapes against plates: data, parameters and plate arguments that disagree, each named."""
import jax.numpy as jnp
import pytest

import ppl
from ppl import dist


def in_plate(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", 3):
        ppl.observe("y", dist.Normal(mu, 1.0), y)


def test_data_longer_than_its_plate():
    with pytest.raises(ValueError, match=r"observed site 'y'.*shape \(4,\).*plate 'n' of size 3; check the data"):
        ppl.compile(in_plate, jnp.ones(4))


def test_one_datum_under_a_plate_would_count_three_times():
    with pytest.raises(ValueError, match=r"observed site 'y'.*\(1,\).*\(3,\).*counted several times. Give data of shape \(3,\)"):
        ppl.compile(in_plate, jnp.ones(1))


def test_a_trailing_dimension_of_size_one_says_to_squeeze():
    def column(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Normal(mu, 1.0), y)

    with pytest.raises(ValueError, match=r"observed site 'y'.*\(3, 1\).*jnp.squeeze\(y, -1\)"):
        ppl.compile(column, jnp.ones((3, 1)))


def test_parameters_whose_batch_shape_conflicts_with_the_plate():
    def conflicting():
        with ppl.plate("n", 3):
            ppl.sample("x", dist.Normal(jnp.zeros(4), 1.0))

    with pytest.raises(ValueError, match=r"site 'x'.*batch shape \(4,\).*plate 'n' of size 3.*match the plate"):
        ppl.compile(conflicting)


def test_an_event_shape_that_does_not_fit_the_data():
    def mvn(y):
        loc = ppl.sample("loc", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with ppl.plate("n", 5):
            ppl.observe("y", dist.MultivariateNormal(loc, jnp.eye(2)), y)

    with pytest.raises(ValueError, match=r"'y'.*MultivariateNormal.*does not broadcast"):
        ppl.compile(mvn, jnp.ones((5, 3)))


def test_nested_plates_with_one_name():
    def nested():
        with ppl.plate("n", 3), ppl.plate("n", 2):
            ppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"plate 'n'.*nested.*distinct names"):
        ppl.compile(nested)


@pytest.mark.parametrize("size, error, fix", [
    (3.0, TypeError, r"float 3.0; use int\(3.0\)"),
    (jnp.array(3), TypeError, r"array.*plate\('n', y.shape\[0\]\)"),
    (-1, ValueError, r"int >= 0, got -1"),
], ids=["float", "array", "negative"])
def test_a_plate_size_that_is_not_a_python_int(size, error, fix):
    def sized():
        with ppl.plate("n", size):
            ppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(error, match=rf"plate 'n': size must be a Python int.*{fix}|plate 'n'.*{fix}"):
        ppl.compile(sized)


def test_a_plate_dim_that_is_not_negative():
    def positive_dim():
        with ppl.plate("n", 3, dim=0):
            ppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"plate 'n': dim must be a negative int \(e.g. -1\), got 0"):
        ppl.compile(positive_dim)


def test_full_data_in_a_subsampled_plate_says_to_index_it():
    def subsampled(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("n", y.shape[0], subsample_size=2):
            ppl.observe("y", dist.Normal(mu, 1.0), y)

    with pytest.raises(ValueError, match=r"observed site 'y'.*subsamples 2 of 4.*as idx.*y\[idx\]"):
        ppl.compile(subsampled, jnp.ones(4))
