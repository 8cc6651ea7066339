"""Pinned boundaries of the tennis experiment, to the last bit: success is a final ball position within the radius
of the target, inclusive (exactly 0.5 counts, 0.5 plus the smallest step of a double does not); the paddle's
collision test is inclusive on both half-extents grown by the ball's radius, |q_x| <= pad_width + r and
|q_y| <= pad_height + r in the moved paddle's frame (the documented choice of trajopt.systems.tennis), checked on
the predicate and through one step of the system, on both sides of the paddle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt.policies.tennis import TARGET, final_distances, trajectory_success
from trajopt.systems.tennis import Tennis

SYS = Tennis()
STEP = jax.jit(SYS.step)
GOAL = jnp.array([TARGET[0], TARGET[1], 0.0, 0.0, 0.0, 0.0, 0.0])
RADIUS = 0.5  # problems/tennis.toml's [success] radius
HALF_X = SYS.pad_width + SYS.ball_radius  # the collision test's bounds, as the system adds them (in Python floats)
HALF_Y = SYS.pad_height + SYS.ball_radius


def up(x: float) -> float:
    """The next double above x."""
    return float(np.nextafter(x, np.inf))


def ends(*positions) -> np.ndarray:
    """Trajectories [B, 2, 7] whose final ball positions are ``positions`` (start far away)."""
    X = np.zeros((len(positions), 2, 7))
    X[:, 0, :2] = [10.0, -10.0]
    X[:, -1, :2] = positions
    return X


def test_success_at_exactly_the_radius_counts_and_one_step_beyond_does_not():
    """Final distances of exactly 0.5 (east, west, north and south of the target: 0.5, -0.5, 3.0 - 2.5 and
    2.5 - 2.0 are exact) count as hits; 0.5 + 1 ulp east and the next double above 3.0 north do not."""
    gx, gy = TARGET
    on = ends((gx + RADIUS, gy), (gx - RADIUS, gy), (gx, 3.0), (gx, 2.0))
    np.testing.assert_array_equal(final_distances(on, GOAL), [RADIUS] * 4)
    assert trajectory_success(on, GOAL, RADIUS) == 1.0
    off = ends((gx + up(RADIUS), gy), (gx, up(3.0)))
    d = final_distances(off, GOAL)
    assert np.all(d > RADIUS) and d[0] == up(RADIUS)
    assert trajectory_success(off, GOAL, RADIUS) == 0.0
    assert trajectory_success(np.concatenate([on, off]), GOAL, RADIUS) == 4 / 6
    # the start of a trajectory does not count, only its end
    assert trajectory_success(ends((10.0, 10.0))[:, ::-1], GOAL, RADIUS) == 0.0


def state(ball, vel, pad=(0.0, 0.0, 0.0)):
    return jnp.array([*ball, *vel, *pad], dtype=float)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_collision_predicate_is_inclusive_at_both_half_extents(sign):
    for q, hit in [((sign * HALF_X, 0.0), True), ((sign * up(HALF_X), 0.0), False),
                   ((0.0, sign * HALF_Y), True), ((0.0, sign * up(HALF_Y)), False),
                   ((sign * HALF_X, sign * HALF_Y), True), ((sign * up(HALF_X), sign * HALF_Y), False)]:
        assert bool(SYS.in_collision(jnp.asarray(q))) is hit, q


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_ball_exactly_at_the_paddles_end_is_hit_and_one_ulp_beyond_is_missed(sign):
    """A flat paddle at the origin that does not move, a ball falling at 4 from height 0.3 whose centre sits
    exactly at x = +-(pad_width + r) (its free step ends at height 0.1, inside the height band): hit, its
    normal velocity reflected; one ulp further out: free flight, the velocity damped."""
    for x, hit in [(sign * HALF_X, True), (sign * up(HALF_X), False)]:
        x1 = STEP(state((x, 0.3), (0.0, -4.0)), jnp.zeros(3))
        assert float(x1[3]) == (4.0 if hit else -4.0 * SYS.damping), x
        assert float(x1[0]) == x  # no tangential motion either way


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_ball_resting_exactly_on_the_face_band_is_hit_and_one_ulp_beyond_is_missed(sign):
    """A ball at rest exactly at height +-(pad_height + r) above the paddle's centre while the paddle moves
    sideways: a hit freezes the paddle for the step (x stays 0), a miss lets it move (x = dt * 0.4)."""
    u = jnp.array([0.4, 0.0, 0.0])
    for y, hit in [(sign * HALF_Y, True), (sign * up(HALF_Y), False)]:
        x1 = STEP(state((0.0, y), (0.0, 0.0)), u)
        assert float(x1[4]) == (0.0 if hit else SYS.dt * 0.4), y
        assert float(x1[1]) == y  # the ball does not move


# ------------------------------------------------------------------------------ policy-gradient estimates by hand
#
# A one-dimensional closed loop small enough to differentiate on paper: x' = x + b u, u = theta x + w, stage
# q x^2 + r u^2, terminal qf x^2, x_1 ~ U[0.5, 1.5], H = 3. Its cost, its pathwise derivative (forward mode:
# du_h = x_h + theta dx_h, dx_{h+1} = dx_h + b du_h) and its score sum_h x_h w_h are written out in NumPy; the
# initial states and the noise are redrawn from the estimate's key as `trajopt.policies.problem.draw_samples`
# documents it (split into an initial-state key and a noise key, float32 draws cast to float64).

from dataclasses import dataclass as _dataclass  # noqa: E402
from functools import partial  # noqa: E402

from trajopt.policies import (  # noqa: E402
    Linear,
    PolicyExact,
    PolicyFoBG,
    PolicyIVW,
    PolicyProblem,
    PolicyZoBG,
    Uniform,
)
from trajopt.problem import QuadraticCost  # noqa: E402

B_GAIN, Q_, R_, QF_, H_, SIGMA, THETA = 0.5, 1.0, 0.2, 3.0, 3, 0.3, -0.4
KEY = jax.random.PRNGKey(3)


@_dataclass(frozen=True)
class Integrator:
    state_size = 1
    control_size = 1

    def step(self, x, u):
        return x + B_GAIN * u


def loop_problem(**options) -> PolicyProblem:
    cost = QuadraticCost(Q=Q_ * jnp.eye(1), R=R_ * jnp.eye(1), Qf=QF_ * jnp.eye(1), goal=jnp.zeros(1))
    return PolicyProblem(name="loop", system=Integrator(), policy=Linear(), task_cost=cost,
                         initial=Uniform(low=(0.5,), high=(1.5,)), horizon=H_, sigma=SIGMA, n_eval=5,
                         theta0=[THETA], **options)


def by_hand(x1: float, w: np.ndarray, theta: float = THETA):
    """(V, dV/dtheta, score) of one closed-loop trajectory."""
    x, dx, V, dV, score = x1, 0.0, 0.0, 0.0, 0.0
    for h in range(H_):
        u, du = theta * x + w[h], x + theta * dx
        V, dV, score = V + Q_ * x * x + R_ * u * u, dV + 2 * Q_ * x * dx + 2 * R_ * u * du, score + x * w[h]
        x, dx = x + B_GAIN * u, dx + B_GAIN * du
    return V + QF_ * x * x, dV + 2 * QF_ * x * dx, score


@partial(jax.jit, static_argnums=(1, 2))
def _standard_draws(key, n: int, k: int):
    k_init, k_noise = jax.random.split(key)
    return jax.random.uniform(k_init, (k, 1), dtype=jnp.float32), jax.random.normal(k_noise, (n, H_, 1), dtype=jnp.float32)


def draws(key, n: int, sigma: float, k: int = 0):
    """(x_1 [n], w [n, H]) of an estimate's n samples; k > 0: k initial states, sample i starting from state i mod k."""
    u, z = (np.asarray(a).astype(np.float64) for a in _standard_draws(key, n, k or n))
    return (0.5 + 1.0 * u[:, 0])[np.arange(n) % (k or n)], sigma * z[..., 0]


def first_order(key, n, sigma, k=0):
    x1, w = draws(key, n, sigma, k)
    return np.array([by_hand(a, b)[1] for a, b in zip(x1, w)])


def zeroth_order(key, n, sigma):
    x1, w = draws(key, n, sigma)
    return np.array([(by_hand(a, b)[0] - by_hand(a, 0 * b)[0]) * by_hand(a, b)[2] / sigma**2 for a, b in zip(x1, w)])


def trace_var(g):
    return float(np.sum((g - g.mean()) ** 2) / (len(g) - 1))


@pytest.fixture(scope="module")
def loop():
    return loop_problem()


def test_policy_objective_is_the_noise_free_cost_over_the_evaluation_batch(loop):
    """objective = (1/n_eval) sum_j V(x_j, 0), x_j drawn once from PRNGKey(eval_seed)."""
    x = 0.5 + np.asarray(jax.random.uniform(jax.random.PRNGKey(loop.eval_seed), (5, 1), dtype=jnp.float32))[:, 0]
    expected = np.mean([by_hand(float(a), np.zeros(H_))[0] for a in x.astype(np.float64)])
    assert float(jax.jit(loop.objective)(loop.U0)) == pytest.approx(expected, rel=1e-12)


def test_policy_estimates_by_hand(loop):
    """FoBG = mean pathwise derivative of the noisy loops; ZoBG = mean (V(w) - V(0)) score / sigma^2 from each sample's
    own x_1; exact = mean derivative of the noise-free loops from N fresh starts; IVW mixes an FoBG batch drawn
    from split(key)[0] and a ZoBG batch from split(key)[1] with alpha = s0 / (s1 + s0 + 1e-5). Catches: the noise
    added with the wrong sign, the score divided by sigma, the terminal cost at the wrong step, one key for both
    batches or for both the starts and the noise, noise in the exact gradient, the i mod k assignment."""
    n = 6
    shared = loop_problem(n_init=2)
    oracles = (PolicyFoBG(samples=n), PolicyZoBG(samples=n), PolicyExact(samples=n), PolicyIVW(samples=n))

    @jax.jit
    def estimates():  # one program for all of them
        return [o.estimate(KEY, loop, loop.U0) for o in oracles] + [PolicyFoBG(samples=5).estimate(KEY, shared, shared.U0)]

    (fo, fo_info), (zo, zo_info), (ex, _), (ivw, ivw_info), (fo_shared, _) = jax.device_get(estimates())
    g1 = first_order(KEY, n, SIGMA)
    assert float(fo[0, 0]) == pytest.approx(g1.mean(), rel=1e-10)
    assert float(fo_info.var_first) == pytest.approx(trace_var(g1), rel=1e-10)
    g0 = zeroth_order(KEY, n, SIGMA)
    assert float(zo[0, 0]) == pytest.approx(g0.mean(), rel=1e-10)
    assert float(zo_info.var_zero) == pytest.approx(trace_var(g0), rel=1e-10)
    assert float(ex[0, 0]) == pytest.approx(first_order(KEY, n, 0.0).mean(), rel=1e-10)
    k1, k0 = jax.random.split(KEY)
    a1, a0 = first_order(k1, n, SIGMA), zeroth_order(k0, n, SIGMA)
    alpha = trace_var(a0) / (trace_var(a1) + trace_var(a0) + 1e-5)
    assert 0.01 < alpha < 0.99 and float(ivw_info.alpha) == pytest.approx(alpha, rel=1e-10)
    assert float(ivw[0, 0]) == pytest.approx(alpha * a1.mean() + (1 - alpha) * a0.mean(), rel=1e-10)
    # n_init = k fresh starts per estimate: sample i starts from draw i mod k
    assert float(fo_shared[0, 0]) == pytest.approx(first_order(KEY, 5, SIGMA, k=2).mean(), rel=1e-10)
