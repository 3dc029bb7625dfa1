"""`ppl.runtime.program.when`: a real branch whose function is traced once."""
import jax
import jax.numpy as jnp
import numpy as np

from ppl.runtime.program import when


def test_when_traces_its_function_once_and_gives_zeros_where_the_predicate_fails():
    traces = []

    def double(x):
        traces.append(1)
        return {"y": 2.0 * x, "n": jnp.sum(x > 0)}

    program = jax.jit(lambda p, x: when(p, double, x))
    x = jnp.arange(3.0)
    on, off = program(True, x), program(False, x)
    assert len(traces) == 1
    np.testing.assert_array_equal(on["y"], 2.0 * x)
    assert int(on["n"]) == 2
    np.testing.assert_array_equal(off["y"], jnp.zeros(3))
    assert off["n"].dtype == on["n"].dtype and int(off["n"]) == 0
