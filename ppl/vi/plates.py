"""Log densities per element of a plate, for bounds computed one data point at a time."""
from __future__ import annotations

import jax.numpy as jnp


def per_element(site, plate: str, owner: str):
    """The site's log density summed to one value per element of `plate`, with the plate's
    subsampling scale (size / subsample_size) divided out.

    Returns:
      (values of shape (subsample_size,), the scale that was divided out).

    Raises:
      ValueError: if the site is not inside `plate` (then the density does not factorise
        over its elements).
    """
    frame = next((p for p in site.plates if p.name == plate), None)
    if frame is None:
        raise ValueError(
            f"{owner}: site '{site.name}' is outside plate '{plate}', so the log density does not "
            f"factorise over its elements; every latent, observed and factor site must be inside "
            f"the plate (as a VAE's data plate), or drop plate= for one joint estimate."
        )
    ratio = frame.size / frame.subsample_size
    lp = jnp.asarray(site.log_prob)
    if ratio != 1:
        lp = lp / ratio
    m = frame.subsample_size
    if lp.ndim < -frame.dim:
        lp = jnp.reshape(lp, (1,) * (-frame.dim - lp.ndim) + lp.shape)
    lp = jnp.moveaxis(lp, frame.dim, 0)
    lp = jnp.broadcast_to(lp, (m,) + lp.shape[1:])
    return jnp.sum(lp.reshape(m, -1), axis=1), ratio


def sum_per_element(sites, plate: str, owner: str, dtype):
    """Sum of `per_element` over `sites`: (values (M,) or a scalar 0 if no sites, scale)."""
    total, scale = jnp.zeros((), dtype), 1.0
    for s in sites:
        v, scale = per_element(s, plate, owner)
        total = total + v
    return total, scale
