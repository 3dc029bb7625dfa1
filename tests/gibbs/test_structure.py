"""How Gibbs reads a model's structure (eager analysis only, nothing compiled to run)."""
import jax.numpy as jnp
import pytest

import ppl
from ppl import dist
from ppl.compile import enumerate as enum
from models import bayes_net, gmm, hmm, lda, sbm


def _describe(model, *args, **kwargs):
    return ppl.Gibbs().describe(ppl.compile(model, *args, **kwargs))


def test_plate_independent_site_is_one_vectorised_block():
    x, _ = gmm.simulate(n=50)
    d = _describe(gmm.model, jnp.asarray(x))
    assert d[0] == "enumerate z (5 values), vectorised over plate(s) ['data']"
    assert d[1].startswith("nuts on {weights, mu, sigma}")


def test_nested_plates_both_independent():
    train, _, _, _ = lda.simulate(num_docs=4, num_tokens=6, held_out=2)
    d = _describe(lda.model, jnp.asarray(train))
    assert d[0] == "enumerate z (3 values), vectorised over plate(s) ['docs', 'tokens']"


def test_markov_chain_found_and_sampled_by_ffbs():
    (y,), _ = hmm.load(8)
    d = _describe(hmm.model, y)
    assert d[0].startswith("forward-filtering backward-sampling over the chain z_0 -> ... -> z_7 (8 sites")


def test_small_network_enumerated_jointly_or_site_by_site():
    ld = ppl.compile(bayes_net.model, wet=jnp.asarray(1))
    assert ppl.Gibbs().describe(ld) == ["enumerate {cloudy, sprinkler, rain} jointly (8 states)"]
    assert ppl.Gibbs(max_joint_states=1).describe(ld) == [
        "enumerate cloudy (2 values)", "enumerate sprinkler (2 values)", "enumerate rain (2 values)"]


def test_pairwise_coupling_falls_back_to_single_site():
    adj, _ = sbm.simulate(num_nodes=6)
    d = _describe(sbm.model, jnp.asarray(adj))
    assert d[0] == "enumerate z (2 values), 6 coupled positions one at a time"


def _lying_plate(y):
    # z sits in a plate, but every observation depends on the total of z: not independent.
    with ppl.plate("n", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.5))
        ppl.observe("y", dist.Normal(jnp.sum(z) * jnp.ones(y.shape[0]), 1.0), y)


def _factor_outside(y):
    with ppl.plate("n", y.shape[0]):
        z = ppl.sample("z", dist.Bernoulli(0.5))
    ppl.factor("f", -jnp.sum(z) * 0.1)


def test_dependent_term_outside_the_plate_couples_the_site():
    d = _describe(_factor_outside, jnp.zeros(4))
    assert d == ["enumerate z (2 values), 4 coupled positions one at a time"]


def test_violated_plate_is_detected_numerically_and_falls_back():
    with pytest.warns(UserWarning, match="plate's independence does not hold"):
        d = _describe(_lying_plate, jnp.zeros(5))
    assert d == ["enumerate z (2 values), 5 coupled positions one at a time"]


def test_dependencies_follow_data_flow():
    ld = ppl.compile(bayes_net.model, wet=jnp.asarray(1))
    deps = enum.term_dependencies(ld)
    assert deps["wet"] == {"sprinkler", "rain"}
    assert deps["sprinkler"] == {"cloudy", "sprinkler"}
    assert deps["cloudy"] == {"cloudy"}


@pytest.mark.parametrize("d", [dist.Poisson(3.0), dist.Geometric(0.3)])
def test_infinite_support_is_a_clear_error(d):
    def model():
        n = ppl.sample("count", d)
        ppl.observe("y", dist.Normal(n, 1.0), 2.0)

    with pytest.raises(ValueError, match="discrete site 'count' .* support is infinite"):
        ppl.infer(model, method="gibbs", key=0)


def test_infinite_support_allowed_with_a_user_sampler():
    def model():
        ppl.sample("count", dist.Poisson(3.0))

    blocks = [ppl.GibbsBlock("count", sampler=lambda k, v: {"count": v["count"]})]
    assert ppl.Gibbs(blocks=blocks).describe(ppl.compile(model)) == ["user sampler <lambda> on {count}"]


def test_bad_blocks():
    x, _ = gmm.simulate(n=10)
    ld = ppl.compile(gmm.model, jnp.asarray(x))
    with pytest.raises(ValueError, match="'nope', which is not a latent site"):
        ppl.Gibbs(blocks=["nope"]).describe(ld)
    with pytest.raises(ValueError, match="mixes discrete and continuous"):
        ppl.Gibbs(blocks=[("z", "mu")]).describe(ld)
    with pytest.raises(ValueError, match="more than one block"):
        ppl.Gibbs(blocks=["mu", ("mu", "sigma")]).describe(ld)
    with pytest.raises(ValueError, match="inner must be one of"):
        ppl.Gibbs(inner="slice").describe(ld)
    assert ppl.Gibbs(blocks=["mu", ("sigma", "weights")], inner="hmc").describe(ld) == [
        "hmc on {mu} (5 unconstrained dims)", "hmc on {sigma, weights} (9 unconstrained dims)",
        "enumerate z (5 values), vectorised over plate(s) ['data']"]


def test_gradient_methods_sum_the_discrete_sites_out():
    """Gibbs enumerates z's conditionals; NUTS sums z out of the log density by the same
    analysis (one vectorised sum over its 3 values along the plate)."""
    from ppl.compile.marginal import marginalize

    x, _ = gmm.simulate(n=10)
    ld = ppl.compile(gmm.model, jnp.asarray(x))
    ppl.NUTS().check(ld)
    plan = marginalize(ld).plan.describe()
    assert len(plan) == 1 and plan[0].startswith("{z} summed over") and "['data']" in plan[0]


def test_enumeration_with_hoisted_terms_draws_as_without():
    """Gibbs hands its enumeration blocks site terms whose data-only parts (here a Poisson's
    lgamma(y + 1)) are computed once (`hoist`); the draw is the one the plain terms give."""
    import jax

    from ppl.compile.hoist import hoist

    def mix(y):
        rate = ppl.sample("rate", dist.Gamma(2.0, 0.3).expand([2]).to_event(1))
        with ppl.plate("n", y.shape[0]):
            z = ppl.sample("z", dist.Bernoulli(0.5))
            ppl.observe("y", dist.Poisson(rate[z]), y)

    ld = ppl.compile(mix, jnp.array([0.0, 3.0, 11.0, 8.0, 1.0]))
    (block,) = [b for b in ppl.Gibbs().schedule(ld) if isinstance(b, enum.EnumerationBlock)]
    z = jnp.concatenate([jnp.log(jnp.array([2.0, 9.0])), jnp.zeros(5)])
    hoisted = hoist(lambda z, ld: enum.site_terms(ld, z), z, ld)
    prims = lambda f: {e.primitive.name for e in jax.make_jaxpr(f)(z).jaxpr.eqns}
    assert "lgamma" in prims(lambda z: enum.site_terms(ld, z)) and "lgamma" not in prims(hoisted)
    key = jax.random.PRNGKey(3)
    plain = block.update(key, z, ld)
    assert jnp.array_equal(block.update(key, z, ld, hoisted), plain)
    assert not jnp.array_equal(plain[2:], z[2:])  # the draw moved some assignments
