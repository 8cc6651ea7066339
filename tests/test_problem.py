"""trajopt.problem: rollout, the quadratic tracking cost, Problem and the pushing goldens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from builders import pushing_problem

from trajopt.problem import Problem, QuadraticCost, rollout, trajectory_problem
from trajopt.systems.pushing import Pushing

# ---------------------------------------------------------------------------------------------------------
# Goldens: initial cost of the pushing problems (values from the reference set-up, float64).


@pytest.mark.parametrize(
    "stiffness, damping, horizon, expected",
    [
        (10.0, 0.998, 400, 2374.8938),
        (100.0, 0.998, 200, 1746.1570),
        (1000.0, 0.99, 200, 1821.2490),
    ],
)
def test_pushing_initial_cost_golden(stiffness, damping, horizon, expected):
    problem = pushing_problem(stiffness, damping, horizon)
    assert problem.U0.dtype == jnp.float64
    value = float(problem.objective(problem.U0))
    assert value == pytest.approx(expected, abs=1e-4)
    # jit gives the same number.
    assert float(jax.jit(problem.objective)(problem.U0)) == pytest.approx(value, rel=1e-13)


def test_pushing_problem_shape_and_dimension():
    problem = pushing_problem(10.0, 0.998, 40)
    assert problem.shape == (40, 1)
    assert problem.dimension == 40
    assert problem.trajectory is not None


# ---------------------------------------------------------------------------------------------------------
# rollout


def test_rollout_shape_first_row_and_recursion():
    system = Pushing(stiffness=100.0, damping=0.998)
    x0 = jnp.array([0.0, 1.0, 0.0, 0.0])
    U = jnp.linspace(-1.0, 2.0, 25).reshape(25, 1)
    X = rollout(system.step, x0, U)
    assert X.shape == (26, 4)
    np.testing.assert_array_equal(np.asarray(X[0]), np.asarray(x0))
    # X[t+1] = step(X[t], U[t]) for every t.
    stepped = jax.vmap(system.step)(X[:-1], U)
    np.testing.assert_allclose(np.asarray(X[1:]), np.asarray(stepped), rtol=1e-14, atol=1e-15)


def test_rollout_of_a_hand_computable_system():
    # x' = 2 x + u on a scalar state: x = 1, then 2*1+1 = 3, then 2*3-1 = 5, then 2*5+0.5 = 10.5.
    step = lambda x, u: 2.0 * x + u  # noqa: E731
    X = rollout(step, jnp.array([1.0]), jnp.array([[1.0], [-1.0], [0.5]]))
    np.testing.assert_array_equal(np.asarray(X), [[1.0], [3.0], [5.0], [10.5]])


def test_rollout_empty_horizon_returns_only_x0():
    X = rollout(lambda x, u: x + u, jnp.array([1.0, 2.0]), jnp.zeros((0, 2)))
    np.testing.assert_array_equal(np.asarray(X), [[1.0, 2.0]])


def test_problem_trajectory_matches_rollout():
    problem = pushing_problem(1000.0, 0.99, 30)
    system = Pushing(stiffness=1000.0, damping=0.99)
    U = jnp.full((30, 1), 0.7)
    np.testing.assert_array_equal(
        np.asarray(problem.trajectory(U)), np.asarray(rollout(system.step, jnp.array([0.0, 1.0, 0.0, 0.0]), U))
    )


# ---------------------------------------------------------------------------------------------------------
# QuadraticCost / the objective formula on a tiny hand-computable case


def test_quadratic_cost_scalar_hand_computed():
    # x' = x + u, x0 = 1, U = [1, 2] -> X = [1, 2, 4]; goal 0, Q = 2, R = 3, Qf = 5:
    # running state  2 * (1^2 + 2^2) = 10   (t = 0 term included, x_T excluded)
    # running input  3 * (1^2 + 2^2) = 15
    # terminal       5 * 4^2         = 80   -> 105
    cost = QuadraticCost(Q=jnp.array([[2.0]]), R=jnp.array([[3.0]]), Qf=jnp.array([[5.0]]), goal=jnp.array([0.0]))
    problem = trajectory_problem("tiny", lambda x, u: x + u, jnp.array([1.0]), cost, jnp.array([[1.0], [2.0]]))
    assert float(problem.objective(problem.U0)) == 105.0


def test_quadratic_cost_matrix_orientation_and_goal():
    # Two states, one input, a non-symmetric Q to pin the orientation e^T Q e (= e^T sym(Q) e anyway) and a
    # goal offset. x' = x + [u, -u], x0 = [1, 0], goal [1, 1], U = [[1], [2]].
    # X = [1, 0], [2, -1], [4, -3];  E = X - goal = [0, -1], [1, -2], [3, -4].
    # Q = [[1, 2], [0, 3]]: e^T Q e = e1^2 + 2 e1 e2 + 3 e2^2 -> t=0: 3;  t=1: 1 - 4 + 12 = 9.  Sum 12.
    # R = [[0.5]]: 0.5 * (1 + 4) = 2.5.
    # Qf = diag(1, 10): 9 + 160 = 169.  Total 183.5.
    cost = QuadraticCost(
        Q=jnp.array([[1.0, 2.0], [0.0, 3.0]]),
        R=jnp.array([[0.5]]),
        Qf=jnp.diag(jnp.array([1.0, 10.0])),
        goal=jnp.array([1.0, 1.0]),
    )
    step = lambda x, u: x + jnp.array([u[0], -u[0]])  # noqa: E731
    problem = trajectory_problem("tiny2", step, jnp.array([1.0, 0.0]), cost, jnp.array([[1.0], [2.0]]))
    X = problem.trajectory(problem.U0)
    np.testing.assert_array_equal(np.asarray(X), [[1.0, 0.0], [2.0, -1.0], [4.0, -3.0]])
    assert float(problem.objective(problem.U0)) == 183.5
    assert float(cost(X, problem.U0)) == 183.5


def test_quadratic_cost_against_explicit_loop_on_pushing():
    problem = pushing_problem(100.0, 0.998, 50)
    U = 0.3 * jnp.sin(jnp.arange(50.0)).reshape(50, 1) + 0.2
    X = np.asarray(problem.trajectory(U))
    Un = np.asarray(U)
    Q = np.diag([0.1, 10.0, 0.1, 0.1])
    goal = np.array([1.0, 2.0, 0.0, 0.0])
    expected = sum((X[t] - goal) @ Q @ (X[t] - goal) + Un[t] @ Un[t] for t in range(50))
    expected += (X[50] - goal) @ Q @ (X[50] - goal)
    assert float(problem.objective(U)) == pytest.approx(expected, rel=1e-13)


def test_objective_is_jit_vmap_and_grad_able():
    problem = pushing_problem(10.0, 0.998, 30)
    Us = problem.U0[None] + 0.01 * jnp.arange(4.0)[:, None, None]
    batched = jax.jit(jax.vmap(problem.objective))(Us)
    one_by_one = jnp.stack([problem.objective(u) for u in Us])
    np.testing.assert_allclose(np.asarray(batched), np.asarray(one_by_one), rtol=1e-13)
    g = jax.grad(problem.objective)(problem.U0)
    assert g.shape == problem.U0.shape and bool(jnp.all(jnp.isfinite(g)))


def test_direct_problem_one_step():
    problem = Problem("heaviside", jnp.zeros((1, 1)), lambda U: jnp.where(U[0, 0] >= 0, 1.0, 0.0))
    assert problem.shape == (1, 1) and problem.dimension == 1 and problem.trajectory is None
    assert float(problem.objective(jnp.array([[0.5]]))) == 1.0
    assert float(problem.objective(jnp.array([[-0.5]]))) == 0.0
