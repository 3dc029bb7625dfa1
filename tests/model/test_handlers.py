"""Effect handlers: each as a context manager and a wrapper, and under jit / vmap / grad."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.model import handlers as H

Y = jnp.array([1.0, 2.0, 3.0])


def model(y=None):
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    with ppl.plate("n", 3):
        b = ppl.sample("b", dist.Normal(a, 1.0))
        ppl.observe("y", dist.Normal(b, 1.0), y)
    ppl.deterministic("s", a + b.sum())
    ppl.factor("f", -0.5 * a**2)
    return a + b.sum()


def discrete_model():
    return ppl.sample("k", dist.Bernoulli(0.3))


# --- trace ------------------------------------------------------------------------------


def test_trace_records_typed_sites_in_order():
    tr = H.trace(H.seed(model, 0)).get_trace(Y)
    assert isinstance(tr, ppl.Trace)
    assert list(tr) == ["a", "b", "y", "s", "f"]
    assert [s.kind for s in tr.values()] == ["latent", "latent", "observed", "deterministic", "factor"]
    assert all(isinstance(s, ppl.Site) for s in tr.values())
    b = tr["b"]
    assert b.name == "b" and isinstance(b.dist, dist.Distribution) and b.dist.batch_shape == (3,)
    assert b.plates == (ppl.Plate("n", 3, -1, 3),)
    assert b.value.shape == (3,)
    np.testing.assert_allclose(b.log_prob, dist.Normal(tr["a"].value, 1.0).log_prob(b.value), rtol=1e-6)
    assert b.log_prob.shape == (3,)  # elementwise, before summing
    assert not b.is_discrete
    assert H.trace(H.seed(discrete_model, 0)).get_trace()["k"].is_discrete


def test_trace_as_context_manager_yields_the_trace():
    with H.trace() as tr, H.seed(rng_seed=0):
        model(Y)
    ref = H.trace(H.seed(model, 0)).get_trace(Y)
    assert list(tr) == list(ref)
    for name in ref:
        np.testing.assert_array_equal(tr[name].value, ref[name].value)


def test_trace_log_prob_applies_scale_and_mask():
    mask = jnp.array([True, False, True])
    tr0 = H.trace(H.seed(model, 0)).get_trace(Y)
    tr = H.trace(H.mask(H.scale(H.seed(model, 0), scale=2.0), mask=mask)).get_trace(Y)
    np.testing.assert_allclose(tr["y"].log_prob, 2.0 * jnp.where(mask, tr0["y"].log_prob, 0.0), rtol=1e-6)
    assert tr["y"].scale == 2.0
    # a (3,) mask broadcasts against a scalar site's log density, as in NumPyro
    np.testing.assert_allclose(tr["a"].log_prob, 2.0 * jnp.where(mask, tr0["a"].log_prob, 0.0), rtol=1e-6)
    scaled = H.trace(H.scale(H.seed(model, 0), scale=2.0)).get_trace(Y)
    for name in ("a", "b", "y", "f"):
        np.testing.assert_allclose(scaled[name].log_prob, 2.0 * tr0[name].log_prob, rtol=1e-6)


# --- seed -------------------------------------------------------------------------------


def test_seed_same_key_same_values_different_key_different_values():
    a = H.seed(model, 3)(Y)
    assert H.seed(model, 3)(Y) == a
    assert H.seed(model, jax.random.PRNGKey(3))(Y) == a
    assert H.seed(model, jax.random.key(3))(Y) == a
    assert H.seed(model, 4)(Y) != a
    with H.seed(rng_seed=3):
        assert model(Y) == a


def test_missing_seed_raises_telling_to_wrap_in_seed():
    with pytest.raises(RuntimeError, match=r"'a'.*seed"):
        model(Y)
    with pytest.raises(RuntimeError, match=r"'a'.*wrap the model.*seed"):
        H.trace(model).get_trace(Y)


def test_seed_needs_a_key():
    with pytest.raises(TypeError, match="rng_seed"):
        H.seed(model)


# --- substitute / condition / block / replay -------------------------------------------


def test_substitute_sets_latent_values():
    tr = H.trace(H.substitute(H.seed(model, 0), data={"a": 0.5})).get_trace(Y)
    assert tr["a"].kind == "latent" and tr["a"].value == 0.5
    with H.trace() as tr2, H.seed(rng_seed=0), H.substitute(data={"a": 0.5}):
        model(Y)
    assert tr2["a"].value == 0.5
    tr3 = H.trace(H.substitute(H.seed(model, 0), substitute_fn=lambda m: 1.5 if m.name == "a" else None)).get_trace(Y)
    assert tr3["a"].value == 1.5


def test_a_substituted_latent_is_fixed_in_inference():
    """Substituting a latent before `ppl.compile`/`ppl.infer` fixes it: no coordinates in the
    flat vector (a dead dimension would make VI's bound grow without limit and NUTS drift),
    and its log density term still counts, so the joint equals the conditioned model's."""
    ld_sub = ppl.compile(H.substitute(model, data={"a": 0.5}), Y)
    ld_cond = ppl.compile(H.condition(model, data={"a": 0.5}), Y)
    assert ld_sub.dim == ld_cond.dim == 3
    z = jnp.array([0.3, -0.2, 1.1])
    np.testing.assert_allclose(ld_sub.log_prob(z), ld_cond.log_prob(z), rtol=1e-6)
    # A substituted discrete site leaves a continuous model for gradient methods.
    mixed = lambda y: (ppl.sample("k", dist.Bernoulli(0.3)), model(y))
    assert ppl.compile(H.substitute(mixed, data={"k": 1}), Y).dim == 4


def test_a_substituted_param_is_not_learned():
    """MLE, MAP and VI learn params; one substituted before `ppl.infer` stays at its value."""
    y = jnp.array([1.2, 0.3, 2.1, 1.7, 0.9])

    def scaled(y):
        s = ppl.param("s", jnp.array(1.0), constraint=dist.constraints.positive)
        mu = ppl.sample("mu", dist.Normal(0.0, 2.0))
        with ppl.plate("n", 5):
            ppl.observe("y", dist.Normal(mu, s), y)

    fixed = H.substitute(scaled, data={"s": 3.0})
    for method in ("mle", "map", ppl.VI(num_steps=200, num_draws=10)):
        r = ppl.infer(fixed, y, method=method, key=0)
        np.testing.assert_allclose(r.params["s"], 3.0)
    np.testing.assert_allclose(ppl.infer(fixed, y, method="mle", key=0).params["mu"], y.mean(), rtol=1e-4)


def test_condition_makes_a_latent_site_observed():
    tr = H.trace(H.condition(H.seed(model, 0), data={"a": 0.5})).get_trace(Y)
    assert tr["a"].kind == "observed"
    np.testing.assert_allclose(tr["a"].value, 0.5)
    np.testing.assert_allclose(tr["a"].log_prob, dist.Normal(0.0, 1.0).log_prob(0.5))
    with H.trace() as tr2, H.seed(rng_seed=0), H.condition(data={"a": 0.5}):
        model(Y)
    assert tr2["a"].kind == "observed"
    # the model becomes its own simulator, conditioned on the data
    cond = H.trace(H.condition(H.seed(model, 0), data={"y": Y})).get_trace()
    assert cond["y"].kind == "observed"
    np.testing.assert_array_equal(cond["y"].value, Y)


def test_block_hides_or_exposes_sites():
    assert list(H.trace(H.block(H.seed(model, 0), hide=["a"])).get_trace(Y)) == ["b", "y", "s", "f"]
    assert list(H.trace(H.block(H.seed(model, 0), expose=["a"])).get_trace(Y)) == ["a"]
    assert list(H.trace(H.block(H.seed(model, 0))).get_trace(Y)) == []
    with H.trace() as tr, H.block(hide=["b", "y"]), H.seed(rng_seed=0):
        model(Y)
    assert list(tr) == ["a", "s", "f"]
    with pytest.raises(TypeError):
        H.block(model, hide=["a"], expose=["b"])


def test_scale_multiplies_log_densities():
    tr0 = H.trace(H.seed(model, 0)).get_trace(Y)
    with H.trace() as tr, H.scale(scale=3.0), H.seed(rng_seed=0):
        model(Y)
    np.testing.assert_allclose(tr.log_joint(), 3.0 * tr0.log_joint(), rtol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        H.scale(model, scale=-1.0)


def test_mask_drops_log_density_elements():
    tr0 = H.trace(H.seed(model, 0)).get_trace(Y)
    mask = jnp.array([False, True, False])
    with H.trace() as tr, H.mask(mask=mask), H.seed(rng_seed=0):
        model(Y)
    np.testing.assert_allclose(tr["y"].log_prob, [0.0, tr0["y"].log_prob[1], 0.0], rtol=1e-6)
    assert float(H.trace(H.mask(H.seed(model, 0), mask=False)).get_trace(Y).log_joint()) == 0.0


def test_replay_reuses_latent_values_of_a_trace():
    tr0 = H.trace(H.seed(model, 0)).get_trace(Y)
    tr1 = H.trace(H.replay(H.seed(model, 1), trace=tr0)).get_trace(Y)
    for name in ("a", "b"):
        np.testing.assert_array_equal(tr1[name].value, tr0[name].value)
    with H.trace() as tr2, H.replay(trace=tr0), H.seed(rng_seed=7):
        model(Y)
    np.testing.assert_array_equal(tr2["b"].value, tr0["b"].value)


def test_handlers_reject_a_non_callable_model():
    with pytest.raises(TypeError, match="callable"):
        H.trace(3.0)


# --- under jit / vmap / grad ------------------------------------------------------------


def log_joint_of_seeded_run(key, y):
    tr = H.trace(H.seed(model, key)).get_trace(y)
    return tr.log_joint()


def test_seeded_traced_model_under_jit():
    key = jax.random.PRNGKey(0)
    np.testing.assert_allclose(jax.jit(log_joint_of_seeded_run)(key, Y), log_joint_of_seeded_run(key, Y), rtol=1e-6)
    typed = jax.random.key(3)
    np.testing.assert_allclose(jax.jit(lambda k: H.seed(model, k)(Y))(typed), H.seed(model, 3)(Y), rtol=1e-6)


def test_seeded_traced_model_under_vmap():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    batched = jax.jit(jax.vmap(log_joint_of_seeded_run, (0, None)))(keys, Y)
    one_by_one = jnp.stack([log_joint_of_seeded_run(k, Y) for k in keys])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5)
    assert len(set(np.asarray(batched).tolist())) == 3


def test_seeded_traced_model_under_grad():
    key = jax.random.PRNGKey(0)
    tr = H.trace(H.seed(model, key)).get_trace(Y)
    b = tr["b"].value
    # d/dy sum log N(y | b, 1) = -(y - b)
    np.testing.assert_allclose(jax.grad(log_joint_of_seeded_run, argnums=1)(key, Y), -(Y - b), rtol=1e-5)

    def lj(a):
        return H.trace(H.substitute(H.seed(model, key), data={"a": a, "b": b})).get_trace(Y).log_joint()

    # d/da [log N(a|0,1) + sum log N(b|a,1) - a^2/2] = -2a + sum(b - a)
    a = jnp.array([0.0, 0.3])
    expected = -2 * a + jnp.sum(b) - 3 * a
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(lj)))(a), expected, rtol=1e-5)


# --- one handler object entered in several places at once ---------------------------------


def test_one_handler_entered_by_two_threads_keeps_each_threads_trace():
    # A wrapped model is one handler object; ppl's background compile and the user's thread
    # may enter it at once, one of them inside a jit trace. Each entry's trace belongs to its
    # thread (it was once stored on the handler, and the other thread's site was refused).
    import threading

    shared = H.substitute(model, data={"a": 0.5})
    entered, done = threading.Event(), threading.Event()

    def other_thread():
        def inside_jit(y):
            with shared:  # entered inside a jit trace, while the main thread is inside it too
                entered.set()
                done.wait(30)
            return y

        jax.jit(inside_jit)(Y)

    with H.seed(rng_seed=0), H.trace() as tr, shared:
        t = threading.Thread(target=other_thread)
        t.start()
        assert entered.wait(30)
        try:
            model(Y)  # sites at top level, in the trace `shared` was entered in on this thread
        finally:
            done.set()
            t.join(30)
    assert float(tr["a"].value) == 0.5


def test_one_handler_entered_again_inside_jit_keeps_the_outer_entrys_trace():
    shared = H.substitute(model, data={"a": 0.5})
    with H.seed(rng_seed=0), H.trace() as tr, shared:
        jax.jit(lambda y: H.block(H.seed(shared, 1))(y))(Y)  # the same object entered in jit
        model(Y)  # back at top level: the outer entry's trace again
    assert float(tr["a"].value) == 0.5
