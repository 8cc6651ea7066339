"""Gradient oracles: exact against finite differences, FoBG/ZoBG unbiasedness against analytic smoothed
gradients (tolerances from each estimator's own standard error), AoBG's alpha end to end, the info contract.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from builders import pushing_problem, random_quadratic
from scipy.stats import norm

from trajopt.oracles import (
    INFO_FIELDS,
    ORACLES,
    AoBG,
    Exact,
    FixedAlpha,
    FoBG,
    OracleInfo,
    ZoBG,
)
from trajopt.oracles._samples import first_order_samples, zeroth_order_samples
from trajopt.oracles.aobg import split_estimates
from trajopt.problem import Problem
from trajopt.stats import failure_log_term

Z = 5.0  # tolerance in standard errors for the statistical tests (fixed keys; false-alarm rate ~ 6e-7 / coord)


def quadratic_problem(shape=(3, 2), seed=0):
    """(problem, A, b, the exact smoothed gradient A u + b at U0)."""
    problem, A, b = random_quadratic(shape, seed)
    return problem, A, b, (A @ problem.U0.reshape(-1) + b).reshape(shape)


def assert_within_standard_errors(samples, truth, z=Z):
    """|sample mean - truth| < z * SE per coordinate, SE = sample std / sqrt(N)."""
    s = np.asarray(samples).reshape(samples.shape[0], -1)
    n = s.shape[0]
    mean = s.mean(0)
    se = s.std(0, ddof=1) / math.sqrt(n)
    err = np.abs(mean - np.asarray(truth).reshape(-1))
    assert np.all(se > 0)
    assert np.all(err < z * se), f"errors in SE units: {err / se}"


# ---------------------------------------------------------------------------------------------------------
# Exact: autodiff against central finite differences where no contact kink is crossed


def contact_pattern(problem, U):
    X = problem.trajectory(U)
    return (X[:-1, 1] - X[:-1, 0] - 1.0) < 0  # the branch Pushing.step takes at each step


@pytest.mark.parametrize("stiffness, damping, horizon", [(10.0, 0.998, 40), (100.0, 0.998, 50)])
def test_exact_gradient_matches_central_differences_on_pushing(stiffness, damping, horizon):
    problem = pushing_problem(stiffness, damping, horizon)
    U = problem.U0 + 0.05 * jnp.cos(jnp.arange(horizon, dtype=jnp.float64)).reshape(horizon, 1)
    h = 1e-5
    d = problem.dimension
    E = jnp.eye(d).reshape(d, *problem.shape)

    @jax.jit
    def check(U):
        grad, info = Exact().estimate(jax.random.PRNGKey(0), problem, U)
        f = jax.vmap(problem.objective)
        fd = (f(U + h * E) - f(U - h * E)) / (2 * h)
        patterns = jax.vmap(lambda dU: contact_pattern(problem, U + dU))(jnp.concatenate([h * E, -h * E]))
        return grad, info, fd, patterns, contact_pattern(problem, U)

    grad, info, fd, patterns, pattern = check(U)
    # The kink (gap = 0) is not crossed by any perturbation: the same contact branch everywhere.
    assert bool(jnp.all(patterns == pattern[None]))
    assert int(pattern.sum()) >= horizon - 2  # the configuration really is in contact (not a trivial free flight)
    grad = np.asarray(grad).reshape(-1)
    rel = np.linalg.norm(grad - np.asarray(fd)) / np.linalg.norm(grad)
    assert rel < 1e-6, rel
    assert float(info.value) == pytest.approx(float(problem.objective(U)), rel=1e-13)


def test_exact_gradient_matches_central_differences_on_smooth_nonquadratic():
    def objective(U):
        return jnp.sum(jnp.log1p(U**2)) + jnp.sin(U[0, 0] * U[1, 1]) + jnp.sum(U[:, 0] ** 3 * U[:, 1])

    U = jnp.array([[0.3, -1.2], [0.7, 0.4], [-0.5, 2.0]])
    problem = Problem("smooth", U, objective)
    h = 1e-5
    E = jnp.eye(6).reshape(6, 3, 2)
    fd = (jax.vmap(objective)(U + h * E) - jax.vmap(objective)(U - h * E)) / (2 * h)
    grad, _ = Exact().estimate(jax.random.PRNGKey(0), problem, U)
    np.testing.assert_allclose(np.asarray(grad).reshape(-1), np.asarray(fd), rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------
# FoBG and ZoBG: unbiased for the smoothed gradient of a quadratic (AU + b exactly)

N_STAT = 20000


def test_fobg_mean_is_unbiased_on_quadratic():
    problem, A, b, truth = quadratic_problem()
    key, sigma = jax.random.PRNGKey(11), 0.3
    samples = first_order_samples(key, problem, problem.U0, N_STAT, sigma)
    assert samples.shape == (N_STAT, *problem.shape)
    grad, info = FoBG(samples=N_STAT, sigma=sigma).estimate(key, problem, problem.U0)
    # The oracle's estimate is the mean of these very samples.
    np.testing.assert_allclose(np.asarray(grad), np.asarray(samples.mean(0)), rtol=1e-12, atol=1e-12)
    assert_within_standard_errors(samples, truth)
    # Trace variance: per-sample gradient A(u + w) + b has covariance sigma^2 A A^T.
    dev2 = np.sum((np.asarray(samples) - np.asarray(samples).mean(0)) ** 2, axis=(1, 2))
    var_truth = sigma**2 * float(jnp.sum(A * A))
    assert float(info.var_first) == pytest.approx(dev2.sum() / (N_STAT - 1), rel=1e-10)
    assert abs(float(info.var_first) - var_truth) < Z * dev2.std(ddof=1) / math.sqrt(N_STAT)


def test_zobg_mean_is_unbiased_on_quadratic():
    problem, A, b, truth = quadratic_problem()
    key, sigma = jax.random.PRNGKey(12), 0.3
    value = problem.objective(problem.U0)
    samples = zeroth_order_samples(key, problem, problem.U0, N_STAT, sigma, value)
    grad, info = ZoBG(samples=N_STAT, sigma=sigma).estimate(key, problem, problem.U0)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(samples.mean(0)), rtol=1e-12, atol=1e-12)
    assert float(info.value) == pytest.approx(float(value), rel=1e-15)
    assert_within_standard_errors(samples, truth)


def test_zobg_trace_variance_on_linear_objective():
    # f(U) = b^T u: g_i = (b^T w_i) w_i / sigma^2, E||g_i||^2 = (d + 2)||b||^2, so Var = (d + 1)||b||^2.
    d = 6
    b = jnp.asarray(np.random.default_rng(3).normal(size=d))
    problem = Problem("linear", jnp.zeros((d, 1)), lambda U: b @ U.reshape(-1))
    key, sigma = jax.random.PRNGKey(13), 0.2
    samples = np.asarray(zeroth_order_samples(key, problem, problem.U0, N_STAT, sigma, jnp.asarray(0.0)))
    _, info = ZoBG(samples=N_STAT, sigma=sigma).estimate(key, problem, problem.U0)
    assert_within_standard_errors(samples, b.reshape(d, 1))
    dev2 = np.sum((samples - samples.mean(0)) ** 2, axis=(1, 2))
    var_truth = (d + 1) * float(b @ b)
    assert float(info.var_zero) == pytest.approx(dev2.sum() / (N_STAT - 1), rel=1e-10)
    assert abs(float(info.var_zero) - var_truth) < Z * dev2.std(ddof=1) / math.sqrt(N_STAT)


def test_heaviside_zobg_unbiased_fobg_exactly_zero():
    # Suh et al. 2022, Ex. 3.3: f(theta, w) = H(theta + w), grad F = phi(theta / sigma) / sigma; the FoBG is 0.
    theta, sigma = 0.05, 0.1
    problem = Problem("heaviside", jnp.full((1, 1), theta), lambda U: jnp.where(U[0, 0] >= 0, 1.0, 0.0))
    truth = norm.pdf(theta / sigma) / sigma
    key = jax.random.PRNGKey(14)
    value = problem.objective(problem.U0)
    samples = zeroth_order_samples(key, problem, problem.U0, N_STAT, sigma, value)
    assert_within_standard_errors(samples, jnp.full((1, 1), truth))
    g1, info = FoBG(samples=N_STAT, sigma=sigma).estimate(key, problem, problem.U0)
    assert float(g1[0, 0]) == 0.0 and float(info.var_first) == 0.0
    # The bias is many standard errors: the ZoBG separates from 0 while the FoBG sits on it.
    g0, info0 = ZoBG(samples=N_STAT, sigma=sigma).estimate(key, problem, problem.U0)
    assert float(g0[0, 0]) > Z * math.sqrt(float(info0.var_zero) / N_STAT)


def test_noise_is_fresh_per_key_and_shared_between_fobg_and_zobg():
    # Same key -> the same perturbations in FoBG and ZoBG; different keys -> different ones.
    problem, A, b, _ = quadratic_problem()
    U, sigma, n = problem.U0, 0.1, 5
    key = jax.random.PRNGKey(0)
    g1 = first_order_samples(key, problem, U, n, sigma)
    w_first = jnp.linalg.solve(A, (g1 - (A @ U.reshape(-1) + b).reshape(U.shape)).reshape(n, -1).T).T
    g0 = zeroth_order_samples(jax.random.PRNGKey(0), problem, U, n, sigma, problem.objective(U))
    # Recover the ZoBG weights: g0_i = c_i w_i / sigma^2 -> parallel to w_first_i.
    cos = jnp.sum(g0.reshape(n, -1) * w_first, 1) / (
        jnp.linalg.norm(g0.reshape(n, -1), axis=1) * jnp.linalg.norm(w_first, axis=1)
    )
    np.testing.assert_allclose(np.abs(np.asarray(cos)), 1.0, rtol=1e-6)
    g1_other = first_order_samples(jax.random.PRNGKey(1), problem, U, n, sigma)
    assert not np.allclose(np.asarray(g1), np.asarray(g1_other))


# ---------------------------------------------------------------------------------------------------------
# AoBG end to end (on stiff pushing)

N_AOBG, L_AOBG = 8, 100.0


@pytest.fixture(scope="module")
def small_pushing():
    return pushing_problem(1000.0, 0.99, 20)


@pytest.fixture(scope="module")
def aobg_pushing(small_pushing):
    """(problem, aobg(key, gamma) -> (grad, info), split(key) -> (value, g1, s1, g0, s0)), both eager."""
    P = small_pushing

    def aobg(key, gamma):
        return AoBG(samples=N_AOBG, sigma=0.1, gamma=gamma, L=L_AOBG).estimate(key, P, P.U0)

    def split(key):
        return split_estimates(key, P, P.U0, N_AOBG, 0.1)

    return P, aobg, split


def test_aobg_gamma_inf_is_inverse_variance_weighting(aobg_pushing):
    problem, aobg, split = aobg_pushing
    key = jax.random.PRNGKey(5)
    grad, info = aobg(key, math.inf)
    a = float(info.alpha)
    assert a == pytest.approx(float(info.var_zero) / (float(info.var_first) + float(info.var_zero) + 1e-5), rel=1e-13)
    assert 0.0 < a < 1.0  # strictly inside: neither clipped nor a degenerate end point
    value, g1, s1, g0, s0 = split(key)
    assert float(info.var_first) == pytest.approx(float(s1), rel=1e-13)
    assert float(info.var_zero) == pytest.approx(float(s0), rel=1e-13)
    assert float(info.bias_gap) == pytest.approx(float(jnp.linalg.norm(g1 - g0)), rel=1e-13)
    assert float(info.value) == pytest.approx(float(problem.objective(problem.U0)), rel=1e-13)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(a * g1 + (1 - a) * g0), rtol=1e-12, atol=1e-12)


def test_aobg_gamma_below_floor_is_the_zobg(aobg_pushing):
    problem, aobg, split = aobg_pushing
    key = jax.random.PRNGKey(7)
    floor = 2 * L_AOBG * failure_log_term(problem.dimension, 0.95, "reference") / (3 * N_AOBG)
    grad, info = aobg(key, 0.5 * floor)
    assert float(info.alpha) == 0.0
    assert float(info.radius) >= floor > 0.5 * floor
    _, g1, _, g0, _ = split(key)
    assert not np.allclose(np.asarray(g1), np.asarray(g0))
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(g0))


def test_aobg_constraint_branch_end_to_end(aobg_pushing):
    problem, aobg, split = aobg_pushing
    key = jax.random.PRNGKey(8)
    _, ref = aobg(key, math.inf)
    a_inf, eps, B = float(ref.alpha), float(ref.radius), float(ref.bias_gap)
    assert a_inf > 0 and B > 0
    gamma = eps + 0.5 * a_inf * B  # feasible, but the unconstrained alpha would violate eps + alpha B <= gamma
    grad, info = aobg(key, gamma)
    a = float(info.alpha)
    assert a == pytest.approx((gamma - eps) / B, rel=1e-10)
    assert a == pytest.approx(0.5 * a_inf, rel=1e-10)
    assert float(info.radius) + a * float(info.bias_gap) <= gamma * (1 + 1e-12)
    _, g1, _, g0, _ = split(key)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(a * g1 + (1 - a) * g0), rtol=1e-12, atol=1e-12)


def test_aobg_radius_formula_both_conventions():
    problem, *_ = quadratic_problem()
    key, N, L = jax.random.PRNGKey(6), 8, 100.0
    d = problem.dimension
    radii = {}
    for convention, p_fail in [("reference", 0.95), ("confidence", 0.05)]:
        _, info = AoBG(samples=N, L=L, delta=0.95, delta_convention=convention).estimate(key, problem, problem.U0)
        lg = math.log((d + 1) / p_fail)
        expected = math.sqrt(2 * float(info.var_zero) * lg / N) + 2 * L * lg / (3 * N)
        assert float(info.radius) == pytest.approx(expected, rel=1e-12)
        radii[convention] = float(info.radius)
    assert radii["confidence"] > radii["reference"]


def test_aobg_sample_splitting_uses_independent_keys():
    # The FoBG half is the FoBG oracle on split(key)[0], the ZoBG half the ZoBG oracle on split(key)[1].
    problem, *_ = quadratic_problem()
    key, N = jax.random.PRNGKey(3), 6
    value, g1, s1, g0, s0 = split_estimates(key, problem, problem.U0, N, 0.1)
    key_first, key_zero = jax.random.split(key)
    assert not np.array_equal(np.asarray(key_first), np.asarray(key_zero))
    f1, i1 = FoBG(samples=N).estimate(key_first, problem, problem.U0)
    f0, i0 = ZoBG(samples=N).estimate(key_zero, problem, problem.U0)
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(f1))
    np.testing.assert_array_equal(np.asarray(g0), np.asarray(f0))
    assert float(s1) == float(i1.var_first) and float(s0) == float(i0.var_zero)
    assert float(value) == float(problem.objective(problem.U0))


def test_aobg_prefers_fobg_on_smooth_quadratic():
    # Smooth, benign: sigma_1^2 << sigma_0^2 so alpha_inf ~ 1 (Suh et al. 2022, Lemma 4.4 / Eq. 5).
    problem, *_ = quadratic_problem()
    _, info = AoBG(samples=50, sigma=0.1).estimate(jax.random.PRNGKey(9), problem, problem.U0)
    assert float(info.var_first) < 0.01 * float(info.var_zero)
    assert float(info.alpha) > 0.99


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_fixed_alpha_mixes_the_split_estimates(alpha):
    problem, *_ = quadratic_problem()
    key, N = jax.random.PRNGKey(10), 6
    grad, info = FixedAlpha(samples=N, alpha=alpha).estimate(key, problem, problem.U0)
    _, g1, s1, g0, s0 = split_estimates(key, problem, problem.U0, N, 0.1)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(alpha * g1 + (1 - alpha) * g0), rtol=1e-12, atol=1e-12)
    assert float(info.alpha) == alpha
    assert float(info.var_first) == pytest.approx(float(s1), rel=1e-13)
    assert float(info.var_zero) == pytest.approx(float(s0), rel=1e-13)
    assert float(info.bias_gap) == pytest.approx(float(jnp.linalg.norm(g1 - g0)), rel=1e-13)


# ---------------------------------------------------------------------------------------------------------
# The info contract, over every registered oracle (each compiled once, on stiff pushing, at U0 + 0.2)


N_COUNT = 7
EXPECTED_COUNTS = {
    "exact": (1, 1),
    "fobg": (N_COUNT, N_COUNT),
    "zobg": (N_COUNT + 1, 0),
    "aobg": (2 * N_COUNT + 1, N_COUNT),
    "fixed_alpha": (2 * N_COUNT + 1, N_COUNT),
}
NOT_APPLICABLE = {
    "exact": {"alpha", "var_first", "var_zero", "bias_gap", "radius"},
    "fobg": {"alpha", "var_zero", "bias_gap", "radius"},
    "zobg": {"alpha", "var_first", "bias_gap", "radius"},
    "aobg": set(),
    "fixed_alpha": {"radius"},
}


def make_oracle(name):
    cls = ORACLES.get(name)
    try:
        return cls(samples=N_COUNT)
    except TypeError:
        return cls()


@pytest.fixture(scope="module")
def estimates(small_pushing):
    """{name: (oracle, U, grad, info)} for every registered oracle, one compiled call each."""
    U = small_pushing.U0 + 0.2
    # an oracle for some systems only (``applies_to``: cfd, MJX) is tested on those (tests/test_mjx_contact.py)
    oracles = {name: make_oracle(name) for name in ORACLES.names() if not getattr(ORACLES.get(name), "applies_to", ())}
    results = jax.jit(lambda k, U: {n: o.estimate(k, small_pushing, U) for n, o in oracles.items()})(
        jax.random.PRNGKey(1), U
    )
    return {n: (oracles[n], U, *results[n]) for n in oracles}


def test_every_paper_oracle_is_registered():
    assert set(EXPECTED_COUNTS) <= set(ORACLES.names())


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_oracle_info_counts(estimates, name):
    _, _, _, info = estimates[name]
    assert (int(info.rollouts), int(info.gradients)) == EXPECTED_COUNTS[name]


@pytest.mark.parametrize("name", list(NOT_APPLICABLE))
def test_oracle_info_nan_where_not_applicable(estimates, name):
    _, _, _, info = estimates[name]
    for f in ("alpha", "var_first", "var_zero", "bias_gap", "radius"):
        assert math.isnan(float(getattr(info, f))) == (f in NOT_APPLICABLE[name]), f


@pytest.mark.parametrize("name", ORACLES.names())
def test_oracle_contract(small_pushing, estimates, name):
    if name not in estimates:
        pytest.skip(f"{name} applies to {ORACLES.get(name).applies_to} only (its contract: tests/test_mjx_contact.py)")
    oracle, U, grad, info = estimates[name]
    assert oracle.name == name
    hash(oracle)  # an immutable, hashable configuration
    assert grad.shape == U.shape and grad.dtype == U.dtype
    assert bool(jnp.all(jnp.isfinite(grad)))
    assert float(jnp.linalg.norm(grad)) > 0
    assert isinstance(info, OracleInfo) and info._fields == INFO_FIELDS
    assert all(jnp.shape(getattr(info, f)) == () for f in INFO_FIELDS)
    assert float(info.value) == pytest.approx(float(small_pushing.objective(U)), rel=1e-13)
    alpha = float(info.alpha)
    assert math.isnan(alpha) or 0.0 <= alpha <= 1.0
    for f in ("var_first", "var_zero", "bias_gap", "radius"):
        v = float(getattr(info, f))
        assert math.isnan(v) or v >= 0, f


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (FoBG, {"samples": 1}),
        (ZoBG, {"sigma": 0.0}),
        (AoBG, {"gamma": -1.0}),
        (AoBG, {"delta": 1.0}),
        (AoBG, {"delta_convention": "paper"}),
        (FixedAlpha, {"alpha": 1.5}),
    ],
)
def test_oracle_rejects_invalid_configuration(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)
