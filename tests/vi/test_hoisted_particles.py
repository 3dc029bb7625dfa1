"""VI's automatic guides score their particles through a hoisted log density: the data-only
work is done once per program, and the particles are those of the plain model runs."""
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist
from ppl.runtime import program as _program
from ppl.vi import guides
from ppl.vi.families import AutoFamily

Y = jnp.array([2.0, 0.0, 3.0, 1.0, 4.0, 2.0, 7.0, 5.0])
X = jnp.linspace(-1.0, 1.0, 8)


def poisson_glm(X, y):
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    b = ppl.sample("b", dist.HalfNormal(1.0))
    with ppl.plate("n", X.shape[0]):
        ppl.observe("y", dist.Poisson(jnp.exp(a + b * X)), y)  # log y! depends on the data only


def test_hoisted_particles_equal_the_plain_ones_without_the_data_only_terms():
    ld = ppl.compile(poisson_glm, X, Y)
    # Both families in the same frame (z = shift + unit * u), as `AutoFamily.init` would fix it.
    frame = (jnp.array([0.5, -0.2]), jnp.array([0.3, 2.0]))
    plain = AutoFamily(guides.MeanField(), ld, keyed=False, frame=frame)
    state = (guides.MeanField().init(None, jnp.full((ld.dim,), 0.3)), {})
    hoisted = AutoFamily(guides.MeanField(), ld, keyed=False, frame=frame).hoisted(state)
    key = jax.random.PRNGKey(1)
    for a, b in [(plain.particle(state, key), hoisted.particle(state, key)),
                 (plain.particles(state, key, 5), hoisted.particles(state, key, 5))]:
        for x, y in zip(a, b):
            if x is not None:
                np.testing.assert_allclose(y, x, rtol=1e-6)
    grad = lambda fam: jax.grad(lambda s: fam.particles(s, key, 5).log_weight.sum())(state)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=1e-5), grad(plain), grad(hoisted))
    prims = lambda fam: {e.primitive.name for e in jax.make_jaxpr(lambda s: fam.particle(s, key))(state).jaxpr.eqns}
    assert "lgamma" in prims(plain) and "lgamma" not in prims(hoisted)


def test_vi_fit_is_unchanged_by_hoisting():
    """The whole fit (same key) gives the same bound as the model run without hoisting."""
    m = ppl.VI(num_steps=300, num_draws=50, num_eval_particles=200)
    r = ppl.infer(poisson_glm, X, Y, method=m, key=3)
    saved = AutoFamily.hoisted
    try:
        AutoFamily.hoisted = lambda self, state: self
        _program.clear_cache()  # compile the plain program, not reuse the hoisted one
        r0 = ppl.infer(poisson_glm, X, Y, method=m, key=3)
    finally:
        AutoFamily.hoisted = saved
        _program.clear_cache()
    assert r0.timing["compile_source"] in ("compiled", "disk")
    np.testing.assert_allclose(r.log_evidence, r0.log_evidence, rtol=1e-5)
    np.testing.assert_allclose(r.samples["a"], r0.samples["a"], rtol=1e-4, atol=1e-5)
