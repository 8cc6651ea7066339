"""Baseline methods under the method contract: iLQR, CEM, MPPI, predictive sampling, DIAL, L-BFGS; and the
two trajax test problems (pendulum_trajax, acrobot) they are compared on."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt import spec
from trajopt.checks import FieldError
from trajopt.methods import METHODS
from trajopt.methods.ilqr import ILQR
from trajopt.problem import Problem, QuadraticCost, one_step_problem, trajectory_problem
from trajopt.solver import solve

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
KEY = jax.random.PRNGKey(0)


def lq_problem(T: int = 12, U0_scale: float = 0.3) -> Problem:
    """A small linear-quadratic problem: n = 3, m = 2, a fixed random stable-ish A, B; goal 0."""
    rng = np.random.default_rng(1)
    n, m = 3, 2
    A = jnp.asarray(np.eye(n) + 0.1 * rng.normal(size=(n, n)))
    B = jnp.asarray(0.2 * rng.normal(size=(n, m)))
    cost = QuadraticCost(Q=jnp.diag(jnp.array([1.0, 2.0, 0.5])), R=jnp.diag(jnp.array([0.3, 0.1])),
                         Qf=10.0 * jnp.eye(n), goal=jnp.array([0.5, -0.2, 0.1]))
    x0 = jnp.array([1.0, -1.0, 0.5])
    U0 = jnp.asarray(U0_scale * rng.normal(size=(T, m)))
    return trajectory_problem("lq", lambda x, u: A @ x + B @ u, x0, cost, U0)


def lq_solution(problem: Problem) -> np.ndarray:
    """U* of the quadratic J(U): solve H u = -g from the exact Hessian and gradient at U0 (J is quadratic)."""
    shape = problem.U0.shape
    f = lambda u: problem.objective(u.reshape(shape))  # noqa: E731
    u0 = problem.U0.reshape(-1)
    H = jax.jit(jax.hessian(f))(u0)
    g = jax.jit(jax.grad(f))(u0)
    return np.asarray(u0 - jnp.linalg.solve(H, g)).reshape(shape)


# --------------------------------------------------------------------------------------------- problems


@pytest.mark.parametrize("name, golden", [("pendulum_trajax", 38677.44530), ("acrobot", 4959.476212)])
def test_trajax_goldens(name, golden):
    problem = spec.load(PROBLEMS / f"{name}.toml").problem()
    assert float(problem.objective(problem.U0)) == pytest.approx(golden, abs=1e-5)


def test_integrators_order():
    """RK4's one-step error is O(h^5), Euler's O(h^2): halving h divides them by about 32 and 4."""
    from trajopt.systems.integrators import euler, rk4

    f = lambda x, u: jnp.stack([x[1], -x[0] + u[0]])  # noqa: E731  (harmonic oscillator, u = 0)
    x0, u = jnp.array([1.0, 0.0]), jnp.zeros(1)
    exact = lambda h: jnp.array([jnp.cos(h), -jnp.sin(h)])  # noqa: E731
    for integ, ratio in ((rk4, 32.0), (euler, 4.0)):
        e1 = float(jnp.linalg.norm(integ(f, x0, u, 0.1) - exact(0.1)))
        e2 = float(jnp.linalg.norm(integ(f, x0, u, 0.05) - exact(0.05)))
        assert e1 / e2 == pytest.approx(ratio, rel=0.15)


# --------------------------------------------------------------------------------------------- iLQR


def test_ilqr_solves_lq_in_one_step():
    problem = lq_problem()
    U_star = lq_solution(problem)
    r = solve(problem, ILQR(), key=KEY, iterations=3, seeds=[0])
    assert r.status == ["ok"]
    np.testing.assert_allclose(r.U[0], U_star, atol=1e-8)
    J_star = float(problem.objective(jnp.asarray(U_star)))
    assert r.cost[0, 1] == pytest.approx(J_star, rel=1e-10, abs=1e-10)  # the first step lands on U*
    # step 1: one rollout + one accepted trial (alpha = 1); step 2 linearises along that accepted trial's rollout
    # (no rollout of its own) and stops on the gradient; then nothing is spent
    assert list(r.history["rollouts"][0]) == [2, 0, 0]
    # a linearisation per step that linearises (its Jacobians, forward mode), no backward pass; nothing once stopped
    assert list(r.history["linearizations"][0]) == [1, 1, 0]
    assert list(r.history["gradients"][0]) == [0, 0, 0]
    assert list(r.history["stop_reason"][0]) == [0, 1, 1]
    assert r.history["step_length"][0, 0] == 1.0


def test_ilqr_box_limits_never_violated():
    problem = lq_problem(U0_scale=3.0)  # U0 partly outside the box: init projects it
    lo, hi = -1.1, 0.55
    r = solve(problem, ILQR(u_min=lo, u_max=hi), key=KEY, iterations=6, seeds=[0])
    assert r.status == ["ok"]
    assert r.U.min() >= lo and r.U.max() <= hi
    U_free = lq_solution(problem)
    assert U_free.min() < lo and U_free.max() > hi  # the box binds
    c = r.cost[0]
    assert np.all(np.diff(c[np.isfinite(c)]) <= 1e-12)  # only decreases are accepted
    # Box-DDP solves the box-constrained LQ: the KKT conditions hold at the returned iterate
    g = np.asarray(jax.grad(problem.objective)(jnp.asarray(r.U[0])))
    at_lo, at_hi = np.isclose(r.U[0], lo, rtol=0, atol=1e-9), np.isclose(r.U[0], hi, rtol=0, atol=1e-9)
    free = ~(at_lo | at_hi)
    assert at_lo.any() and at_hi.any() and free.any()
    assert np.abs(g[free]).max() < 1e-8
    assert np.all(g[at_lo] >= 0) and np.all(g[at_hi] <= 0)
    assert r.history["stop_reason"][0, -1] == 1


def test_ilqr_refuses_one_step_problem():
    problem = one_step_problem("pivot_like", lambda u: jnp.sum(u**2), jnp.ones(2))
    with pytest.raises(ValueError, match="ilqr needs a time-stepped problem .* pivot_like is a one-step problem"):
        ILQR().init(KEY, problem, problem.U0)


@pytest.mark.parametrize("kwargs, field", [({"line_search_steps": 0}, "line_search_steps"),
                                           ({"backtrack": 1.0}, "backtrack"), ({"mu_factor": 1.0}, "mu_factor"),
                                           ({"u_min": 1.0, "u_max": 0.0}, "u_max"), ({"grad_tol": -1.0}, "grad_tol")])
def test_ilqr_checks_parameters(kwargs, field):
    with pytest.raises(FieldError) as err:
        ILQR(**kwargs)
    assert err.value.field == field


def test_ilqr_regularisation_rule():
    m = ILQR(mu_min=1e-6, mu_factor=2.0)
    mu, delta = m._increase(jnp.asarray(0.0), jnp.asarray(1.0))
    assert (float(mu), float(delta)) == (1e-6, 2.0)
    mu, delta = m._increase(mu, delta)
    assert (float(mu), float(delta)) == pytest.approx((4e-6, 4.0))
    mu, delta = m._decrease(mu, delta)
    assert (float(mu), float(delta)) == pytest.approx((2e-6, 0.5))
    mu, delta = m._decrease(mu, delta)
    assert (float(mu), float(delta)) == (0.0, 0.25)  # below mu_min: back to plain Gauss-Newton


@pytest.mark.slow
def test_ilqr_pendulum_trajax_beats_a_gradient_oracle_at_equal_time():
    from trajopt.methods.gradient import GradientMethod
    from trajopt.optim import Adam
    from trajopt.oracles.fobg import FoBG

    problem = spec.load(PROBLEMS / "pendulum_trajax.toml").problem()
    r = solve(problem, ILQR(), key=KEY, iterations=100, seeds=[0])
    assert r.status == ["ok"]
    X = np.asarray(problem.trajectory(jnp.asarray(r.U[0])))
    assert abs((X[-1, 0] - math.pi + math.pi) % (2 * math.pi) - math.pi) <= 0.1  # trajax's README assertion
    assert abs(X[-1, 1]) <= 0.1
    # the problem file's gradient oracle (FoBG, N = 10, Adam 0.1), for at least iLQR's wall time
    method = GradientMethod(FoBG(samples=10, sigma=0.1), Adam(step=0.1))
    g = solve(problem, method, key=KEY, iterations=50, seeds=[0])
    iters = max(50, int(1.2 * 50 * r.run_seconds / max(g.run_seconds, 1e-9)))
    g = solve(problem, method, key=KEY, iterations=iters, seeds=[0])
    assert g.run_seconds >= 0.5 * r.run_seconds
    assert r.final_cost[0] < 0.7 * g.final_cost[0]


@pytest.mark.slow
def test_ilqr_acrobot_matches_trajax():
    """trajax's testAcrobotSolve: iLQR from U0 = 0 reaches J < 51 with a small gradient."""
    problem = spec.load(PROBLEMS / "acrobot.toml").problem()
    r = solve(problem, ILQR(), key=KEY, iterations=100, seeds=[0])
    assert r.final_cost[0] < 51.0
    assert float(jnp.linalg.norm(jax.grad(problem.objective)(jnp.asarray(r.U[0])))) < 1e-2


# --------------------------------------------------------------------------------------------- sampling


def quadratic_problem(shape=(8, 2)) -> Problem:
    """A convex quadratic f(U) = 1/2 uᵀ A u + bᵀ u (u = vec U), A = M Mᵀ/d + I."""
    d = int(np.prod(shape))
    rng = np.random.default_rng(4)
    M = rng.normal(size=(d, d))
    A = jnp.asarray(M @ M.T / d + np.eye(d))
    b = jnp.asarray(rng.normal(size=d))
    return Problem("quadratic", jnp.asarray(rng.normal(size=shape)),
                   lambda U: 0.5 * U.reshape(-1) @ A @ U.reshape(-1) + b @ U.reshape(-1))


SAMPLERS = {
    "cem": (dict(population=64, elite_fraction=0.2, sigma_init=0.3), lambda m: m.population),
    "mppi": (dict(samples=32, sigma=0.1, temperature=0.05), lambda m: m.samples),
    "ps": (dict(samples=16, sigma=0.1), lambda m: m.samples + 1),
    "dial": (dict(samples=32, sigma=0.3, iterations_scale=30, temperature=0.05), lambda m: m.samples),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_decreases_a_quadratic_counts_and_draws_per_seed(name):
    kwargs, rollouts = SAMPLERS[name]
    method = METHODS.get(name)(**kwargs)
    problem = quadratic_problem()
    r = solve(problem, method, key=KEY, iterations=30, seeds=[0, 1, 2, 3])
    assert r.status == ["ok"] * 4
    assert np.all(r.final_cost < r.cost[:, 0] - 0.5 * abs(r.cost[:, 0]))
    assert np.all(r.history["rollouts"] == rollouts(method))
    assert np.all(r.history["gradients"] == 0)
    np.testing.assert_allclose(r.final_cost, jax.vmap(problem.objective)(jnp.asarray(r.U)), rtol=1e-12)
    if name == "ps":  # the incumbent is a candidate: the cost never increases
        assert np.all(np.diff(r.cost, axis=1) <= 0)
    # seed 3 draws the same noise first and last in a batch (the same program: nothing compiles again; alone
    # against a batch, for every registered method: test_methods_contract::test_method_under_solve_seed_and_chunk_invariance)
    moved = solve(problem, method, key=KEY, iterations=30, seeds=[3, 0, 1, 2])
    np.testing.assert_allclose(moved.cost[0], r.cost[3], rtol=1e-12)
    assert not np.allclose(r.cost[0], r.cost[3])


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_steps_box_and_reported_value(name):
    """Two eager steps: the iterate a step returns is the one whose cost the next step reports, and with box
    limits every iterate stays in the box."""
    kwargs, _ = SAMPLERS[name]
    problem = quadratic_problem()
    for method in (METHODS.get(name)(**kwargs), METHODS.get(name)(**kwargs, u_min=-0.2, u_max=0.1)):
        state = method.init(KEY, problem, problem.U0)
        boxed = method.u_max < math.inf
        for k in range(2):
            value = float(problem.objective(state.U))
            state, info = method.step(jax.random.fold_in(KEY, k), problem, state)
            assert float(info.value) == pytest.approx(value, rel=1e-12)
            if boxed:
                assert float(state.U.min()) >= -0.2 and float(state.U.max()) <= 0.1


def test_dial_schedule():
    from trajopt.methods.dial import DIAL

    m = DIAL(sigma=0.5, beta1=2.0, beta2=0.5, iterations_scale=10)
    H = 4
    s = np.asarray(m.noise_scale(jnp.asarray(3), H))
    expected = [0.5 * math.exp(-3 / 20 - (H - h) / (0.5 * H)) for h in range(H)]
    np.testing.assert_allclose(s, expected, rtol=1e-12)
    problem = quadratic_problem()
    H = problem.U0.shape[0]
    state = m.init(KEY, problem, problem.U0)
    state, info = m.step(KEY, problem, state)
    assert int(state.iteration) == 1 and float(info.sigma_max) == pytest.approx(0.5 * math.exp(-1 / (0.5 * H)))


@pytest.mark.parametrize("name, kwargs, field", [
    ("cem", {"population": 10, "elite_fraction": 0.05}, "elite_fraction"), ("cem", {"alpha_mu": 1.0}, "alpha_mu"),
    ("mppi", {"temperature": 0.0}, "temperature"), ("ps", {"samples": 0}, "samples"),
    ("dial", {"beta1": 0.0}, "beta1"), ("mppi", {"u_min": 1.0, "u_max": -1.0}, "u_max")])
def test_sampler_checks_parameters(name, kwargs, field):
    with pytest.raises(FieldError) as err:
        METHODS.get(name)(**kwargs)
    assert err.value.field == field


# --------------------------------------------------------------------------------------------- L-BFGS


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_lbfgs_minimises_a_quadratic_and_counts_every_evaluation():
    from trajopt.methods.lbfgs import LBFGS

    base = quadratic_problem()
    u = base.U0.reshape(-1)
    H = jax.hessian(lambda v: base.objective(v.reshape(base.U0.shape)))(u)
    g = jax.grad(lambda v: base.objective(v.reshape(base.U0.shape)))(u)
    J_star = float(base.objective((u - jnp.linalg.solve(H, g)).reshape(base.U0.shape)))

    calls = []  # a host-side counter of objective evaluations (tests only; the library never calls back)

    def counted(U):
        jax.debug.callback(lambda: calls.append(1))
        return base.objective(U)

    problem = Problem("counted_quadratic", base.U0, counted)
    method = LBFGS()
    step = jax.jit(lambda k, s: method.step(k, problem, s))
    state = method.init(KEY, problem, problem.U0)
    reported = 0
    for k in range(15):
        state, info = step(jax.random.fold_in(KEY, k), state)
        jax.block_until_ready(info)
        reported += int(info.rollouts)
        assert int(info.gradients) == int(info.rollouts)
    assert reported == len(calls)
    assert float(base.objective(state.U)) == pytest.approx(J_star, abs=1e-8)
    r = solve(base, method, key=KEY, iterations=15, seeds=[0])
    assert r.final_cost[0] == pytest.approx(J_star, abs=1e-8)
    assert r.history["rollouts"][0, 0] == r.history["linesearch_steps"][0, 0] + 1  # the first step evaluates f(U0)
