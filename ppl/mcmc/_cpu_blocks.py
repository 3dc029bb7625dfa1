"""Run a group of operations as ONE nested XLA computation on CPU.

XLA's CPU runtime executes the operations of a computation on a thread pool, concurrently
where data flow allows, unless the computation has at most 8 operations or touches only
buffers of at most 512 bytes (``ThunkExecutor::Options`` in XLA). Inside a NUTS step the
operations are sub-microsecond, so the executor's bookkeeping and thread hand-offs cost
more than the arithmetic (measured: 2-4x slower per leapfrog on small models). Wrapping
each stage of a loop body in a conditional on an always-true (but opaque) predicate makes
every enclosing computation a handful of operations, executed in order.

The wrapped function is traced once (``jax.make_jaxpr``) and replayed in the taken branch;
the other branch returns zeros and is never executed. On other backends the function runs
inline.
"""
import jax
import jax.numpy as jnp
from jax.extend.core import jaxpr_as_fun


def nested(fn, *args):
    """Return ``fn(*args)``; on CPU, evaluated as one nested computation (see module doc)."""
    if jax.default_backend() != "cpu":
        return fn(*args)
    closed, out_shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
    flat_shapes, out_tree = jax.tree.flatten(out_shapes)

    def run(*flat_args):
        return jaxpr_as_fun(closed)(*flat_args)

    def skip(*flat_args):
        return [jnp.zeros(s.shape, s.dtype) for s in flat_shapes]

    always = jax.lax.optimization_barrier(jnp.asarray(True))
    outs = jax.lax.cond(always, run, skip, *jax.tree.leaves(args))
    return jax.tree.unflatten(out_tree, outs)


def nested_update(fn, carry, *args):
    """Return ``fn(carry, *args)`` (same structure as ``carry``), updating it in place.

    Like :func:`nested`, but as a one-trip ``while_loop`` (opaque trip count) so that the
    result reuses the carry's buffers: no copies of large state such as a draws buffer.
    """
    if jax.default_backend() != "cpu":
        return fn(carry, *args)
    trips = jax.lax.optimization_barrier(jnp.asarray(1, jnp.int32))

    def body(loop):
        i, c = loop
        return i + 1, fn(c, *args)

    return jax.lax.while_loop(lambda loop: loop[0] < trips, body, (jnp.zeros((), jnp.int32), carry))[1]
