"""`ppl.compile`: the log joint over a flat unconstrained vector, its maps, and JAX transforms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints as C
from numpyro.distributions.transforms import biject_to

import ppl
from ppl import dist

Y = jnp.array([0.3, 0.1])


def supports(y):
    s = ppl.sample("s", dist.LogNormal(0.0, 1.0))  # positive
    a = ppl.sample("a", dist.Beta(2.0, 3.0))  # unit interval
    b = ppl.sample("b", dist.Uniform(0.0, 1.0 - a))  # support depends on another latent
    iv = ppl.sample("iv", dist.Uniform(-1.0, 2.0))  # interval
    ppl.sample("p", dist.Dirichlet(jnp.array([1.5, 2.0, 2.5])))  # simplex
    ppl.sample("o", dist.ImproperUniform(C.ordered_vector, (), (3,)))  # ordered
    ppl.sample("po", dist.ImproperUniform(C.positive_ordered_vector, (), (3,)))  # positive ordered
    ppl.sample("L", dist.LKJCholesky(3, 2.0))  # corr_cholesky
    ppl.observe("y", dist.Normal(s + b + iv, 1.0), y)


SLICES = {"s": (0, 1), "a": (1, 2), "b": (2, 3), "iv": (3, 4), "p": (4, 6), "o": (6, 9), "po": (9, 12), "L": (12, 15)}


def log_sigmoid_jac(u):
    return jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)


def autodiff_log_jac(f, u):
    """log |det df/du| for a map onto as many free coordinates as `u` has."""
    return jnp.linalg.slogdet(jax.jacfwd(f)(u))[1]


def hand_log_prob(z, y=Y):
    """The log joint plus log-Jacobian, written out site by site."""
    u = {k: z[i:j] for k, (i, j) in SLICES.items()}
    total = 0.0
    # positive: s = exp(u), log J = u
    s = jnp.exp(u["s"][0])
    total += dist.LogNormal(0.0, 1.0).log_prob(s) + u["s"][0]
    # interval (0, 1): a = sigmoid(u)
    a = jax.nn.sigmoid(u["a"][0])
    total += dist.Beta(2.0, 3.0).log_prob(a) + log_sigmoid_jac(u["a"][0])
    # (0, 1 - a): b = (1 - a) sigmoid(u); density 1 / (1 - a)
    b = (1.0 - a) * jax.nn.sigmoid(u["b"][0])
    total += -jnp.log(1.0 - a) + jnp.log(1.0 - a) + log_sigmoid_jac(u["b"][0])
    # (-1, 2): iv = -1 + 3 sigmoid(u); density 1 / 3
    iv = -1.0 + 3.0 * jax.nn.sigmoid(u["iv"][0])
    total += -jnp.log(3.0) + jnp.log(3.0) + log_sigmoid_jac(u["iv"][0])
    # simplex: density of the first K-1 coordinates, Jacobian by autodiff
    simplex = biject_to(C.simplex)
    p = simplex(u["p"])
    total += dist.Dirichlet(jnp.array([1.5, 2.0, 2.5])).log_prob(p)
    total += autodiff_log_jac(lambda v: simplex(v)[:2], u["p"])
    # ordered: o = (u0, u0 + e^u1, u0 + e^u1 + e^u2), log J = u1 + u2; flat density
    total += u["o"][1] + u["o"][2]
    # positive ordered: flat density, Jacobian by autodiff
    total += autodiff_log_jac(biject_to(C.positive_ordered_vector), u["po"])
    # corr_cholesky: density of the strictly lower entries, Jacobian by autodiff
    chol = biject_to(C.corr_cholesky)
    L = chol(u["L"])
    total += dist.LKJCholesky(3, 2.0).log_prob(L)
    total += autodiff_log_jac(lambda v: chol(v)[jnp.tril_indices(3, -1)], u["L"])
    total += jnp.sum(dist.Normal(s + b + iv, 1.0).log_prob(y))
    return total


@pytest.fixture(scope="module")
def ld():
    return ppl.compile(supports, Y)


def test_layout_of_the_flat_vector(ld):
    assert ld.dim == 15
    for name, (i, j) in SLICES.items():
        lat = ld.spec.latent(name)
        assert (lat.offset, lat.offset + lat.size) == (i, j), name
    assert ld.spec.latent("L").shape == (3, 3) and ld.spec.latent("p").shape == (3,)
    assert ld.spec.observed == ("y",)


def test_log_prob_equals_hand_computed_log_joint_plus_log_jacobian(ld):
    zs = jax.random.normal(jax.random.PRNGKey(0), (4, ld.dim))
    expected = jax.jit(jax.vmap(hand_log_prob))(zs)
    np.testing.assert_allclose(jax.jit(jax.vmap(ld.log_prob))(zs), expected, rtol=2e-5, atol=2e-5)


def test_log_joint_parts_sum_to_log_prob(ld):
    z = jax.random.normal(jax.random.PRNGKey(0), (ld.dim,))
    lj = ld.log_joint(z)
    assert isinstance(lj, ppl.LogJoint)
    np.testing.assert_allclose(lj.total, ld.log_prob(z), rtol=1e-6)
    vals = ld.constrain(z)
    lik = jnp.sum(dist.Normal(vals["s"] + vals["b"] + vals["iv"], 1.0).log_prob(Y))
    np.testing.assert_allclose(lj.likelihood, lik, rtol=1e-5)


def test_constrained_values_lie_in_their_supports(ld):
    z = 2.0 * jax.random.normal(jax.random.PRNGKey(1), (ld.dim,))
    v = ld.constrain(z)
    assert set(v) == set(SLICES)
    assert v["s"] > 0 and 0 < v["a"] < 1 and 0 < v["b"] < 1 - v["a"] and -1 < v["iv"] < 2
    np.testing.assert_allclose(jnp.sum(v["p"]), 1.0, rtol=1e-6)
    assert jnp.all(jnp.diff(v["o"]) > 0) and jnp.all(v["po"] > 0) and jnp.all(jnp.diff(v["po"]) > 0)
    L = v["L"]
    np.testing.assert_allclose(jnp.triu(L, 1), 0.0)
    np.testing.assert_allclose(jnp.sum(L**2, axis=1), 1.0, rtol=1e-5)


def test_dependent_support_follows_the_other_latent(ld):
    z = jnp.zeros(ld.dim).at[2].set(30.0)  # b's unconstrained value near +inf: b -> 1 - a
    for ua in (-2.0, 0.0, 2.0):
        v = ld.constrain(z.at[1].set(ua))
        np.testing.assert_allclose(v["b"], 1.0 - v["a"], rtol=1e-5)


def test_constrain_unconstrain_round_trip(ld):
    z = jax.random.normal(jax.random.PRNGKey(2), (ld.dim,))
    v = ld.constrain(z)
    np.testing.assert_allclose(ld.unconstrain(v), z, atol=1e-4)
    v2 = ld.constrain(ld.unconstrain(v))
    for name in v:
        np.testing.assert_allclose(v2[name], v[name], atol=1e-5)


def test_unconstrain_names_missing_sites(ld):
    with pytest.raises(ValueError, match="'L'"):
        ld.unconstrain({k: v for k, v in ld.constrain(jnp.zeros(ld.dim)).items() if k != "L"})


def test_constrain_includes_deterministic_sites_on_request():
    def model():
        a = ppl.sample("a", dist.HalfNormal(1.0))
        ppl.deterministic("a2", a**2)

    ld = ppl.compile(model)
    v = ld.constrain(jnp.array([0.5]), deterministic=True)
    np.testing.assert_allclose(v["a2"], jnp.exp(1.0), rtol=1e-6)
    assert "a2" not in ld.constrain(jnp.array([0.5]))


def regression(x, y):
    w = ppl.sample("w", dist.Normal(0.0, 10.0))
    s = ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("n", x.shape[0]):
        ppl.observe("y", dist.Normal(w * x, s), y)


def regression_log_prob(z, x, y):
    w, u = z[0], z[1]
    s = jnp.exp(u)
    return (
        dist.Normal(0.0, 10.0).log_prob(w) + dist.HalfNormal(1.0).log_prob(s) + u
        + jnp.sum(dist.Normal(w * x, s).log_prob(y))
    )


def test_jit_vmap_grad_and_vmap_of_grad_compose():
    x = jnp.arange(4.0)
    y = 2 * x + 0.3
    ld = ppl.compile(regression, x, y)
    zs = jax.random.normal(jax.random.PRNGKey(3), (5, ld.dim))
    expected = jax.vmap(regression_log_prob, (0, None, None))(zs, x, y)
    expected_grad = jax.vmap(jax.grad(regression_log_prob), (0, None, None))(zs, x, y)
    np.testing.assert_allclose(ld.log_prob(zs[0]), expected[0], rtol=1e-5)  # eager
    np.testing.assert_allclose(jax.jit(ld.log_prob)(zs[1]), expected[1], rtol=1e-5)

    @jax.jit
    def everything(ld, zs):
        return (
            jax.vmap(ld.log_prob)(zs),
            jax.vmap(jax.grad(ld.log_prob))(zs),
            jax.vmap(ld.constrain)(zs),
            jax.grad(lambda ld, z: ld.log_prob(z))(ld, zs[0]),  # with respect to the data
        )

    lp, grads, values, dld = everything(ld, zs)
    np.testing.assert_allclose(lp, expected, rtol=1e-5)
    np.testing.assert_allclose(grads, expected_grad, rtol=1e-4)
    np.testing.assert_allclose(values["s"], jnp.exp(zs[:, 1]), rtol=1e-6)
    assert isinstance(dld, ppl.LogDensity)
    np.testing.assert_allclose(dld.data[1], jax.grad(regression_log_prob, 2)(zs[0], x, y), rtol=1e-4)


def test_log_prob_maps_nan_to_minus_inf():
    def model():
        a = ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.factor("f", jnp.log(a))  # NaN for a < 0

    ld = ppl.compile(model)
    assert ld.log_prob(jnp.array([-1.0])) == -jnp.inf


# --- recompilation ---------------------------------------------------------------------

TRACES = {"n": 0}


def counted(x, y, scale=1.0):
    TRACES["n"] += 1  # a Python side effect: runs once per trace, never per evaluation
    w = ppl.sample("w", dist.Normal(0.0, 10.0))
    s = ppl.sample("s", dist.HalfNormal(scale))
    with ppl.plate("n", x.shape[0]):
        ppl.observe("y", dist.Normal(w * x, s), y)


def test_new_data_of_the_same_shape_does_not_retrace():
    x = jnp.arange(5.0)
    ld1 = ppl.compile(counted, x, 2 * x)
    ld2 = ppl.compile(counted, x + 1.0, 3 * x)
    ld3 = ppl.compile(counted, jnp.arange(6.0), jnp.arange(6.0))
    ld4 = ppl.compile(counted, x, 2 * x, 2.0)
    f = jax.jit(lambda ld, z: ld.log_prob(z))
    z = jnp.array([0.5, -0.2])

    def traces_during(ld):
        before = TRACES["n"]
        value = f(ld, z)
        return TRACES["n"] - before, value

    assert traces_during(ld1)[0] == 1
    n, b = traces_during(ld2)
    assert n == 0, "new data of the same shape retraced the model"
    expected = jnp.sum(dist.Normal(0.0, 10.0).log_prob(0.5)) + dist.HalfNormal(1.0).log_prob(jnp.exp(-0.2)) - 0.2
    expected += jnp.sum(dist.Normal(0.5 * (x + 1.0), jnp.exp(-0.2)).log_prob(3 * x))
    np.testing.assert_allclose(b, expected, rtol=1e-5)  # the new data were used
    # a new shape, or a new static (Python scalar) argument, does retrace
    assert traces_during(ld3)[0] == 1
    assert traces_during(ld4)[0] == 1


def test_log_density_is_a_pytree_of_its_data():
    x = jnp.arange(3.0)
    ld = ppl.compile(counted, x, y=2 * x)
    leaves = jax.tree.leaves(ld)
    assert any(leaf is x or np.array_equal(leaf, x) for leaf in leaves)
    ld2 = jax.tree.map(lambda v: v, ld)
    np.testing.assert_allclose(ld2.log_prob(jnp.zeros(2)), ld.log_prob(jnp.zeros(2)))
    args, kwargs = ld.arguments()
    np.testing.assert_array_equal(args[0], x)
    np.testing.assert_array_equal(kwargs["y"], 2 * x)


def test_python_scalars_are_static_and_may_set_shapes():
    def model(n):
        with ppl.plate("n", n):
            ppl.sample("a", dist.Normal(0.0, 1.0))

    assert ppl.compile(model, 4).dim == 4
    assert ppl.compile(model, 7).dim == 7


def test_unhashable_non_array_argument_is_static_by_identity():
    """An options object (argparse.Namespace, unhashable) reaches the model as it is; the same
    object keeps the compiled model's static key, another one changes it."""
    import argparse

    def model(args):
        with ppl.plate("n", args.n):
            ppl.sample("a", dist.Normal(0.0, 1.0))

    opts = argparse.Namespace(n=3)
    ld = ppl.compile(model, opts)
    assert ld.dim == 3 and ld.arguments()[0][0] is opts
    assert jax.tree.structure(ld) == jax.tree.structure(ppl.compile(model, opts))
    assert jax.tree.structure(ld) != jax.tree.structure(ppl.compile(model, argparse.Namespace(n=3)))
