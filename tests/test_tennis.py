"""Tennis (Suh et al. 2022, Fig. 8): the collision test, time of impact, the paper's problem and its read-outs."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt import checks
from trajopt.methods.gradient import GradientMethod
from trajopt.policies.problem import held_out_states
from trajopt.policies.tennis import (
    PAPER,
    PowerDecaySGD,
    rollouts_figure,
    success_rate,
    tennis_problem,
    trajectory_success,
)
from trajopt.solver import solve
from trajopt.systems import SYSTEMS
from trajopt.systems.tennis import Tennis

SYS = Tennis()
STEP = jax.jit(SYS.step)
H = SYS.dt
REACH = SYS.pad_height + SYS.ball_radius  # 0.2


def state(ball, vel, pad=(0.0, 0.0, 0.0)):
    return jnp.array([*ball, *vel, *pad], dtype=float)


def test_registered():
    assert SYSTEMS.get("tennis") is Tennis
    assert (Tennis.state_size, Tennis.control_size) == (7, 3) and SYS.stable_dt() == math.inf
    with pytest.raises(checks.FieldError):
        Tennis(restitution=1.5)


def test_head_on_hit_with_time_of_impact():
    """Ball at height 0.3 falling at 4 above a flat paddle: the free step ends at 0.1 < 0.2, so it hits; it
    reaches the face y = 0.2 after toi = (0.3 - 0.2) / 4 = 0.025 s, then flies up for h - toi = 0.025 s."""
    x = state((0.0, 0.3), (1.0, -4.0))
    x1 = STEP(x, jnp.array([0.3, 0.0, 0.0]))
    toi = (0.3 - REACH) / 4.0
    v_after = np.array([SYS.damping * 1.0, 4.0])  # tangential damped, normal reflected (restitution 1)
    ball = np.array([0.0, 0.3]) + toi * np.array([1.0, -4.0]) + (H - toi) * v_after
    np.testing.assert_allclose(x1[0:2], ball, atol=1e-14)
    np.testing.assert_allclose(x1[2:4], v_after, atol=1e-14)
    np.testing.assert_allclose(x1[4:7], 0.0, atol=0)  # the paddle is frozen on the impact step
    assert float(SYS.time_of_impact(jnp.asarray(0.3), jnp.asarray(0.1))) == pytest.approx(toi, abs=1e-15)
    # half restitution keeps half the normal speed
    x1 = jax.jit(Tennis(restitution=0.5).step)(x, jnp.zeros(3))
    np.testing.assert_allclose(x1[2:4], [SYS.damping, 2.0], atol=1e-14)


def test_miss_by_one_ball_radius():
    """A ball whose edge passes one radius beyond the paddle's end (centre at x = 0.8 + 0.15 + 0.15) misses:
    free flight with damped velocity and the paddle moves; just inside the end it hits."""
    half = SYS.pad_width + SYS.ball_radius
    u = jnp.array([0.0, 0.2, 0.0])
    miss = STEP(state((half + SYS.ball_radius, 0.3), (0.0, -4.0)), u)
    np.testing.assert_allclose(miss[0:4], [half + SYS.ball_radius, 0.3 - H * SYS.damping * 4.0, 0.0, -SYS.damping * 4.0],
                               atol=1e-14)
    np.testing.assert_allclose(miss[4:7], [0.0, H * 0.2, 0.0], atol=1e-14)
    edge = STEP(state((half - 0.01, 0.3), (0.0, -4.0)), jnp.zeros(3))
    assert float(edge[3]) == pytest.approx(4.0)  # reflected


def test_tilted_paddle():
    """A paddle at psi = pi/4 under a ball falling straight down at 4 sends it sideways: in the paddle frame
    (tangent t = (c, s), normal n = (-s, c)) v = (-2 sqrt2, -2 sqrt2); the tangential part is damped and the
    normal part reflected, v' = -2 sqrt2 * 0.999 t + 2 sqrt2 n = (-2 * 0.999 - 2, -2 * 0.999 + 2)."""
    psi = math.pi / 4
    c = math.cos(psi)
    y0, speed = 0.35, 4.0
    x1 = STEP(state((0.0, y0), (0.0, -speed), (0.0, 0.0, psi)), jnp.zeros(3))
    v_after = np.array([-2 * SYS.damping - 2, -2 * SYS.damping + 2])
    np.testing.assert_allclose(x1[2:4], v_after, atol=1e-13)
    # paddle-frame height c*y0 before, c*(y0 - h*speed) after; the face is at 0.2
    toi = H * (c * y0 - REACH) / (c * H * speed)
    ball = np.array([0.0, y0]) + toi * np.array([0.0, -speed]) + (H - toi) * v_after
    np.testing.assert_allclose(x1[0:2], ball, atol=1e-13)
    assert 0 < toi < H


def test_collision_is_a_real_branch():
    """Autodiff sees only the branch taken: d(ball y')/d(ball x) is 0 just outside and just inside the end."""
    half = SYS.pad_width + SYS.ball_radius
    f = jax.jit(jax.grad(lambda bx: SYS.step(state((bx, 0.3), (0.0, -4.0)), jnp.zeros(3))[1]))
    assert float(f(half + 1e-6)) == 0.0 and float(f(half - 1e-6)) == 0.0
    y = jax.jit(lambda bx: SYS.step(state((bx, 0.3), (0.0, -4.0)), jnp.zeros(3))[1])
    assert float(y(half - 1e-6)) - float(y(half + 1e-6)) > 0.15  # but the value jumps


def test_success_rate_on_hand_made_trajectories():
    goal = jnp.array([0.0, 2.5, 0, 0, 0, 0, 0])
    X = np.zeros((4, 3, 7))
    X[0, -1, :2] = [0.0, 2.5]  # on the target
    X[1, -1, :2] = [0.3, 2.5 + 0.4]  # distance 0.5: on the boundary, counted
    X[2, -1, :2] = [0.0, 1.0]  # far
    X[3, 0, :2] = [0.0, 2.5]  # passes the target but ends away from it
    assert trajectory_success(X, goal, 0.5) == 0.5
    assert trajectory_success(X, goal, 0.49) == 0.25
    assert trajectory_success(X, goal, 10.0) == 1.0


def test_tennis_problem_settings():
    p, oracles, settings = tennis_problem(horizon=20, samples=8, n_eval=16)
    assert p.dimension == 21 and p.sigma == 0.01 and np.all(np.asarray(p.U0) == 0)
    assert oracles["aobg"].gamma == 1000 and oracles["aobg"].L == 1000 and oracles["aobg"].delta == 0.95
    assert settings["iterations"] == 200 and settings["optimizer"] == PowerDecaySGD(1e-6, 0.1)
    assert PAPER["horizon"] == 200 and PAPER["samples"] == 1000 and PAPER["iterations"] == 200
    opt = PowerDecaySGD().build()
    state0 = opt.init(jnp.zeros(2))
    upd, state1 = opt.update(jnp.ones(2), state0)
    upd2, _ = opt.update(jnp.ones(2), state1)
    np.testing.assert_allclose(upd, -1e-6)  # k = 1
    np.testing.assert_allclose(upd2, -1e-6 * 2.0**-0.1)  # k = 2
    with pytest.raises(checks.FieldError):
        tennis_problem(bogus=1)


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_tennis_solve_seeds_success_and_figure():
    """A short run: seed 2 alone equals seed 2 in a batch; success_rate on held-aside states is the share of
    closed loops stepped here by hand that end within the radius; the rollouts figure has one panel per variant."""
    p, oracles, settings = tennis_problem(horizon=30, samples=8, n_eval=8)
    method = GradientMethod(oracles["zobg"], PowerDecaySGD(step=1e-4))
    alone = solve(p, method, key=jax.random.PRNGKey(0), iterations=3, seeds=[2])
    batch = solve(p, method, key=jax.random.PRNGKey(0), iterations=3, seeds=[0, 1, 2])
    np.testing.assert_allclose(alone.U[0], batch.U[2], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(alone.cost[0], batch.cost[2], rtol=1e-12)
    states = held_out_states(p, 12)
    assert not np.array_equal(states, p.eval_states[:12])
    # an independent count: the closed loop stepped by hand, a radius halfway between the 6th and 7th distances
    K = np.asarray(batch.U[2]).reshape(3, 7)
    X, step = np.asarray(states), jax.jit(jax.vmap(p.system.step))
    for _ in range(p.horizon):
        X = np.asarray(step(jnp.asarray(X), jnp.asarray(X @ K.T)))
    d = np.sort(np.hypot(X[:, 0] - 0.0, X[:, 1] - 2.5))
    assert d[6] - d[5] > 1e-9
    assert success_rate(p, batch.U[2], states, 0.5 * (d[5] + d[6])) == 0.5
    assert success_rate(p, batch.U[2], states, 0.5 * d[0]) == 0.0 and success_rate(p, batch.U[2], states, 2 * d[-1]) == 1.0
    fig = rollouts_figure(p, {"start": p.U0, "zobg": batch.U[2]}, states, radius=1.0)
    assert len(fig.axes) == 2
