"""Problems the unit tests share (imported as ``from builders import ...``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from trajopt.problem import Problem, QuadraticCost, trajectory_problem
from trajopt.systems.heaviside import Heaviside
from trajopt.systems.pushing import Pushing


def pushing_problem(stiffness: float, damping: float, horizon: int, u_init: float = 0.1) -> Problem:
    """The paper's pushing task (catalogue C2.1): dt 0.005, m 0.1, x0 [0, 1, 0, 0], goal [1, 2, 0, 0]."""
    system = Pushing(stiffness=stiffness, damping=damping, mass=0.1, dt=0.005)
    weights = jnp.diag(jnp.array([0.1, 10.0, 0.1, 0.1]))
    cost = QuadraticCost(Q=weights, R=jnp.eye(1), Qf=weights, goal=jnp.array([1.0, 2.0, 0.0, 0.0]))
    return trajectory_problem(
        f"pushing_k{stiffness:g}", system.step, jnp.array([0.0, 1.0, 0.0, 0.0]), cost, jnp.full((horizon, 1), u_init)
    )


def random_quadratic(shape=(3, 2), seed=0, at_minimum=False):
    """f(U) = 1/2 u^T A u + b^T u with u = vec(U), A symmetric positive definite; the smoothed gradient is
    A u + b exactly. Returns (Problem with U0 random or near the minimum, A, b)."""
    d = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(d, d))
    A = jnp.asarray(M @ M.T / d + np.eye(d))
    b = jnp.asarray(rng.normal(size=d))
    U = jnp.asarray(rng.normal(size=shape))
    if at_minimum:
        U = jnp.linalg.solve(A, -b).reshape(shape) + 0.01

    def objective(U):
        u = U.reshape(-1)
        return 0.5 * u @ A @ u + b @ u

    return Problem("quadratic", U, objective), A, b


def heaviside_problem(theta: float) -> Problem:
    """The 1-D Heaviside H(theta + w) at theta: F = Phi(theta / sigma), grad F = phi(theta / sigma) / sigma."""
    return Problem("heaviside", U0=jnp.full((1, 1), theta), objective=lambda U: Heaviside(1).cost(U[0]))


def xla_compiles(monkeypatch) -> list:
    """An independent count of XLA compilations: one entry per ``jax.stages.Lowered.compile`` call from now on (the
    program cache's own counters aside); ``monkeypatch`` undoes the spy."""
    import jax

    calls = []
    real = jax.stages.Lowered.compile

    def spy(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", spy)
    return calls
