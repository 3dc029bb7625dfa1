"""The sprinkler Bayesian network with binary nodes; exact posteriors by brute-force enumeration.

    cloudy ~ Bernoulli(0.5)
    sprinkler | cloudy ~ Bernoulli(0.1 if cloudy else 0.5)
    rain | cloudy ~ Bernoulli(0.8 if cloudy else 0.2)
    wet | sprinkler, rain ~ Bernoulli(P_WET[sprinkler, rain])

Observed: wet grass (and optionally the sprinkler). Known answer: `exact_posterior` sums the
joint over all 2^3 configurations of the latent nodes (Russell & Norvig, "Artificial
Intelligence: A Modern Approach", section 14.2; Murphy 1998's sprinkler example).
"""
import itertools

import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

NAME = "bayes_net"
P_CLOUDY = 0.5
P_SPRINKLER = (0.5, 0.1)  # given cloudy = 0, 1
P_RAIN = (0.2, 0.8)
P_WET = ((0.0, 0.9), (0.9, 0.99))  # [sprinkler][rain]
LATENTS = ("cloudy", "sprinkler", "rain")


def model(wet=None):
    """The network; `wet` observed (1 = wet grass) or None to simulate."""
    c = ppl.sample("cloudy", dist.Bernoulli(P_CLOUDY))
    s = ppl.sample("sprinkler", dist.Bernoulli(jnp.asarray(P_SPRINKLER)[c]))
    r = ppl.sample("rain", dist.Bernoulli(jnp.asarray(P_RAIN)[c]))
    ppl.observe("wet", dist.Bernoulli(jnp.asarray(P_WET)[s, r]), wet)


def load():
    """(args, kwargs): wet grass observed."""
    return (), {"wet": jnp.asarray(1)}


def joint(c, s, r, w):
    """p(cloudy=c, sprinkler=s, rain=r, wet=w)."""
    pc = P_CLOUDY if c else 1 - P_CLOUDY
    ps = P_SPRINKLER[c] if s else 1 - P_SPRINKLER[c]
    pr = P_RAIN[c] if r else 1 - P_RAIN[c]
    pw = P_WET[s][r] if w else 1 - P_WET[s][r]
    return pc * ps * pr * pw


def exact_posterior(wet=1):
    """Exact posterior marginals P(node = 1 | wet) and the evidence p(wet), by enumeration."""
    configs = list(itertools.product((0, 1), repeat=3))
    weights = np.array([joint(c, s, r, wet) for c, s, r in configs])
    evidence = weights.sum()
    post = weights / evidence
    marg = {name: float(sum(p for cfg, p in zip(configs, post) if cfg[i])) for i, name in enumerate(LATENTS)}
    return marg, float(evidence)


KNOWN = exact_posterior(1)[0]
