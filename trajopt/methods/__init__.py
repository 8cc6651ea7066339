"""Methods: what `trajopt.solve` iterates, one module each, registered by the name used in problem files.

| name     | module       | what it is | rollouts; backward passes per step |
|----------|--------------|------------|------------------------------------|
| gradient | gradient.py  | a gradient oracle driving an optax optimiser (the paper's loop); a variant names it by its oracle | the oracle's (`trajopt.oracles`, `trajopt.policies.oracles`) |
| ilqr     | ilqr.py      | Gauss–Newton iLQR: LM regularisation, backtracking on the true cost, Box-DDP limits; the accepted trial's rollout is the next nominal one | line-search trials (+ 1 on the first step); one linearisation (n + m directional derivatives at each of the T steps) |
| cem      | cem.py       | cross-entropy method, a diagonal Gaussian over K knots of the sequence (trajax's cem; K = T per step) | population × B; 0 |
| mppi     | mppi.py      | MPPI on K knots: exponentially weighted perturbations, temperature λ relative to the costs' spread (or absolute: hydrax's MPPI) | N × B; 0 |
| ps       | ps.py        | predictive sampling on K knots: best of N perturbations and the incumbent (MuJoCo MPC, hydrax) | (N + 1) × B; 0 |
| dial     | dial.py      | annealed MPPI on K knots after DIAL-MPC: noise shrinking over iterations and toward the start | N × B; 0 |
| lbfgs    | lbfgs.py     | L-BFGS on the noise-free cost with optax's zoom line search, monotone (a rise is rejected, the memory reset), stopping on gradient and relative decrease | B per evaluation; the same |
| evosax   | evolution.py | any evosax evolution strategy by name (CMA-ES, Sep-CMA-ES, OpenAI-ES, SNES, ...) on K knots; registered when evosax is installed (the ``[evosax]`` extra) | population × B; 0 |

The knots (``knots``, ``interpolation`` = zero, linear or cubic: `trajopt.methods._sampling`) of the samplers: K = T
(or a horizon of at most 20 steps under the default ``knots = 0``, min(20, T)) is per-step sampling, bit for bit.

**In the closed loop** (`trajopt.closedloop`: a replan's ``warm_start(key, problem, state, U, shift)``, else
``init(key, problem, U)``, U the last plan shifted by the ``shift`` executed steps):

| method | carries over between replans | resets |
|--------|------------------------------|--------|
| gradient | the plan | the optimiser's state (Adam's moments belong to the last problem's gradients; a new start state and a shifted plan change them) and the step and σ schedules (they span one replan's K steps) |
| ilqr | the plan, the regulariser (μ, δ) | the stop flag; the plan is rolled out afresh (a new start) |
| cem | the plan (its knots: the last spline time-shifted), σ shifted like the plan (the tail at the initial σ) | nothing else |
| mppi, ps | the plan (its knots: the last spline time-shifted) | nothing else (no other state) |
| dial | the plan (its knots time-shifted) | the annealing: i = 0 again at every replan (DIAL-MPC's rule) |
| lbfgs | the plan | the memory (curvature pairs of the last problem) and the stop flag |
| evosax | the plan (the strategy's mean: its knots time-shifted), the strategy's step size, covariance, paths, optimiser moments | nothing (the covariance is not time-shifted) |
| MultiStart | the plan | the K starts: re-drawn around the shifted plan (``init``) |

**Batching**: the deterministic methods (iLQR, L-BFGS, exact and finite-difference gradients) and MultiStart run
one seed at a time under ``vmap`` (`trajopt.methods._batching`), so that a seed's iterates are the same alone and
in a batch; the samplers' steps are batches of rollouts and stay vectorised.

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

from importlib.util import find_spec

from trajopt.methods.base import REQUIRED_INFO, Method, check_applicable, check_info, state_decision
from trajopt.methods.gradient import GradientInfo, GradientMethod, GradientState
from trajopt.methods.cem import CEM
from trajopt.methods.dial import DIAL
from trajopt.methods.ilqr import ILQR
from trajopt.methods.lbfgs import LBFGS
from trajopt.methods.mppi import MPPI
from trajopt.methods.multistart import MultiStart, MultiStartState
from trajopt.methods.ps import PredictiveSampling
from trajopt.methods.evolution import Evosax
from trajopt.registry import Registry, method_contract

METHODS: Registry[type] = Registry("method", check=method_contract)
METHODS.register("gradient", GradientMethod)
METHODS.register("ilqr", ILQR)
METHODS.register("cem", CEM)
METHODS.register("mppi", MPPI)
METHODS.register("ps", PredictiveSampling)
METHODS.register("dial", DIAL)
METHODS.register("lbfgs", LBFGS)
if find_spec("evosax") is not None:  # the [evosax] extra (evolution.py imports it only when it runs)
    METHODS.register("evosax", Evosax)

__all__ = ["METHODS", "Method", "REQUIRED_INFO", "check_applicable", "check_info", "state_decision", "GradientMethod", "GradientInfo",
           "GradientState", "ILQR", "CEM", "MPPI",
           "PredictiveSampling", "DIAL", "LBFGS", "Evosax", "MultiStart", "MultiStartState"]
