"""`lbfgs`: L-BFGS on the noise-free cost with optax's zoom line search (``optax.lbfgs``), monotone, with a stopping
test.

The cost it descends is the problem's decision objective with no key (`trajopt.methods.base`), one fixed
function as the line search needs: the objective itself on an open-loop problem, on a policy problem the mean
closed-loop cost over a fixed training batch of B = ``decision_rollouts`` initial states (never the evaluation
batch it is reported on).

One step is one L-BFGS iteration of optax's recipe, from the iterate U_k with f_k = f(U_k), g_k = ∇f(U_k):

    f_k, g_k = value_and_grad_from_state(f)(U_k, state)     (reuses the line search's last evaluation)
    stop (code 1) if max_i |g_k,i| <= grad_tol              (U_k kept; no line search)
    d_k = −H_k g_k                                          (two-loop recursion over the last m pairs,
                                                             m = memory_size; H_0 scaled by sᵀy / yᵀy)
    Ũ = U_k + η_k d_k,   η_k from the zoom line search       (strong Wolfe conditions, Nocedal & Wright
                                                             Alg. 3.5/3.6; optax.scale_by_zoom_linesearch)

then, with f̃ = f(Ũ) (the line search's last evaluation):

* **accepted** if f̃ is finite and f̃ <= f_k: U_{k+1} = Ũ; stop (code 2) when the relative decrease is small,
  (f_k − f̃) / max(|f_k|, |f̃|, 1) <= ``cost_rtol``;
* **rejected** otherwise (a line search that ran out of trials still moves in optax, possibly uphill, as it did
  here before: on stiff pushing the final cost ended above the best it had passed): U_{k+1} = U_k, and the memory
  is reset (the next direction is the scaled steepest descent, H_0 = I / ‖g_k‖ capped at 1, optax's first step);
  f_k and g_k are kept, so nothing is re-evaluated. A rejection from a reset memory stops the run (code 3: no
  decrease along −g either).

So the iterate never rises: f(U_{k+1}) <= f(U_k), and U_k is the best point the run has accepted. The defaults
``grad_tol`` = 1e-5 and ``cost_rtol`` = 1e7 × machine epsilon are scipy's L-BFGS-B (``gtol``, ``ftol`` =
factr × eps with factr = 1e7). A stopped state (``stopped``) is returned unchanged and spends nothing; `trajopt.solve`
then stops stepping it. ``info.stop_reason``: 0 running, 1 gradient, 2 relative decrease, 3 no descent.

**Batching**: the step runs per element under ``vmap`` (`trajopt.methods._batching.per_element`): a seed's iterates
are the same alone and in any batch (they were not: XLA's batched cost and gradient differ in the last bits, which
the line search amplified to 813.41 alone against 800.46 in a batch on stiff pushing), and each seed's line search
stops at its own trip count.

**Counts** are exact, from what optax exposes: every line-search step evaluates ``jax.value_and_grad(f)`` once (B
rollouts and B backward passes), and the state records their number (``ZoomLinesearchInfo.num_linesearch_steps``);
``value_and_grad_from_state`` evaluates f and its gradient only when the state holds no finite value (the first
step). So rollouts = gradients = B × (num_linesearch_steps + (1 if that evaluation happened)). ``info.value`` is
the reported cost of the iterate the step started from: f_k itself on an open-loop problem (B = 1; it comes from a
counted evaluation, ``value_in_calls``), on a policy problem ``problem.objective`` over the evaluation batch,
reported only.

Defaults of the step are optax's: memory_size 10, max_linesearch_steps 20 (``optax.lbfgs``'s zoom line search with
``initial_guess_strategy="one"``), scale_init_precond true. A non-finite cost of U_k stops the seed (`trajopt.solve`).
In the closed loop every replan starts a new problem (another start state, the shifted plan): the memory, a model
of the previous problem's curvature, is reset (``init``; no ``warm_start``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree
from jax import Array

from trajopt import checks
from trajopt.methods._batching import per_element
from trajopt.methods.base import as_count, as_float, decision_is_objective, decision_objective, decision_rollouts

STOP_RUNNING, STOP_GRADIENT, STOP_COST_CHANGE, STOP_NO_DESCENT = 0, 1, 2, 3
FTOL = 1e7 * float(jnp.finfo(jnp.float64).eps)  # scipy's L-BFGS-B ftol: factr = 1e7 times the machine epsilon


class LBFGSState(NamedTuple):
    """U: [T, m] the iterate; opt_state: optax's L-BFGS state (memory, the line search's value f(U) and gradient);
    fresh: bool, the memory is empty (after init or a rejected step); stop: int32 stop reason (0 running)."""

    U: Array
    opt_state: Any
    fresh: Array
    stop: Array


class LBFGSInfo(NamedTuple):
    """value f(U_k); rollouts, gradients: simulator calls (see the module docstring); grad_norm ‖g_k‖₂ (NaN once
    stopped); step_size η_k (0 if rejected or none); linesearch_steps: the line search's evaluations;
    decrease_error: how far the line search's step misses the sufficient-decrease condition (0 when met);
    accepted: 1.0 if the step moved, else 0.0; stop_reason: 0 running, 1 gradient, 2 relative decrease, 3 no
    descent."""

    value: Array
    rollouts: Array
    gradients: Array
    grad_norm: Array
    step_size: Array
    linesearch_steps: Array
    decrease_error: Array
    accepted: Array
    stop_reason: Array


@dataclass(frozen=True)
class LBFGS:
    """memory_size: the number m of (s, y) pairs kept; max_linesearch_steps: the zoom line search's budget of
    function-and-gradient evaluations per step; scale_init_precond: scale the initial inverse Hessian by sᵀy / yᵀy
    (optax's default); grad_tol: stop when the largest gradient component is at most this (code 1; 0: never);
    cost_rtol: stop after an accepted step whose relative decrease is at most this (code 2; 0: only on no
    decrease)."""

    memory_size: int = 10
    max_linesearch_steps: int = 20
    scale_init_precond: bool = True
    grad_tol: float = 1e-5
    cost_rtol: float = FTOL
    name: ClassVar[str] = "lbfgs"
    value_in_calls: ClassVar[bool] = True  # open loop: its value comes from a counted evaluation (this step's or the line search's)
    deterministic: ClassVar[bool] = True  # its steps use no key (`trajopt.methods.multistart`)

    def __post_init__(self):
        checks.at_least("memory_size", self.memory_size, 1)
        checks.at_least("max_linesearch_steps", self.max_linesearch_steps, 1)
        checks.non_negative("grad_tol", self.grad_tol)
        checks.non_negative("cost_rtol", self.cost_rtol)

    def transform(self) -> optax.GradientTransformationExtraArgs:
        """The optax L-BFGS transformation this method applies."""
        return optax.lbfgs(
            memory_size=self.memory_size, scale_init_precond=self.scale_init_precond,
            linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=self.max_linesearch_steps,
                                                      initial_guess_strategy="one"))

    def init(self, key: Array, problem, U0: Array) -> LBFGSState:
        del key, problem
        return LBFGSState(U=U0, opt_state=self.transform().init(U0), fresh=jnp.asarray(True),
                          stop=as_count(STOP_RUNNING))

    def stopped(self, state: LBFGSState) -> Array:
        """Whether the state has stopped (a stop code is set): its steps return it unchanged and spend nothing."""
        return state.stop != STOP_RUNNING

    def _reported(self, problem, U, value):
        return value if decision_is_objective(problem) else problem.objective(U)

    def _active(self, problem, state: LBFGSState) -> tuple[LBFGSState, LBFGSInfo]:
        opt = self.transform()
        f = decision_objective(problem)  # no key: one fixed function for the line search
        U = state.U
        evaluated = ~jnp.isfinite(optax.tree.get(state.opt_state, "value"))  # value_and_grad_from_state evaluates then
        value, grad = optax.value_and_grad_from_state(f)(U, state=state.opt_state)
        at_tol = jnp.max(jnp.abs(grad)) <= self.grad_tol
        B = decision_rollouts(problem)

        def converged(_):
            opt_state = optax.tree.set(state.opt_state, value=value, grad=grad)
            new = LBFGSState(U=U, opt_state=opt_state, fresh=state.fresh, stop=as_count(STOP_GRADIENT))
            return new, as_count(0), as_float(0.0), as_float(0.0), as_float(0.0)

        def search(_):
            updates, opt_state = opt.update(grad, state.opt_state, U, value=value, grad=grad, value_fn=f)
            trial = optax.apply_updates(U, updates)
            new_value = optax.tree.get(opt_state, "value")
            ls = optax.tree.get(opt_state, "info")
            accepted = jnp.isfinite(new_value) & (new_value <= value)
            decrease = (value - new_value) / jnp.maximum(jnp.maximum(jnp.abs(value), jnp.abs(new_value)), 1.0)
            stalled = ~accepted | (decrease <= self.cost_rtol)  # no decrease, or a negligible one
            U_next = jnp.where(accepted, trial, U)
            # an empty memory at the kept iterate, its value and gradient known (the line search's when it moved)
            empty = tuple(e if isinstance(e, optax.ScaleByLBFGSState) else s for e, s in zip(opt.init(U_next), opt_state))
            reset = optax.tree.set(empty, value=jnp.where(accepted, new_value, value),
                                   grad=jnp.where(accepted, optax.tree.get(opt_state, "grad"), grad))
            stop = jnp.where(stalled & state.fresh, jnp.where(accepted, STOP_COST_CHANGE, STOP_NO_DESCENT), STOP_RUNNING)
            new = LBFGSState(U=U_next,
                             opt_state=jax.tree_util.tree_map(lambda a, b: jnp.where(stalled, a, b), reset, opt_state),
                             fresh=stalled, stop=as_count(stop))
            step_size = jnp.where(accepted, optax.tree.get(opt_state, "learning_rate"), 0.0)
            return (new, as_count(ls.num_linesearch_steps), as_float(step_size), as_float(ls.decrease_error),
                    as_float(accepted))

        new, steps, step_size, decrease_error, accepted = jax.lax.cond(at_tol, converged, search, None)
        calls = (steps + as_count(evaluated)) * B
        return new, LBFGSInfo(value=as_float(self._reported(problem, U, value)), rollouts=calls, gradients=calls,
                              grad_norm=as_float(jnp.linalg.norm(grad)), step_size=step_size, linesearch_steps=steps,
                              decrease_error=decrease_error, accepted=accepted, stop_reason=new.stop)

    def _stopped(self, problem, state: LBFGSState) -> tuple[LBFGSState, LBFGSInfo]:
        value = optax.tree.get(state.opt_state, "value")
        zero = as_count(0)
        return state, LBFGSInfo(value=as_float(self._reported(problem, state.U, value)), rollouts=zero, gradients=zero,
                                grad_norm=as_float(jnp.nan), step_size=as_float(0.0), linesearch_steps=zero,
                                decrease_error=as_float(0.0), accepted=as_float(0.0), stop_reason=state.stop)

    def step(self, key: Array, problem, state: LBFGSState) -> tuple[LBFGSState, LBFGSInfo]:
        del key

        def one(state):
            return jax.lax.cond(state.stop == STOP_RUNNING, lambda s: self._active(problem, s),
                                lambda s: self._stopped(problem, s), state)

        return per_element(one)(state)
