"""NumPyro's examples/annotation.py (Bayesian models of annotation: discrete classes summed out by
enumeration), numpyro renamed to ppl: the example's imports and code as it writes them (numpyro
0.22, Apache-2.0, Copyright Contributors to the Pyro project), then a harness part; see
compat_harness for the comparison."""
# ruff: noqa: F401 - the example's imports are kept as it writes them
import pytest

import compat_harness

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not compat_harness.importable("funsor"), reason=compat_harness.NEEDS_FUNSOR)]
if not compat_harness.importable("ppl.ops.indexing"):
    pytest.skip(compat_harness.NEEDS_ENUMERATION, allow_module_level=True)

import argparse
import os
import numpy as np
from jax import nn, random, vmap
import jax.numpy as jnp
import ppl
from ppl import handlers
import ppl.distributions as dist
from ppl.infer import MCMC, NUTS, Predictive
from ppl.infer.reparam import LocScaleReparam
from ppl.ops.indexing import Vindex

import sys

import pytest

import compat_harness


# -- the example's code (numpyro -> ppl) ----------------------------------------------------
def get_data():
    """
    :return: a tuple of annotator indices and class indices. The first term has shape
        `num_positions` whose entries take values from `0` to `num_annotators - 1`.
        The second term has shape `num_items x num_positions` whose entries take values
        from `0` to `num_classes - 1`.
    """
    # NB: the first annotator assessed each item 3 times
    positions = np.array([1, 1, 1, 2, 3, 4, 5])
    # fmt: off
    annotations = np.array(
        [[1, 1, 1, 1, 1, 1, 1], [3, 3, 3, 4, 3, 3, 4], [1, 1, 2, 2, 1, 2, 2],
         [2, 2, 2, 3, 1, 2, 1], [2, 2, 2, 3, 2, 2, 2], [2, 2, 2, 3, 3, 2, 2],
         [1, 2, 2, 2, 1, 1, 1], [3, 3, 3, 3, 4, 3, 3], [2, 2, 2, 2, 2, 2, 3],
         [2, 3, 2, 2, 2, 2, 3], [4, 4, 4, 4, 4, 4, 4], [2, 2, 2, 3, 3, 4, 3],
         [1, 1, 1, 1, 1, 1, 1], [2, 2, 2, 3, 2, 1, 2], [1, 2, 1, 1, 1, 1, 1],
         [1, 1, 1, 2, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1],
         [2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 1, 3, 2, 2], [2, 2, 2, 2, 2, 2, 2],
         [2, 2, 2, 2, 2, 2, 1], [2, 2, 2, 3, 2, 2, 2], [2, 2, 1, 2, 2, 2, 2],
         [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [2, 3, 2, 2, 2, 2, 2],
         [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [1, 1, 2, 1, 1, 2, 1],
         [1, 1, 1, 1, 1, 1, 1], [3, 3, 3, 3, 2, 3, 3], [1, 1, 1, 1, 1, 1, 1],
         [2, 2, 2, 2, 2, 2, 2], [2, 2, 2, 3, 2, 3, 2], [4, 3, 3, 4, 3, 4, 3],
         [2, 2, 1, 2, 2, 3, 2], [2, 3, 2, 3, 2, 3, 3], [3, 3, 3, 3, 4, 3, 2],
         [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [1, 2, 1, 2, 1, 1, 1],
         [2, 3, 2, 2, 2, 2, 2], [1, 2, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2, 2]])
    # fmt: on
    # we minus 1 because in Python, the first index is 0
    return positions - 1, annotations - 1


def multinomial(annotations):
    """
    This model corresponds to the plate diagram in Figure 1 of reference [1].
    """
    num_classes = int(np.max(annotations)) + 1
    num_items, num_positions = annotations.shape

    with ppl.plate("class", num_classes):
        zeta = ppl.sample("zeta", dist.Dirichlet(jnp.ones(num_classes)))

    pi = ppl.sample("pi", dist.Dirichlet(jnp.ones(num_classes)))

    with ppl.plate("item", num_items, dim=-2):
        c = ppl.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})

        with ppl.plate("position", num_positions):
            ppl.sample("y", dist.Categorical(zeta[c]), obs=annotations)


def dawid_skene(positions, annotations):
    """
    This model corresponds to the plate diagram in Figure 2 of reference [1].
    """
    num_annotators = int(np.max(positions)) + 1
    num_classes = int(np.max(annotations)) + 1
    num_items, num_positions = annotations.shape

    with ppl.plate("annotator", num_annotators, dim=-2):
        with ppl.plate("class", num_classes):
            beta = ppl.sample("beta", dist.Dirichlet(jnp.ones(num_classes)))

    pi = ppl.sample("pi", dist.Dirichlet(jnp.ones(num_classes)))

    with ppl.plate("item", num_items, dim=-2):
        c = ppl.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})

        # here we use Vindex to allow broadcasting for the second index `c`
        # ref: http://num.pyro.ai/en/latest/utilities.html#ppl.contrib.indexing.vindex
        with ppl.plate("position", num_positions):
            ppl.sample(
                "y", dist.Categorical(Vindex(beta)[positions, c, :]), obs=annotations
            )


def mace(positions, annotations):
    """
    This model corresponds to the plate diagram in Figure 3 of reference [1].
    """
    num_annotators = int(np.max(positions)) + 1
    num_classes = int(np.max(annotations)) + 1
    num_items, num_positions = annotations.shape

    with ppl.plate("annotator", num_annotators):
        epsilon = ppl.sample("epsilon", dist.Dirichlet(jnp.full(num_classes, 10)))
        theta = ppl.sample("theta", dist.Beta(0.5, 0.5))

    with ppl.plate("item", num_items, dim=-2):
        c = ppl.sample(
            "c",
            dist.DiscreteUniform(0, num_classes - 1),
            infer={"enumerate": "parallel"},
        )

        with ppl.plate("position", num_positions):
            s = ppl.sample(
                "s",
                dist.Bernoulli(1 - theta[positions]),
                infer={"enumerate": "parallel"},
            )
            probs = jnp.where(
                s[..., None] == 0, nn.one_hot(c, num_classes), epsilon[positions]
            )
            ppl.sample("y", dist.Categorical(probs), obs=annotations)


def hierarchical_dawid_skene(positions, annotations):
    """
    This model corresponds to the plate diagram in Figure 4 of reference [1].
    """
    num_annotators = int(np.max(positions)) + 1
    num_classes = int(np.max(annotations)) + 1
    num_items, num_positions = annotations.shape

    with ppl.plate("class", num_classes):
        # NB: we define `beta` as the `logits` of `y` likelihood; but `logits` is
        # invariant up to a constant, so we'll follow [1]: fix the last term of `beta`
        # to 0 and only define hyperpriors for the first `num_classes - 1` terms.
        zeta = ppl.sample(
            "zeta", dist.Normal(0, 1).expand([num_classes - 1]).to_event(1)
        )
        omega = ppl.sample(
            "Omega", dist.HalfNormal(1).expand([num_classes - 1]).to_event(1)
        )

    with ppl.plate("annotator", num_annotators, dim=-2):
        with ppl.plate("class", num_classes):
            # non-centered parameterization
            with handlers.reparam(config={"beta": LocScaleReparam(0)}):
                beta = ppl.sample("beta", dist.Normal(zeta, omega).to_event(1))
            # pad 0 to the last item
            beta = jnp.pad(beta, [(0, 0)] * (jnp.ndim(beta) - 1) + [(0, 1)])

    pi = ppl.sample("pi", dist.Dirichlet(jnp.ones(num_classes)))

    with ppl.plate("item", num_items, dim=-2):
        c = ppl.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})

        with ppl.plate("position", num_positions):
            logits = Vindex(beta)[positions, c, :]
            ppl.sample("y", dist.Categorical(logits=logits), obs=annotations)


def item_difficulty(annotations):
    """
    This model corresponds to the plate diagram in Figure 5 of reference [1].
    """
    num_classes = int(np.max(annotations)) + 1
    num_items, num_positions = annotations.shape

    with ppl.plate("class", num_classes):
        eta = ppl.sample(
            "eta", dist.Normal(0, 1).expand([num_classes - 1]).to_event(1)
        )
        chi = ppl.sample(
            "Chi", dist.HalfNormal(1).expand([num_classes - 1]).to_event(1)
        )

    pi = ppl.sample("pi", dist.Dirichlet(jnp.ones(num_classes)))

    with ppl.plate("item", num_items, dim=-2):
        c = ppl.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})

        with handlers.reparam(config={"theta": LocScaleReparam(0)}):
            theta = ppl.sample("theta", dist.Normal(eta[c], chi[c]).to_event(1))
            theta = jnp.pad(theta, [(0, 0)] * (jnp.ndim(theta) - 1) + [(0, 1)])

        with ppl.plate("position", annotations.shape[-1]):
            ppl.sample("y", dist.Categorical(logits=theta), obs=annotations)


def logistic_random_effects(positions, annotations):
    """
    This model corresponds to the plate diagram in Figure 5 of reference [1].
    """
    num_annotators = int(np.max(positions)) + 1
    num_classes = int(np.max(annotations)) + 1
    num_items, num_positions = annotations.shape

    with ppl.plate("class", num_classes):
        zeta = ppl.sample(
            "zeta", dist.Normal(0, 1).expand([num_classes - 1]).to_event(1)
        )
        omega = ppl.sample(
            "Omega", dist.HalfNormal(1).expand([num_classes - 1]).to_event(1)
        )
        chi = ppl.sample(
            "Chi", dist.HalfNormal(1).expand([num_classes - 1]).to_event(1)
        )

    with ppl.plate("annotator", num_annotators, dim=-2):
        with ppl.plate("class", num_classes):
            with handlers.reparam(config={"beta": LocScaleReparam(0)}):
                beta = ppl.sample("beta", dist.Normal(zeta, omega).to_event(1))
                beta = jnp.pad(beta, [(0, 0)] * (jnp.ndim(beta) - 1) + [(0, 1)])

    pi = ppl.sample("pi", dist.Dirichlet(jnp.ones(num_classes)))

    with ppl.plate("item", num_items, dim=-2):
        c = ppl.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})

        with handlers.reparam(config={"theta": LocScaleReparam(0)}):
            theta = ppl.sample("theta", dist.Normal(0, chi[c]).to_event(1))
            theta = jnp.pad(theta, [(0, 0)] * (jnp.ndim(theta) - 1) + [(0, 1)])

        with ppl.plate("position", num_positions):
            logits = Vindex(beta)[positions, c, :] - theta
            ppl.sample("y", dist.Categorical(logits=logits), obs=annotations)


NAME_TO_MODEL = {
    "mn": multinomial,
    "ds": dawid_skene,
    "mace": mace,
    "hds": hierarchical_dawid_skene,
    "id": item_difficulty,
    "lre": logistic_random_effects,
}


# -- harness -------------------------------------------------------------------------------
ARGS = argparse.Namespace(num_samples=400, num_warmup=400, num_chains=2, model="mn")


def run(args, rng_key):
    # main()'s inference part, as the example writes it (the example seeds with random.key(0))
    annotators, annotations = get_data()
    model = NAME_TO_MODEL[args.model]
    data = (
        (annotations,)
        if model in [multinomial, item_difficulty]
        else (annotators, annotations)
    )
    mcmc = MCMC(
        NUTS(model),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        progress_bar=False if "NUMPYRO_SPHINXBUILD" in os.environ else True,
    )
    mcmc.run(random.key(0), *data)
    mcmc.print_summary()
    posterior_samples = mcmc.get_samples()
    predictive = Predictive(model, posterior_samples, infer_discrete=True)
    discrete_samples = predictive(random.key(1), *data)
    assert discrete_samples["c"].shape[0] == args.num_samples * args.num_chains
    return posterior_samples


def COMPARE(samples):
    """What is compared (also by benchmarks/compat.py): where the classes are exchangeable a
    priori, the class weights pi after sorting; MACE has no class weights, and its classes
    are tied to the labels (an annotator who does not spam reports the item's class), so its
    sites are compared as they are."""
    if "pi" in samples:
        return compat_harness.sort_by("pi")(samples)
    return {k: np.asarray(v) for k, v in samples.items()}


# Measured (2026-12-07; 3 keys x 4 chains of 400 + 400 per side): on item_difficulty and
# logistic_random_effects each chain of either sampler may stay for hundreds of draws in one
# of the class weights' modes, so the sorted weights' ESS within a chain is 4 to 250 on both
# sides, and the comparison's floor of 20 fails on whichever side drew such a chain.
_STICKY = ("each chain of either sampler may stay in one mode of the class weights for hundreds of "
           "draws; sorted pi's smallest within-chain ESS over 12 chains per side (3 keys x 4 chains of "
           "400 + 400): {}, so the floor of 20 effective draws fails on one side or the other")


@pytest.mark.parametrize("name", [
    "mn", "ds", "mace", "hds",
    pytest.param("id", marks=pytest.mark.xfail(strict=True, reason=_STICKY.format(
        "ppl 3.5 to 244 (median 14), NumPyro 4.9 to 161 (median 16)"))),
    pytest.param("lre", marks=pytest.mark.xfail(strict=True, reason=_STICKY.format(
        "ppl 4.0 to 198 (median 58), NumPyro 5.3 to 135 (median 12)"))),
])
def test_annotation_agrees_with_numpyro(name):
    """Compared through the sorted class weights (see COMPARE)."""
    args = argparse.Namespace(**{**vars(ARGS), "model": name})
    compat_harness.check(sys.modules[__name__], args, transform=COMPARE)
