"""Which plates of a model subsample its data (`plate(name, size, subsample_size=m)`).

Stochastic variational inference draws a new subsample at each step and scales the plate's
terms by size / m, which keeps its objective unbiased for the whole data set. Every other
method evaluates the log density of the whole data set, so it refuses such a plate
(`ppl.method.base.require_whole_data`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ppl.model import handlers
from ppl.model._runtime import Message, Messenger


class RecordPlates(Messenger):
    """Record the subsample indices chosen by each subsampled plate."""

    def __init__(self):
        super().__init__(None)
        self.indices = {}

    def postprocess(self, msg: Message) -> None:
        if msg.kind == "plate":
            self.indices[msg.name] = msg.value


def subsampled_plates(ld) -> bool:
    """Whether the model has a subsampled plate (its runs then need a key)."""
    rec = RecordPlates()
    # Traced, not run: only which plates subsample matters (an eager run dispatches op by op).
    jax.eval_shape(lambda: [ld.run(jnp.zeros((ld.dim,), jnp.result_type(float)),
                                   extra=(rec, handlers.seed(rng_seed=0))), None][1])
    return bool(rec.indices)
