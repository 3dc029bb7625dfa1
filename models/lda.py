"""Latent Dirichlet allocation on a small simulated corpus, with held-out perplexity.

    phi[k] ~ Dirichlet(beta)       topic-word distributions, k = 1..K (shape (K, V))
    theta[d] ~ Dirichlet(alpha)    document-topic proportions (shape (D, K))
    z[d, n] ~ Categorical(theta[d]),  w[d, n] ~ Categorical(phi[z[d, n]])

Blei, Ng & Jordan (2003). Every document has the same number of tokens (a (D, N) array).
`conjugate_blocks` gives the classic uncollapsed Gibbs schedule (Griffiths & Steyvers 2004
collapse it; here theta and phi are drawn from their Dirichlet conditionals). Known answer:
held-out perplexity (document completion: the last tokens of each document are held out)
close to the oracle perplexity under the true theta and phi, far below V (a uniform guess).
"""
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

NAME = "lda"


def model(words, num_topics=3, vocab_size=30, alpha=0.5, beta=0.1):
    """`words`: int array (D, N) of token ids in [0, vocab_size)."""
    d, n = words.shape
    phi = ppl.sample("phi", dist.Dirichlet(jnp.full(vocab_size, beta)).expand([num_topics]).to_event(1))
    theta = ppl.sample("theta", dist.Dirichlet(jnp.full(num_topics, alpha)).expand([d]).to_event(1))
    with ppl.plate("docs", d, dim=-2), ppl.plate("tokens", n, dim=-1):
        z = ppl.sample("z", dist.Categorical(theta[:, None, :]))
        ppl.observe("w", dist.Categorical(phi[z]), words)


def conjugate_blocks(words, num_topics=3, vocab_size=30, alpha=0.5, beta=0.1):
    """Gibbs blocks: z by enumeration, then theta | z and phi | z, w from their Dirichlet
    conditionals: theta[d] ~ Dir(alpha + n_dk), phi[k] ~ Dir(beta + n_kv)."""
    onehot_w = jax.nn.one_hot(words, vocab_size)

    def theta_given_z(key, v):
        counts = jax.nn.one_hot(v["z"], num_topics).sum(axis=1)
        return {"theta": jax.random.dirichlet(key, alpha + counts)}

    def phi_given_z(key, v):
        counts = jnp.einsum("dnk,dnv->kv", jax.nn.one_hot(v["z"], num_topics), onehot_w)
        return {"phi": jax.random.dirichlet(key, beta + counts)}

    return ["z", ppl.GibbsBlock("theta", sampler=theta_given_z), ppl.GibbsBlock("phi", sampler=phi_given_z)]


def simulate(seed=0, num_docs=40, num_tokens=50, num_topics=3, vocab_size=30, alpha=0.5, beta=0.1, held_out=10):
    """Returns (train (D, N - held_out), test (D, held_out), theta, phi)."""
    rng = np.random.default_rng(seed)
    phi = rng.dirichlet(np.full(vocab_size, beta), size=num_topics)
    theta = rng.dirichlet(np.full(num_topics, alpha), size=num_docs)
    z = np.stack([rng.choice(num_topics, size=num_tokens, p=t) for t in theta])
    words = np.stack([[rng.choice(vocab_size, p=phi[k]) for k in row] for row in z]).astype(np.int32)
    return words[:, : num_tokens - held_out], words[:, num_tokens - held_out:], theta, phi


def perplexity(theta, phi, test):
    """exp(-mean log p(w)) of held-out tokens; `theta` (S, D, K) and `phi` (S, K, V) are
    posterior draws (or single arrays), the predictive averaged over draws."""
    theta, phi = np.asarray(theta), np.asarray(phi)
    if theta.ndim == 2:
        theta, phi = theta[None], phi[None]
    probs = np.einsum("sdk,skv->dv", theta, phi) / theta.shape[0]  # (D, V)
    p = np.take_along_axis(probs, np.asarray(test), axis=1)
    return float(np.exp(-np.mean(np.log(p))))


def load(seed=0):
    """(args, kwargs) for `model` on the simulated training tokens."""
    train, _, _, _ = simulate(seed)
    return (jnp.asarray(train),), {"num_topics": 3, "vocab_size": 30}
