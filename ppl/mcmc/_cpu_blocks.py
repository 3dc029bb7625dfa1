"""Run a group of operations as ONE nested XLA computation on CPU.

XLA's CPU runtime executes the operations of a computation on a thread pool, concurrently
where data flow allows, unless the computation has at most 8 operations or touches only
buffers of at most 512 bytes (``ThunkExecutor::Options`` in XLA). Inside a NUTS step the
operations are sub-microsecond, so the executor's bookkeeping and thread hand-offs cost
more than the arithmetic (measured: 2-4x slower per leapfrog on small models). Wrapping
each stage of a loop body in a conditional on an always-true (but opaque) predicate makes
every enclosing computation a handful of operations, executed in order.

The wrapped function is traced once, as the taken branch; the other branch returns zeros
of the same shapes (read off that trace) and is never executed. On other backends the
function runs inline.
"""
import jax
import jax.numpy as jnp


def nested(fn, *args):
    """Return ``fn(*args)``; on CPU, evaluated as one nested computation (see module doc)."""
    if jax.default_backend() != "cpu":
        return fn(*args)
    flat_args, in_tree = jax.tree.flatten(args)
    out = {}

    def run(*flat):
        leaves, out["tree"] = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, flat)))
        leaves = [jnp.asarray(x) for x in leaves]
        out["shapes"] = [(x.shape, x.dtype) for x in leaves]
        return leaves

    def skip(*flat):
        if "shapes" not in out:  # `cond` traced this branch first: find the shapes apart
            shapes = jax.eval_shape(run, *flat)
            out["shapes"] = [(s.shape, s.dtype) for s in shapes]
        return [jnp.zeros(shape, dtype) for shape, dtype in out["shapes"]]

    always = jax.lax.optimization_barrier(jnp.asarray(True))
    outs = jax.lax.cond(always, run, skip, *flat_args)
    return jax.tree.unflatten(out["tree"], outs)


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
