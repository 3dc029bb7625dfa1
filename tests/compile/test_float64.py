"""With `jax_enable_x64` the compiled model computes in float64 end to end."""
import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist


def model(x, y):
    w = ppl.sample("w", dist.Normal(0.0, 10.0))
    s = ppl.sample("s", dist.HalfNormal(1.0))
    with ppl.plate("n", x.shape[0]):
        ppl.deterministic("mu", w * x)
        ppl.observe("y", dist.Normal(w * x, s), y)


def test_compiled_model_is_float64_end_to_end(x64):
    x = jnp.arange(5.0)
    assert x.dtype == jnp.float64
    ld = ppl.compile(model, x, 2 * x + 0.1)
    z = ld.init(0)
    assert z.dtype == jnp.float64
    assert ld.log_prob(z).dtype == jnp.float64
    assert jax.jit(jax.grad(ld.log_prob))(z).dtype == jnp.float64
    assert all(v.dtype == jnp.float64 for v in ld.constrain(z, deterministic=True).values())
    assert ld.unconstrain(ld.constrain(z)).dtype == jnp.float64
    # float64 resolves differences float32 cannot
    z2 = z.at[0].add(1e-9)
    assert ld.log_prob(z2) != ld.log_prob(z)
    np.testing.assert_allclose(ld.unconstrain(ld.constrain(z)), z, rtol=1e-12)
