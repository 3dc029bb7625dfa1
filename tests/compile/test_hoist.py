"""`hoist`: a log density's data-only work is done once, and the function is unchanged."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback
from jax.scipy.special import gammaln

import ppl
from ppl import dist
from ppl.compile.hoist import hoist

Y = jnp.array([0.0, 3.0, 1.0, 7.0])
X = jnp.array([[0.1, 0.5], [1.0, -0.2], [0.3, 0.3], [-1.0, 2.0]])


def poisson_glm(w, data):
    X, y = data
    eta = X @ w
    return jnp.sum(y * eta - jnp.exp(eta) - gammaln(y + 1)) + jnp.sum(jnp.log(jnp.abs(X)))


def primitives(f, *args):
    return {e.primitive.name for e in jax.make_jaxpr(f)(*args).jaxpr.eqns}


def test_data_only_terms_leave_the_function_and_nothing_else_changes():
    w = jnp.array([0.2, -0.4])
    g = hoist(poisson_glm, w, (X, Y))
    assert "lgamma" in primitives(lambda w: poisson_glm(w, (X, Y)), w)
    assert "lgamma" not in primitives(g, w) and "log" not in primitives(g, w)
    assert "exp" in primitives(g, w)  # depends on w: still computed at every call
    f = lambda w: poisson_glm(w, (X, Y))
    np.testing.assert_allclose(g(w), f(w), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(g)(w), jax.grad(f)(w), rtol=1e-6)
    np.testing.assert_allclose(jax.hessian(g)(w), jax.hessian(f)(w), rtol=1e-5)
    ws = jnp.stack([w, -w, 2 * w])
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(g)))(ws), jax.vmap(jax.grad(f))(ws), rtol=1e-6)


def test_inside_jit_with_traced_data():
    w = jnp.array([0.2, -0.4])

    @jax.jit
    def run(X, y):
        g = hoist(poisson_glm, w, (X, y))
        return jax.lax.fori_loop(0, 3, lambda i, acc: acc + jax.grad(g)(w + i), jnp.zeros(2))

    f = lambda w: poisson_glm(w, (X, Y))
    np.testing.assert_allclose(run(X, Y), sum(jax.grad(f)(w + i) for i in range(3)), rtol=1e-5)


def test_nothing_to_store_gives_the_function_itself():
    g = hoist(lambda z, y: jnp.sum((z - y) ** 2), jnp.zeros(4), Y)
    np.testing.assert_allclose(g(jnp.ones(4)), jnp.sum((1 - Y) ** 2))


def test_effects_are_replayed_at_every_call():
    seen = []
    f = lambda z, y: z.sum() + io_callback(lambda a: (seen.append(1), np.log(a + 1.0))[1],
                                           jax.ShapeDtypeStruct(Y.shape, Y.dtype), y).sum()
    g = hoist(f, jnp.zeros(()), Y)
    before = len(seen)
    g(jnp.ones(())), g(jnp.ones(()))
    assert len(seen) - before == 2


def test_nuts_on_a_poisson_regression_matches_the_conjugate_free_reference():
    """End to end through ppl.NUTS (whose log density is hoisted): one Poisson rate with a
    Gamma(2, 1) prior has posterior Gamma(2 + sum y, 1 + n); the mean is checked within 5
    Monte Carlo standard errors (ESS from the run)."""
    y = jnp.array([2, 0, 3, 1, 4, 2, 2, 5])

    def model(y):
        rate = ppl.sample("rate", dist.Gamma(2.0, 1.0))
        with ppl.plate("n", y.shape[0]):
            ppl.observe("y", dist.Poisson(rate), y)

    r = ppl.infer(model, y, method=ppl.NUTS(num_warmup=300, num_samples=1000, num_chains=2, progress_bar=False), key=1)
    a, b = 2.0 + float(y.sum()), 1.0 + y.shape[0]
    se = np.sqrt(a) / b / np.sqrt(r.diagnostics["ess"]["rate"])
    assert abs(float(r.samples["rate"].mean()) - a / b) < 5 * se


def _products(g, *args):
    """(operand shapes, dimension numbers) of every dot_general that ``g`` runs."""
    jaxpr = jax.make_jaxpr(g)(*args).jaxpr
    return [(tuple(v.aval.shape for v in e.invars), e.params["dimension_numbers"])
            for e in jaxpr.eqns if e.primitive.name == "dot_general"]


def test_tall_known_matrices_are_stored_transposed_and_nothing_else_changes():
    """A product of a known tall matrix with unknowns reads a copy stored with the long
    dimension contiguous; values, gradients, Hessians and vmap are those of the original, for
    the matrix on either side, with and without free dimensions on the unknown side, and with
    two contracted dimensions."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(40, 3)), jnp.float32)
    T = jnp.asarray(rng.normal(size=(30, 2, 3)), jnp.float32)
    cases = [
        (lambda w, X: jnp.sum(jnp.tanh(X @ w)), jnp.array([0.3, -0.2, 0.5]), X),      # lhs, vector
        (lambda w, X: jnp.sum(jnp.tanh(w @ X.T)), jnp.array([0.3, -0.2, 0.5]), X),    # rhs
        (lambda w, X: jnp.sum(jnp.tanh(X @ w.reshape(3, 2)) ** 2), jnp.arange(6.0) / 7, X),  # lhs, matrix
        (lambda w, T: jnp.sum(jnp.sin(jnp.einsum("nij,ij->n", T, w.reshape(2, 3)))), jnp.arange(6.0) / 9, T),
    ]
    for f, w, data in cases:
        g = hoist(f, w, data)
        (shapes, dims), = _products(g, w)
        matrix = [s for s in shapes if len(s) >= 2 and max(s) == data.shape[0]][0]
        assert matrix[-1] == data.shape[0]  # the long dimension is now the contiguous one
        h = lambda w: f(w, data)
        np.testing.assert_allclose(g(w), h(w), rtol=1e-5)
        np.testing.assert_allclose(jax.grad(g)(w), jax.grad(h)(w), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jax.hessian(g)(w), jax.hessian(h)(w), rtol=1e-4, atol=1e-5)
        ws = jnp.stack([w, -w, 2 * w])
        np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(g)))(ws), jax.vmap(jax.grad(h))(ws),
                                   rtol=1e-5, atol=1e-6)


def test_wide_and_batched_products_are_left_as_written():
    """A wide known matrix (fewer rows than columns) is faster as it is; a batched product is
    replayed as it is; both give the function's values."""
    rng = np.random.default_rng(1)
    wide = jnp.asarray(rng.normal(size=(3, 40)), jnp.float32)
    batched = jnp.asarray(rng.normal(size=(5, 40, 3)), jnp.float32)
    f_wide = lambda w, A: jnp.sum(jnp.exp(A @ w)) + jnp.sum(jnp.log(jnp.abs(A)))
    f_batch = lambda w, B: jnp.sum(jnp.exp(jnp.einsum("bnk,bk->bn", B, w.reshape(5, 3)))) + jnp.sum(jnp.log(jnp.abs(B)))
    for f, w, data in [(f_wide, jnp.linspace(-0.1, 0.1, 40), wide), (f_batch, jnp.linspace(-0.2, 0.2, 15), batched)]:
        g = hoist(f, w, data)
        assert [s for s, _ in _products(g, w)] == [s for s, _ in _products(lambda w: f(w, data), w)]
        np.testing.assert_allclose(g(w), f(w, data), rtol=1e-5)
        np.testing.assert_allclose(jax.grad(g)(w), jax.grad(lambda w: f(w, data))(w), rtol=1e-5)


def test_logistic_regression_with_a_transposed_design_matrix_matches_numpyro_potential():
    """Through ppl.compile and a hoisted log joint, as the samplers build it: the stored,
    transposed design matrix gives NumPyro's potential energy and gradient at random points."""
    from numpyro.infer.util import potential_energy

    from benchmarks._twins import logreg, logreg_np

    rng = np.random.default_rng(2)
    X = jnp.asarray(rng.normal(size=(200, 4)), jnp.float32)
    y = jnp.asarray(rng.random(200) < 0.4, jnp.float32)
    ld = ppl.compile(logreg, X, y)
    g = hoist(lambda z, ld: ld.log_joint(z).total, jnp.zeros(ld.dim), ld)
    assert [s for s, _ in _products(g, jnp.zeros(ld.dim))][0][1] == (4, 200)
    for z in rng.normal(size=(3, 5)).astype(np.float32):
        peer = lambda z: -potential_energy(logreg_np, (X, y), {}, {"w": z[:4], "b": z[4]})
        np.testing.assert_allclose(g(jnp.asarray(z)), peer(z), rtol=1e-5)
        np.testing.assert_allclose(jax.grad(g)(jnp.asarray(z)), jax.grad(peer)(jnp.asarray(z)), rtol=1e-4, atol=1e-4)
