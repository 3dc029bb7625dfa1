"""A high R-hat caused by one chain sitting apart (another mode) names that chain, instead of
the advice to run longer, which would mislead there."""
import warnings

import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.method.diagnostics import mixing, outlier_chain, r_hat_warning

ADVICE = "the chains have not mixed; run longer"


def _draws(chains=4, draws=500, shape=(), seed=0):
    return np.random.default_rng(seed).normal(size=(chains, draws) + shape)


def _r_hat(samples):
    from ppl.method.diagnostics import per_site

    return {k: v["r_hat"] for k, v in per_site(samples).items()}


def test_one_chain_apart_is_named_with_the_r_hat_of_the_others():
    mu = _draws(shape=(3,))
    mu[2, :, 1] += 4.0  # chain 2 sits 4 sd away in one scalar
    samples = {"mu": mu, "tau": _draws(seed=1)}
    assert outlier_chain(samples, _r_hat(samples))[0] == 2
    message = r_hat_warning(_r_hat(samples), samples, 4, ADVICE)
    assert message.startswith("r_hat > 1.01 for mu (")
    assert "chain 2 disagrees with the others" in message and "result.samples[site][2]" in message
    assert ADVICE not in message
    assert mixing(_r_hat(samples), samples, 4, ADVICE) == (message, 2)


def test_chains_that_disagree_in_general_get_the_general_advice():
    mu = _draws(chains=6)
    mu[1] += 3.0
    mu[4] -= 3.0  # two chains apart: no single chain explains it
    samples = {"mu": mu}
    assert outlier_chain(samples, _r_hat(samples)) is None
    message = r_hat_warning(_r_hat(samples), samples, 6, ADVICE)
    assert message.endswith(ADVICE) and "disagrees" not in message
    assert mixing(_r_hat(samples), samples, 6, ADVICE).outlier_chain is None


def test_mixed_chains_and_single_chains_give_no_warning():
    samples = {"mu": _draws()}
    assert r_hat_warning(_r_hat(samples), samples, 4, ADVICE) is None
    apart = _draws(chains=1)
    assert r_hat_warning({"mu": np.array(1.5)}, {"mu": apart}, 1, ADVICE) is None


def test_two_chains_are_too_few_to_name_one():
    mu = _draws(chains=2)
    mu[1] += 4.0
    assert outlier_chain({"mu": mu}, _r_hat({"mu": mu})) is None


def _two_modes():
    ppl.sample("x", dist.MixtureSameFamily(dist.Categorical(probs=np.array([0.5, 0.5])),
                                           dist.Normal(np.array([-6.0, 6.0]), 1.0)))


@pytest.mark.timeout(300)
def test_nuts_names_the_chain_that_sits_in_the_other_mode():
    # Modes 12 sd apart: no chain crosses; key 1 puts one of four chains alone in a mode.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = ppl.infer(_two_modes, method=ppl.NUTS(num_warmup=200, num_samples=200, num_chains=4), key=1)
    side = np.sign(np.asarray(r.samples["x"]).mean(axis=1))
    alone = [c for c in range(4) if np.sum(side == side[c]) == 1]
    assert len(alone) == 1, side
    text = " ".join(str(w.message) for w in caught)
    assert f"chain {alone[0]} disagrees with the others" in text
    assert r.diagnostics["outlier_chain"] == alone[0]


@pytest.mark.timeout(300)
def test_mixed_chains_have_no_outlier_chain():
    r = ppl.infer(lambda: ppl.sample("x", dist.Normal(0.0, 1.0)),
                  method=ppl.NUTS(num_warmup=100, num_samples=100, num_chains=4, progress_bar=False), key=0)
    assert r.diagnostics["outlier_chain"] is None
