"""Problems: the decision shape, the initial guess U0 and a pure, jit-able noise-free objective.

A time-stepped problem is built from a system's one-step map ``x_{t+1} = step(x_t, u_t)``, a start
``x0``, a horizon T and the quadratic tracking cost of the paper's reference code:

    J(U) = sum_{t<T} [ (x_t - x_g)^T Q (x_t - x_g) + u_t^T R u_t ]  +  (x_T - x_g)^T Q_f (x_T - x_g)

(the constant t = 0 state term included, as in the reference). The rollout is one ``lax.scan`` over time.
A time-stepped problem keeps its one-step map, start and cost, for methods that need them (iLQR).
One-step problems (ball with wall, pivot, Heaviside) are built by `one_step_problem` with T = 1.

**Two objectives.** ``objective(U)`` is the noise-free cost every method *reports* (its ``value``, a monitor,
not counted unless a method decides with it). ``decision_objective(key)`` returns the cost a method may
*compare or descend* (CEM's elites, PS's incumbent, L-BFGS's line search, MultiStart's choice), with
``decision_rollouts`` rollouts per call, so a method counts ``decision_rollouts`` for each evaluation it
decides with. For an open-loop problem the two are the same function (``decision_is_objective``: key ignored,
one rollout per call), so a method that needs both evaluates once. A closed-loop policy problem
(`trajopt.policies.PolicyProblem`) reports its cost over a fixed evaluation batch of initial states and decides
on a training batch (never the evaluation batch): there ``decision_is_objective`` is False and
``decision_rollouts`` is the training batch's size. The module-level `decision_objective`,
`decision_rollouts` and `decision_is_objective` read these members with fallbacks for a problem object
without them (the objective itself, ``objective_rollouts`` or 1 rollout, True).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import jax
import jax.numpy as jnp
from jax import Array

StepFn = Callable[[Array, Array], Array]


def rollout(step: StepFn, x0: Array, U: Array) -> Array:
    """States visited under the control sequence U.

    Args:
        step: ``step(x: [n], u: [m]) -> [n]``, the one-step map.
        x0: [n] initial state.
        U: [T, m] controls.

    Returns:
        X: [T+1, n] with X[0] = x0 and X[t+1] = step(X[t], U[t]).
    """

    def body(x, u):
        x_next = step(x, u)
        return x_next, x_next

    _, xs = jax.lax.scan(body, x0, U)
    return jnp.concatenate([x0[None], xs], axis=0)


def wrap_angle(a: Array) -> Array:
    """wrap(a) = ((a + pi) mod 2 pi) - pi, in [-pi, pi)."""
    return jnp.mod(a + jnp.pi, 2 * jnp.pi) - jnp.pi


@dataclass(frozen=True, eq=False)
class QuadraticCost:
    """Quadratic tracking cost. Q, Qf: [n, n]; R: [m, m]; goal: [n].

    ``wrap``: state indices whose error e_i = x_i - goal_i is an angle, taken as wrap(e_i) in [-pi, pi)
    (trajax's pendulum convention); the others are plain differences.

        stage(x, u) = e^T Q e + u^T R u,   terminal(x) = e^T Qf e,   J = sum_t stage(x_t, u_t) + terminal(x_T)
    """

    Q: Array
    R: Array
    Qf: Array
    goal: Array
    wrap: tuple[int, ...] = ()

    def error(self, X: Array) -> Array:
        """e = X - goal ([..., n]), with the ``wrap`` coordinates wrapped to [-pi, pi)."""
        E = X - self.goal
        if not self.wrap:
            return E
        mask = jnp.zeros(E.shape[-1], bool).at[jnp.asarray(self.wrap)].set(True)
        return jnp.where(mask, wrap_angle(E), E)

    def __call__(self, X: Array, U: Array) -> Array:
        """J for states X: [T+1, n] and controls U: [T, m]; returns a scalar."""
        E = self.error(X)
        running = jnp.einsum("ti,ij,tj->", E[:-1], self.Q, E[:-1]) + jnp.einsum("ti,ij,tj->", U, self.R, U)
        terminal = E[-1] @ self.Qf @ E[-1]
        return running + terminal

    def stage(self, x: Array, u: Array) -> Array:
        """The running cost of one step: x [n], u [m] -> scalar."""
        e = self.error(x)
        return e @ self.Q @ e + u @ self.R @ u

    def terminal(self, x: Array) -> Array:
        """The terminal cost: x [n] -> scalar."""
        e = self.error(x)
        return e @ self.Qf @ e


@dataclass(frozen=True, eq=False)
class Problem:
    """An optimisation problem over a decision array U of shape [T, m].

    Attributes:
        name: a label (the problem file's stem).
        U0: [T, m] initial guess.
        objective: pure ``f(U: [T, m]) -> scalar``, the noise-free cost; jit-, grad- and vmap-able.
        trajectory: optional pure ``U -> X: [T+1, n]`` (time-stepped problems); None for one-step problems.
        step: the one-step map ``step(x: [n], u: [m]) -> [n]`` (time-stepped problems), else None.
        x0: [n] the start state (time-stepped problems), else None.
        cost: the cost, with ``stage(x, u)`` and ``terminal(x)`` (time-stepped problems), else None.
        system: the system whose ``step`` (or one-step ``cost``) built the problem, where known, else None: what an
            oracle that needs the simulator itself reads (`trajopt.oracles.cfd`: an MJX model's contacts).
    """

    name: str
    U0: Array
    objective: Callable[[Array], Array]
    trajectory: Optional[Callable[[Array], Array]] = None
    step: Optional[StepFn] = None
    x0: Optional[Array] = None
    cost: Optional[QuadraticCost] = None
    system: Optional[Any] = None

    @property
    def time_stepped(self) -> bool:
        """True when the problem keeps a one-step map, a start and a stage/terminal cost (iLQR applies)."""
        return self.step is not None and self.x0 is not None and self.cost is not None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.U0.shape)

    @property
    def dimension(self) -> int:
        """d = T * m, the size of the decision vector."""
        return int(self.U0.size)

    @property
    def kind(self) -> str:
        """What the decision is, for messages: "time-stepped" (controls through a one-step map from a start, with a
        stage cost) or "one-step" (an objective only)."""
        return "time-stepped" if self.time_stepped else "one-step"

    @property
    def objective_rollouts(self) -> int:
        """Simulator rollouts one evaluation of ``objective`` costs: 1."""
        return 1

    decision_is_objective: ClassVar[bool] = True  # the cost a method decides with is ``objective`` itself

    def decision_objective(self, key: Optional[Array] = None) -> Callable[[Array], Array]:
        """The cost a method may compare or descend: ``objective`` itself (``key`` is ignored)."""
        del key
        return self.objective

    @property
    def decision_rollouts(self) -> int:
        """Simulator rollouts one evaluation of the decision objective costs: 1."""
        return 1


def decision_objective(problem, key: Optional[Array] = None) -> Callable[[Array], Array]:
    """``problem.decision_objective(key)``, the cost a method decides with (see the module docstring); for a
    problem object without that member, its ``objective``."""
    get = getattr(problem, "decision_objective", None)
    return get(key) if callable(get) else problem.objective


def decision_rollouts(problem) -> int:
    """``problem.decision_rollouts``, the rollouts one evaluation of the decision objective costs; for a problem
    object without it, its ``objective_rollouts`` or 1."""
    return int(getattr(problem, "decision_rollouts", getattr(problem, "objective_rollouts", 1)))


def decision_is_objective(problem) -> bool:
    """``problem.decision_is_objective``: whether the decision objective is the reported ``objective`` (True for a
    problem object without the flag)."""
    return bool(getattr(problem, "decision_is_objective", True))


def problem_kind(problem) -> str:
    """``problem.kind`` ("time-stepped", "one-step", "policy", ...), for messages; for a problem object without it,
    "time-stepped" or "one-step" by its ``time_stepped`` flag."""
    kind = getattr(problem, "kind", None)
    if isinstance(kind, str):
        return kind
    return "time-stepped" if getattr(problem, "time_stepped", False) else "one-step"


def _owner(function) -> Any:
    """The object a bound method belongs to (``system.step`` -> ``system``), else None."""
    return getattr(function, "__self__", None)


def trajectory_problem(name: str, step: StepFn, x0: Array, cost: QuadraticCost, U0: Array,
                       system: Any = None) -> Problem:
    """A time-stepped problem: objective(U) = cost(rollout(step, x0, U), U). ``system``: the problem's system
    (default: the owner of ``step`` when it is a bound method, ``system.step``). When ``step`` is a system's own
    ``step`` and that system has ``simulate(x0, U) -> X [T+1, n]`` (its rollout of the whole horizon, the same states
    as the scan of its step: an mjx system, whose C backend simulates a batch of rollouts in one host call), the
    rollout is ``simulate``."""
    x0 = jnp.asarray(x0)
    simulate = getattr(_owner(step), "simulate", None)

    def trajectory(U: Array) -> Array:
        return simulate(x0, U) if callable(simulate) else rollout(step, x0, U)

    def objective(U: Array) -> Array:
        return cost(trajectory(U), U)

    return Problem(name=name, U0=jnp.asarray(U0), objective=objective, trajectory=trajectory, step=step, x0=x0,
                   cost=cost, system=_owner(step) if system is None else system)


def one_step_problem(name: str, cost: Callable[[Array], Array], U0: Array, system: Any = None) -> Problem:
    """A one-step problem over a decision u: [d], stored as U: [1, d]; objective(U) = cost(U[0]). ``system``: the
    problem's system (default: the owner of ``cost`` when it is a bound method, ``system.cost``)."""
    U0 = jnp.asarray(U0)
    if U0.ndim == 1:
        U0 = U0[None]

    def objective(U: Array) -> Array:
        return cost(U[0])

    return Problem(name=name, U0=U0, objective=objective, system=_owner(cost) if system is None else system)
