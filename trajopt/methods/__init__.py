"""Methods: what `trajopt.solve` iterates, one module each, registered by the name used in problem files.

| name     | module       | what it is |
|----------|--------------|------------|
| gradient | gradient.py  | a gradient oracle driving an optax optimiser (the paper's loop); a variant names it by its oracle |
| ilqr     | ilqr.py      | Gauss–Newton iLQR: LM regularisation, backtracking on the true cost, projected box limits |

A method is a frozen dataclass with ``init(key, problem, U0) -> state`` and ``step(key, problem, state) ->
(state, info)``; see `trajopt.methods.base` for the contract. Its dataclass fields are the keys of its TOML
table. ``gradient`` is built from a variant's ``oracle`` and ``optimizer`` keys instead (see the README's
"Variants").
"""

from trajopt.methods.base import REQUIRED_INFO, Method, check_info, state_decision
from trajopt.methods.gradient import GradientInfo, GradientMethod, GradientState
from trajopt.methods.ilqr import ILQR
from trajopt.registry import Registry

METHODS: Registry[type] = Registry("method")
METHODS.register("gradient", GradientMethod)
METHODS.register("ilqr", ILQR)

__all__ = ["METHODS", "Method", "REQUIRED_INFO", "check_info", "state_decision", "GradientMethod", "GradientInfo",
           "GradientState", "ILQR"]
