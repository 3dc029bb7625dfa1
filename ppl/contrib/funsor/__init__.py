"""NumPyro's `numpyro.contrib.funsor` names under ppl: `config_enumerate`, `markov` and
`infer_discrete`. ppl needs no funsor: discrete sites are summed out and drawn by
`ppl.compile.marginal`."""
from ppl.infer.discrete import discrete_handler as infer_discrete
from ppl.model.enumeration import config_enumerate, markov

__all__ = ["config_enumerate", "infer_discrete", "markov"]
