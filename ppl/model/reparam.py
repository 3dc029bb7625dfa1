"""The `reparam` handler: rewrite chosen sample sites as deterministic functions of new ones.

    reparam(model, config={"x": LocScaleReparam(centered=0)})
    with reparam(config=lambda site: LocScaleReparam(0) if site["name"].startswith("theta") else None):
        model()

NumPyro's `numpyro.handlers.reparam` (same signature, same site names): for each latent
site that `config` names, the reparameteriser `r` is called as `r(name, dist, obs)` and
returns `(new_dist, value)`. With `new_dist=None` the site becomes a deterministic site of
that value (it keeps its name, so draws and downstream code see the original variable);
the reparameteriser has drawn whatever new latent sites the value is a function of (e.g.
`{name}_decentered`). A reparameteriser is any callable of that signature; ppl's is
`ppl.infer.reparam.LocScaleReparam`.

Reference: M. Gorinova, D. Moore, M. Hoffman (2019), "Automatic Reparameterisation of
Probabilistic Programs", arXiv:1906.03028.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from ppl.model._runtime import Message, Messenger
from ppl.model.scanned_dist import is_scanned

Config = Mapping[str, Callable] | Callable[[Message], Callable | None]


class reparam(Messenger):
    """Reparameterise the latent sites named in `config`.

    Args:
      fn: the model (omit it to use the handler as a context manager or a decorator,
        `@reparam(config=...)`).
      config: a dict site name -> reparameteriser, or a function `site -> reparameteriser
        or None` (the site is the message on its way, read as NumPyro's: `site["name"]`,
        `site["fn"]`).

    Raises:
      TypeError: for a `config` that is neither a dict nor a callable, or a dict entry that is
        not callable.
      ValueError: (when the model runs) for a configured site that is observed, or whose
        value an inner handler already set (only latent sites can be reparameterised).

    Example:
      >>> from ppl.infer.reparam import LocScaleReparam
      >>> noncentred = reparam(funnel, config={"x": LocScaleReparam(centered=0)})
      >>> r = ppl.infer(noncentred, method="nuts")      # r.samples has x, x_decentered, y
    """

    def __init__(self, fn: Callable | None = None, config: Config | None = None):
        super().__init__(fn)
        if config is None:
            raise TypeError("reparam needs config=<dict site name -> reparameteriser, or a function "
                            "site -> reparameteriser or None>, e.g. config={'x': LocScaleReparam(0)}.")
        if isinstance(config, Mapping):
            for name, r in config.items():
                if not callable(r):
                    raise TypeError(f"reparam config for site '{name}': expected a reparameteriser such as "
                                    f"LocScaleReparam(centered=0), got {type(r).__name__}.")
        elif not callable(config):
            raise TypeError(f"reparam config must be a dict site name -> reparameteriser or a function "
                            f"site -> reparameteriser or None, got {type(config).__name__}.")
        self.config = config

    def _reparameteriser(self, msg: Message):
        if isinstance(self.config, Mapping):
            return self.config.get(msg.name)
        return self.config(msg)

    def scan_body_handler(self):
        """This handler as `ppl.scan` installs it inside a scan body: the same config."""
        return reparam(config=self.config)

    def process(self, msg: Message) -> None:
        if msg.kind not in ("latent", "observed") or is_scanned(msg.dist):
            return  # (a site inside ppl.scan is reparameterised step by step, inside the body)
        r = self._reparameteriser(msg)
        if r is None:
            return
        if msg.kind == "observed" or msg.value is not None:
            what = "observed" if msg.kind == "observed" else "given a value by a handler inside reparam"
            raise ValueError(
                f"reparam: site '{msg.name}' is {what}; only latent sites can be reparameterised. "
                f"Remove '{msg.name}' from the reparam config.")
        new_dist, value = r(msg.name, msg.dist, None)
        if value is None:
            msg.dist = new_dist
            return
        if new_dist is None:  # the site is now a function of new latents: record it as deterministic
            msg.kind, msg.value, msg.dist = "deterministic", value, None
            msg.scale = msg.mask = msg.key = None
            msg.sample_shape = ()
            return
        msg.kind, msg.value, msg.dist = "observed", value, new_dist


__all__ = ["reparam"]
