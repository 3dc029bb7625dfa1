"""NumPyro's import paths under `ppl`: `ppl.handlers`, `ppl.dist`, `ppl.distributions` and
`ppl.diagnostics` (NumPyro's `hpdi`, `effective_sample_size`, ... as they are).

A NumPyro model is ported by renaming `numpyro` to `ppl`, so these paths must import:

    from ppl.handlers import seed, trace, mask     # ppl.model.handlers
    import ppl.dist as dist                        # numpyro.distributions itself
    from ppl.dist import constraints, transforms
    from ppl.distributions.transforms import AffineTransform

The modules are registered in `sys.modules` under the ppl names, not copied: a class
imported through either path is the same class (NumPyro's `isinstance` checks hold), and
`ppl.dist is numpyro.distributions`. Every submodule of numpyro.distributions is imported
first, so `ppl.dist.<submodule>` never loads a second copy of one.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import numpyro.diagnostics
import numpyro.distributions

from ppl.model import handlers


def alias(name: str, module) -> None:
    """Make `import name` (and `import name.<sub>` for the package's submodules) give `module`."""
    if hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{module.__name__}.{info.name}")
    sys.modules.setdefault(name, module)
    prefix = module.__name__ + "."
    for sub, m in list(sys.modules.items()):
        if sub.startswith(prefix) and m is not None:
            sys.modules.setdefault(name + sub[len(module.__name__):], m)


alias("ppl.handlers", handlers)
alias("ppl.dist", numpyro.distributions)
alias("ppl.distributions", numpyro.distributions)
alias("ppl.diagnostics", numpyro.diagnostics)
