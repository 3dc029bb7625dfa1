"""Normalising user-given random keys."""
import jax
import jax.numpy as jnp
import numpy as np


def as_key(key):
    """Return a raw `uint32[2]` PRNG key from an int, a `PRNGKey` or a typed `jax.random.key`.

    Raises:
      TypeError: for anything else, saying what is accepted.
    """
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"key must be an int or a jax.random key, got {key!r}")
    if isinstance(key, (int, np.integer)):
        return jax.random.PRNGKey(int(key))
    if hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    if hasattr(key, "shape") and tuple(key.shape) == (2,) and jnp.issubdtype(key.dtype, jnp.unsignedinteger):
        return key
    raise TypeError(
        f"key must be an int, a jax.random.PRNGKey or a typed jax.random.key; got "
        f"{type(key).__name__} with value {key!r}. Pass e.g. key=0."
    )
