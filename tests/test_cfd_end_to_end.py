"""The cfd oracle end to end (#29 item 3): under two optimisers (SGD and Adam), inside MultiStart, and as an MPC
planner, on a ball dropped onto a plane (tests/models/ball_drop.xml, started 5 mm above it so that it lands within
the horizon: contact made, one solver iteration, reverse mode). Each run is finite, counts one rollout and one backward
pass per oracle call (the oracle's contract: MultiStart's K starts K of each, an MPC replan of K steps K of each), and
the value the optimiser sees is the true model's cost (f(U0) compiled apart; exact sees the same). MJX
tests (the [mjx] extra): each fixture compiles one program of a 4-step rollout (seconds to a minute on this host)."""

from __future__ import annotations

import os
import textwrap

import pytest

pytest.importorskip("mujoco.mjx", reason="the mjx system needs the [mjx] extra: pip install -e '.[mjx]'")
pytestmark = pytest.mark.mjx

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import trajopt  # noqa: E402
from trajopt import spec  # noqa: E402
from trajopt.closedloop import MPCSettings, mpc  # noqa: E402
from trajopt.methods import MultiStart  # noqa: E402
from trajopt.oracles import ORACLES  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALL = os.path.join(ROOT, "tests", "models", "ball_drop.xml")
ITERATIONS = 3
LAW = dict(margin=0.02, acceleration=3.0, power=2.0)  # the 5 mm gap is inside the margin


def ball_problem():
    text = textwrap.dedent(f"""
        [system]
        name = "mjx"
        model = "{BALL}"

        [task]
        horizon = 4
        x0 = [-0.045, 0.0]
        goal = [-0.02, 0.0]
        Q = [10.0, 0.1]
        R = [0.001]
        Qf = [100.0, 1.0]
        u_init = 0.0
        """)
    return spec.loads(text).problem()


@pytest.fixture(scope="module")
def problem():
    return ball_problem()


def cfd():
    return ORACLES.get("cfd")(**LAW)


@pytest.fixture(scope="module")
def runs(problem):
    """cfd under SGD and Adam, and exact under SGD (the same first iterate), 2 seeds, ITERATIONS steps."""
    methods = {"cfd_sgd": trajopt.GradientMethod(cfd(), trajopt.SGD(step=1e-3)),
               "cfd_adam": trajopt.GradientMethod(cfd(), trajopt.Adam(step=0.5)),
               "exact_sgd": trajopt.GradientMethod(ORACLES.get("exact")(), trajopt.SGD(step=1e-3))}
    key = jax.random.PRNGKey(0)
    return {name: trajopt.solve(problem, m, key=key, iterations=ITERATIONS, seeds=(0, 1), name=name)
            for name, m in methods.items()}


@pytest.mark.parametrize("name", ["cfd_sgd", "cfd_adam"])
def test_cfd_runs_under_each_optimiser_with_the_true_cost_and_its_counts(runs, problem, name):
    r = runs[name]
    assert list(r.status) == ["ok", "ok"] and r.iterations == ITERATIONS
    assert np.all(np.isfinite(r.cost)) and np.all(np.isfinite(r.U))
    # one rollout and one backward pass per step (the oracle's calls), every step of every seed
    np.testing.assert_array_equal(np.asarray(r.history["rollouts"]), 1)
    np.testing.assert_array_equal(np.asarray(r.history["gradients"]), 1)
    # the value the optimiser is given is the true model's cost: at U0, f(U0) compiled apart (solve records the
    # oracle's values as the iterates' costs, so only an independent evaluation can tell)
    true_f0 = float(jax.jit(problem.objective)(jnp.asarray(problem.U0)))
    np.testing.assert_allclose(np.asarray(r.history["value"])[:, 0], true_f0, rtol=1e-12, atol=0)
    assert float(np.asarray(r.cost)[0, -1]) < true_f0  # it descends (the last entry: solve's own final evaluation)
    np.testing.assert_allclose(float(np.asarray(r.final_cost)[0]), float(problem.objective(jnp.asarray(r.U[0]))),
                               rtol=1e-12)


def test_cfd_starts_where_exact_starts_and_moves_differently(runs):
    """Both see the true cost of U0; the ball within the margin feels cfd's distance force, so the first steps
    differ (the gradient, not the value)."""
    cfd_run, exact_run = runs["cfd_sgd"], runs["exact_sgd"]
    assert float(np.asarray(cfd_run.history["value"])[0, 0]) == float(np.asarray(exact_run.history["value"])[0, 0])
    assert not np.allclose(np.asarray(cfd_run.U), np.asarray(exact_run.U), rtol=1e-9, atol=0)


def test_cfd_inside_multistart(problem):
    starts = 3
    method = MultiStart(trajopt.GradientMethod(cfd(), trajopt.Adam(step=0.5)), starts=starts, start_spread=0.5)
    r = trajopt.solve(problem, method, key=jax.random.PRNGKey(1), iterations=2, seeds=(0,))
    assert list(r.status) == ["ok"] and np.all(np.isfinite(r.cost))
    np.testing.assert_array_equal(np.asarray(r.history["rollouts"]), starts)  # the K starts' calls together
    np.testing.assert_array_equal(np.asarray(r.history["gradients"]), starts)
    assert float(np.asarray(r.cost)[0, -1]) <= float(np.asarray(r.history["value"])[0, 0])  # it keeps the best


def test_cfd_as_an_mpc_planner(problem):
    settings = MPCSettings(episode=4, horizon=3, replan_every=2, iterations=2)
    out = mpc(problem, {"cfd": trajopt.GradientMethod(cfd(), trajopt.Adam(step=0.5))}, settings=settings,
              key=jax.random.PRNGKey(0), seeds=(0, 1), time_plans=False)
    r = out["cfd"]
    assert r.status == ["ok", "ok"] and np.all(np.isfinite(r.X)) and np.all(np.isfinite(r.closed_loop_cost))
    assert r.rollouts.shape == (2, 2)  # 2 seeds x 2 replans
    np.testing.assert_array_equal(r.rollouts, settings.iterations)  # K steps, one rollout each
    np.testing.assert_array_equal(r.gradients, settings.iterations)
    assert np.all(r.plan_failures == 0) and np.all(np.isfinite(r.planned_cost))
    # the realised cost is the true cost of the realised trajectory (the plant is the model: no mismatch)
    X = jnp.asarray(r.X[0])
    np.testing.assert_allclose(float(r.closed_loop_cost[0]), float(problem.cost(X, jnp.asarray(r.U[0]))), rtol=1e-12)
