"""The interface every inference method implements, and shared post-processing."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import numpy as np

from ppl.infer._program import calls_linalg
from ppl.infer.result import Result


@dataclasses.dataclass(frozen=True)
class Method:
    """Base of all methods: a frozen record of options with `run(key, log_density)`.

    A subclass sets `name`, implements `run`, and may override `check` to reject models
    it cannot handle (raised before anything is compiled).
    """

    name: ClassVar[str] = ""

    def check(self, ld) -> None:
        """Raise a clear error if this method cannot run on the compiled model `ld`."""

    def run(self, key, ld) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    def expected_evaluations(self):
        """Roughly how many log-density evaluations the method's program runs, or None when
        unknown. Only compile choices use it (see `ppl.infer._program`)."""
        return None


def require_continuous(method_name: str, ld) -> None:
    """Gradient and optimisation methods need every latent site continuous."""
    discrete = [lat.name for lat in ld.spec.discrete]
    if discrete:
        raise ValueError(
            f"method '{method_name}' needs continuous latent sites, but site '{discrete[0]}' is "
            f"discrete; use method=\"gibbs\" (exact enumeration of discrete sites), "
            f"\"importance\", or marginalise the site out of the model."
        )


def require_proper(method_name: str, ld) -> None:
    """Methods that draw from the prior cannot handle improper flat priors."""
    improper = [lat.name for lat in ld.spec.latents if lat.improper]
    if improper:
        raise ValueError(
            f"method '{method_name}' draws from the prior, but site '{improper[0]}' has an improper "
            f"flat prior (ImproperUniform) that cannot be drawn from; give it a proper prior or "
            f"use nuts, hmc, mh, map or vi."
        )


def draws_from_flat(ld, z):
    """Constrained draws (latents and deterministic sites) from flat `z` of shape (C, S, dim).

    Batched with `vmap`, except on a CPU when the model's forward pass takes a LAPACK-backed
    factorisation: one draw at a time then (`lax.map`), since a batched factorisation may
    block XLA's CPU pool and stop the program from running beside another (see
    `ppl.infer._program.blocks_the_pool`)."""
    c, s = z.shape[:2]
    flat = z.reshape((c * s, -1))
    constrain = lambda zi: ld.constrain(zi, deterministic=True)  # noqa: E731
    if jax.default_backend() == "cpu" and c * s > 1 and calls_linalg(constrain, flat[0]):
        values = jax.lax.map(constrain, flat)
    else:
        values = jax.vmap(constrain)(flat)
    return jax.tree.map(lambda v: v.reshape((c, s) + v.shape[1:]), values)


def to_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def param_values(ld, params: dict) -> dict:
    """Learned params as users expect them: `module` params rebuilt into their modules."""
    import equinox as eqx

    statics = getattr(ld, "module_statics", {})
    return {k: eqx.combine(v, statics[k]) if k in statics else v for k, v in params.items()}
