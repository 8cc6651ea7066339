"""What each method carries from one closed-loop replan to the next (`trajopt.closedloop.episode.warm_start`: the
method's ``warm_start(key, problem, state, U, shift)``, else ``init(key, problem, U)``), pinned by hand.

The episode hands a replan the last plan P shifted by the r executed steps with the tail held, U = [P[r:], P[-1] x r]
(`trajopt.closedloop.episode`, ``warm_start = "hold"``). Checked against that, on a small linear problem (T = 10):

* MPPI, predictive sampling, DIAL, CEM on K < T knots: the new knots are the last spline (SciPy's natural cubic
  spline through the last knots) evaluated at the shifted knot times t_j + r, the last plan's end held beyond it;
  DIAL's annealing restarts (i = 0);
* CEM: sigma shifted like the plan, sigma(t_j + r) of the last sigma interpolated to the steps (floored at
  sigma_min), the knots past the end at the initial sigma; per step (K = T): sigma[t + r];
* iLQR: the regulariser (mu, delta) carried, the stop flag reset, the plan rolled out afresh (fresh False);
* L-BFGS: the memory and the stop flag reset: the next step is a fresh start's from U, bit for bit;
* MultiStart: the K starts re-drawn around the shifted plan (``init``'s draw), the inner methods' state reset.

evosax's warm start (its strategy state carried) is tested in tests/test_evosax.py (the optional extra).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from trajopt.closedloop.episode import warm_start
from trajopt.methods import CEM, DIAL, ILQR, LBFGS, MPPI, MultiStart, PredictiveSampling
from trajopt.methods.base import as_count
from trajopt.problem import QuadraticCost, trajectory_problem

T, N_X, M = 10, 2, 1
A = jnp.array([[1.0, 0.1], [0.0, 1.0]])
B = jnp.array([[0.0], [0.1]])
KEY = jax.random.PRNGKey(5)
TK4 = np.array([0, 3, 6, 9])  # the knot times of 4 knots on 10 steps


def make_problem():
    cost = QuadraticCost(Q=jnp.eye(N_X), R=0.1 * jnp.eye(M), Qf=10.0 * jnp.eye(N_X), goal=jnp.array([1.0, 0.0]))
    U0 = jnp.asarray(np.linspace(-0.5, 0.8, T)[:, None])
    return trajectory_problem("double_integrator", lambda x, u: A @ x + B @ u, jnp.zeros(N_X), cost, U0)


PROBLEM = make_problem()


def run(method, steps: int, with_step: bool = False):
    """The state after ``steps`` steps from U0 (keys fold_in(KEY, k)); with_step: (state, the compiled step)."""
    step = jax.jit(lambda k, s: method.step(k, PROBLEM, s))
    state = method.init(KEY, PROBLEM, PROBLEM.U0)
    for k in range(steps):
        state, _ = step(jax.random.fold_in(KEY, k), state)
    return (state, step) if with_step else state


def shifted(P, r: int):
    """The episode's shifted plan with the tail held: [P[r:], P[-1] repeated r times]."""
    P = np.asarray(P)
    return jnp.asarray(np.concatenate([P[r:], np.repeat(P[-1:], r, axis=0)]))


def spline_at(knots, times):
    """The natural cubic spline through (TK4, knots) at ``times``, a time past the end T - 1 held at T - 1."""
    return CubicSpline(TK4, np.asarray(knots), axis=0, bc_type="natural")(np.minimum(times, T - 1))


SAMPLERS = {"mppi": lambda: MPPI(samples=8, knots=4), "ps": lambda: PredictiveSampling(samples=8, knots=4),
            "dial": lambda: DIAL(samples=8, knots=4),
            "cem": lambda: CEM(population=10, elite_fraction=0.3, knots=4, u_min=-1.0, u_max=1.0)}


@functools.lru_cache(maxsize=None)
def sampler_after_two_steps(name):
    """(method, its state after two steps): computed once for both shifts."""
    method = SAMPLERS[name]()
    return method, run(method, 2)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("r", [1, 2])
def test_knot_samplers_warm_start_on_the_time_shifted_spline(name, r):
    """After two steps, a replan shifted by r: the knots are the last spline at t_j + r (the knot 9 + r past the end
    holds the plan's last control), the controls their spline; DIAL's iteration restarts at 0. Catches: the knot
    array rolled by one knot (a shift of T / K steps), the shift ignored (the old knots kept), the plan's knots read
    at the unshifted times, DIAL's annealing carried on."""
    method, state = sampler_after_two_steps(name)
    new = warm_start(method, jax.random.fold_in(KEY, 99), PROBLEM, state, shifted(state.U, r), r)
    expected = spline_at(state.knots, TK4 + r)
    np.testing.assert_allclose(new.knots, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new.U, CubicSpline(TK4, expected, axis=0, bc_type="natural")(np.arange(T)),
                               rtol=1e-10, atol=1e-12)
    assert not np.allclose(new.knots, state.knots, atol=1e-3)  # the shift moved them
    if name == "dial":
        assert int(state.iteration) == 2 and int(new.iteration) == 0


@pytest.mark.parametrize("K", [4, T])
def test_cem_sigma_is_shifted_like_the_plan(K):
    """CEM's sigma after a shift of r = 2: at knot j, the last sigma interpolated to the steps at t_j + r (floored at
    sigma_min), the initial sigma (0.5 x the box, 1.0) where t_j + r is past the end; per step (K = T) sigma[t + 2]
    with the last two at 1.0. Catches: sigma reset to the initial everywhere (the old behaviour), sigma not shifted,
    the tail at the last sigma instead of the initial one, the mean's shift applied to sigma but not the mean."""
    method = CEM(population=10, elite_fraction=0.3, knots=K, u_min=-1.0, u_max=1.0)
    state = run(method, 3)
    sigma = np.asarray(state.sigma)
    assert method.initial_sigma == 1.0 and np.all(sigma < 0.99)  # the spread has moved off its initial value
    r = 2
    new = warm_start(method, jax.random.fold_in(KEY, 99), PROBLEM, state, shifted(state.U, r), r)
    if K == T:
        expected = np.concatenate([sigma[r:], np.full((r, M), 1.0)])
        np.testing.assert_allclose(new.knots, np.asarray(state.U)[list(range(r, T)) + [T - 1] * r], rtol=0, atol=0)
    else:
        t = TK4 + r
        inside = (t <= T - 1)[:, None]
        expected = np.where(inside, np.maximum(spline_at(sigma, t), method.sigma_min), 1.0)
        assert not inside.all()
    np.testing.assert_allclose(new.sigma, expected, rtol=1e-10, atol=1e-12)


def test_ilqr_keeps_its_regulariser_and_resets_its_stop_flag():
    """iLQR's warm start: mu and delta as the last replan left them, the stop flag back to running (a stopped seed
    plans again), U the shifted plan, rolled out afresh by the next step (fresh False, counted). Catches: the
    regulariser reset to mu_init, the stop flag carried (a converged replan never replans), a stale rollout kept."""
    method = ILQR(u_min=-2.0, u_max=2.0)
    state, step = run(method, 2, with_step=True)
    assert float(state.mu) != method.mu_init or float(state.delta) != 1.0  # the regulariser has moved
    stopped = state._replace(stop=as_count(2))
    U = shifted(state.U, 3)
    new = warm_start(method, jax.random.fold_in(KEY, 99), PROBLEM, stopped, U, 3)
    assert float(new.mu) == float(state.mu) and float(new.delta) == float(state.delta)
    assert int(new.stop) == 0 and not bool(new.fresh) and not bool(method.stopped(new))
    np.testing.assert_array_equal(new.U, U)
    _, info = step(jax.random.fold_in(KEY, 100), new)
    assert int(info.rollouts) >= 1  # the fresh rollout of U is spent and counted


def test_lbfgs_memory_is_reset():
    """L-BFGS's warm start empties the memory and clears the stop flag: the next two steps from it equal those of a
    fresh init at the shifted plan, bit for bit (and differ from steps that kept the old memory). Catches: the
    curvature pairs of the last problem carried into the next."""
    method = LBFGS()
    state, step_k = run(method, 3, with_step=True)
    assert not bool(state.fresh)
    U = shifted(state.U, 2)
    new = warm_start(method, jax.random.fold_in(KEY, 99), PROBLEM, state._replace(stop=as_count(1)), U, 2)
    assert bool(new.fresh) and int(new.stop) == 0
    step = lambda s: step_k(KEY, s)  # noqa: E731
    a, b = new, method.init(KEY, PROBLEM, U)
    kept = state._replace(U=U)  # the old memory, the new plan: what a carried memory would do
    for _ in range(2):
        a, b, kept = step(a)[0], step(b)[0], step(kept)[0]
    np.testing.assert_array_equal(a.U, b.U)
    assert not np.array_equal(a.U, kept.U)


def test_multistart_redraws_its_starts_around_the_shifted_plan():
    """MultiStart (no warm start of its own): the replan is init(key, problem, U): the starts re-drawn around the
    shifted plan (spread 0.2: offsets of that size, new ones), the inner CEM's sigma back to its initial value, the
    reported plan U itself. Catches: the starts kept around the old plan, the inner states carried."""
    method = MultiStart(CEM(population=10, elite_fraction=0.3, knots=T, u_min=-1.0, u_max=1.0), starts=3,
                        start_spread=0.2)
    state = run(method, 2)
    U = shifted(state.U, 2)
    key = jax.random.fold_in(KEY, 99)
    new = warm_start(method, key, PROBLEM, state, U, 2)
    fresh = method.init(key, PROBLEM, U)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(fresh)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(new.U, U)
    offsets = np.asarray(new.starts.knots) - np.clip(np.asarray(U), -1.0, 1.0)[None]
    assert 0.1 < offsets.std() < 0.3 and np.all(np.abs(offsets).max(axis=(1, 2)) > 0)
    np.testing.assert_array_equal(new.starts.sigma, np.ones_like(new.starts.sigma))
