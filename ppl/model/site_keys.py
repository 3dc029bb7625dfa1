"""NumPyro's dict keys on ppl's typed site records: `site["value"]` as well as `site.value`.

Code written for NumPyro reads sites as dicts: `block(hide_fn=lambda site: site["name"] ==
"x")`, `substitute(substitute_fn=...)`, a loop over a trace testing `site["type"] ==
"sample" and not site["is_observed"]`. ppl's records (`Site`, and the `Message` a handler
sees) stay typed; this mixin maps each NumPyro key to their fields, read-only.

    key              value
    "name"           the site's name
    "type"           "sample" (latent, observed and factor sites), "deterministic", "param"
                     (and "plate", "prng_key" for the messages a handler sees)
    "fn"             the distribution (None for deterministic, param and factor sites)
    "value"          the value
    "is_observed"    True for observed and factor sites
    "infer"          the site's infer dict
    "scale", "mask"  the log-density weight and mask (None if unset)
    "cond_indep_stack"  the enclosing plates (`Plate`: .name, .size, .dim, as NumPyro's frames)
"""
from __future__ import annotations

_TYPES = {"latent": "sample", "observed": "sample", "factor": "sample"}

_KEYS = {
    "name": lambda s: s.name,
    "type": lambda s: _TYPES.get(s.kind, s.kind),
    "fn": lambda s: s.dist,
    "value": lambda s: s.value,
    "is_observed": lambda s: s.kind in ("observed", "factor"),
    "infer": lambda s: s.infer,
    "scale": lambda s: s.scale,
    "mask": lambda s: s.mask,
    "cond_indep_stack": lambda s: tuple(s.plates),
}


class NumPyroKeys:
    """Read a record's fields by NumPyro's dict keys (see the module docstring)."""

    def __getitem__(self, key):
        getter = _KEYS.get(key)
        if getter is None:
            raise KeyError(f"site '{self.name}' has no key {key!r}; the NumPyro keys are "
                           f"{sorted(_KEYS)} (or read the fields: site.kind, site.dist, site.value, ...).")
        return getter(self)

    def get(self, key, default=None):
        return self[key] if key in _KEYS else default

    def __contains__(self, key) -> bool:
        return key in _KEYS

    def keys(self):
        return _KEYS.keys()
