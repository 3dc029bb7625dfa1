"""NumPyro's examples/baseball.py (four binomial models of batting averages, with Predictive and
log_likelihood), numpyro renamed to ppl: the example's imports and code as it writes them
(numpyro 0.22, Apache-2.0, Copyright Contributors to the Pyro project), then a harness part;
see compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import argparse
import os
import jax.numpy as jnp
import jax.random as random
from jax.scipy.special import logsumexp
import ppl
import ppl.distributions as dist
from ppl.infer import HMC, MCMC, NUTS, SA, Predictive, log_likelihood

import sys

import numpy as np
import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def fully_pooled(at_bats, hits=None):
    r"""
    Number of hits in $K$ at bats for each player has a Binomial
    distribution with a common probability of success, $\phi$.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    phi_prior = dist.Uniform(0, 1)
    phi = ppl.sample("phi", phi_prior)
    num_players = at_bats.shape[0]
    with ppl.plate("num_players", num_players):
        return ppl.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def not_pooled(at_bats, hits=None):
    r"""
    Number of hits in $K$ at bats for each player has a Binomial
    distribution with independent probability of success, $\phi_i$.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    num_players = at_bats.shape[0]
    with ppl.plate("num_players", num_players):
        phi_prior = dist.Uniform(0, 1)
        phi = ppl.sample("phi", phi_prior)
        return ppl.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled(at_bats, hits=None):
    r"""
    Number of hits has a Binomial distribution with independent
    probability of success, $\phi_i$. Each $\phi_i$ follows a Beta
    distribution with concentration parameters $c_1$ and $c_2$, where
    $c_1 = m * kappa$, $c_2 = (1 - m) * kappa$, $m ~ Uniform(0, 1)$,
    and $kappa ~ Pareto(1, 1.5)$.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    m = ppl.sample("m", dist.Uniform(0, 1))
    kappa = ppl.sample("kappa", dist.Pareto(1, 1.5))
    num_players = at_bats.shape[0]
    with ppl.plate("num_players", num_players):
        phi_prior = dist.Beta(m * kappa, (1 - m) * kappa)
        phi = ppl.sample("phi", phi_prior)
        return ppl.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled_with_logit(at_bats, hits=None):
    r"""
    Number of hits has a Binomial distribution with a logit link function.
    The logits $\alpha$ for each player is normally distributed with the
    mean and scale parameters sharing a common prior.

    :param (jnp.ndarray) at_bats: Number of at bats for each player.
    :param (jnp.ndarray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    loc = ppl.sample("loc", dist.Normal(-1, 1))
    scale = ppl.sample("scale", dist.HalfCauchy(1))
    num_players = at_bats.shape[0]
    with ppl.plate("num_players", num_players):
        alpha = ppl.sample("alpha", dist.Normal(loc, scale))
        return ppl.sample("obs", dist.Binomial(at_bats, logits=alpha), obs=hits)


def run_inference(model, at_bats, hits, rng_key, args):
    if args.algo == "NUTS":
        kernel = NUTS(model)
    elif args.algo == "HMC":
        kernel = HMC(model)
    elif args.algo == "SA":
        kernel = SA(model)
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False
        if ("NUMPYRO_SPHINXBUILD" in os.environ or args.disable_progbar)
        else True,
    )
    mcmc.run(rng_key, at_bats, hits)
    return mcmc.get_samples()


def predict(model, at_bats, hits, z, rng_key, player_names, train=True):
    header = model.__name__ + (" - TRAIN" if train else " - TEST")
    predictions = Predictive(model, posterior_samples=z)(rng_key, at_bats)["obs"]
    print_results(
        "=" * 30 + header + "=" * 30, predictions, player_names, at_bats, hits
    )
    if not train:
        post_loglik = log_likelihood(model, z, at_bats, hits)["obs"]
        # computes expected log predictive density at each data point
        exp_log_density = logsumexp(post_loglik, axis=0) - jnp.log(
            jnp.shape(post_loglik)[0]
        )
        # reports log predictive density of all test points
        print(
            "\nLog pointwise predictive density: {:.2f}\n".format(exp_log_density.sum())
        )


def print_results(header, preds, player_names, at_bats, hits):
    columns = ["", "At-bats", "ActualHits", "Pred(p25)", "Pred(p50)", "Pred(p75)"]
    header_format = "{:>20} {:>10} {:>10} {:>10} {:>10} {:>10}"
    row_format = "{:>20} {:>10.0f} {:>10.0f} {:>10.2f} {:>10.2f} {:>10.2f}"
    quantiles = jnp.quantile(preds, jnp.array([0.25, 0.5, 0.75]), axis=0)
    print("\n", header, "\n")
    print(header_format.format(*columns))
    for i, p in enumerate(player_names):
        print(row_format.format(p, at_bats[i], hits[i], *quantiles[:, i]), "\n")


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=400, num_warmup=400, num_chains=2, algo="NUTS", disable_progbar=True)
MODELS = {m.__name__: m for m in (fully_pooled, not_pooled, partially_pooled, partially_pooled_with_logit)}


def simulate(num_players=18):
    """Data shaped as the example's BASEBALL (45 at-bats each, then the rest of the season)."""
    rng = np.random.default_rng(0)
    ability = rng.beta(27, 73, size=num_players)
    at_bats = jnp.full(num_players, 45, dtype=jnp.int32)  # integer counts, as the data set's
    season_at_bats = jnp.asarray(rng.integers(200, 600, num_players).astype(np.int32))
    hits = jnp.asarray(rng.binomial(45, ability).astype(np.int32))
    season_hits = jnp.asarray(rng.binomial(np.asarray(season_at_bats), ability).astype(np.int32))
    names = [f"player {i}" for i in range(num_players)]
    return at_bats, hits, season_at_bats, season_hits, names


def run(args, rng_key, model_name="partially_pooled"):
    model = MODELS[model_name]
    at_bats, hits, season_at_bats, season_hits, player_names = simulate()
    zs = run_inference(model, at_bats, hits, rng_key, args)
    predict(model, at_bats, hits, zs, random.key(7), player_names)
    predict(model, season_at_bats, season_hits, zs, random.key(7), player_names, train=False)
    return zs


def run_fully_pooled(args, rng_key):
    return run(args, rng_key, "fully_pooled")


def run_not_pooled(args, rng_key):
    return run(args, rng_key, "not_pooled")


def run_partially_pooled_with_logit(args, rng_key):
    return run(args, rng_key, "partially_pooled_with_logit")


@pytest.mark.slow
def test_baseball_partially_pooled_agrees_with_numpyro():
    compat_harness.check(sys.modules[__name__], ARGS)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["run_fully_pooled", "run_not_pooled", "run_partially_pooled_with_logit"])
def test_baseball_other_models_agree_with_numpyro(entry):
    compat_harness.check(sys.modules[__name__], ARGS, entry=entry)
