"""Closed loop (trajopt.closedloop): receding-horizon MPC over the method contract.

Pinned: one replan over the whole episode is the open-loop run (same iterates and cost as solve); on a linear system
with quadratic cost and the infinite-horizon value as terminal cost, MPC with iLQR is the LQR controller u = -K x
(K from an independent Riccati iteration); a plant override or a disturbance changes only the realised trajectory;
measurement noise is seeded; bad settings are refused.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import trajopt
from trajopt.checks import FieldError
from trajopt.closedloop import Disturbance, MPCSettings, Plant, Success, mpc
from trajopt.methods import CEM, ILQR, GradientMethod
from trajopt.optim import Adam
from trajopt.oracles import FoBG
from trajopt.problem import QuadraticCost, trajectory_problem

KEY = jax.random.PRNGKey(3)


@dataclasses.dataclass(frozen=True)
class Cart:
    """A damped cart (double integrator with friction): x = [position, velocity], u = [force]."""

    dt: float = 0.1
    mass: float = 1.0
    friction: float = 0.1
    state_size = 2
    control_size = 1

    def step(self, x, u):
        accel = (u[0] - self.friction * x[1]) / self.mass
        v = x[1] + self.dt * accel
        return jnp.stack([x[0] + self.dt * v, v])


def cart_problem(T=12, system=Cart()):
    cost = QuadraticCost(Q=jnp.diag(jnp.array([1.0, 0.1])), R=jnp.array([[0.01]]), Qf=jnp.diag(jnp.array([5.0, 1.0])),
                         goal=jnp.array([1.0, 0.0]))
    return trajectory_problem("cart", system.step, jnp.array([0.0, 0.0]), cost, jnp.zeros((T, 1)))


def test_one_replan_over_the_whole_episode_is_the_open_loop_run():
    """r = H = N and no plant changes: the same iterates and cost as solve with the same method, key and iterations
    (a stochastic method, so the keys must match too), for seeds run together."""
    problem = cart_problem(T=12)
    method = GradientMethod(FoBG(samples=3, sigma=0.2), Adam(0.1))
    closed = mpc(problem, {"fobg": method}, episode=12, horizon=12, replan_every=12, iterations=15, key=KEY,
                 seeds=[0, 5], time_plans=False)["fobg"]
    opened = trajopt.solve(problem, method, key=KEY, iterations=15, seeds=[0, 5])
    np.testing.assert_allclose(closed.U, opened.U, rtol=0, atol=1e-12)
    np.testing.assert_allclose(closed.closed_loop_cost, opened.final_cost, rtol=1e-12)
    np.testing.assert_allclose(closed.X, opened.X, rtol=0, atol=1e-12)
    assert closed.rollouts.shape == (2, 1) and np.all(closed.rollouts == 15 * 3)


def _dare(A, B, Q, R, iterations=5000):
    """The infinite-horizon LQR value P and gain K by Riccati iteration (numpy, independent of trajopt)."""
    P = Q.copy()
    for _ in range(iterations):
        K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = Q + A.T @ P @ (A - B @ K)
    return P, np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def test_mpc_with_ilqr_on_a_linear_quadratic_problem_is_the_lqr_controller():
    """x' = A x + B u, stage x'Qx + u'Ru, terminal x'Px with P the Riccati fixed point: the optimal H-step plan's first
    control is -K x for every H, so MPC with one iLQR step per replan (exact on LQ) applies u_t = -K x_t and the
    realised trajectory is (A - BK)^t x_0."""
    dt = 0.1
    A = np.array([[1.0, dt], [0.0, 1.0]])
    B = np.array([[0.0], [dt]])
    Q, R = np.diag([1.0, 0.5]), np.array([[0.2]])
    P, K = _dare(A, B, Q, R)

    def step(x, u):
        return jnp.asarray(A) @ x + jnp.asarray(B) @ u

    x0 = np.array([1.0, -0.5])
    cost = QuadraticCost(Q=jnp.asarray(Q), R=jnp.asarray(R), Qf=jnp.asarray(P), goal=jnp.zeros(2))
    problem = trajectory_problem("lq", step, jnp.asarray(x0), cost, jnp.zeros((6, 1)))
    r = mpc(problem, {"ilqr": ILQR()}, episode=25, horizon=6, replan_every=1, iterations=1, key=KEY, seeds=[0],
            time_plans=False)["ilqr"]
    X = [x0]
    for _ in range(25):
        X.append((A - B @ K) @ X[-1])
    np.testing.assert_allclose(r.X[0], np.array(X), rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.U[0, :, 0], [-(K @ x)[0] for x in X[:-1]], rtol=0, atol=1e-9)
    # each replan's one iLQR step linearises once and does no backward pass (its rollouts: the nominal one and the
    # accepted line-search trial)
    assert np.all(r.linearizations == 1) and np.all(r.gradients == 0)


def test_a_plant_override_changes_the_realised_trajectory_and_nothing_the_planner_sees_before_it():
    """The first replan plans from x0 on the model either way: its plan (applied controls and predicted cost) is the
    same; the plant (mass x 3) then moves differently."""
    problem = cart_problem(T=8)
    method = GradientMethod(FoBG(samples=3, sigma=0.2), Adam(0.1))
    kw = dict(episode=8, horizon=8, replan_every=2, iterations=5, key=KEY, seeds=[0], time_plans=False)
    same = mpc(problem, {"m": method}, **kw)["m"]
    heavy = mpc(problem, {"m": method}, plant={"scale": {"mass": 3.0}}, **kw)["m"]
    np.testing.assert_array_equal(heavy.U[:, :2], same.U[:, :2])
    np.testing.assert_array_equal(heavy.planned_cost[:, 0], same.planned_cost[:, 0])
    assert abs(heavy.X[0, 1, 1] - same.X[0, 1, 1]) > 1e-3  # the heavier cart accelerates less
    assert heavy.plant.overrides == {"mass (x3)": 3.0}


def test_a_disturbance_appears_at_its_step():
    problem = cart_problem(T=8)
    method = GradientMethod(FoBG(samples=3, sigma=0.2), Adam(0.1))
    # the plant-override test's settings: its run on the model is this calm run (compiled once for both)
    kw = dict(episode=8, horizon=8, replan_every=2, iterations=5, key=KEY, seeds=[0], time_plans=False)
    calm = mpc(problem, {"m": method}, **kw)["m"]
    push = mpc(problem, {"m": method}, plant=Plant(disturbances=(Disturbance(at=4, dx=(0.0, 0.7)),)), **kw)["m"]
    np.testing.assert_array_equal(push.X[:, :4], calm.X[:, :4])  # nothing before it
    np.testing.assert_allclose(push.X[0, 4] - calm.X[0, 4], [0.0, 0.7], atol=1e-12)  # the push itself
    assert not np.allclose(push.U[:, 4:], calm.U[:, 4:])  # the next replan sees it


def test_measurement_noise_is_seeded_and_a_seed_is_the_same_alone_or_in_a_batch():
    problem = cart_problem(T=6)
    method = CEM(population=10)
    kw = dict(episode=6, horizon=6, replan_every=1, iterations=2, key=KEY, time_plans=False)
    noisy = Plant(state_noise=0.05)
    batch = mpc(problem, {"cem": method}, plant=noisy, seeds=[0, 1, 2], **kw)["cem"]
    alone = mpc(problem, {"cem": method}, plant=noisy, seeds=[1], **kw)["cem"]
    again = mpc(problem, {"cem": method}, plant=noisy, seeds=[0, 1, 2], **kw)["cem"]
    clean = mpc(problem, {"cem": method}, seeds=[0, 1, 2], **kw)["cem"]
    np.testing.assert_array_equal(again.X, batch.X)
    np.testing.assert_allclose(alone.X[0], batch.X[1], rtol=0, atol=1e-12)
    assert not np.allclose(clean.U, batch.U)  # the planner saw other states
    assert np.all(batch.rollouts == 2 * 10)  # K x population per replan


def test_success_counts_the_final_states_within_the_radius():
    cost = QuadraticCost(Q=jnp.eye(2), R=jnp.eye(1), Qf=jnp.eye(2), goal=jnp.array([1.0, 0.0]), wrap=(0,))
    X = np.zeros((3, 4, 2))
    X[0, -1] = [1.0 + 0.3, 0.0]            # within 0.5
    X[1, -1] = [1.0 + 2 * np.pi, 0.4]      # the angle wraps: within
    X[2, -1] = [1.0, 0.5000001]            # just outside
    np.testing.assert_array_equal(Success(radius=0.5)(cost, X), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(Success(radius=0.5, positions=(0,))(cost, X), [1.0, 1.0, 1.0])
    X[0, -2] = [5.0, 0.0]
    np.testing.assert_array_equal(Success(radius=0.5, hold=2)(cost, X), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("settings, field", [
    (dict(episode=10, horizon=4, replan_every=5), "replan_every"),
    (dict(episode=3, horizon=4, replan_every=4), "replan_every"),
    (dict(episode=0, horizon=4), "episode"),
    (dict(episode=10, horizon=4, iterations=0), "iterations"),
    (dict(episode=10, horizon=4, warm_start="roll"), "warm_start"),
])
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(FieldError) as e:
        MPCSettings(**settings)
    assert e.value.field == field


@pytest.mark.parametrize("plant, field", [
    (Plant(state_noise=-0.1), "state_noise"),
    (Plant(state_noise=[0.1, 0.1, 0.1]), "state_noise"),
    (Plant(disturbances=(Disturbance(at=11, dx=(0.0, 1.0)),)), "disturbance[0].at"),
    (Plant(disturbances=(Disturbance(at=2, dx=(1.0,)),)), "disturbance[0].dx"),
])
def test_bad_plants_name_the_field(plant, field):
    with pytest.raises(FieldError) as e:
        plant.check(2, 10)
    assert e.value.field == field


def test_a_plant_override_of_an_unknown_parameter_is_refused():
    with pytest.raises(FieldError, match="a parameter of Cart"):
        mpc(cart_problem(), {"cem": CEM(population=10)}, episode=4, horizon=4, key=KEY, plant={"stifness": 2.0})


def test_a_seed_whose_closed_loop_cost_overflows_is_non_finite_at_its_first_non_finite_step():
    """x' = 10 x + u from x_0 = 1e150: the plant's states stay finite (x_8 = 1e158) but the stage cost x_t^2 overflows
    at t = 5 (x_4^2 = 1e308 is finite): that seed is non_finite, failed_at 5, its cost NaN; the seed from x_0 = 1 is ok
    and the median is its cost alone."""

    def step(x, u):
        return 10.0 * x + u

    cost = QuadraticCost(Q=jnp.eye(1), R=jnp.eye(1), Qf=jnp.eye(1), goal=jnp.zeros(1))
    problem = trajectory_problem("grow", step, jnp.array([1.0]), cost, jnp.zeros((3, 1)))
    r = mpc(problem, {"m": GradientMethod(FoBG(samples=2, sigma=0.1), Adam(0.1))}, episode=8, horizon=3,
            replan_every=1, iterations=2, key=KEY, seeds=[0, 1], initial_states=[[1e150], [1.0]],
            time_plans=False)["m"]
    assert np.all(np.isfinite(r.X[0])) and np.all(np.isfinite(r.U[0]))  # only the cost is not finite
    assert r.status == ["non_finite", "ok"]
    assert r.failed_at.tolist() == [5, -1]
    assert np.isnan(r.closed_loop_cost[0]) and np.isfinite(r.closed_loop_cost[1])
    assert r.closed_loop_cost_median == r.closed_loop_cost[1]
    from trajopt.plots_closedloop import closed_loop_cost_figure

    ticks = [t.get_text() for t in closed_loop_cost_figure({"m": r}).axes[0].get_xticklabels()]
    assert ticks == ["m\n1 non-finite (not drawn)"]  # the figure says which seed has no point


@pytest.mark.parametrize("methods, where", [({"f": FoBG()}, "methods['f']"), (["cem"], "methods[0]"),
                                            ([FoBG()], "methods[0]")])
def test_an_oracle_or_a_name_in_place_of_a_method_is_refused_by_name(methods, where):
    """An oracle (or a registry name) where a method belongs failed deep inside the episode's trace with
    "'FoBG' object has no attribute 'init'"; solve and compare refused it by name: so does mpc now."""
    with pytest.raises(TypeError, match=rf"^{re.escape(where)}: found .*allowed: a method with init"):
        mpc(cart_problem(), methods, episode=4, horizon=4, key=KEY)
