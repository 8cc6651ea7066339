"""Methods: what `trajopt.solve` iterates, one module each, registered by the name used in problem files.

| name     | module       | what it is | rollouts; backward passes per step |
|----------|--------------|------------|------------------------------------|
| gradient | gradient.py  | a gradient oracle driving an optax optimiser (the paper's loop); a variant names it by its oracle | the oracle's (`trajopt.oracles`, `trajopt.policies.oracles`) |
| ilqr     | ilqr.py      | Gauss–Newton iLQR: LM regularisation, backtracking on the true cost, Box-DDP limits | 1 + line-search trials; one linearisation (n + m directional derivatives at each of the T steps) |
| cem      | cem.py       | cross-entropy method, a diagonal Gaussian over the whole sequence (trajax's cem) | population × B; 0 |
| mppi     | mppi.py      | MPPI: exponentially weighted perturbations, temperature λ (hydrax's MPPI) | N × B; 0 |
| ps       | ps.py        | predictive sampling: best of N perturbations and the incumbent (MuJoCo MPC, hydrax) | (N + 1) × B; 0 |
| dial     | dial.py      | annealed MPPI after DIAL-MPC: noise shrinking over iterations and toward the start | N × B; 0 |
| lbfgs    | lbfgs.py     | L-BFGS on the noise-free cost with optax's zoom line search (optax.lbfgs) | B per evaluation; the same |

B = ``decision_rollouts`` (`trajopt.methods.base`): the rollouts of one evaluation of the cost a method decides
with, 1 on an open-loop problem, a training batch of initial states on a policy problem (never the evaluation
batch its reported cost uses, which is not counted). iLQR needs a time-stepped problem.

`MultiStart` (multistart.py) is not a name of its own: K starts of any of them, the lowest cost kept, which a
variant asks for with ``starts = K`` and ``start_spread`` in its table: K times the method's calls, plus K × B to
compare the starts unless the problem is open-loop and the method counts f(U) already (``value_in_calls``).

A method is a frozen dataclass with ``init(key, problem, U0) -> state`` and ``step(key, problem, state) ->
(state, info)``; see `trajopt.methods.base` for the contract. Its dataclass fields are the keys of its TOML
table. ``gradient`` is built from a variant's ``oracle`` and ``optimizer`` keys instead (see the README's
"Variants").
"""

from trajopt.methods.base import REQUIRED_INFO, Method, check_applicable, check_info, state_decision
from trajopt.methods.gradient import GradientInfo, GradientMethod, GradientState
from trajopt.methods.cem import CEM
from trajopt.methods.dial import DIAL
from trajopt.methods.ilqr import ILQR
from trajopt.methods.lbfgs import LBFGS
from trajopt.methods.mppi import MPPI
from trajopt.methods.multistart import MultiStart, MultiStartState
from trajopt.methods.ps import PredictiveSampling
from trajopt.registry import Registry, method_contract

METHODS: Registry[type] = Registry("method", check=method_contract)
METHODS.register("gradient", GradientMethod)
METHODS.register("ilqr", ILQR)
METHODS.register("cem", CEM)
METHODS.register("mppi", MPPI)
METHODS.register("ps", PredictiveSampling)
METHODS.register("dial", DIAL)
METHODS.register("lbfgs", LBFGS)

__all__ = ["METHODS", "Method", "REQUIRED_INFO", "check_applicable", "check_info", "state_decision", "GradientMethod", "GradientInfo",
           "GradientState", "ILQR", "CEM", "MPPI",
           "PredictiveSampling", "DIAL", "LBFGS", "MultiStart", "MultiStartState"]
