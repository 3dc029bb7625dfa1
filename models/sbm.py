"""Stochastic block model with discrete block assignments (Holland, Laskey & Leinhardt 1983;
Nowicki & Snijders 2001).

    pi ~ Dirichlet(1, ..., 1);  B[k, l] ~ Beta(1, 1)   (connection probabilities)
    z[i] ~ Categorical(pi)                              block of node i
    A[i, j] ~ Bernoulli(B[z[i], z[j]]) for every pair i < j

Node i's block enters every pair it belongs to, so its assignments are *not* independent
along the node plate: Gibbs updates them one node at a time, each an enumeration of K
blocks. Known answer: the planted blocks (`simulate`); `co_assignment_accuracy` scores a draw
up to relabelling.
"""
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

NAME = "sbm"
TRUE_B = np.array([[0.7, 0.1], [0.1, 0.6]])


def model(adj, num_blocks=2):
    """`adj`: symmetric 0/1 adjacency matrix (n, n); the diagonal is ignored."""
    n = adj.shape[0]
    pi = ppl.sample("pi", dist.Dirichlet(jnp.ones(num_blocks)))
    b = ppl.sample("B", dist.Beta(1.0, 1.0).expand([num_blocks, num_blocks]).to_event(2))
    with ppl.plate("nodes", n):
        z = ppl.sample("z", dist.Categorical(pi))
    i, j = np.triu_indices(n, 1)
    with ppl.plate("pairs", len(i)):
        ppl.observe("A", dist.Bernoulli(b[z[i], z[j]]), adj[i, j])


def simulate(seed=0, num_nodes=30, b=TRUE_B, pi=None):
    """(adjacency (n, n) float32, planted blocks (n,))."""
    rng = np.random.default_rng(seed)
    k = len(b)
    pi = np.full(k, 1.0 / k) if pi is None else np.asarray(pi)
    z = rng.choice(k, size=num_nodes, p=pi)
    probs = np.asarray(b)[z[:, None], z[None, :]]
    upper = np.triu(rng.random((num_nodes, num_nodes)) < probs, 1)
    return (upper | upper.T).astype(np.float32), z


def co_assignment_accuracy(z_draw, z_true):
    """Fraction of node pairs on whose same-block / different-block relation the draw and the
    truth agree (1 = the planted partition, whatever the labels)."""
    z_draw, z_true = np.asarray(z_draw), np.asarray(z_true)
    i, j = np.triu_indices(len(z_true), 1)
    return float(np.mean((z_draw[i] == z_draw[j]) == (z_true[i] == z_true[j])))


def load(seed=0):
    """(args, kwargs): a 30-node two-block graph."""
    adj, _ = simulate(seed)
    return (jnp.asarray(adj),), {"num_blocks": 2}
