"""Policies, initial-state distributions, policy problems and the policy-gradient oracles (Suh et al. 2022, §2)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt import checks
from trajopt.methods.gradient import GradientMethod
from trajopt.optim import SGD
from trajopt.oracles.base import OracleInfo, make_info
from trajopt.policies import (
    INITIAL_STATES,
    POLICIES,
    POLICY_ORACLES,
    MLP,
    Gaussian,
    Linear,
    Point,
    PolicyAoBG,
    PolicyFoBG,
    PolicyProblem,
    PolicyStepwise,
    PolicyZoBG,
    TennisInitial,
    Uniform,
    static_gain_problem,
)
from trajopt.policies import linear_quadratic as lq
from trajopt.policies import problem as pp
from trajopt.policies.oracles import score, zeroth_order_samples
from trajopt.problem import QuadraticCost
from trajopt.solver import solve
from trajopt.systems import SYSTEMS

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def lq_problem():
    return static_gain_problem(size=2, horizon=8, sigma=0.2)


# ------------------------------------------------------------------------------ policies and distributions


def test_linear_policy():
    pol = Linear()
    assert pol.param_size(3, 2) == 6 and np.all(np.asarray(pol.init_params(3, 2)) == 0)
    theta = jnp.arange(6.0)
    x = jnp.array([1.0, -1.0, 2.0])
    np.testing.assert_allclose(pol(theta, x), jnp.arange(6.0).reshape(2, 3) @ x)
    biased = Linear(bias=True)
    assert biased.param_size(3, 2) == 8
    np.testing.assert_allclose(biased(jnp.concatenate([theta, jnp.array([5.0, 7.0])]), x),
                               jnp.arange(6.0).reshape(2, 3) @ x + jnp.array([5.0, 7.0]))
    a, b = Linear(init_scale=0.1, init_seed=3).init_params(3, 2), Linear(init_scale=0.1, init_seed=3).init_params(3, 2)
    assert np.array_equal(a, b) and np.any(np.asarray(a) != 0)


def test_mlp_policy_shapes_and_determinism():
    pol = MLP(hidden=5, layers=2, output_scale=0.5)
    n, m = 4, 3
    p = pol.param_size(n, m)
    assert p == (5 * 4 + 5) + (5 * 5 + 5) + (3 * 5 + 3)
    theta = pol.init_params(n, m)
    assert theta.shape == (p,) and np.array_equal(theta, pol.init_params(n, m))
    u = jax.jit(pol)(theta, jnp.ones(n))
    assert u.shape == (m,) and bool(jnp.all(jnp.isfinite(u)))
    assert np.all(np.asarray(MLP().init_params(n, m))[-(m * 16 + m):] == 0)  # output_scale 0: u = 0 at the start


def test_registries_and_user_entries():
    assert POLICIES.names() == ["linear", "mlp"]
    assert POLICIES.get("trajopt.policies.policies:Linear") is Linear
    assert set(POLICY_ORACLES.names()) == {"exact", "fobg", "zobg", "aobg", "ivw", "stepwise"}
    assert INITIAL_STATES.get("tennis") is TennisInitial
    with pytest.raises(checks.FieldError):
        PolicyZoBG(sigma=-1.0)
    with pytest.raises(checks.FieldError):
        PolicyAoBG(samples=5, split="halves")
    with pytest.raises(checks.FieldError):
        Uniform(low=(0.0, 1.0), high=(1.0,))


def test_initial_distributions():
    u = Uniform(low=(0.0, -1.0), high=(1.0, -1.0)).sample(KEY, 500)
    assert u.shape == (500, 2) and float(u[:, 0].min()) >= 0 and float(u[:, 0].max()) <= 1
    assert np.all(np.asarray(u[:, 1]) == -1.0)
    g = Gaussian(mean=(1.0, 2.0), std=(0.5, 0.0)).sample(KEY, 4000)
    assert abs(float(g[:, 0].std()) - 0.5) < 0.03 and np.all(np.asarray(g[:, 1]) == 2.0)
    assert np.array_equal(Point(x0=(1.0, 2.0)).sample(KEY, 3), np.tile([1.0, 2.0], (3, 1)))
    t = TennisInitial()
    x = t.sample(KEY, 4000)
    assert x.shape == (4000, 7) and np.array_equal(x, t.sample(KEY, 4000))
    assert float(jnp.abs(x[:, 0]).max()) <= 2.0
    # the velocity depends on the drawn position: v = -0.2 * position + N(0, 0.03^2)
    resid = x[:, 2:4] - t.velocity_gain * x[:, 0:2]
    assert abs(float(resid.std()) - t.velocity_std) < 0.003 and abs(float(resid.mean())) < 0.003


# ------------------------------------------------------------------------------ the problem


def test_policy_problem_interface(lq_problem):
    p = lq_problem
    assert p.shape == (1, 4) and p.dimension == 4 and p.trajectory is None and p.step is None
    assert p.x0 is None and p.cost is None and p.time_stepped is False
    # objective: the noise-free expected cost over the fixed evaluation batch, by hand
    K = np.asarray(p.U0[0]).reshape(2, 2)
    total = 0.0
    for x in np.asarray(p.eval_states):
        for _ in range(p.horizon):
            u = K @ x
            total += x @ x + 0.1 * u @ u
            x = x + u
        total += x @ x
    np.testing.assert_allclose(float(jax.jit(p.objective)(p.U0)), total / p.n_eval, rtol=1e-12)


def test_seeds_must_differ_and_training_set_is_fixed():
    with pytest.raises(checks.FieldError):
        static_gain_problem(eval_seed=0, train_seed=0)
    with pytest.raises(checks.FieldError):
        static_gain_problem(resample=False)  # a fixed training set needs n_init >= 1
    p = static_gain_problem(resample=False, n_init=3)
    a = pp.initial_states(p, jax.random.PRNGKey(1), 7)
    b = pp.initial_states(p, jax.random.PRNGKey(2), 7)
    assert np.array_equal(a, b) and np.array_equal(a[3], p.train_states[0]) and np.array_equal(a[6], p.train_states[0])
    fresh = static_gain_problem(n_init=2)
    c = pp.initial_states(fresh, jax.random.PRNGKey(1), 5)
    assert np.array_equal(c[0], c[2]) and not np.array_equal(c[0], c[1])
    assert not np.array_equal(pp.held_out_states(p, 5), p.eval_states[:5])


def test_decision_objective_is_a_training_batch_never_the_evaluation_batch():
    """What a method may compare or descend (the Problem contract's decision objective): the noise-free mean cost over
    decision_rollouts training states, n_init fresh draws per key (resample), n_eval when n_init = 0, the training
    set with resample = false, a fixed batch from train_seed without a key; never the evaluation batch, and not the
    draws of the key itself (a method's noise) or of its first half (an oracle's initial states)."""
    p = static_gain_problem(size=2, horizon=3, n_init=3, n_eval=7)
    key = jax.random.PRNGKey(5)
    states = np.asarray(p.decision_states_for(key))
    assert p.decision_rollouts == 3 and states.shape == (3, 2) and p.decision_is_objective is False
    K = np.asarray(p.U0[0]).reshape(2, 2)
    total = 0.0
    for x in states:  # by hand, as the objective's own test
        for _ in range(p.horizon):
            u = K @ x
            total += x @ x + 0.1 * u @ u
            x = x + u
        total += x @ x
    np.testing.assert_allclose(float(jax.jit(p.decision_objective(key))(p.U0)), total / 3, rtol=1e-12)
    evaluation = np.asarray(p.eval_states)
    assert not any(np.all(np.isclose(evaluation, s), axis=1).any() for s in states)
    assert not np.array_equal(states, p.initial.sample(key, 3))
    assert not np.array_equal(states, pp.initial_states(p, jax.random.split(key)[0], 3))
    assert not np.array_equal(states, p.decision_states_for(jax.random.PRNGKey(6)))  # a fresh batch per key
    np.testing.assert_array_equal(p.decision_states_for(None), p.initial.sample(jax.random.PRNGKey(p.train_seed), 3))
    assert static_gain_problem(n_eval=7).decision_rollouts == 7  # n_init = 0: as many as the evaluation batch
    fixed = static_gain_problem(resample=False, n_init=4)
    assert fixed.decision_rollouts == 4
    np.testing.assert_array_equal(fixed.decision_states_for(key), fixed.train_states)
    np.testing.assert_array_equal(fixed.decision_states_for(None), fixed.train_states)


def test_closed_form_matches_monte_carlo(lq_problem):
    """F(theta) of the closed form against the mean of many noisy rollouts (4 standard errors)."""
    p = lq_problem
    theta = p.U0[0]

    @jax.jit
    def values(key):
        X1, W = pp.draw_samples(p, key, 20000, p.sigma)
        return jax.vmap(lambda x, w: pp.value(p, theta, x, w))(X1, W)

    vals = values(KEY)
    se = float(vals.std()) / math.sqrt(vals.size)
    assert abs(float(vals.mean()) - float(lq.expected_cost(p, theta))) < 4 * se


# ------------------------------------------------------------------------------ oracles


def _many(oracles, problem, count=200, key=KEY):
    """Each oracle's estimate under ``count`` independent keys, in one compiled program:
    {name: (grads [count, d], info)}."""
    keys = jax.random.split(key, count)

    @jax.jit
    def run(keys):
        out = {}
        for i, o in enumerate(oracles):
            ks = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)  # independent across oracles
            out[o.name] = jax.vmap(lambda k: o.estimate(k, problem, problem.U0))(ks)
        return out

    return {name: (np.asarray(g[:, 0]), info) for name, (g, info) in run(keys).items()}


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_policy_oracles_unbiased_on_lq(lq_problem):
    """On the smooth static-gain problem every oracle is unbiased: the mean of 200 independent estimates
    matches the closed-form grad F within 4 standard errors (computed from the estimates themselves);
    FoBG and ZoBG agree with each other; the simulator-call counts are the documented ones."""
    p = lq_problem
    oracles = [PolicyFoBG(samples=20), PolicyZoBG(samples=20), PolicyAoBG(samples=20), PolicyStepwise(samples=20)]
    out = _many(oracles, p)
    exact = np.asarray(lq.exact_gradient(p, p.U0[0]))
    for name, (grads, info) in out.items():
        se = grads.std(axis=0, ddof=1) / math.sqrt(len(grads))
        assert np.all(np.abs(grads.mean(axis=0) - exact) < 4 * se), (name, grads.mean(axis=0), exact, se)
        assert isinstance(info, OracleInfo)
    (g1, i1), (g0, i0) = out["fobg"], out["zobg"]
    se = np.sqrt(g1.var(axis=0, ddof=1) / len(g1) + g0.var(axis=0, ddof=1) / len(g0))
    assert np.all(np.abs(g1.mean(axis=0) - g0.mean(axis=0)) < 4 * se)
    # smooth problem: the pathwise estimator has far lower variance (Lemma 3.10's rule of thumb)
    assert float(np.mean(i1.var_first)) < float(np.mean(i0.var_zero))
    counts = {name: (int(info.rollouts[0]), int(info.gradients[0])) for name, (_, info) in out.items()}
    assert counts == {"fobg": (20, 20), "zobg": (40, 0), "aobg": (60, 20), "stepwise": (40, 20)}
    alpha = np.asarray(out["aobg"][1].alpha)
    assert np.all((alpha >= 0) & (alpha <= 1))


def test_split_counts():
    from trajopt.policies.oracles import split_counts

    assert split_counts(8, "independent") == (8, 8, 24, 8)
    assert split_counts(8, "halves") == (4, 4, 12, 4)
    assert split_counts(8, "shared") == (8, 8, 16, 8)


def test_zobg_baseline_from_the_same_initial_state():
    """The per-sample baseline is the zero-noise rollout from the sample's own x_1: with w = 0 every sample is
    exactly 0 however far apart the initial states are; and the estimate equals the hand-built formula."""
    p = static_gain_problem(size=2, horizon=6, sigma=0.1, std=[3.0, 3.0])
    theta = p.U0[0]
    oracle = PolicyZoBG(samples=16)

    def manual_one(x1, w):
        v, X = pp.value_and_states(p, theta, x1, w)
        b = pp.value(p, theta, x1, jnp.zeros_like(w))  # SAME initial state
        return (v - b) * score(p, theta, X, w) / p.sigma**2

    @jax.jit
    def run(key):
        X1, W = pp.draw_samples(p, key, 16, p.sigma)
        zero = zeroth_order_samples(p, theta, X1, jnp.zeros_like(W), p.sigma)
        return oracle.estimate(key, p, p.U0)[0], jax.vmap(manual_one)(X1, W).mean(axis=0), zero

    grad, manual, zero = run(KEY)
    assert np.all(np.asarray(zero) == 0.0)
    np.testing.assert_allclose(grad[0], manual, rtol=1e-10)


def test_score_is_the_policy_jacobian_transpose_times_w():
    p = static_gain_problem(size=2, horizon=3)
    theta = jnp.arange(4.0) / 10
    X = jnp.arange(8.0).reshape(4, 2)
    w = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    manual = sum(jnp.kron(w[h], X[h]) for h in range(3))  # D_theta (K x)^T w = w x^T flattened row-major
    np.testing.assert_allclose(score(p, theta, X, w), manual)


@pytest.mark.slow
def test_mlp_policy_oracles_agree():
    cost = QuadraticCost(Q=jnp.eye(2), R=0.1 * jnp.eye(2), Qf=jnp.eye(2), goal=jnp.zeros(2))
    p = PolicyProblem("mlp", lq.Integrator(2), MLP(hidden=4, output_scale=0.5), cost,
                      Gaussian(mean=(1.0, 1.0), std=(0.3, 0.3)), horizon=5, sigma=0.2)
    out = _many([PolicyFoBG(samples=20), PolicyZoBG(samples=20)], p, count=100, key=jax.random.PRNGKey(3))
    (g1, _), (g0, _) = out["fobg"], out["zobg"]
    se = np.sqrt(g1.var(axis=0, ddof=1) / len(g1) + g0.var(axis=0, ddof=1) / len(g0))
    assert np.all(np.abs(g1.mean(axis=0) - g0.mean(axis=0)) < 4.5 * se + 1e-9)


# ------------------------------------------------------------------------------ through solve


class ClosedForm:
    """A test oracle: the closed-form grad F of the static-gain problem (exact gradient descent)."""

    name = "closed_form"

    def estimate(self, key, problem, U):
        del key
        return lq.exact_gradient(problem, U[0])[None], make_info(problem.objective(U), rollouts=0, gradients=0)


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_solve_runs_policy_oracles_and_tracks_exact_descent(lq_problem):
    """GradientMethod + solve run a policy oracle unchanged; exact gradient descent on the closed form is
    reproduced by solve, and a large-N FoBG run tracks it."""
    p = lq_problem
    step, iters = 2e-3, 30
    exact = solve(p, GradientMethod(ClosedForm(), SGD(step)), key=KEY, iterations=iters, seeds=[0])
    gd = jax.jit(lambda th: th - step * lq.exact_gradient(p, th))
    theta = p.U0[0]
    for _ in range(iters):
        theta = gd(theta)
    np.testing.assert_allclose(exact.U[0, 0], theta, rtol=1e-10)
    F = jax.jit(lambda th: lq.expected_cost(p, th))
    assert float(F(theta)) < 0.8 * float(F(p.U0[0]))
    res = solve(p, GradientMethod(PolicyFoBG(samples=200), SGD(step)), key=KEY, iterations=iters, seeds=[0, 1])
    assert res.status == ["ok", "ok"] and res.X is None and res.U.shape == (2, 1, 4)
    np.testing.assert_allclose(res.U[:, 0], np.tile(theta, (2, 1)), atol=0.02)
    assert np.all(res.history["rollouts"] == 200) and np.all(res.history["gradients"] == 200)


@pytest.mark.parametrize("name", ["zobg", pytest.param("aobg", marks=pytest.mark.slow)])
def test_seed_alone_or_in_a_batch(lq_problem, name):
    method = GradientMethod(POLICY_ORACLES.get(name)(samples=6), SGD(1e-3))
    alone = solve(lq_problem, method, key=KEY, iterations=5, seeds=[2])
    batch = solve(lq_problem, method, key=KEY, iterations=5, seeds=[0, 1, 2])
    np.testing.assert_allclose(alone.U[0], batch.U[2], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(alone.cost[0], batch.cost[2], rtol=1e-12)
    assert not np.allclose(batch.U[0], batch.U[2])


# ------------------------------------------------------------------------------ every shipped system


def _time_stepped():
    """Registered time-stepped systems that build from their defaults (a MuJoCo model needs a file)."""
    names = []
    for n in SYSTEMS.names():
        cls = SYSTEMS.get(n)
        try:
            system = cls()
        except TypeError:
            continue
        if not getattr(system, "one_step", False):
            names.append(n)
    return names


@pytest.mark.parametrize("name", [n if n == "pendulum" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in _time_stepped()])
def test_linear_policy_on_every_time_stepped_system(name):
    """PolicyProblem takes any system with step/state_size/control_size: a linear policy with bias on each."""
    system = SYSTEMS.get(name)()
    n, m = system.state_size, system.control_size
    start = np.asarray(pp_default_start(name, n))
    cost = QuadraticCost(Q=jnp.eye(n), R=0.1 * jnp.eye(m), Qf=jnp.eye(n), goal=jnp.zeros(n))
    p = PolicyProblem(name, system, Linear(bias=True), cost, Gaussian(mean=tuple(start), std=(1e-3,) * n),
                      horizon=5, n_eval=4)
    assert p.dimension == m * n + m
    grad, info = jax.jit(lambda k: PolicyFoBG(samples=4).estimate(k, p, p.U0))(KEY)
    assert grad.shape == (1, p.dimension) and bool(jnp.all(jnp.isfinite(grad))) and np.isfinite(float(info.value))


class _FarKink(lq.Integrator):
    """x' = x + u + 0 sqrt(max(u - 100, 0)): the integrator's states and costs, but the derivative of every step
    is 0 x (inf x 0) = NaN (the controls never reach 100), so every first-order sample is NaN."""

    def step(self, x, u):
        return super().step(x, u) + 0.0 * jnp.sqrt(jnp.maximum(u - 100.0, 0.0))


@pytest.mark.parametrize("name", ["aobg", "ivw", "stepwise"])
def test_policy_mixing_oracles_fall_back_to_the_zobg_where_the_fobg_batch_is_not_finite(name):
    """The closed-loop mix shares the open-loop fallback (trajopt.oracles._mixing): alpha 0 and the ZoBG batch's
    mean exactly, where 0 x NaN would have made every estimate NaN."""
    from trajopt.policies.oracles import draw_samples, shared_samples, split_batches

    cost = QuadraticCost(Q=jnp.eye(2), R=0.1 * jnp.eye(2), Qf=jnp.eye(2), goal=jnp.zeros(2))
    p = PolicyProblem("far_kink", _FarKink(2), Linear(), cost, Gaussian(mean=(1.0, -1.0), std=(0.3, 0.3)),
                      horizon=4, sigma=0.2)
    grad, info = POLICY_ORACLES.get(name)(samples=6).estimate(KEY, p, p.U0)
    if name == "stepwise":  # IVW-H: one shared batch drawn from the key itself, mixed per (step, action)
        g1, g0, *_ = shared_samples(p, p.U0[0], *draw_samples(p, KEY, 6, 0.2), 0.2)
    else:
        g1, g0, *_ = split_batches(KEY, p, p.U0[0], 6, 0.2, "independent")
    assert not np.isfinite(np.asarray(g1)).any() and np.isfinite(np.asarray(g0)).all()
    np.testing.assert_allclose(np.asarray(grad)[0], np.asarray(g0).mean(0), rtol=1e-13)  # (summed in another order)
    assert float(jnp.mean(info.alpha)) == 0.0 and math.isnan(float(info.var_first))


def pp_default_start(name: str, n: int):
    """A start state away from contact: blocks apart for the pushing-like systems, the tennis ball in the air."""
    starts = {"pushing": [0.0, 1.0, 0.0, 0.0], "friction": [0.0, 0.02, 0.0, 0.0], "spring_wall": [1.05, 0.5],
              "pendulum_block": [0.0, 0.09, 0.0, 0.0], "tennis": [0.0, 2.0, 0.0, -0.4, 0.0, 0.0, 0.0]}
    if name == "chain":
        return np.arange(n // 2).tolist() + [0.0] * (n // 2)
    return starts.get(name, [0.1] * n)
