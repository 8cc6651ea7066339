"""Pinned single steps of the baselines, computed by hand in plain NumPy from the formulas in each method's
docstring (never from the implementation): CEM, MPPI, predictive sampling and DIAL on a 3-step, 1-control
problem whose noise is redrawn here from the step's key as the methods document it (float32 standard normals,
cast); iLQR's regularised Gauss-Newton step on a linear-quadratic problem by a hand-written Riccati recursion
with (Q_uu + mu I); and invariances: DIAL ignores the scale of the cost, MPPI does not, CEM and PS see only
the order of the costs; MultiStart stopping a start whose step (not its cost) blows up. Each is a one-line bug's
tripwire (named in the test's docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt.methods import CEM, DIAL, ILQR, MPPI, MultiStart, PredictiveSampling
from trajopt.problem import Problem, QuadraticCost, trajectory_problem

T, M = 3, 1
C = np.array([[0.4], [-0.3], [0.8]])  # the minimiser of the separable part
W = np.array([1.0, 2.0, 0.5])
U0 = np.array([[0.1], [0.2], [-0.3]])
KEY = jax.random.PRNGKey(42)
CLIFF = 0.35  # the cliff problem's cost is +inf where u_0 > CLIFF


def f_np(U: np.ndarray, cliff: bool = False) -> np.ndarray:
    """f(U) = sum_t w_t (u_t - c_t)^2 + 0.3 u_0 u_1 for U: [..., T, 1] -> [...] (NumPy, the reference)."""
    u = U[..., 0]
    v = np.sum(W * (u - C[:, 0]) ** 2, axis=-1) + 0.3 * u[..., 0] * u[..., 1]
    return np.where(u[..., 0] > CLIFF, np.inf, v) if cliff else v


def make_problem(scale: float = 1.0, cliff: bool = False, transform=None) -> Problem:
    """The same f in JAX, times ``scale`` (or passed through a monotone ``transform``)."""
    w, c = jnp.asarray(W), jnp.asarray(C[:, 0])

    def objective(U):
        u = U[:, 0]
        v = scale * (jnp.sum(w * (u - c) ** 2) + 0.3 * u[0] * u[1])
        if transform is not None:
            v = transform(v)
        return jnp.where(u[0] > CLIFF, jnp.inf, v) if cliff else v

    return Problem("pinned_quadratic", jnp.asarray(U0), objective)


def noise(key, n: int) -> np.ndarray:
    """eps_i ~ N(0, I): [n, T, M], as documented: drawn in float32 from the step's key, then cast."""
    return np.asarray(jax.random.normal(key, (n, T, M), dtype=jnp.float32)).astype(np.float64)


def softmax_weights(costs: np.ndarray, temperature: float) -> np.ndarray:
    """w_i proportional to exp(-(c_i - min c) / temperature), infinite costs weight 0, normalised."""
    finite = np.isfinite(costs)
    w = np.zeros_like(costs)
    w[finite] = np.exp(-(costs[finite] - costs[finite].min()) / temperature)
    return w / w.sum()


def stepper(method, problem):
    """The method's step, compiled once: (key, state) -> (state, info)."""
    return jax.jit(lambda key, state: method.step(key, problem, state))


# ------------------------------------------------------------------------------------------------- CEM


def cem_by_hand(mu, sigma, key, population, elites, alpha_mu, alpha_sigma, sigma_min, lo=-np.inf, hi=np.inf):
    samples = np.clip(mu + sigma * noise(key, population), lo, hi)
    costs = f_np(samples)
    elite = samples[np.argsort(costs)[:elites]]
    mu_new = alpha_mu * mu + (1 - alpha_mu) * elite.mean(axis=0)
    sigma_new = np.maximum(alpha_sigma * sigma + (1 - alpha_sigma) * elite.std(axis=0), sigma_min)
    return np.clip(mu_new, lo, hi), sigma_new, costs, np.sort(costs)[:elites]


@pytest.mark.parametrize("box, sigma_min", [((-np.inf, np.inf), 1e-3), ((-0.25, 0.6), 0.3)])
def test_cem_step_by_hand(box, sigma_min):
    """Two steps of CEM: the mean moves to the smoothed mean of the lowest-cost quarter and the spread is refitted
    to the elites' std (smoothed, floored at sigma_min, the box clipping samples and mean). Catches: elites taken
    from the top, the mean or std refitted to every sample, the smoothing weights swapped, the floor as a ceiling,
    the spread never refitted."""
    lo, hi = box
    method = CEM(population=12, elite_fraction=0.25, alpha_mu=0.3, alpha_sigma=0.4, sigma_init=0.5,
                 sigma_min=sigma_min, u_min=lo, u_max=hi)
    assert method.elites == 3
    problem = make_problem()
    state = method.init(KEY, problem, problem.U0)
    step = stepper(method, problem)
    mu, sigma = np.clip(U0, lo, hi), np.full_like(U0, 0.5)
    for k in range(2):
        key = jax.random.fold_in(KEY, k)
        state, info = step(key, state)
        mu_next, sigma_next, costs, elite_costs = cem_by_hand(mu, sigma, key, 12, 3, 0.3, 0.4, sigma_min, lo, hi)
        np.testing.assert_allclose(state.U, mu_next, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(state.sigma, sigma_next, rtol=1e-12, atol=1e-14)
        assert float(info.value) == pytest.approx(float(f_np(mu)), rel=1e-12)
        assert float(info.best_cost) == pytest.approx(costs.min(), rel=1e-12)
        assert float(info.elite_cost) == pytest.approx(elite_costs.mean(), rel=1e-12)
        assert float(info.sigma_mean) == pytest.approx(sigma_next.mean(), rel=1e-12)
        mu, sigma = mu_next, sigma_next
    if sigma_min == 0.3:
        assert np.any(sigma == 0.3)  # the floor binds somewhere in this case


def test_cem_sees_only_the_order_of_the_costs():
    """CEM ranks samples: exp(f) (a monotone transform) gives bit-identical iterates."""
    method = CEM(population=12, elite_fraction=0.25, alpha_mu=0.3, alpha_sigma=0.4, sigma_init=0.5)
    a, b = make_problem(), make_problem(transform=jnp.exp)
    sa, sb = method.init(KEY, a, a.U0), method.init(KEY, b, b.U0)
    step_a, step_b = stepper(method, a), stepper(method, b)
    for k in range(3):
        sa, _ = step_a(jax.random.fold_in(KEY, k), sa)
        sb, _ = step_b(jax.random.fold_in(KEY, k), sb)
    np.testing.assert_array_equal(sa.U, sb.U)
    np.testing.assert_array_equal(sa.sigma, sb.sigma)


# ------------------------------------------------------------------------------------------------- MPPI


def mppi_by_hand(U, key, samples, sigma, temperature, scale=1.0, cliff=False, lo=-np.inf, hi=np.inf):
    S = np.clip(U + sigma * noise(key, samples), lo, hi)
    costs = scale * f_np(S, cliff)
    w = softmax_weights(costs, temperature)
    return np.clip(np.tensordot(w, S, axes=1), lo, hi), w, costs


@pytest.mark.parametrize("cliff, box, mode", [(False, (-np.inf, np.inf), "relative"), (True, (-0.2, 0.5), "relative"),
                                             (True, (-0.2, 0.5), "absolute")])
def test_mppi_step_by_hand(cliff, box, mode):
    """U <- sum_i w_i U_i with normalised exponential weights at temperature lambda' (lambda in cost units, or for the
    default relative mode lambda times the population standard deviation of the step's finite sample costs); a
    sample with an infinite cost weighs 0; the box clips the samples. Catches: unnormalised weights, the sign of the
    exponent, a plain average, sigma dropped, the min-cost shift replaced by the max (overflow), the relative
    temperature's spread taken over the infinite costs too or with ddof=1, the mode ignored."""
    lo, hi = box
    method = MPPI(samples=10, sigma=0.4, temperature=0.7, temperature_mode=mode, u_min=lo, u_max=hi)
    problem = make_problem(cliff=cliff)
    state = method.init(KEY, problem, problem.U0)
    step = stepper(method, problem)
    U = np.clip(U0, lo, hi)
    for k in range(2):
        key = jax.random.fold_in(KEY, k)
        state, info = step(key, state)
        S = np.clip(U + 0.4 * noise(key, 10), lo, hi)
        finite = f_np(S, cliff)[np.isfinite(f_np(S, cliff))]
        lam = 0.7 * (float(np.std(finite)) if mode == "relative" else 1.0)
        U_next, w, costs = mppi_by_hand(U, key, 10, 0.4, lam, cliff=cliff, lo=lo, hi=hi)
        if cliff and k == 0:
            assert np.isinf(costs).any() and np.isfinite(costs).sum() >= 2  # the case is exercised
        np.testing.assert_allclose(state.U, U_next, rtol=1e-12, atol=1e-14)
        assert float(info.temperature) == pytest.approx(lam, rel=1e-12)
        assert float(info.ess) == pytest.approx(1.0 / np.sum(w**2), rel=1e-12)
        assert float(info.best_cost) == pytest.approx(costs.min(), rel=1e-12)
        U = U_next


def test_mppi_absolute_temperature_is_in_cost_units():
    """temperature_mode = "absolute": 1000 f with the same temperature is a different, greedier step (the weights
    concentrate on the best sample): the step equals the hand-computed one for 1000 f, and moves much nearer the
    best sample than for f."""
    method = MPPI(samples=10, sigma=0.4, temperature=0.7, temperature_mode="absolute")
    key = jax.random.fold_in(KEY, 0)
    steps = {}
    for scale in (1.0, 1000.0):
        problem = make_problem(scale)
        steps[scale], _ = stepper(method, problem)(key, method.init(KEY, problem, problem.U0))
        np.testing.assert_allclose(steps[scale].U, mppi_by_hand(U0, key, 10, 0.4, 0.7, scale=scale)[0], rtol=1e-12,
                                   atol=1e-14)
    S = U0 + 0.4 * noise(key, 10)
    best = S[np.argmin(f_np(S))]
    assert np.abs(np.asarray(steps[1.0].U) - np.asarray(steps[1000.0].U)).max() > 1e-2
    assert np.abs(np.asarray(steps[1000.0].U) - best).max() < 1e-3 * np.abs(np.asarray(steps[1.0].U) - best).max()


# ------------------------------------------------------------------------------------------------- DIAL


def dial_sigma(sigma0, i, beta1, beta2, K, H=T):
    """sigma(i, h) = sigma0 exp(-i / (beta1 K) - (H - h) / (beta2 H)), h = 0..H-1 (the docstring's schedule)."""
    return np.array([sigma0 * math.exp(-i / (beta1 * K) - (H - h) / (beta2 * H)) for h in range(H)])


def dial_by_hand(U, key, i, samples, sigma0, beta1, beta2, K, temperature, scale=1.0, cliff=False):
    s = dial_sigma(sigma0, i, beta1, beta2, K)
    S = U + s[:, None] * noise(key, samples)
    costs = scale * f_np(S, cliff)
    finite = costs[np.isfinite(costs)]
    spread = finite.std() if finite.std() > 0 else 1.0  # standardised over the finite costs (population std)
    w = softmax_weights(costs, temperature * spread)
    return np.tensordot(w, S, axes=1), w, s


def test_dial_steps_by_hand():
    """Three DIAL steps: the annealed noise sigma(i, h) (smaller at the start of the horizon, shrinking with the
    iteration i the state carries), costs standardised by their std over the finite ones before the softmax.
    Some samples fall off the cliff (cost +inf: weight 0, left out of the std). Catches: no standardisation, the
    variance instead of the std, the iteration never advanced, the horizon schedule reversed, unnormalised weights."""
    method = DIAL(samples=10, sigma=0.6, beta1=0.5, beta2=2.0, iterations_scale=4, temperature=0.3)
    problem = make_problem(cliff=True)
    state = method.init(KEY, problem, problem.U0)
    step = stepper(method, problem)
    U, fell = U0, 0
    for k in range(3):
        key = jax.random.fold_in(KEY, k)
        assert int(state.iteration) == k
        state, info = step(key, state)
        U_next, w, s = dial_by_hand(U, key, k, 10, 0.6, 0.5, 2.0, 4, 0.3, cliff=True)
        fell += int(np.sum(w == 0))
        np.testing.assert_allclose(state.U, U_next, rtol=1e-12, atol=1e-14)
        assert float(info.sigma_max) == pytest.approx(s.max(), rel=1e-12)
        assert float(info.ess) == pytest.approx(1.0 / np.sum(w**2), rel=1e-12)
        U = U_next
    assert int(state.iteration) == 3 and 0 < fell < 15  # the cliff is exercised, and most samples stay finite


def run_steps(method, problem, steps: int):
    """The iterates of ``steps`` steps from U0 (keys fold_in(KEY, k)): [steps, T, M]."""
    step, state, out = stepper(method, problem), method.init(KEY, problem, problem.U0), []
    for k in range(steps):
        state, _ = step(jax.random.fold_in(KEY, k), state)
        out.append(np.asarray(state.U))
    return np.stack(out)


def test_dial_and_relative_mppi_ignore_the_scale_of_the_cost_but_absolute_mppi_does_not():
    """DIAL and MPPI's default relative temperature standardise the costs: 1000 f gives the same iterates as f (to
    rounding); MPPI's absolute temperature does not (its iterates differ at once). Catches: DIAL's standardisation
    dropped, MPPI's relative mode ignored."""
    dial = DIAL(samples=10, sigma=0.6, beta1=0.5, beta2=2.0, iterations_scale=4, temperature=0.3)
    relative = MPPI(samples=10, sigma=0.4, temperature=0.7)
    absolute = MPPI(samples=10, sigma=0.4, temperature=0.7, temperature_mode="absolute")
    a, b = make_problem(1.0), make_problem(1000.0)
    np.testing.assert_allclose(run_steps(dial, b, 4), run_steps(dial, a, 4), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run_steps(relative, b, 2), run_steps(relative, a, 2), rtol=1e-10, atol=1e-12)
    assert np.abs(run_steps(absolute, a, 1) - run_steps(absolute, b, 1)).max() > 1e-2


# ------------------------------------------------------------------------------------ predictive sampling


def ps_by_hand(U, key, samples, sigma, lo=-np.inf, hi=np.inf):
    S = np.clip(U + sigma * noise(key, samples), lo, hi)
    candidates = np.concatenate([U[None], S])
    costs = f_np(candidates)
    best = int(np.argmin(costs))  # the first minimum: the incumbent wins ties
    return candidates[best], costs[best], best


@pytest.fixture(scope="module")
def ps_step():
    method = PredictiveSampling(samples=6, sigma=0.3)
    problem = make_problem()
    return method, problem, stepper(method, problem)


@pytest.mark.parametrize("start", ["far", "optimum"])
def test_predictive_sampling_steps_by_hand(ps_step, start):
    """U <- argmin f over {U, U_1..U_N}: from far away a sample wins; from the minimiser the incumbent is kept, so
    the cost never increases. Catches: the incumbent left out of the candidates, 'improved' always set, sigma
    dropped."""
    A = np.diag(2 * W) + 0.3 * np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    u_star = np.linalg.solve(A, 2 * W * C[:, 0])[:, None]  # the minimiser of f (grad = A u - 2 W c = 0)
    U = U0 if start == "far" else u_star
    method, problem, step = ps_step
    state = method.init(KEY, problem, jnp.asarray(U))
    for k in range(3):
        key = jax.random.fold_in(KEY, k)
        before = f_np(U)
        state, info = step(key, state)
        U_next, c_next, best = ps_by_hand(U, key, 6, 0.3)
        np.testing.assert_allclose(state.U, U_next, rtol=1e-12, atol=1e-15)  # (XLA may fuse U + sigma eps)
        assert float(info.value) == pytest.approx(float(before), rel=1e-12)
        assert float(info.best_cost) == pytest.approx(float(c_next), rel=1e-12) and c_next <= before
        assert float(info.improved) == float(best > 0)
        U = U_next
        if start == "optimum":
            assert best == 0 and float(info.improved) == 0.0
    if start == "far":
        assert f_np(U) < f_np(U0)


def test_predictive_sampling_sees_only_the_order_of_the_costs():
    method = PredictiveSampling(samples=6, sigma=0.3)
    a, b = make_problem(), make_problem(transform=jnp.exp)
    sa, sb = method.init(KEY, a, a.U0), method.init(KEY, b, b.U0)
    step_a, step_b = stepper(method, a), stepper(method, b)
    for k in range(4):
        sa, _ = step_a(jax.random.fold_in(KEY, k), sa)
        sb, _ = step_b(jax.random.fold_in(KEY, k), sb)
    np.testing.assert_array_equal(sa.U, sb.U)


# ------------------------------------------------------------------------------------------------- iLQR

# x' = A x + B u (n = 2, m = 1), T = 3; stage e'Q e + u'R u, terminal e'Qf e (trajopt's QuadraticCost: no 1/2)
A_LQ = np.array([[1.0, 0.2], [-0.1, 0.9]])
B_LQ = np.array([[0.0], [0.5]])
Q_LQ, R_LQ, QF_LQ = np.diag([1.0, 0.5]), np.array([[0.05]]), np.diag([20.0, 2.0])
GOAL = np.array([1.0, 0.0])
X0 = np.array([0.0, 0.3])
U_LQ = np.array([[0.2], [-0.1], [0.4]])


def lq_problem() -> Problem:
    A, B = jnp.asarray(A_LQ), jnp.asarray(B_LQ)
    cost = QuadraticCost(Q=jnp.asarray(Q_LQ), R=jnp.asarray(R_LQ), Qf=jnp.asarray(QF_LQ), goal=jnp.asarray(GOAL))
    return trajectory_problem("pinned_lq", lambda x, u: A @ x + B @ u, jnp.asarray(X0), cost, jnp.asarray(U_LQ))


def lq_cost(U):
    x, J = X0.copy(), 0.0
    for t in range(T):
        e = x - GOAL
        J += e @ Q_LQ @ e + U[t] @ R_LQ @ U[t]
        x = A_LQ @ x + B_LQ @ U[t]
    e = x - GOAL
    return J + e @ QF_LQ @ e


def ilqr_step_by_hand(U, mu):
    """One regularised Gauss-Newton step (alpha = 1) by the Riccati recursion of the ilqr docstring, in NumPy:
    k = -(Q_uu + mu I)^-1 Q_u, K = -(Q_uu + mu I)^-1 Q_ux, the value function updated with the unregularised Q_uu.
    Returns (U_new, dV1, dV2)."""
    X = [X0]
    for t in range(T):
        X.append(A_LQ @ X[t] + B_LQ @ U[t])
    Vx, Vxx = 2 * QF_LQ @ (X[T] - GOAL), 2 * QF_LQ
    ks, Ks, dV1, dV2 = [None] * T, [None] * T, 0.0, 0.0
    for t in reversed(range(T)):
        lx, lu, lxx, luu = 2 * Q_LQ @ (X[t] - GOAL), 2 * R_LQ @ U[t], 2 * Q_LQ, 2 * R_LQ
        Qx, Qu = lx + A_LQ.T @ Vx, lu + B_LQ.T @ Vx
        Qxx, Quu, Qux = lxx + A_LQ.T @ Vxx @ A_LQ, luu + B_LQ.T @ Vxx @ B_LQ, B_LQ.T @ Vxx @ A_LQ
        H = Quu + mu * np.eye(1)
        k, K = -np.linalg.solve(H, Qu), -np.linalg.solve(H, Qux)
        Vx = Qx + K.T @ Quu @ k + K.T @ Qu + Qux.T @ k
        Vxx = Qxx + K.T @ Quu @ K + K.T @ Qux + Qux.T @ K
        ks[t], Ks[t], dV1, dV2 = k, K, dV1 + k @ Qu, dV2 + k @ Quu @ k
    x, U_new = X0.copy(), np.zeros_like(U)
    for t in range(T):
        U_new[t] = U[t] + ks[t] + Ks[t] @ (x - X[t])
        x = A_LQ @ x + B_LQ @ U_new[t]
    return U_new, dV1, dV2


@pytest.mark.parametrize("box", [(-np.inf, np.inf), (-50.0, 50.0)])  # the plain Cholesky and the box-QP branch
def test_ilqr_regularised_step_by_hand(box):
    """With mu = 2 (large beside R's 0.1 on Q_uu), the first step is the hand-computed regularised Riccati step,
    not the exact LQ solution; the next ones use the decreased mu (delta = 1/2, 1/4, ...: mu = 1, 1/4, ...). Catches: mu dropped
    from the solve (either branch), a term dropped from the value update, Q_xx without l_xx, the decrease rule."""
    lo, hi = box
    method = ILQR(mu_init=2.0, mu_min=1e-6, mu_factor=2.0, u_min=lo, u_max=hi, grad_tol=0.0, cost_rtol=0.0)
    problem = lq_problem()
    state = method.init(KEY, problem, problem.U0)
    step = stepper(method, problem)
    U, mu, delta = U_LQ.copy(), 2.0, 1.0
    exact, _, _ = ilqr_step_by_hand(U_LQ, 0.0)
    grad_f = jax.jit(jax.grad(problem.objective))
    for k in range(3):
        state, info = step(KEY, state)
        U_next, dV1, dV2 = ilqr_step_by_hand(U, mu)
        np.testing.assert_allclose(state.U, U_next, rtol=1e-10, atol=1e-12)
        # one trial per step; the first step also rolls U0 out, the later ones linearise along the accepted trial's
        assert float(info.mu) == mu and float(info.step_length) == 1.0 and int(info.rollouts) == (2 if k == 0 else 1)
        assert float(info.value) == pytest.approx(lq_cost(U), rel=1e-12)
        assert float(info.expected) == pytest.approx(-(dV1 + 0.5 * dV2), rel=1e-9)
        grad = np.asarray(grad_f(jnp.asarray(U)))
        assert float(info.grad_norm) == pytest.approx(np.linalg.norm(grad), rel=1e-10)
        if k == 0:
            assert np.abs(U_next - exact).max() > 0.05  # mu changes the step markedly
        delta = min(0.5, delta / 2.0)  # accepted: delta <- min(1/delta0, delta/delta0), mu <- mu delta (>= mu_min)
        U, mu = U_next, mu * delta
        assert float(state.mu) == mu and float(state.delta) == delta
    # the reference itself: with mu = 0 it is plain Gauss-Newton, which solves the LQ problem in one step
    u = U_LQ.reshape(-1)
    J = lambda v: problem.objective(v.reshape(U_LQ.shape))  # noqa: E731
    H, g = jax.jit(lambda v: (jax.hessian(J)(v), jax.grad(J)(v)))(jnp.asarray(u))
    u_star = u - np.linalg.solve(np.asarray(H), np.asarray(g))
    np.testing.assert_allclose(exact.reshape(-1), u_star, rtol=1e-10, atol=1e-12)


def test_ilqr_failed_line_search_raises_mu_and_keeps_the_iterate():
    """x' = x + sin(u), one step, terminal (x - 1.5)^2 from u = 1.4 (near the top of the sine): the Gauss-Newton
    step overshoots to u of about 4.28 where the cost is about 5.8 > 0.27; with one line-search trial it fails, so the
    iterate stays, mu rises from 0 to mu_min with delta = mu_factor, two rollouts are spent, and the method runs on.
    Catches: mu not increased after a failed search, a failed trial accepted, its rollout not counted."""
    cost = QuadraticCost(Q=jnp.zeros((1, 1)), R=1e-3 * jnp.eye(1), Qf=jnp.eye(1), goal=jnp.array([1.5]))
    problem = trajectory_problem("sine", lambda x, u: x + jnp.sin(u), jnp.zeros(1), cost, jnp.full((1, 1), 1.4))
    method = ILQR(line_search_steps=1, mu_min=1e-6, mu_factor=2.0)
    state, info = stepper(method, problem)(KEY, method.init(KEY, problem, problem.U0))
    Vx = 2 * (math.sin(1.4) - 1.5)
    Qu, Quu = 2e-3 * 1.4 + math.cos(1.4) * Vx, 2e-3 + 2 * math.cos(1.4) ** 2
    u_trial = 1.4 - Qu / Quu
    assert (math.sin(u_trial) - 1.5) ** 2 + 1e-3 * u_trial**2 > (math.sin(1.4) - 1.5) ** 2 + 1e-3 * 1.4**2
    assert float(state.U[0, 0]) == 1.4 and float(info.step_length) == 0.0 and float(info.expected) == 0.0
    assert (float(state.mu), float(state.delta)) == (1e-6, 2.0)
    assert int(info.rollouts) == 2 and int(info.stop_reason) == 0 and int(state.stop) == 0
    # the next step linearises along U's own rollout, kept: it spends its one trial and nothing else
    _, info = stepper(method, problem)(KEY, state)
    assert int(info.rollouts) == 1 and float(info.value) == pytest.approx((math.sin(1.4) - 1.5) ** 2 + 1e-3 * 1.4**2)


def test_ilqr_backtracks_to_the_first_decrease():
    """The same problem with five trials: alpha = 1, 1/2, 1/4, 1/8 overshoot (costs about 5.8, 1.45, 0.42, 0.271 >
    0.267) and alpha = 1/16 decreases the cost: the step u + k/16 is taken, with its predicted decrease
    -(alpha k Q_u + alpha^2/2 k Q_uu k), six rollouts and mu decreased (from 0 it stays 0). Catches: the line
    search starting below 1, the prediction linear in alpha, a trial not counted."""
    cost = QuadraticCost(Q=jnp.zeros((1, 1)), R=1e-3 * jnp.eye(1), Qf=jnp.eye(1), goal=jnp.array([1.5]))
    problem = trajectory_problem("sine", lambda x, u: x + jnp.sin(u), jnp.zeros(1), cost, jnp.full((1, 1), 1.4))
    method = ILQR(line_search_steps=5, backtrack=0.5)
    state, info = stepper(method, problem)(KEY, method.init(KEY, problem, problem.U0))
    Vx = 2 * (math.sin(1.4) - 1.5)
    Qu, Quu = 2e-3 * 1.4 + math.cos(1.4) * Vx, 2e-3 + 2 * math.cos(1.4) ** 2
    k = -Qu / Quu
    J = lambda u: (math.sin(u) - 1.5) ** 2 + 1e-3 * u**2  # noqa: E731
    assert [J(1.4 + k / 2**i) > J(1.4) for i in range(5)] == [True] * 4 + [False]
    assert float(state.U[0, 0]) == pytest.approx(1.4 + k / 16, rel=1e-12)
    assert float(info.step_length) == 1 / 16 and int(info.rollouts) == 6
    assert float(info.expected) == pytest.approx(-(k * Qu / 16 + 0.5 * k * Quu * k / 256), rel=1e-10)
    assert float(state.value) == pytest.approx(J(1.4 + k / 16), rel=1e-12)
    assert (float(state.mu), int(state.stop)) == (0.0, 0)
    # the accepted trial's rollout is kept as the next nominal trajectory (x1 = sin(u1)): no rollout to redo
    assert bool(state.fresh) and float(state.X[1, 0]) == pytest.approx(math.sin(1.4 + k / 16), rel=1e-12)


# ------------------------------------------------------------------------------------------------- MultiStart


class _JumpState(NamedTuple):
    U: jax.Array


class _JumpInfo(NamedTuple):
    value: jax.Array
    rollouts: jax.Array
    gradients: jax.Array


@dataclass(frozen=True)
class Jump:
    """U <- U + 0.1, except that a start beyond 0.5 jumps to NaN: its entry cost f(U) = U^2 is finite, its new state
    is not (a blow-up of the step itself, as a NaN gradient gives)."""

    name: ClassVar[str] = "jump_pinned_test"

    def init(self, key, problem, U0):
        return _JumpState(U=U0)

    def step(self, key, problem, state):
        U = jnp.where(state.U > 0.5, jnp.nan, state.U + 0.1)
        return _JumpState(U=U), _JumpInfo(value=problem.objective(state.U), rollouts=jnp.int32(1), gradients=jnp.int32(0))


def test_multistart_stops_a_start_whose_new_state_blows_up_at_once():
    """Starts drawn beyond 0.5 blow up in their first step while their entry cost is finite: after that step they
    no longer run (info.running counts the others), the decision is the lowest entry cost among all, and the next
    step compares only the survivors. Catches: 'running' judged by the entry cost alone."""
    problem = Problem("square", jnp.zeros((1, 1)), lambda U: jnp.sum(U**2))
    ms = MultiStart(Jump(), starts=6, start_spread=1.0)
    state = ms.init(KEY, problem, problem.U0)
    U0s = np.asarray(state.starts.U)[:, 0, 0]
    beyond = U0s > 0.5
    assert 0 < beyond.sum() < 6, U0s  # both kinds of start
    step = stepper(ms, problem)
    state, info = step(KEY, state)
    assert int(info.running) == int((~beyond).sum())
    assert int(info.start) == int(np.argmin(U0s**2)) and float(state.value) == pytest.approx(np.min(U0s**2))
    state, info = step(jax.random.fold_in(KEY, 1), state)
    alive = np.where(~beyond, U0s + 0.1, np.inf)  # the survivors after one step; the others are not compared
    assert int(info.start) == int(np.argmin(alive**2)) and float(state.value) == pytest.approx(np.min(alive**2))
