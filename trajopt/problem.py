"""Problems: the decision shape, the initial guess U0 and a pure, jit-able noise-free objective.

A time-stepped problem is built from a system's one-step map ``x_{t+1} = step(x_t, u_t)``, a start
``x0``, a horizon T and the quadratic tracking cost of the paper's reference code:

    J(U) = sum_{t<T} [ (x_t - x_g)^T Q (x_t - x_g) + u_t^T R u_t ]  +  (x_T - x_g)^T Q_f (x_T - x_g)

(the constant t = 0 state term included, as in the reference). The rollout is one ``lax.scan`` over time.
One-step problems (ball with wall, pivot, Heaviside) build a `Problem` directly with T = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

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


@dataclass(frozen=True, eq=False)
class QuadraticCost:
    """Quadratic tracking cost. Q, Qf: [n, n]; R: [m, m]; goal: [n]."""

    Q: Array
    R: Array
    Qf: Array
    goal: Array

    def __call__(self, X: Array, U: Array) -> Array:
        """J for states X: [T+1, n] and controls U: [T, m]; returns a scalar."""
        E = X - self.goal
        running = jnp.einsum("ti,ij,tj->", E[:-1], self.Q, E[:-1]) + jnp.einsum("ti,ij,tj->", U, self.R, U)
        terminal = E[-1] @ self.Qf @ E[-1]
        return running + terminal


@dataclass(frozen=True, eq=False)
class Problem:
    """An optimisation problem over a decision array U of shape [T, m].

    Attributes:
        name: a label (the problem file's stem).
        U0: [T, m] initial guess.
        objective: pure ``f(U: [T, m]) -> scalar``, the noise-free cost; jit-, grad- and vmap-able.
        trajectory: optional pure ``U -> X: [T+1, n]`` (time-stepped problems); None for one-step problems.
    """

    name: str
    U0: Array
    objective: Callable[[Array], Array]
    trajectory: Optional[Callable[[Array], Array]] = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.U0.shape)

    @property
    def dimension(self) -> int:
        """d = T * m, the size of the decision vector."""
        return int(self.U0.size)


def trajectory_problem(name: str, step: StepFn, x0: Array, cost: QuadraticCost, U0: Array) -> Problem:
    """A time-stepped problem: objective(U) = cost(rollout(step, x0, U), U)."""
    x0 = jnp.asarray(x0)

    def trajectory(U: Array) -> Array:
        return rollout(step, x0, U)

    def objective(U: Array) -> Array:
        return cost(trajectory(U), U)

    return Problem(name=name, U0=jnp.asarray(U0), objective=objective, trajectory=trajectory)
