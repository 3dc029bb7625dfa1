"""`Vindex`: advanced indexing with broadcasting, as NumPyro's models write it.

`Vindex(x)[..., i, :, j]` selects with index arrays `i` and `j` that broadcast with each other
and with `x`'s batch dims (those `...` covers, on the left); each `:` keeps a dim on the
right. The result's shape is `broadcast(x.shape[:-3], i.shape, j.shape) + (x.shape[-2],)`.
Without `...`, the indices start at `x`'s first dim and missing trailing ones are `:`
(`Vindex(x)[i]` on a matrix is `Vindex(x)[i, :]`, of shape `i.shape + (x.shape[-1],)`).

In ppl a discrete site summed out by enumeration keeps its own shape in every run of the
model (its candidates are batched by `vmap` outside the model), so `Vindex` is ordinary
indexing with these broadcasting rules, and models written for NumPyro's enumeration run
unchanged.
"""
from __future__ import annotations

import jax.numpy as jnp


def vindex(tensor, args):
    """`tensor[args]` with `Vindex`'s broadcasting semantics (see the module docstring).

    Raises:
      IndexError: for an index other than an int, an integer array, `:` or a leading `...`.
    """
    tensor = jnp.asarray(tensor)
    if not isinstance(args, tuple):
        return tensor[args]
    batched = bool(args) and args[0] is Ellipsis
    if batched:
        args = args[1:]
    elif len(args) < tensor.ndim:
        args = args + (slice(None),) * (tensor.ndim - len(args))
    for a in args:
        if a is Ellipsis or (isinstance(a, slice) and a != slice(None)) or a is None:
            raise IndexError(
                f"Vindex supports ints, integer arrays, ':' and a leading '...', got {a!r}; "
                f"'...' may appear only first.")
    event = len(args)
    if event > tensor.ndim:
        raise IndexError(f"Vindex: {event} indices for an array of {tensor.ndim} dims.")
    batch_shape = tensor.shape[: tensor.ndim - event]
    slices = [k for k, a in enumerate(args) if isinstance(a, slice)]
    tail = (1,) * len(slices)
    index = []
    for b, size in enumerate(batch_shape):
        index.append(jnp.arange(size).reshape((size,) + (1,) * (len(batch_shape) - b - 1) + tail))
    for k, a in enumerate(args):
        size = tensor.shape[len(batch_shape) + k]
        if isinstance(a, slice):
            j = slices.index(k)
            index.append(jnp.arange(size).reshape((size,) + (1,) * (len(slices) - j - 1)))
        else:
            a = jnp.asarray(a)
            index.append(a.reshape(a.shape + tail))
    return tensor[tuple(index)] if index else tensor


class Vindex:
    """`Vindex(x)[args]` is `vindex(x, args)`."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __getitem__(self, args):
        return vindex(self._tensor, args)
