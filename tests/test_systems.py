"""The physical systems: goldens (initial costs of the authors' code's settings), equivalences, physics checks and
exact gradients."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt.oracles import FoBG
from trajopt.problem import Problem, QuadraticCost, trajectory_problem
from trajopt.systems import (
    SYSTEMS,
    BallWithWall,
    Chain,
    DoublePendulum,
    Friction,
    Heaviside,
    Pendulum,
    PendulumBlock,
    Pivot,
    Pushing,
    SoftHeaviside,
    SpringWall,
    control_names,
    parameter_types,
    state_names,
)

PUSH_Q = [0.1, 10.0, 0.1, 0.1]


def quadratic(Q, R, Qf, goal) -> QuadraticCost:
    diag = lambda v: jnp.diag(jnp.asarray(v, dtype=float))  # noqa: E731
    return QuadraticCost(Q=diag(Q), R=diag(R), Qf=diag(Qf), goal=jnp.asarray(goal, dtype=float))


def problem_for(system, x0, cost: QuadraticCost, T: int, u_init: float) -> Problem:
    U0 = jnp.full((T, system.control_size), u_init, dtype=float)
    return trajectory_problem("test", system.step, jnp.asarray(x0, dtype=float), cost, U0)


def initial_cost(system, x0, cost, T, u_init) -> float:
    p = problem_for(system, x0, cost, T, u_init)
    return float(p.objective(p.U0))


def one_step_problem(system) -> Problem:
    return Problem("test", U0=jnp.zeros((1, system.control_size)), objective=lambda U: system.cost(U[0]))


# ---------------------------------------------------------------- registry and contract


@pytest.mark.parametrize("name", SYSTEMS.names())
def test_every_parameter_at_zero_is_refused_at_construction_or_has_a_stable_step(name):
    """Each numeric parameter of each registered system set to 0, one at a time: the system refuses it when it is
    built (a ValueError naming it), or its ``stable_dt()`` is a number (> 0, or inf: every step stable), which the
    problem file's check then compares with dt. Never an exception from the rule itself (friction's m / mu at
    mu = 0, a frictionless block, raised ZeroDivisionError from ``trajopt validate``: exit 1, not a clear result)."""
    cls = SYSTEMS.get(name)
    if callable(getattr(cls, "from_table", None)):
        pytest.skip(f"{name} is built from a file named in its table (from_table): tests/test_mjx.py covers it")
    checked = 0
    for f in dataclasses.fields(cls):
        if isinstance(f.default, bool) or not isinstance(f.default, (int, float)):
            continue
        try:
            system = cls(**{f.name: type(f.default)(0)})
        except ValueError:
            continue
        limit = system.stable_dt()
        assert limit > 0, (f.name, limit)
        checked += 1
    if name == "friction":
        assert checked >= 1  # mu = 0 is allowed (non-negative), so the rule is asked at least there


@pytest.mark.parametrize("name", SYSTEMS.names())
def test_registered_system_contract(name):
    cls = SYSTEMS.get(name)
    if callable(getattr(cls, "from_table", None)):
        pytest.skip(f"{name} is built from a file named in its table (from_table): tests/test_mjx.py covers it")
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert set(parameter_types(cls).values()) <= {float, int, str, bool}
    system = cls()
    assert system.stable_dt() > 0
    m = system.control_size
    if getattr(system, "one_step", False):
        assert system.state_size == 0 and math.isnan(system.dt) and system.stable_dt() == math.inf
        assert jnp.shape(system.cost(jnp.zeros(m))) == ()
    else:
        n = system.state_size
        x1 = jax.jit(system.step)(jnp.zeros(n), jnp.ones(m))
        assert x1.shape == (n,) and bool(jnp.all(jnp.isfinite(x1)))
        assert math.isfinite(system.dt) and system.dt > 0
        assert system.dt < system.stable_dt()  # every default is explicitly stable
    # its own axis labels (base.py's contract): one short, distinct name per state and per control coordinate
    for attr, size in (("state_names", system.state_size), ("control_names", m)):
        names = getattr(system, attr)
        assert isinstance(names, tuple) and len(names) == size and len(set(names)) == size, (attr, names)
        assert all(isinstance(v, str) and 0 < len(v) <= 20 for v in names), (attr, names)
    assert state_names(system) == system.state_names and control_names(system) == system.control_names


def test_names_follow_the_size_and_default_for_systems_without_them():
    """Sized systems name every coordinate; a system without names (a user's) gets x0.. / u0..; names of the
    wrong length are not used (the defaults are, and names_problem says why)."""
    from trajopt.systems.base import names_problem

    assert state_names(Chain(bodies=3)) == ("x_0", "x_1", "x_2", "v_0", "v_1", "v_2")
    assert control_names(Heaviside(dimension=3)) == ("theta0", "theta1", "theta2")

    @dataclasses.dataclass(frozen=True)
    class Plain:
        state_size = 3
        control_size = 2

    assert state_names(Plain()) == ("x0", "x1", "x2") and control_names(Plain()) == ("u0", "u1")

    @dataclasses.dataclass(frozen=True)
    class Wrong:
        state_size = 2
        control_size = 1
        state_names = ("only one",)
        control_names = "u"

    assert state_names(Wrong()) == ("x0", "x1") and control_names(Wrong()) == ("u0",)
    assert "expected a tuple of 2 non-empty strings" in names_problem(Wrong(), "state_names", 2)
    assert "expected a tuple of 1 non-empty strings" in names_problem(Wrong(), "control_names", 1)
    assert names_problem(Plain(), "state_names", 3) is None


def test_a_user_systems_names_of_the_wrong_size_are_refused_at_load():
    """A user's system (``module:Class``) is tried before anything compiles (`spec.check_system`): names it gives
    must fit its sizes, else one line at system.name says what was found and what is expected."""
    from trajopt.spec import SpecError, check_system

    @dataclasses.dataclass(frozen=True)
    class Mine:
        state_size = 2
        control_size = 1
        state_names = ("p", "v", "extra")

        def step(self, x, u):
            return x + u[0]

    with pytest.raises(SpecError) as e:
        check_system(Mine(), "f.toml", "mine:Mine")
    assert e.value.key == "system.name" and "state_names is ('p', 'v', 'extra')" in str(e.value)
    assert "expected a tuple of 2 non-empty strings" in str(e.value)


    @dataclasses.dataclass(frozen=True)
    class Fine(Mine):
        state_names = ("p", "v")

    check_system(Fine(), "f.toml", "mine:Fine")  # right sizes: accepted


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pendulum(wall_law="rigid"),
        lambda: Chain(bodies=1),
        lambda: Chain(contact="hertz"),
        lambda: Heaviside(dimension=0),
        lambda: SoftHeaviside(width=0.0),
    ],
)
def test_invalid_parameters_raise(make):
    with pytest.raises(ValueError, match="allowed"):
        make()


# ------------------------- goldens: J(U0) of the authors' code's settings (hjsuh94/alpha_gradient), float64


def test_friction_golden():
    cost = quadratic(PUSH_Q, [1.0], PUSH_Q, [2.0, 2.0, 0.0, 0.0])
    J = initial_cost(Friction(), [0.0, 0.0, 0.0, 0.0], cost, 400, 0.0)
    print(f"friction J0 = {J:.4f}")
    assert J == pytest.approx(16200.4000, rel=1e-8)


def test_pendulum_swing_up_golden():
    cost = quadratic([1.0, 1.0], [1.0], [20.0, 20.0], [math.pi, 0.0])
    J = initial_cost(Pendulum(), [0.0, 0.0], cost, 200, 0.1)
    print(f"pendulum J0 = {J:.4f}")
    assert J == pytest.approx(2008.0154, abs=1e-4)


# k, c, h, x0 velocity, T, R, golden J(0): the six experiments of the C2.2 table.
SPRING_WALL = [
    (100.0, 1.0, 0.005, 4.0, 200, 1.0, 884.2023),
    (500.0, 5.0, 0.01, 6.0, 200, 1.0, 1040.4198),
    (1000.0, 10.0, 0.005, 12.0, 200, 1.0, 1173.6172),
    (2000.0, 20.0, 0.005, 40.0, 200, 0.1, 3153.8667),
    (4000.0, 10.0, 0.001, 100.0, 20, 0.01, 14082.0832),
    (4000.0, 4.0, 0.001, 6.0, 400, 1.0, 2518.3099),
]


@pytest.mark.parametrize("k, c, h, v0, T, R, golden", SPRING_WALL)
def test_spring_wall_goldens(k, c, h, v0, T, R, golden):
    system = SpringWall(stiffness=k, contact_damping=c, dt=h)
    J = initial_cost(system, [0.0, v0], quadratic([10.0, 0.1], [R], [10.0, 0.1], [0.0, 0.0]), T, 0.0)
    print(f"spring wall k={k:g}: J0 = {J:.4f}")
    assert J == pytest.approx(golden, abs=1e-4)


@pytest.mark.parametrize("k, golden", [(10.0, 1059), (100.0, 366), (1000.0, 213)])
def test_pendulum_wall_p1_initial_costs(k, golden):
    """The pendulum-with-walls problems (docs/problems.md): theta_w = 0.5, x0 = [0, 2], spring_damper law
    (c = 0.01 k)."""
    system = Pendulum(wall_angle=0.5, wall_stiffness=k)
    J = initial_cost(system, [0.0, 2.0], quadratic([10.0, 0.1], [1.0], [10.0, 0.1], [0.0, 0.0]), 200, 0.0)
    assert J == pytest.approx(golden, abs=0.5)  # the table gives whole numbers


# ---------------------------------------------------------------- chain == pushing


CURLING = [(10.0, 0.998, 400, 2374.8938), (100.0, 0.998, 200, 1746.1570), (1000.0, 0.99, 200, 1821.2490)]


@pytest.mark.parametrize("k, d, T, golden", CURLING)
def test_two_body_chain_is_pushing(k, d, T, golden):
    push, chain = Pushing(stiffness=k, damping=d), Chain(bodies=2, stiffness=k, damping=d)
    kx, ku = jax.random.split(jax.random.PRNGKey(0))
    # Gaps 1 + N(0, 0.2^2): about half the states are in contact; plus the exact tie g = 0.
    xs = jax.random.normal(kx, (500, 4)) * jnp.array([0.2, 0.2, 1.0, 1.0]) + jnp.array([0.0, 1.0, 0.0, 0.0])
    xs = xs.at[0].set(jnp.array([0.0, 1.0, 0.3, -0.2]))
    us = jax.random.normal(ku, (500, 1))
    gaps = xs[:, 1] - xs[:, 0] - 1.0
    assert 0.3 < float(jnp.mean(gaps < 0)) < 0.7
    np.testing.assert_array_equal(jax.vmap(chain.step)(xs, us), jax.vmap(push.step)(xs, us))

    cost = quadratic(PUSH_Q, [1.0], PUSH_Q, [1.0, 2.0, 0.0, 0.0])
    p_push, p_chain = (problem_for(s, [0.0, 1.0, 0.0, 0.0], cost, T, 0.1) for s in (push, chain))
    J_push, J_chain = float(p_push.objective(p_push.U0)), float(p_chain.objective(p_chain.U0))
    print(f"curling k={k:g}: J0 = {J_chain:.4f}")
    assert J_chain == J_push
    assert J_chain == pytest.approx(golden, abs=1e-4)
    # gradients (50 steps): the backward passes order their sums differently, so they agree to round-off
    # relative to |grad|, not bit for bit
    short_push, short_chain = (problem_for(s, [0.0, 1.0, 0.0, 0.0], cost, 50, 0.1) for s in (push, chain))
    U = short_push.U0 + 0.1 * jax.random.normal(jax.random.PRNGKey(1), short_push.U0.shape)
    g_chain, g_push = jax.grad(short_chain.objective)(U), jax.grad(short_push.objective)(U)
    np.testing.assert_allclose(g_chain, g_push, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(g_push))))


def test_chain_contact_laws():
    x = jnp.array([0.0, 0.9, 2.2, 1.0, 0.0, 0.0])  # pair (0, 1) penetrates by 0.1, pair (1, 2) apart by 0.3
    u = jnp.array([0.0])
    k, h, m = 1000.0, 0.005, 0.1
    v = lambda law, **kw: Chain(contact=law, damping=1.0, **kw).step(x, u)[3:]  # noqa: E731
    np.testing.assert_allclose(v("penalty"), [1.0 - h / m * k * 0.1, h / m * k * 0.1, 0.0], rtol=1e-12)
    # bilateral: c = k g = [-100, 300]; the stretched pair pulls body 1 forward and body 2 back
    expected = [1.0 - h / m * 100.0, h / m * (300.0 + 100.0), -h / m * 300.0]
    np.testing.assert_allclose(v("bilateral"), expected, rtol=1e-12)
    # softplus -> penalty as kappa grows; the error is at most (k / kappa) log 2 per contact.
    np.testing.assert_allclose(v("softplus", kappa=1e9), v("penalty"), atol=h / m * 2e3 / 1e9)
    assert bool(jnp.all(jnp.isfinite(jax.jacfwd(lambda y: Chain(contact="softplus", kappa=1e9).step(y, u))(x))))


# ---------------------------------------------------------------- one-step problems


def test_ball_with_wall_landscape():
    ball = BallWithWall()
    cost = jax.jit(lambda t: ball.cost(jnp.array([t])))
    hits = lambda t: float(ball.landing(jnp.array([t]))) == ball.wall_distance  # noqa: E731

    def edge(lo, hi):  # bisection on the "hits the wall" predicate
        side = hits(lo)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if hits(mid) == side else (lo, mid)
        return 0.5 * (lo + hi)

    jumps = edge(0.6, 0.8), edge(1.1, 1.25)
    print(f"ball with wall: jumps at {jumps[0]:.6f}, {jumps[1]:.6f}; cost(pi/4) = {float(cost(math.pi / 4)):.7f}")
    # closed form: y_w = h_w  <=>  a t^2 - d t + (a + h_w) = 0, t = tan(theta), a = g d^2 / (2 v0^2)
    a, d, hw = ball.gravity * ball.wall_distance**2 / 2.0, ball.wall_distance, ball.wall_height
    disc = math.sqrt(d * d - 4.0 * a * (a + hw))
    roots = math.atan((d - disc) / (2 * a)), math.atan((d + disc) / (2 * a))
    np.testing.assert_allclose(jumps, roots, atol=1e-12)
    np.testing.assert_allclose(jumps, [0.6932, 1.1993], atol=5e-5)
    assert edge(0.2, 0.5) == pytest.approx(0.3147, abs=5e-5)  # the wall becomes reachable

    grid = np.linspace(0.0, math.pi / 2, 2001)
    values = np.asarray(jax.vmap(cost)(jnp.asarray(grid)))
    assert grid[np.argmin(values)] == pytest.approx(math.pi / 4, abs=1e-3)
    assert float(cost(math.pi / 4)) == pytest.approx(-((1.0 / 9.81) ** 2), rel=1e-12)
    assert float(cost(math.pi / 4)) == pytest.approx(-0.0103911, abs=5e-8)
    assert float(cost(0.5)) == -(0.06**2)  # flat band: hits the wall
    assert float(jax.grad(cost)(0.5)) == 0.0
    assert float(cost(jumps[0] - 1e-9)) == -(0.06**2) and float(cost(jumps[0] + 1e-9)) < -0.0099


def test_pivot_and_soft_heaviside_values():
    pivot = Pivot()
    c = lambda s, t: float(s.cost(jnp.array([t])))  # noqa: E731
    assert c(pivot, math.pi / 4) == pytest.approx(-0.5, rel=1e-12)
    assert c(pivot, -0.3) == pytest.approx(-math.sin(0.3) ** 2, rel=1e-12)
    assert c(pivot, math.pi / 4 + 1e-9) == 0.0 and c(pivot, -1.0) == 0.0
    soft = SoftHeaviside(width=0.2)
    assert [c(soft, t) for t in (-1.0, -0.1, -0.05, 0.0, 0.05, 0.1, 1.0)] == pytest.approx(
        [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0], abs=1e-15
    )


@pytest.mark.parametrize("d", [1, 3])
def test_heaviside_fobg_is_zero(d):
    system = Heaviside(dimension=d)
    problem = one_step_problem(system)
    assert float(system.cost(jnp.zeros(d))) == 1.0  # H(0) = 1
    assert float(system.cost(jnp.ones(d).at[0].set(-1e-12))) == 0.0
    fobg = FoBG(samples=50, sigma=0.5)
    estimate = jax.jit(lambda key, U: fobg.estimate(key, problem, U))  # one program (eagerly: every op compiles)
    for i, theta in enumerate([0.0, 0.1, -0.2]):
        U = jnp.full((1, d), theta)
        grad, info = estimate(jax.random.PRNGKey(i), U)
        assert grad.shape == (1, d)
        np.testing.assert_array_equal(grad, 0.0)
        assert float(info.var_first) == 0.0


# ---------------------------------------------------------------- physics checks


def test_double_pendulum_matches_lagrangian():
    """The closed-form accelerations solve the Euler-Lagrange equations of L = T - V (autodiff)."""
    dp = DoublePendulum(mass=0.3, length=0.7, gravity=9.81)
    ml2, mgl = dp.mass * dp.length**2, dp.mass * dp.gravity * dp.length

    def lagrangian(q, w):
        kinetic = ml2 * (w[0] ** 2 + 0.5 * w[1] ** 2 + w[0] * w[1] * jnp.cos(q[0] - q[1]))
        return kinetic + mgl * (2.0 * jnp.cos(q[0]) + jnp.cos(q[1]))

    def residual(x, u):
        q, w = x[:2], x[2:]
        M = jax.hessian(lagrangian, argnums=1)(q, w)
        C = jax.jacfwd(jax.grad(lagrangian, argnums=1), argnums=0)(q, w)
        dLdq = jax.grad(lagrangian, argnums=0)(q, w)
        Q = jnp.array([u[0] - u[1], u[1]])  # joint torques -> generalised forces
        return dp.acceleration(x, u) - jnp.linalg.solve(M, Q + dLdq - C @ w)

    xs = 2.0 * jax.random.normal(jax.random.PRNGKey(0), (20, 4))
    us = jax.random.normal(jax.random.PRNGKey(1), (20, 2))
    np.testing.assert_allclose(jax.jit(jax.vmap(residual))(xs, us), 0.0, atol=1e-12)


def test_double_pendulum_conserves_energy():
    dp = DoublePendulum(dt=1e-5)
    x0 = jnp.array([math.pi / 2, 0.0, 5.0, -5.0])  # the reference's nominal start (authors' code)
    X = problem_for(dp, x0, quadratic([0.0] * 4, [0.0, 0.0], [0.0] * 4, [0.0] * 4), 100_000, 0.0).trajectory(
        jnp.zeros((100_000, 2))
    )
    E = jax.vmap(dp.energy)(X)
    scale = float(jnp.max(jnp.abs(E)))
    drift = float(jnp.max(jnp.abs(E - E[0])))
    print(f"double pendulum: 1 s at h = 1e-5, max |E - E0| / max |E| = {drift / scale:.2e}")
    assert drift < 1e-3 * scale
    # the error is first order in h: ten times the step, about ten times the drift
    X10 = problem_for(DoublePendulum(dt=1e-4), x0, quadratic([0.0] * 4, [0.0, 0.0], [0.0] * 4, [0.0] * 4), 10_000, 0.0)
    E10 = jax.vmap(dp.energy)(X10.trajectory(jnp.zeros((10_000, 2))))
    assert 3.0 < float(jnp.max(jnp.abs(E10 - E10[0]))) / drift < 30.0


def test_pendulum_block_conserves_energy():
    """With damping = 1 the contact is a conservative spring: energy is conserved as h -> 0. This checks the
    sign and the lever arm of the contact torque -F l cos(theta)."""
    pb = PendulumBlock(
        stiffness=200.0, damping=1.0, pendulum_mass=0.7, block_mass=0.4, length=0.8, gravity=2.0, dt=1e-5
    )

    def energy(x):
        theta, p, w, v = x
        gap = p - pb.length * jnp.sin(theta) - pb.contact_offset
        spring = jnp.where(gap < 0, 0.5 * pb.stiffness * gap**2, 0.0)
        return (0.5 * pb.pendulum_mass * pb.length**2 * w**2 + 0.5 * pb.block_mass * v**2
                - pb.pendulum_mass * pb.gravity * pb.length * jnp.cos(theta) + spring)

    x0 = jnp.array([-0.3, pb.contact_offset, 3.0, 0.0])  # swings through the bottom and strikes the block at rest
    X = problem_for(pb, x0, quadratic([0.0] * 4, [0.0], [0.0] * 4, [0.0] * 4), 100_000, 0.0).trajectory(
        jnp.zeros((100_000, 1))
    )
    E = jax.vmap(energy)(X)
    gaps = X[:, 1] - pb.length * jnp.sin(X[:, 0]) - pb.contact_offset
    assert bool(jnp.any(gaps < 0)) and float(X[-1, 3]) > 0.1  # there was an impact, and the block moves on
    drift = float(jnp.max(jnp.abs(E - E[0]))) / float(jnp.abs(E[0]))
    print(f"pendulum-block: impact, block leaves at v = {float(X[-1, 3]):.3f}; max |E - E0| / |E0| = {drift:.2e}")
    assert drift < 1e-3


@pytest.mark.parametrize("law, continuous", [("spring_damper", False), ("spring", True), ("hunt_crossley", True)])
def test_pendulum_wall_law_continuity(law, continuous):
    """Across the wall (theta = theta_w) at speed 2, only the reference law's damping torque jumps
    (docs/problems.md)."""
    system = Pendulum(wall_angle=0.5, wall_stiffness=1000.0, wall_law=law)
    step = lambda t: system.step(jnp.array([t, 2.0]), jnp.array([0.0]))  # noqa: E731
    jump = float(jnp.abs(step(0.5 + 1e-10)[1] - step(0.5 - 1e-10)[1]))
    if continuous:
        assert jump < 1e-8
    else:
        assert jump == pytest.approx(system.dt * 0.01 * 1000.0 * 2.0, rel=1e-6)
    # both walls act, with opposite signs
    down = system.step(jnp.array([-0.6, 0.0]), jnp.array([0.0]))
    up = system.step(jnp.array([0.6, 0.0]), jnp.array([0.0]))
    assert float(down[1]) > 0 > float(up[1])
    assert float(down[1]) == pytest.approx(-float(up[1]), rel=1e-12)


def test_pendulum_without_walls_is_the_reference():
    x, u, h = jnp.array([0.3, -0.7]), jnp.array([0.4]), 0.02
    w = -0.7 + h * (-math.sin(0.3) + 0.4)
    np.testing.assert_allclose(Pendulum().step(x, u), [0.3 + h * w, w], rtol=1e-15)
    np.testing.assert_array_equal(Pendulum(wall_angle=10.0).step(x, u), Pendulum().step(x, u))


def test_stable_dt():
    assert SpringWall(stiffness=1000.0, mass=0.1).stable_dt() == pytest.approx(0.01, rel=1e-12)
    assert Chain(stiffness=1e4, mass=0.1).stable_dt() == pytest.approx(math.sqrt(1e-5), rel=1e-12)
    assert Chain(stiffness=1000.0).stable_dt() == Pushing(stiffness=1000.0).stable_dt()
    assert Chain(stiffness=1e4).stable_dt() < 0.005  # k = 1e4 needs h = 0.001 (chain3_stress.toml)
    assert Pendulum().stable_dt() == math.inf
    assert Pendulum(wall_angle=0.5, wall_stiffness=1000.0).stable_dt() == pytest.approx(math.sqrt(1e-3), rel=1e-12)
    assert PendulumBlock(stiffness=400.0, pendulum_mass=2.0, block_mass=0.5).stable_dt() == pytest.approx(
        math.sqrt(0.5 / 400.0), rel=1e-12
    )
    assert Friction().stable_dt() == pytest.approx(0.1 / 1.8, rel=1e-12)
    assert DoublePendulum().stable_dt() == math.inf
    # every spring-wall setting of the authors' code (examples/spring_wall) is stable
    for k, c, h, *_ in SPRING_WALL:
        assert h < SpringWall(stiffness=k, contact_damping=c).stable_dt()


# ---------------------------------------------------------------- exact gradients vs finite differences

# case -> (registry name, parameters, x0, T, u_init): short horizons in smooth regions. The contact cases start
# penetrating and stay in contact for the whole horizon (checked by hand: every gap stays < 0).
SMOOTH_TRAJECTORIES = {
    "pushing": ("pushing", dict(stiffness=100.0), [0.0, 0.97, 0.0, 0.0], 5, 0.3),
    "chain": ("chain", dict(bodies=3, stiffness=100.0), [0.0, 0.97, 1.94, 0.0, 0.0, 0.0], 5, 0.3),
    "chain_softplus": ("chain", dict(bodies=4, contact="softplus", kappa=20.0), [0, 1, 2, 3, 0, 0, 0, 0], 10, 1.0),
    "chain_bilateral": ("chain", dict(contact="bilateral"), [0.0, 1.01, 1.98, 0.5, 0.0, 0.0], 10, 1.0),
    "friction": ("friction", {}, [0.0, 0.02, 0.0, 0.0], 10, 0.05),
    "spring_wall": ("spring_wall", {}, [1.05, 0.5], 20, 0.2),
    "pendulum": ("pendulum", {}, [0.1, 0.2], 30, 0.1),
    "pendulum_spring_damper": ("pendulum", dict(wall_angle=0.5), [0.6, 0.0], 5, 0.1),
    "pendulum_spring": ("pendulum", dict(wall_angle=0.5, wall_law="spring"), [0.6, 0.0], 5, 0.1),
    "pendulum_hunt_crossley": ("pendulum", dict(wall_angle=0.5, wall_law="hunt_crossley"), [0.6, 0.0], 5, 0.1),
    "pendulum_block": ("pendulum_block", dict(stiffness=100.0, dt=0.01), [0.0, 0.09, 0.0, 0.0], 5, 0.1),
    "double_pendulum": ("double_pendulum", dict(dt=0.01), [math.pi / 2, 0.0, 1.0, -1.0], 30, 0.1),
    "torque_pendulum_rk4": ("torque_pendulum", {}, [-0.9, 0.0], 30, 0.1),
    "torque_pendulum_euler": ("torque_pendulum", dict(integrator="euler"), [0.3, 0.5], 30, 0.1),
    "acrobot": ("acrobot", {}, [0.1, -0.2, 0.3, 0.0], 20, 0.1),
    "tennis": ("tennis", {}, [0.0, 2.0, 0.1, -0.4, 0.0, 0.0, 0.0], 10, 0.05),  # no collision within 10 steps
    "cartpole": ("cartpole", {}, [0.1, 0.3, 0.0, 0.2], 10, 0.1),  # no force limit by default: smooth
}

# case -> (registry name, parameters, theta): points away from jumps and kinks.
SMOOTH_ONE_STEP = {
    "ball_with_wall": ("ball_with_wall", {}, [0.9]),
    "ball_with_wall_flat": ("ball_with_wall", {}, [0.5]),
    "pivot": ("pivot", {}, [0.3]),
    "heaviside": ("heaviside", dict(dimension=2), [0.5, 0.2]),
    "soft_heaviside": ("soft_heaviside", dict(width=0.2), [0.03]),
}


def test_gradient_cases_cover_the_registry():
    covered = {case[0] for case in (*SMOOTH_TRAJECTORIES.values(), *SMOOTH_ONE_STEP.values())}
    # systems built from a file (the MJCF-backed mjx) have their gradient checks in tests/test_mjx.py
    from_file = {n for n in SYSTEMS.names() if callable(getattr(SYSTEMS.get(n), "from_table", None))}
    assert covered == set(SYSTEMS.names()) - from_file


def assert_grad_matches_central_differences(f, U, key, eps=1e-6, directions=4):
    """grad f . v against (f(U + eps v) - f(U - eps v)) / (2 eps) along random directions v."""
    grad = jax.grad(f)(U)
    assert bool(jnp.all(jnp.isfinite(grad)))
    for v in jax.random.normal(key, (directions, *U.shape)):
        fd = (f(U + eps * v) - f(U - eps * v)) / (2 * eps)
        exact = jnp.vdot(grad, v)
        assert float(jnp.abs(fd - exact)) <= 1e-6 * (1.0 + float(jnp.abs(exact))), (float(fd), float(exact))


@pytest.mark.parametrize("case", list(SMOOTH_TRAJECTORIES))
def test_exact_gradient_trajectory(case):
    name, params, x0, T, u_init = SMOOTH_TRAJECTORIES[case]
    system = SYSTEMS.get(name)(**params)
    n, m = system.state_size, system.control_size
    cost = quadratic([1.0] * n, [0.1] * m, [5.0] * n, [0.5] * n)
    p = problem_for(system, x0, cost, T, u_init)
    key_u, key_v = jax.random.split(jax.random.PRNGKey(T))
    U = p.U0 + 0.01 * jax.random.normal(key_u, p.U0.shape)
    assert_grad_matches_central_differences(jax.jit(p.objective), U, key_v)


@pytest.mark.parametrize("case", list(SMOOTH_ONE_STEP))
def test_exact_gradient_one_step(case):
    name, params, theta = SMOOTH_ONE_STEP[case]
    p = one_step_problem(SYSTEMS.get(name)(**params))
    U = jnp.asarray([theta], dtype=float)
    assert_grad_matches_central_differences(jax.jit(p.objective), U, jax.random.PRNGKey(0))
