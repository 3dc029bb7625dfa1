"""NumPyro's `numpyro.optim` names, built on optax: the optimisers `ppl.infer.SVI` takes.

    import ppl.optim as optim
    svi = SVI(model, guide, optim.Adam(step_size=0.01), Trace_ELBO())

Each is an `Optimizer`: a named record holding an optax `GradientTransformation` (`tx`),
with NumPyro's `init(params)`, `update(grads, state)` and `get_params(state)` for loops
written by hand. `SVI` takes one of these or a bare optax transformation (as NumPyro does).
`step_size` may be a number or a schedule `step -> size` (optax's learning-rate schedules).

  Adam(step_size, b1=0.9, b2=0.999, eps=1e-8)
  ClippedAdam(step_size, b1=0.9, b2=0.999, eps=1e-8, clip_norm=10.0)  each gradient entry
      clipped to [-clip_norm, clip_norm] first (as NumPyro's)
  SGD(step_size)
  Momentum(step_size, mass)                 v <- mass * v + g;  x <- x - step_size * v
  RMSProp(step_size, gamma=0.9, eps=1e-8)
  Adagrad(step_size, momentum=0.9)          jax.example_libraries' Adagrad: g / sqrt(sum g^2),
                                            averaged with `momentum`
  optax_to_numpyro(tx)                      any optax transformation
"""
from __future__ import annotations

from typing import Any, NamedTuple

import optax


class OptimizerState(NamedTuple):
    """An optimiser's state in a hand-written loop: the step count, the params and optax's state."""

    step: Any
    params: Any
    opt_state: Any


class Optimizer(NamedTuple):
    """A NumPyro-named optimiser: `name` and the optax transformation `tx` it is."""

    name: str
    tx: Any

    def init(self, params) -> OptimizerState:
        return OptimizerState(0, params, self.tx.init(params))

    def update(self, grads, state: OptimizerState) -> OptimizerState:
        """One step down the gradient `grads` (of a loss to minimise)."""
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        return OptimizerState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)

    def get_params(self, state: OptimizerState):
        return state.params


def _positive(owner, name, value):
    if not callable(value) and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{owner}: {name} must be a positive number or a schedule step -> size, got {value!r}.")


def Adam(step_size, b1=0.9, b2=0.999, eps=1e-8) -> Optimizer:
    """Adam (Kingma and Ba 2015), as `numpyro.optim.Adam`."""
    _positive("Adam", "step_size", step_size)
    return Optimizer("Adam", optax.adam(step_size, b1=b1, b2=b2, eps=eps))


def ClippedAdam(step_size, b1=0.9, b2=0.999, eps=1e-8, clip_norm=10.0) -> Optimizer:
    """Adam with every gradient entry clipped to [-clip_norm, clip_norm] first."""
    _positive("ClippedAdam", "step_size", step_size)
    _positive("ClippedAdam", "clip_norm", clip_norm)
    return Optimizer("ClippedAdam", optax.chain(optax.clip(clip_norm), optax.adam(step_size, b1=b1, b2=b2, eps=eps)))


def SGD(step_size) -> Optimizer:
    """Plain gradient descent."""
    _positive("SGD", "step_size", step_size)
    return Optimizer("SGD", optax.sgd(step_size))


def Momentum(step_size, mass) -> Optimizer:
    """Gradient descent with (heavy-ball) momentum `mass`."""
    _positive("Momentum", "step_size", step_size)
    return Optimizer("Momentum", optax.sgd(step_size, momentum=mass))


def RMSProp(step_size, gamma=0.9, eps=1e-8) -> Optimizer:
    """RMSProp: steps scaled by a moving root mean square (decay `gamma`) of the gradients."""
    _positive("RMSProp", "step_size", step_size)
    return Optimizer("RMSProp", optax.rmsprop(step_size, decay=gamma, eps=eps))


def Adagrad(step_size, momentum=0.9) -> Optimizer:
    """Adagrad (Duchi et al. 2011) with momentum, as jax.example_libraries' (NumPyro's)."""
    _positive("Adagrad", "step_size", step_size)
    lr = step_size if callable(step_size) else float(step_size)
    return Optimizer("Adagrad", optax.chain(optax.scale_by_rss(initial_accumulator_value=0.0, eps=0.0),
                                            optax.ema(momentum, debias=False),
                                            optax.scale_by_learning_rate(lr)))


def optax_to_numpyro(transformation) -> Optimizer:
    """Any optax `GradientTransformation` as an optimiser for `SVI`."""
    return Optimizer("optax", as_optax(transformation, "optax_to_numpyro"))


def as_optax(optim, owner="SVI"):
    """The optax transformation of an `Optimizer` or of a bare optax transformation."""
    if isinstance(optim, Optimizer):
        return optim.tx
    if isinstance(optim, optax.GradientTransformation) or (hasattr(optim, "init") and hasattr(optim, "update")
                                                           and not hasattr(optim, "get_params")):
        return optim
    raise TypeError(f"{owner}: optim must be a ppl.optim optimiser (ppl.optim.Adam(0.01), ...) or an optax "
                    f"GradientTransformation (optax.adam(0.01)), got {optim!r}.")


__all__ = ["Adam", "ClippedAdam", "SGD", "Momentum", "RMSProp", "Adagrad", "optax_to_numpyro", "Optimizer",
           "OptimizerState"]
