"""The oracle suite beyond the paper's three: ZoBG variants, IVW, DDCG, stepwise, FD, the sample splits, and every
registered oracle end to end through `compare`. Statistical tolerances come from each estimator's own standard
error (Z of them, fixed keys), never widened to pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from builders import heaviside_problem, random_quadratic
from scipy.stats import chi2, norm
from typer.testing import CliRunner

from trajopt import spec
from trajopt.cli import app
from trajopt.oracles import (
    DDCG,
    FD,
    IVW,
    ORACLES,
    AoBG,
    Exact,
    FixedAlpha,
    FoBG,
    Stepwise,
    ZoBG,
    alpha_choosers,
)
from trajopt.oracles._samples import (
    SPLITS,
    first_order_samples,
    split_samples,
    split_sizes,
    zeroth_order_units,
)
from trajopt.oracles.aobg import split_estimates
from trajopt.problem import Problem
from trajopt.stats import (
    chi2_variance_upper_factor,
    per_coordinate_variance,
    quadratic_consistency_test,
)

Z = 5.0  # standard errors (fixed keys; false-alarm rate ~ 6e-7 per coordinate)
N_STAT = 20000
PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
VARIANTS = [("one_sided", False), ("two_sided", False), ("one_sided", True), ("two_sided", True)]


def quadratic_problem(shape=(3, 2), seed=0, at_minimum=False):
    """(problem, A, the exact smoothed gradient A u + b at U0)."""
    problem, A, b = random_quadratic(shape, seed, at_minimum)
    return problem, A, (A @ problem.U0.reshape(-1) + b).reshape(shape)


def assert_within_standard_errors(samples, truth, z=Z):
    s = np.asarray(samples).reshape(samples.shape[0], -1)
    mean = s.mean(0)
    se = s.std(0, ddof=1) / math.sqrt(s.shape[0])
    err = np.abs(mean - np.asarray(truth).reshape(-1))
    assert np.all(se > 0)
    assert np.all(err < z * se), f"errors in SE units: {err / se}"


# ---------------------------------------------------------------------------------------------------------
# ZoBG variants: unbiased on the Heaviside (grad F = phi(theta / sigma) / sigma) and on a quadratic


@pytest.mark.parametrize("estimator, antithetic", VARIANTS)
def test_zobg_variants_unbiased_on_heaviside(estimator, antithetic):
    theta, sigma = 0.05, 0.1
    problem = heaviside_problem(theta)
    truth = norm.pdf(theta / sigma) / sigma
    key = jax.random.PRNGKey(21)
    n = 2 * N_STAT if antithetic else N_STAT  # N_STAT units either way
    units = zeroth_order_units(key, problem, problem.U0, n, sigma, problem.objective(problem.U0),
                               estimator=estimator, antithetic=antithetic)
    assert units.shape == (N_STAT, 1, 1)
    assert_within_standard_errors(units, jnp.full((1, 1), truth))
    # The oracle's estimate is the mean of these very units.
    grad, info = ZoBG(samples=n, sigma=sigma, estimator=estimator, antithetic=antithetic).estimate(key, problem, problem.U0)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(units.mean(0)), rtol=1e-12)


@pytest.mark.parametrize("estimator, antithetic", VARIANTS)
def test_zobg_variants_unbiased_on_quadratic(estimator, antithetic):
    problem, _, truth = quadratic_problem()
    key, sigma = jax.random.PRNGKey(22), 0.3
    n = 2 * N_STAT if antithetic else N_STAT
    units = zeroth_order_units(key, problem, problem.U0, n, sigma, problem.objective(problem.U0),
                               estimator=estimator, antithetic=antithetic)
    assert_within_standard_errors(units, truth)


def test_zobg_default_is_the_paper_estimator():
    # one-sided, zero-noise baseline, no pairing: the original formula on the original noise.
    problem, _, _ = quadratic_problem()
    key, sigma, n = jax.random.PRNGKey(3), 0.2, 12
    grad, info = ZoBG(samples=n, sigma=sigma).estimate(key, problem, problem.U0)
    w = sigma * jax.random.normal(key, (n, *problem.shape), dtype=jnp.float32).astype(problem.U0.dtype)
    f = jax.vmap(problem.objective)(problem.U0 + w)
    g = (f - problem.objective(problem.U0))[:, None, None] * w / sigma**2
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(g.mean(0)))
    assert (int(info.rollouts), int(info.gradients)) == (n + 1, 0)


def test_antithetic_pairs_use_plus_and_minus_w_and_cancel_the_baseline():
    # With antithetic pairs the one- and two-sided estimators coincide (the baseline cancels inside a pair).
    problem, _, _ = quadratic_problem()
    key, n, sigma = jax.random.PRNGKey(4), 10, 0.2
    a = ZoBG(samples=n, sigma=sigma, antithetic=True).estimate(key, problem, problem.U0)
    b = ZoBG(samples=n, sigma=sigma, antithetic=True, estimator="two_sided").estimate(key, problem, problem.U0)
    np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b[0]), rtol=1e-12)
    w = sigma * jax.random.normal(key, (n // 2, *problem.shape), dtype=jnp.float32).astype(problem.U0.dtype)
    f = jax.vmap(problem.objective)
    pairs = (f(problem.U0 + w) - f(problem.U0 - w))[:, None, None] * w / (2 * sigma**2)
    np.testing.assert_allclose(np.asarray(a[0]), np.asarray(pairs.mean(0)), rtol=1e-12)


@pytest.mark.parametrize("estimator, antithetic, rollouts", [("one_sided", False, 9), ("two_sided", False, 16),
                                                             ("one_sided", True, 8), ("two_sided", True, 8)])
def test_zobg_variant_rollout_counts(estimator, antithetic, rollouts):
    problem, _, _ = quadratic_problem()
    _, info = ZoBG(samples=8, estimator=estimator, antithetic=antithetic).estimate(jax.random.PRNGKey(0), problem,
                                                                                   problem.U0)
    assert (int(info.rollouts), int(info.gradients)) == (rollouts, 0)


R_VAR = 3000  # repeats for variance-of-the-mean comparisons


def _repeat(oracle, problem, key, R=R_VAR):
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(R))
    return jax.jit(jax.vmap(lambda k: oracle.estimate(k, problem, problem.U0)))(keys)


def _trace_var_and_se(grads):
    """Empirical trace variance of R estimates and its standard error (from the per-repeat squared deviations)."""
    g = np.asarray(grads).reshape(grads.shape[0], -1)
    dev2 = np.sum((g - g.mean(0)) ** 2, axis=1) * g.shape[0] / (g.shape[0] - 1)
    return dev2.mean(), dev2.std(ddof=1) / math.sqrt(g.shape[0])


def test_antithetic_zobg_has_lower_variance_than_plain_on_a_smooth_problem():
    # Near a minimum of a quadratic the one-sided samples carry the curvature term 1/2 w^T A w as noise; the
    # antithetic pairs cancel it exactly. Same N = 10 (antithetic even spends one rollout less).
    problem, _, _ = quadratic_problem(at_minimum=True)
    key = jax.random.PRNGKey(5)
    plain, info_plain = _repeat(ZoBG(samples=10, sigma=0.3), problem, key)
    anti, info_anti = _repeat(ZoBG(samples=10, sigma=0.3, antithetic=True), problem, key)
    v_plain, se_plain = _trace_var_and_se(plain)
    v_anti, se_anti = _trace_var_and_se(anti)
    assert v_anti + Z * se_anti < v_plain - Z * se_plain, (v_anti, se_anti, v_plain, se_plain)
    # Honest reporting: var_zero is normalised per sample, so var_zero / N estimates Var[mean] in both variants.
    for grads, info in ((plain, info_plain), (anti, info_anti)):
        v, se = _trace_var_and_se(grads)
        reported = np.asarray(info.var_zero) / 10
        se_reported = reported.std(ddof=1) / math.sqrt(R_VAR)
        assert abs(reported.mean() - v) < Z * math.hypot(se, se_reported), (reported.mean(), v)


@pytest.mark.parametrize("kwargs", [{"estimator": "three_sided"}, {"antithetic": True, "samples": 7},
                                    {"antithetic": True, "samples": 2}])
def test_zobg_rejects_invalid_variants(kwargs):
    with pytest.raises(ValueError):
        ZoBG(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# FoBG on the Heaviside; the quadratic identity behind DDCG


def test_fobg_is_exactly_zero_on_the_heaviside():
    problem = heaviside_problem(0.05)
    g1, values = first_order_samples(jax.random.PRNGKey(6), problem, problem.U0, 1000, 0.1, with_values=True)
    assert np.all(np.asarray(g1) == 0.0)
    assert 0 < float(values.mean()) < 1  # the samples do land on both sides of the jump
    grad, info = FoBG(samples=1000, sigma=0.1).estimate(jax.random.PRNGKey(6), problem, problem.U0)
    assert float(jnp.abs(grad).max()) == 0.0 and float(info.var_first) == 0.0


def test_first_order_values_come_from_the_same_rollouts():
    problem, _, _ = quadratic_problem()
    key = jax.random.PRNGKey(7)
    g_only = first_order_samples(key, problem, problem.U0, 6, 0.2)
    g, values = first_order_samples(key, problem, problem.U0, 6, 0.2, with_values=True)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_only), rtol=1e-13)
    w = 0.2 * jax.random.normal(key, (6, *problem.shape), dtype=jnp.float32).astype(problem.U0.dtype)
    np.testing.assert_allclose(np.asarray(values), np.asarray(jax.vmap(problem.objective)(problem.U0 + w)), rtol=1e-13)


def test_quadratic_identity_var_grad_equals_two_var_f_over_sigma2_minus_two_g2():
    # Our derivation behind DDCG's test (trajopt.stats.quadratic_consistency_test): for an exact quadratic,
    # Var[grad f] = 2 Var[f] / sigma^2 - 2 ||g||^2 = sigma^2 tr(A^2).
    problem, A, g = quadratic_problem(shape=(3, 1), seed=2)
    sigma, batches, per = 0.4, 400, 500
    grads, values = first_order_samples(jax.random.PRNGKey(8), problem, problem.U0, batches * per, sigma,
                                        with_values=True)
    grads = np.asarray(grads).reshape(batches, per, -1)
    values = np.asarray(values).reshape(batches, per)
    v_hat = np.sum(grads.var(axis=1, ddof=1), axis=1)  # [batches] unbiased trace variances
    rhs = 2 * values.var(axis=1, ddof=1) / sigma**2 - 2 * float(jnp.sum(g**2))  # unbiased for the same quantity
    truth = sigma**2 * float(jnp.sum(A * A))
    for est in (v_hat, rhs):  # batch means: standard errors from the spread of the per-batch estimates
        assert abs(est.mean() - truth) < Z * est.std(ddof=1) / math.sqrt(batches), (est.mean(), truth)
    diff = v_hat - rhs
    assert abs(diff.mean()) < Z * diff.std(ddof=1) / math.sqrt(batches)


# ---------------------------------------------------------------------------------------------------------
# stats helpers of the new oracles


def test_chi2_upper_factor_and_per_coordinate_variance():
    assert chi2_variance_upper_factor(10, 0.95) == pytest.approx(9 / chi2.ppf(0.05, 9), rel=1e-14)
    assert chi2_variance_upper_factor(10, 0.95) == pytest.approx(2.7067, abs=1e-4)
    assert chi2_variance_upper_factor(1000, 0.95) < 1.1  # the slack vanishes as N grows
    z = jax.random.normal(jax.random.PRNGKey(0), (9, 4, 2), dtype=jnp.float64)
    v = per_coordinate_variance(z)
    np.testing.assert_allclose(np.asarray(v), np.asarray(z).var(axis=0, ddof=1), rtol=1e-13)


def test_quadratic_consistency_test_by_hand():
    n, sigma, c = 10, 0.5, 0.3
    k = chi2_variance_upper_factor(n, 0.95)
    # rhs = 2 (1 - c) Var[f] / sigma^2 - 2 ||g||^2 = 1.4 * 1 / 0.25 - 2 * 0.5 = 4.6
    passed, lhs, rhs = quadratic_consistency_test(jnp.asarray(1.0), jnp.asarray(1.0), jnp.asarray(0.5), sigma, n,
                                                  c=c, variance_floor=0.0)
    assert float(rhs) == pytest.approx(4.6, rel=1e-14) and float(lhs) == pytest.approx(k, rel=1e-14)
    assert not bool(passed)  # 2.71 < 4.6
    passed, lhs, _ = quadratic_consistency_test(jnp.asarray(2.0), jnp.asarray(1.0), jnp.asarray(0.5), sigma, n, c=c)
    assert bool(passed) and float(lhs) == pytest.approx(2 * k)
    # The relative floor: v = 0 counts as 0.25 ||g||^2; the absolute floor as given.
    _, lhs, _ = quadratic_consistency_test(jnp.asarray(0.0), jnp.asarray(1.0), jnp.asarray(4.0), sigma, n)
    assert float(lhs) == pytest.approx(1.0 * k)
    _, lhs, _ = quadratic_consistency_test(jnp.asarray(0.0), jnp.asarray(1.0), jnp.asarray(4.0), sigma, n,
                                           variance_floor=0.0, variance_floor_abs=3.0)
    assert float(lhs) == pytest.approx(3.0 * k)
    # A plateau (v = 0, g = 0, Var[f] > 0) always fails, whatever the floor.
    passed, _, _ = quadratic_consistency_test(jnp.asarray(0.0), jnp.asarray(0.2), jnp.asarray(0.0), sigma, n,
                                              variance_floor=10.0)
    assert not bool(passed)


# ---------------------------------------------------------------------------------------------------------
# IVW, DDCG, stepwise


def test_ivw_is_aobg_without_the_constraint():
    problem, _, _ = quadratic_problem()
    key = jax.random.PRNGKey(9)
    g_ivw, i_ivw = IVW(samples=8).estimate(key, problem, problem.U0)
    g_a, i_a = AoBG(samples=8, gamma=math.inf).estimate(key, problem, problem.U0)
    np.testing.assert_array_equal(np.asarray(g_ivw), np.asarray(g_a))
    for f in ("value", "alpha", "var_first", "var_zero", "bias_gap", "rollouts", "gradients"):
        assert float(getattr(i_ivw, f)) == float(getattr(i_a, f)), f
    assert math.isnan(float(i_ivw.radius))
    _, g1, s1, g0, s0 = split_estimates(key, problem, problem.U0, 8, 0.1)
    assert float(i_ivw.alpha) == pytest.approx(float(s0 / (s0 + s1 + 1e-5)), rel=1e-14)


def _ddcg_and_ivw(problem, keys, n, sigma):
    ddcg, ivw = DDCG(samples=n, sigma=sigma), IVW(samples=n, sigma=sigma)
    run = jax.jit(jax.vmap(lambda k: (ddcg.estimate(k, problem, problem.U0), ivw.estimate(k, problem, problem.U0))))
    return run(keys)


def test_ddcg_keeps_the_ivw_weight_on_a_quadratic():
    # At N = 2000 the tolerance c = 0.3 is more than ten standard errors of Var[f] and of the FoBG variance
    # (relative SE ~ sqrt(2 / N) = 3%), so the test passes in every batch and DDCG is IVW, sample for sample.
    for at_minimum in (False, True):
        problem, _, _ = quadratic_problem(at_minimum=at_minimum)
        keys = jax.random.split(jax.random.PRNGKey(10), 8)
        (g_d, i_d), (g_i, i_i) = _ddcg_and_ivw(problem, keys, 2000, 0.3)
        np.testing.assert_allclose(np.asarray(i_d.alpha), np.asarray(i_i.alpha), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(g_d), np.asarray(g_i), rtol=1e-10, atol=1e-12)
        assert np.all(np.asarray(i_d.alpha) > 0.9)  # smooth: the FoBG wins


def test_ddcg_switches_to_zobg_on_the_heaviside():
    # Every FoBG sample is 0 while the values jump: the test fails (the probability that all 50 samples land on
    # one side of the step, the only way to pass, is below 1e-7), so alpha = 0 and DDCG is the ZoBG.
    problem = heaviside_problem(0.05)
    keys = jax.random.split(jax.random.PRNGKey(11), 16)
    (g_d, i_d), (g_i, i_i) = _ddcg_and_ivw(problem, keys, 50, 0.1)
    assert np.all(np.asarray(i_d.alpha) == 0.0)
    assert np.all(np.asarray(i_i.alpha) > 0.99)  # while IVW trusts the zero-variance FoBG completely
    for r, k in enumerate(keys):
        _, _, _, g0, _ = split_estimates(k, problem, problem.U0, 50, 0.1)
        np.testing.assert_array_equal(np.asarray(g_d[r]), np.asarray(g0))


def test_ddcg_uses_the_fobg_batch_values_without_extra_rollouts():
    problem, _, _ = quadratic_problem()
    key = jax.random.PRNGKey(12)
    ddcg = DDCG(samples=10, sigma=0.2)
    _, info = ddcg.estimate(key, problem, problem.U0)
    assert (int(info.rollouts), int(info.gradients)) == (21, 10)
    b = split_samples(key, problem, problem.U0, 10, 0.2, with_values=True)
    g1 = b.g1.mean(0)
    s1 = jnp.sum((b.g1 - g1) ** 2) / 9
    passed, _, _ = quadratic_consistency_test(s1, jnp.var(b.f1, ddof=1), jnp.sum(g1**2), 0.2, 10)
    s0 = jnp.sum((b.g0 - b.g0.mean(0)) ** 2) / 9
    expected = float(s0 / (s0 + s1 + 1e-5)) if bool(passed) else 0.0
    assert float(info.alpha) == pytest.approx(expected, rel=1e-12)


def test_stepwise_reduces_to_ivw_when_the_decision_is_one_number():
    problem, _, _ = quadratic_problem(shape=(1, 1), seed=3)
    both = jax.jit(lambda key: (Stepwise(samples=6).estimate(key, problem, problem.U0),
                                IVW(samples=6).estimate(key, problem, problem.U0)))  # compiled once, for 4 keys
    for key in jax.random.split(jax.random.PRNGKey(13), 4):
        (g_s, i_s), (g_i, i_i) = both(key)
        np.testing.assert_allclose(np.asarray(g_s), np.asarray(g_i), rtol=1e-13)
        for f in ("alpha", "var_first", "var_zero", "bias_gap", "rollouts", "gradients"):
            assert float(getattr(i_s, f)) == pytest.approx(float(getattr(i_i, f)), rel=1e-13), f


def test_stepwise_weights_each_coordinate_by_its_own_variances():
    problem, _, _ = quadratic_problem(shape=(4, 2), seed=4)
    key = jax.random.PRNGKey(14)
    grad, info = Stepwise(samples=8, regulariser=0.0).estimate(key, problem, problem.U0)
    b = split_samples(key, problem, problem.U0, 8, 0.1)
    v1, v0 = np.asarray(b.g1).var(0, ddof=1), np.asarray(b.g0).var(0, ddof=1)
    alpha = v0 / (v0 + v1)
    expected = alpha * np.asarray(b.g1).mean(0) + (1 - alpha) * np.asarray(b.g0).mean(0)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-12)
    assert float(info.alpha) == pytest.approx(alpha.mean(), rel=1e-12)
    assert float(info.var_first) == pytest.approx(v1.sum(), rel=1e-12)


def half_kink_problem():
    """f(U) = sum sqrt(max(U, 0)) + 1/2 ||U - 1||^2 at U0 whose first column sits at the kink (0.05, 0.08: with
    sigma = 0.1 some samples fall below 0, where the derivative of sqrt(max(u, 0)) is inf x 0 = NaN) and whose second
    column is far from it (every sample's derivative finite). The values are finite everywhere."""
    def objective(U):
        return jnp.sum(jnp.sqrt(jnp.maximum(U, 0.0))) + 0.5 * jnp.sum((U - 1.0) ** 2)

    return Problem("half_kink", jnp.array([[0.05, 2.0], [0.08, 3.0]]), objective)


@pytest.mark.parametrize("name", alpha_choosers() + ["fixed_alpha"])
def test_a_non_finite_first_order_batch_gives_the_zobg_alone(name):
    """The paper's fallback (Eq. 5: alpha = 0 is the ZoBG) where the FoBG batch is not finite: the estimate is the
    ZoBG batch's mean exactly, not NaN (0 x NaN); a per-coordinate rule falls back in the coordinates whose samples
    are not all finite and mixes the others by its own weights."""
    problem, key = half_kink_problem(), jax.random.PRNGKey(5)
    oracle = ORACLES.get(name)(samples=8)
    b = split_samples(key, problem, problem.U0, 8, 0.1, with_values=True)
    g1, g0 = np.asarray(b.g1), np.asarray(b.g0)
    bad = ~np.isfinite(g1).all(axis=0)
    assert bad[:, 0].all() and not bad[:, 1].any()  # the problem's premise: column 0 NaN, column 1 finite
    grad, info = oracle.estimate(key, problem, problem.U0)
    grad = np.asarray(grad)
    np.testing.assert_array_equal(grad[:, 0], g0.mean(0)[:, 0])
    assert math.isnan(float(info.var_first))  # the record of the fallback (Result.first_order_fallbacks)
    if name == "stepwise":  # per coordinate: column 1 mixed by v0 / (v0 + v1 + 1e-5), column 0 alpha = 0
        v1, v0 = g1.var(0, ddof=1)[:, 1], g0.var(0, ddof=1)[:, 1]
        alpha = v0 / (v0 + v1 + 1e-5)
        np.testing.assert_allclose(grad[:, 1], alpha * g1.mean(0)[:, 1] + (1 - alpha) * g0.mean(0)[:, 1], rtol=1e-12)
        assert float(info.alpha) == pytest.approx(alpha.sum() / 4, rel=1e-12)
    else:
        np.testing.assert_array_equal(grad, g0.mean(0))
        assert float(info.alpha) == 0.0


def test_diagnostics_apply_the_same_fallback():
    """`diagnose`'s per-rule statistics on the same batches: alpha 0, the ZoBG's norm and variance (finite)."""
    from trajopt.diagnostics import batch_statistics

    problem, key = half_kink_problem(), jax.random.PRNGKey(5)
    rules = {n: ORACLES.get(n)(samples=8) for n in ("aobg", "ivw", "stepwise")}
    out = batch_statistics(key, problem, problem.U0, samples=8, sigma=0.1, rules=rules)
    g0 = np.asarray(split_samples(key, problem, problem.U0, 8, 0.1).g0)
    for n in ("aobg", "ivw"):
        assert float(out[f"alpha_{n}"]) == 0.0
        assert float(out[f"norm_{n}"]) == pytest.approx(np.linalg.norm(g0.mean(0)), rel=1e-14)
        assert float(out[f"var_{n}"]) == pytest.approx(g0.var(0, ddof=1).sum(), rel=1e-12)
    assert np.isfinite(float(out["var_stepwise"])) and 0 < float(out["alpha_stepwise"]) < 0.5


# ---------------------------------------------------------------------------------------------------------
# FD


def test_fd_matches_autodiff_on_a_smooth_problem():
    def objective(U):
        return jnp.sum(jnp.log1p(U**2)) + jnp.sin(U[0, 0] * U[1, 1]) + jnp.sum(U[:, 0] ** 3 * U[:, 1])

    U = jnp.array([[0.3, -1.2], [0.7, 0.4], [-0.5, 2.0]])  # |U_j| > 1 uses the relative step
    problem = Problem("smooth", U, objective)
    (grad, info), (exact, _) = jax.jit(lambda k: (FD().estimate(k, problem, U), Exact().estimate(k, problem, U)))(
        jax.random.PRNGKey(0))  # one program (eagerly, each of FD's operations compiles on its own)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(exact), rtol=1e-8, atol=1e-9)
    assert (int(info.rollouts), int(info.gradients)) == (12, 0)
    assert float(info.value) == float(objective(U))


def test_fd_step_is_relative_above_one():
    # f = u^3: the central difference is 3u^2 + h^2 exactly, so the error reveals the step used.
    for u, h_expected in ((0.5, 1e-3), (40.0, 40e-3)):
        problem = Problem("cubic", jnp.full((1, 1), u), lambda U: U[0, 0] ** 3)
        grad, _ = FD(step=1e-3).estimate(None, problem, problem.U0)
        assert float(grad[0, 0]) - 3 * u**2 == pytest.approx(h_expected**2, rel=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Sample splits: the equal-budget option


MIXING = (AoBG, IVW, DDCG, Stepwise, FixedAlpha)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("cls", MIXING, ids=lambda c: c.name)
def test_split_counts(cls, split):
    problem, _, _ = quadratic_problem()
    grad, info = cls(samples=8, split=split).estimate(jax.random.PRNGKey(15), problem, problem.U0)
    expected = {"independent": (17, 8), "halves": (9, 4), "shared": (9, 8)}[split]
    assert (int(info.rollouts), int(info.gradients)) == expected == split_sizes(8, split)[2:]
    assert grad.shape == problem.shape and bool(jnp.all(jnp.isfinite(grad)))


def test_halves_split_uses_half_batches_on_the_independent_keys():
    problem, _, _ = quadratic_problem()
    key = jax.random.PRNGKey(16)
    value, g1, s1, g0, s0 = split_estimates(key, problem, problem.U0, 8, 0.1, "halves")
    key_first, key_zero = jax.random.split(key)
    f1, i1 = FoBG(samples=4).estimate(key_first, problem, problem.U0)
    f0, i0 = ZoBG(samples=4).estimate(key_zero, problem, problem.U0)
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(f1))
    np.testing.assert_array_equal(np.asarray(g0), np.asarray(f0))
    # AoBG's radius uses the ZoBG batch's own size (N/2).
    _, info = AoBG(samples=8, split="halves").estimate(key, problem, problem.U0)
    lg = math.log((problem.dimension + 1) / 0.95)
    assert float(info.radius) == pytest.approx(math.sqrt(2 * float(s0) * lg / 4) + 2 * 100.0 * lg / 12, rel=1e-12)


def test_shared_split_feeds_both_estimates_from_one_batch():
    problem, _, _ = quadratic_problem()
    key = jax.random.PRNGKey(17)
    b = split_samples(key, problem, problem.U0, 6, 0.2, "shared", with_values=True)
    key_first, _ = jax.random.split(key)
    w = 0.2 * jax.random.normal(key_first, (6, *problem.shape), dtype=jnp.float32).astype(problem.U0.dtype)
    np.testing.assert_allclose(np.asarray(b.g1), np.asarray(jax.vmap(jax.grad(problem.objective))(problem.U0 + w)),
                               rtol=1e-13)
    expected_g0 = (b.f1 - b.value)[:, None, None] * w / 0.04
    np.testing.assert_allclose(np.asarray(b.g0), np.asarray(expected_g0), rtol=1e-13)


@pytest.mark.parametrize("cls", MIXING, ids=lambda c: c.name)
def test_halves_needs_an_even_sample_count(cls):
    for n in (7, 2):
        with pytest.raises(ValueError, match="even"):
            cls(samples=n, split="halves")
    with pytest.raises(ValueError, match="split"):
        cls(split="thirds")


STIFF_TEXT = (PROBLEMS / "pushing_stiff.toml").read_text()


def test_one_oracle_key_sets_the_split_for_every_mixing_oracle():
    names = [c.name for c in MIXING]
    s = spec.loads(STIFF_TEXT, overrides=["oracle.split=halves", "solve.oracles=" + json.dumps(["fobg", "zobg"] + names)])
    for name in names:
        assert s.oracles[name].split == "halves", name
    assert not hasattr(s.oracles["fobg"], "split")
    with pytest.raises(spec.SpecError, match=r"oracle.samples: .* \(the shared key, as aobg's samples\)"):
        spec.loads(STIFF_TEXT, overrides=["oracle.split=halves", "oracle.samples=9"])


@pytest.mark.parametrize("cls", [DDCG], ids=lambda c: c.name)
@pytest.mark.parametrize("kwargs", [{"c": 1.5}, {"confidence": 1.0}, {"variance_floor": -1.0},
                                    {"variance_floor_abs": -1.0}])
def test_ddcg_rejects_invalid_configuration(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


def test_fd_rejects_a_non_positive_step():
    with pytest.raises(ValueError):
        FD(step=0.0)


# ---------------------------------------------------------------------------------------------------------
# Every registered oracle through `compare` on a pushing problem


runner = CliRunner()


def _compare_oracles(names, out):
    return runner.invoke(app, ["compare", str(PROBLEMS / "pushing_stiff.toml"), "--oracles", ",".join(names),
                               "--iterations", "3", "--seeds", "1", "--set", "task.horizon=30", "--out", str(out),
                               "--json", "--quiet"], catch_exceptions=False)


@pytest.fixture(scope="module")
def every_oracle_compared(tmp_path_factory):
    """One `trajopt compare` of every registered oracle that applies to pushing (one run folder, one figure: each
    oracle alone compiled the same loop and drew its own): (run folder, exit code, its JSON or, failed, its output)."""
    out = tmp_path_factory.mktemp("oracles") / "all"
    names = [n for n in ORACLES.names() if not getattr(ORACLES.get(n), "applies_to", ())]
    result = _compare_oracles(names, out)
    return out, result.exit_code, result.stdout if result.exit_code == 0 else result.output


@pytest.mark.parametrize("name", ORACLES.names())
def test_every_registered_oracle_runs_through_compare(tmp_path, name, every_oracle_compared):
    if getattr(ORACLES.get(name), "applies_to", ()):  # an oracle for some systems only (cfd: MJX) refuses pushing
        out = tmp_path / name
        result = _compare_oracles([name], out)
        assert result.exit_code == 2 and f"oracle {name!r}" in result.output and not out.exists(), result.output
        return
    out, exit_code, stdout = every_oracle_compared
    assert exit_code == 0, stdout
    summary = json.loads(stdout)
    o = summary["variants"][name]
    assert o["status"] == ["ok"] and math.isfinite(o["final_cost"][0])
    s = spec.loads(STIFF_TEXT, overrides=["task.horizon=30", f"solve.oracles=[\"{name}\"]"])
    problem = s.problem()
    _, info = s.oracles[name].estimate(jax.random.PRNGKey(0), problem, problem.U0)
    assert o["rollouts"] == 3 * int(info.rollouts) and o["gradients"] == 3 * int(info.gradients)
    assert (out / "convergence.png").is_file()
