"""Bernoulli random graph (Erdős–Rényi) with a Beta prior on the edge probability, and
optionally unobserved node pairs whose edges are latent.

    p ~ Beta(a, b);  edge(i, j) ~ Bernoulli(p) for each observed pair i < j
    missing_edges[m] ~ Bernoulli(p) for each unobserved pair (discrete latents, for Gibbs)

Known answer (conjugate): p | edges ~ Beta(a + s, b + M - s) with s edges among M observed
pairs, the evidence p(edges) = B(a + s, b + M - s) / B(a, b), and each missing edge is 1 with
posterior probability (a + s) / (a + b + M).
"""
import jax.numpy as jnp
import numpy as np
from scipy.special import betaln

import ppl
from ppl import dist

NAME = "random_graph"


def model(edges, num_missing=0, a=1.0, b=1.0):
    """`edges`: 0/1 array over the observed pairs; `num_missing` latent pairs."""
    p = ppl.sample("p", dist.Beta(a, b))
    with ppl.plate("pairs", edges.shape[0]):
        ppl.observe("edges", dist.Bernoulli(p), edges)
    if num_missing:
        with ppl.plate("missing", num_missing):
            ppl.sample("missing_edges", dist.Bernoulli(p))


def simulate(seed=0, num_nodes=12, p=0.3, num_missing=0):
    """Upper-triangle edges of G(n, p); the last `num_missing` pairs are withheld."""
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(num_nodes, 1)
    edges = (rng.random(len(iu[0])) < p).astype(np.float32)
    return edges[: len(edges) - num_missing] if num_missing else edges


def posterior(edges, a=1.0, b=1.0):
    """(alpha, beta) of the Beta posterior of p, and the log evidence."""
    s, m = float(np.sum(edges)), float(np.size(edges))
    return (a + s, b + m - s), float(betaln(a + s, b + m - s) - betaln(a, b))


def load(num_missing=0):
    """(args, kwargs): a 12-node graph (66 pairs), `num_missing` of them unobserved."""
    return (jnp.asarray(simulate(num_missing=num_missing)),), {"num_missing": num_missing}
