"""Counter-based random numbers for kernel internals: Threefry-2x32 written out round by round.

``jax.random`` lowers Threefry on CPU to a rolled ``while_loop`` (to keep compile times
small), and every call inside a sampler's loop then costs more than a cheap gradient; each
call site, and more so under ``vmap``, also adds its own loop to compile. Here the same
cipher is unrolled so that XLA fuses it into the surrounding computation. A kernel
turns its JAX key into a Threefry key once (:func:`key_words`) and encrypts counters
``(index, stream)`` with it; distinct streams give independent draws. The cipher output is
bit-identical to ``jax.extend.random.threefry_2x32`` (tested), so the statistical quality
is Threefry's; uniforms and normals are mapped from its bits as ``jax.random`` does.

Reference: Salmon, Moraes, Dror & Shaw (2011), "Parallel random numbers: as easy as
1, 2, 3", section 3 (Threefry-2x32, 20 rounds, rotation constants R_{2x32}).
"""
import jax
import jax.numpy as jnp

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))

# Streams: the second counter word, so that draws for different purposes never collide.
LEAF, MERGE, MOMENTUM, DIRECTION, ACCEPT, PROPOSAL, INIT, STEP_SIZE, LENGTH, ITERATION = range(10)


def _rotl(x, r):
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(key, x0, x1):
    """Threefry-2x32 block cipher: encrypt the counter ``(x0, x1)`` under ``key`` (uint32[2]).

    Returns two uint32 arrays of the broadcast shape of ``x0`` and ``x1``.
    """
    k0, k1 = key[0], key[1]
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0 = jnp.asarray(x0).astype(jnp.uint32) + ks[0]
    x1 = jnp.asarray(x1).astype(jnp.uint32) + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def key_words(key):
    """The uint32[2] Threefry key behind a JAX PRNG key (raw or typed).

    A Threefry key's own data is used as is (exactly what ``jax.random.bits`` encrypts
    with); keys of other implementations are hashed once with ``jax.random.bits``.
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(key)
    else:
        data = key
    if data.shape == (2,) and data.dtype == jnp.uint32:
        return data
    return jax.random.bits(key, (2,), jnp.uint32)


def _open_unit(b0, b1, dtype):
    """Bits to U(0, 1) on the open interval: 24-bit resolution, 53-bit for float64."""
    if jnp.dtype(dtype) == jnp.float64:
        hi = (b0 >> jnp.uint32(6)).astype(dtype)  # 26 bits
        lo = (b1 >> jnp.uint32(5)).astype(dtype)  # 27 bits
        return (hi * 134217728.0 + lo + 0.5) * (1.0 / 9007199254740992.0)
    return ((b0 >> jnp.uint32(8)).astype(dtype) + 0.5) * (1.0 / 16777216.0)


def uniform(key, counter, stream, dtype):
    """U(0, 1) draws (open interval) for integer ``counter`` (any shape) in ``stream``."""
    b0, b1 = threefry2x32(key, counter, stream)
    return _open_unit(b0, b1, dtype)


def normal(key, stream, shape, dtype):
    """Standard normal draws of ``shape`` in ``stream`` (inverse-CDF of open uniforms)."""
    size = 1
    for s in shape:
        size *= s
    u = uniform(key, jnp.arange(size, dtype=jnp.uint32), stream, dtype)
    return (jnp.sqrt(jnp.asarray(2.0, dtype)) * jax.lax.erf_inv(2.0 * u - 1.0)).reshape(shape)


def subkey(key, counter, stream):
    """A raw ``uint32[2]`` Threefry key for ``counter`` in ``stream``: the cipher of
    ``(counter, stream)``, usable as a JAX PRNG key and by :func:`key_words`."""
    b0, b1 = threefry2x32(key, counter, stream)
    return jnp.stack([b0, b1])


def bits(key, counter, stream):
    """32 random bits for ``counter`` in ``stream``."""
    return threefry2x32(key, counter, stream)[0]
