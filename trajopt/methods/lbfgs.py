"""`lbfgs`: L-BFGS on the noise-free cost with optax's zoom line search (``optax.lbfgs``).

The cost it descends is the problem's decision objective with no key (`trajopt.methods.base`), one fixed
function as the line search needs: the objective itself on an open-loop problem, on a policy problem the mean
closed-loop cost over a fixed training batch of B = ``decision_rollouts`` initial states (never the evaluation
batch it is reported on).

One step is one L-BFGS iteration of optax's recipe:

    f_k, g_k = value_and_grad_from_state(f)(U_k, state)     (reuses the line search's last evaluation)
    d_k = −H_k g_k                                          (two-loop recursion over the last m pairs,
                                                             m = memory_size; H_0 scaled by sᵀy / yᵀy)
    U_{k+1} = U_k + η_k d_k,   η_k from the zoom line search (strong Wolfe conditions, Nocedal & Wright
                                                             Alg. 3.5/3.6; optax.scale_by_zoom_linesearch)

Counts are exact, from what optax exposes: every line-search step evaluates ``jax.value_and_grad(f)``
once (B rollouts and B backward passes), and the state records their number
(``ZoomLinesearchInfo.num_linesearch_steps``); ``value_and_grad_from_state`` evaluates f and its gradient
only when the state holds no finite value (the first step, or after a line search that ended on a
non-finite value). So rollouts = gradients = B × (num_linesearch_steps + (1 if that evaluation happened)).
``info.value`` is the reported cost of the iterate the step started from: f_k itself on an open-loop problem
(B = 1; it comes from a counted evaluation, ``value_in_calls``), on a policy problem ``problem.objective`` over
the evaluation batch, reported only.

Defaults are optax's: memory_size 10, max_linesearch_steps 20 (``optax.lbfgs``'s zoom line search with
``initial_guess_strategy="one"``), scale_init_precond true. A line search that fails to meet the Wolfe
conditions within its budget still moves (optax's behaviour; ``info.decrease_error`` > 0 says so), and a
non-finite cost stops the seed (`trajopt.solve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax.numpy as jnp
import optax
import optax.tree
from jax import Array

from trajopt import checks
from trajopt.methods.base import as_count, as_float, decision_is_objective, decision_objective, decision_rollouts


class LBFGSState(NamedTuple):
    """U: [T, m] the iterate; opt_state: optax's L-BFGS state (memory, line-search value and gradient)."""

    U: Array
    opt_state: Any


class LBFGSInfo(NamedTuple):
    """value f(U_k); rollouts, gradients: simulator calls (see the module docstring); grad_norm ‖g_k‖;
    step_size η_k; linesearch_steps: the line search's evaluations; decrease_error: how far the accepted
    step misses the sufficient-decrease condition (0 when met)."""

    value: Array
    rollouts: Array
    gradients: Array
    grad_norm: Array
    step_size: Array
    linesearch_steps: Array
    decrease_error: Array


@dataclass(frozen=True)
class LBFGS:
    """memory_size: the number m of (s, y) pairs kept; max_linesearch_steps: the zoom line search's budget
    of function-and-gradient evaluations per step; scale_init_precond: scale the initial inverse Hessian by
    sᵀy / yᵀy (optax's default)."""

    memory_size: int = 10
    max_linesearch_steps: int = 20
    scale_init_precond: bool = True
    name: ClassVar[str] = "lbfgs"
    value_in_calls: ClassVar[bool] = True  # open loop: its value comes from a counted evaluation (this step's or the line search's)
    deterministic: ClassVar[bool] = True  # its steps use no key (`trajopt.methods.multistart`)

    def __post_init__(self):
        checks.at_least("memory_size", self.memory_size, 1)
        checks.at_least("max_linesearch_steps", self.max_linesearch_steps, 1)

    def transform(self) -> optax.GradientTransformationExtraArgs:
        """The optax L-BFGS transformation this method applies."""
        return optax.lbfgs(
            memory_size=self.memory_size, scale_init_precond=self.scale_init_precond,
            linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=self.max_linesearch_steps,
                                                      initial_guess_strategy="one"))

    def init(self, key: Array, problem, U0: Array) -> LBFGSState:
        del key, problem
        return LBFGSState(U=U0, opt_state=self.transform().init(U0))

    def step(self, key: Array, problem, state: LBFGSState) -> tuple[LBFGSState, LBFGSInfo]:
        del key
        opt = self.transform()
        f = decision_objective(problem)  # no key: one fixed function for the line search
        stored = optax.tree.get(state.opt_state, "value")
        evaluated = ~jnp.isfinite(stored)  # value_and_grad_from_state recomputes exactly then
        value, grad = optax.value_and_grad_from_state(f)(state.U, state=state.opt_state)
        updates, opt_state = opt.update(grad, state.opt_state, state.U, value=value, grad=grad, value_fn=f)
        U_new = optax.apply_updates(state.U, updates)
        info = optax.tree.get(opt_state, "info")
        steps = as_count(info.num_linesearch_steps)
        calls = (steps + as_count(evaluated)) * decision_rollouts(problem)
        step_size = optax.tree.get(opt_state, "learning_rate")
        reported = value if decision_is_objective(problem) else problem.objective(state.U)
        return LBFGSState(U=U_new, opt_state=opt_state), LBFGSInfo(
            value=as_float(reported), rollouts=calls, gradients=calls, grad_norm=as_float(jnp.linalg.norm(grad)),
            step_size=as_float(step_size), linesearch_steps=steps, decrease_error=as_float(info.decrease_error))
