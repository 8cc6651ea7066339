"""trajopt.stats: trace variance, the Bernstein radius, the delta conventions and the alpha rule (Eq. 4/5)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt.stats import (
    bernstein_radius,
    bias_constrained_alpha,
    failure_log_term,
    inverse_variance_alpha,
    sample_mean_and_trace_variance,
)

# ---------------------------------------------------------------------------------------------------------
# sample_mean_and_trace_variance


def test_trace_variance_hand_computed():
    # Samples 0, 2, 4 on one coordinate and 1, 1, 1 on the other: mean (2, 1); squared deviations 4 + 0 + 4 = 8,
    # divided by N - 1 = 2 (not by N = 3) -> 4.
    z = jnp.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    mean, var = sample_mean_and_trace_variance(z)
    np.testing.assert_array_equal(np.asarray(mean), [2.0, 1.0])
    assert float(var) == pytest.approx(4.0, rel=1e-15)


def test_trace_variance_is_trace_of_unbiased_covariance_for_any_trailing_shape():
    z = jax.random.normal(jax.random.PRNGKey(0), (7, 3, 2), dtype=jnp.float64)
    mean, var = sample_mean_and_trace_variance(z)
    flat = np.asarray(z).reshape(7, -1)
    assert mean.shape == (3, 2)
    np.testing.assert_allclose(np.asarray(mean).ravel(), flat.mean(0), rtol=1e-14)
    assert float(var) == pytest.approx(np.trace(np.cov(flat, rowvar=False, ddof=1)), rel=1e-12)
    assert var.shape == ()


def test_trace_variance_of_identical_samples_is_zero():
    z = jnp.broadcast_to(jnp.array([1.5, -2.0, 3.0]), (5, 3))
    _, var = sample_mean_and_trace_variance(z)
    assert float(var) == 0.0


# ---------------------------------------------------------------------------------------------------------
# failure_log_term and bernstein_radius


@pytest.mark.parametrize("d", [1, 10, 200])
def test_failure_log_term_reference_convention_uses_delta_as_failure_probability(d):
    assert failure_log_term(d, 0.95, "reference") == pytest.approx(math.log((d + 1) / 0.95), rel=1e-15)


@pytest.mark.parametrize("d", [1, 10, 200])
def test_failure_log_term_confidence_convention_uses_one_minus_delta(d):
    assert failure_log_term(d, 0.95, "confidence") == pytest.approx(math.log((d + 1) / 0.05), rel=1e-12)


def test_delta_convention_trap_magnitude_for_d1():
    # Suh et al. 2022, App. C.4, with the authors' code's delta = 0.95: log(2/0.95) ~ 0.74 against
    # log(2/0.05) ~ 3.69, about 5x.
    ref = failure_log_term(1, 0.95, "reference")
    conf = failure_log_term(1, 0.95, "confidence")
    assert ref == pytest.approx(0.7444, abs=1e-4)
    assert conf == pytest.approx(3.6889, abs=1e-4)
    assert conf > 4.9 * ref


def test_failure_log_term_rejects_unknown_convention():
    with pytest.raises(ValueError, match="convention"):
        failure_log_term(3, 0.95, "paper")


def test_bernstein_radius_formula():
    var_zero, n, lg, L = 3.7, 12, 1.3, 100.0
    expected = math.sqrt(2 * var_zero * lg / n) + 2 * L * lg / (3 * n)
    assert float(bernstein_radius(jnp.asarray(var_zero), n, lg, L)) == pytest.approx(expected, rel=1e-14)


def test_bernstein_radius_floor_is_data_independent():
    # With zero empirical variance only the second term remains: (2 L / (3 N)) log_term.
    n, lg, L = 10, failure_log_term(200, 0.95, "reference"), 100.0
    assert float(bernstein_radius(jnp.asarray(0.0), n, lg, L)) == pytest.approx(2 * L * lg / (3 * n), rel=1e-14)


def test_bernstein_radius_shrinks_with_samples():
    r = [float(bernstein_radius(jnp.asarray(5.0), n, 2.0, 10.0)) for n in (10, 100, 1000, 10000)]
    assert all(a > b for a, b in zip(r, r[1:]))


# ---------------------------------------------------------------------------------------------------------
# inverse_variance_alpha and bias_constrained_alpha (Lemma 4.4 / Eq. 5)


def test_inverse_variance_alpha_formula():
    assert float(inverse_variance_alpha(jnp.asarray(1.0), jnp.asarray(3.0), 1e-5)) == pytest.approx(
        3.0 / (4.0 + 1e-5), rel=1e-15
    )
    # Both variances zero (e.g. an all-flat FoBG and ZoBG): the regulariser keeps alpha at 0, not NaN.
    assert float(inverse_variance_alpha(jnp.asarray(0.0), jnp.asarray(0.0), 1e-5)) == 0.0
    # Variance-free FoBG, noisy ZoBG: alpha -> 1.
    assert float(inverse_variance_alpha(jnp.asarray(0.0), jnp.asarray(1e6), 1e-5)) == pytest.approx(1.0, abs=1e-10)
    # No regulariser and both variances zero (a plateau): 0 / 0 is taken as 0, the ZoBG, as any regulariser gives.
    assert float(inverse_variance_alpha(jnp.asarray(0.0), jnp.asarray(0.0), 0.0)) == 0.0
    assert float(inverse_variance_alpha(jnp.asarray(1.0), jnp.asarray(3.0), 0.0)) == 0.75


def test_alpha_of_undefined_statistics_is_nan_unless_infeasible():
    """A NaN alpha_inf or gap (a batch that is not finite) gives NaN, not a weight that reads as a choice (the gap's
    guard once turned a NaN gap into 1, so gamma = inf reported alpha = 1); an infeasible radius still gives 0."""
    nan = jnp.asarray(math.nan)
    for a_inf, B, eps, gamma in [(nan, nan, 0.1, math.inf), (nan, nan, 0.1, 1.0), (0.5, nan, 0.1, 1.0),
                                 (0.5, 1.0, nan, 1.0)]:
        assert math.isnan(float(bias_constrained_alpha(jnp.asarray(a_inf), jnp.asarray(B), jnp.asarray(eps), gamma)))
    assert float(bias_constrained_alpha(nan, nan, jnp.asarray(2.0), 1.0)) == 0.0


def test_alpha_infeasible_branch_gives_zero():
    # eps > gamma: infeasible, fall back to the ZoBG whatever alpha_inf and B are.
    for a_inf, B in [(0.9, 0.0), (0.5, 3.0), (1.0, 1e-9)]:
        assert float(bias_constrained_alpha(jnp.asarray(a_inf), jnp.asarray(B), jnp.asarray(2.0), 1.0)) == 0.0


def test_alpha_unconstrained_branch_gives_alpha_inf():
    # alpha_inf * B = 0.3 * 2 = 0.6 <= gamma - eps = 1.0 - 0.2 = 0.8.
    a = bias_constrained_alpha(jnp.asarray(0.3), jnp.asarray(2.0), jnp.asarray(0.2), 1.0)
    assert float(a) == pytest.approx(0.3, rel=1e-15)


def test_alpha_constraint_branch_gives_slack_over_gap_and_is_below_alpha_inf():
    # alpha_inf * B = 0.8 * 2 = 1.6 > gamma - eps = 1.0 - 0.2 = 0.8 -> alpha = 0.8 / 2 = 0.4 < alpha_inf.
    a_inf, B, eps, gamma = 0.8, 2.0, 0.2, 1.0
    a = float(bias_constrained_alpha(jnp.asarray(a_inf), jnp.asarray(B), jnp.asarray(eps), gamma))
    assert a == pytest.approx((gamma - eps) / B, rel=1e-15)
    assert a <= a_inf
    # The chosen alpha makes the constraint eps + alpha * B <= gamma active (tight).
    assert eps + a * B == pytest.approx(gamma, rel=1e-14)


def test_alpha_constraint_branch_random_inputs_satisfy_constraint_and_bound():
    key = jax.random.PRNGKey(1)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = 1000
    a_inf = jax.random.uniform(k1, (n,), dtype=jnp.float64)
    B = jax.random.exponential(k2, (n,), dtype=jnp.float64) * 3
    eps = jax.random.exponential(k3, (n,), dtype=jnp.float64)
    gamma = float(jax.random.exponential(k4, (), dtype=jnp.float64)) + 0.5
    a = np.asarray(bias_constrained_alpha(a_inf, B, eps, gamma))
    a_inf, B, eps = map(np.asarray, (a_inf, B, eps))
    assert np.all((a >= 0) & (a <= 1))
    assert np.all(a <= a_inf + 1e-15)
    feasible = eps <= gamma
    assert np.all(a[~feasible] == 0.0)
    # Where feasible, the accuracy constraint of Eq. 4 holds.
    assert np.all(eps[feasible] + a[feasible] * B[feasible] <= gamma * (1 + 1e-12))
    # And alpha is the largest alpha <= alpha_inf satisfying it (the KKT solution).
    expected = np.where(feasible, np.minimum(a_inf, (gamma - eps) / np.where(B > 0, B, 1.0)), 0.0)
    expected = np.where(feasible & (B == 0), a_inf, expected)
    np.testing.assert_allclose(a, expected, rtol=1e-13, atol=0)
    # Every branch occurs in this draw.
    assert (~feasible).any() and (feasible & (a < a_inf)).any() and (feasible & (a == a_inf)).any()


def test_alpha_gamma_inf_gives_alpha_inf():
    for a_inf, B, eps in [(0.7, 1e6, 1e3), (0.01, 0.0, 0.0), (1.0, 5.0, 1e100)]:
        a = bias_constrained_alpha(jnp.asarray(a_inf), jnp.asarray(B), jnp.asarray(eps), math.inf)
        assert float(a) == pytest.approx(a_inf, rel=1e-15)


def test_alpha_zero_gap_gives_alpha_inf_and_no_nan():
    # B = 0 (FoBG and ZoBG agree): the constraint is inactive whenever feasible; no 0/0.
    a = bias_constrained_alpha(jnp.asarray(0.6), jnp.asarray(0.0), jnp.asarray(0.5), 1.0)
    assert float(a) == pytest.approx(0.6, rel=1e-15)
    # Feasible with zero slack (eps == gamma) and B = 0: still alpha_inf.
    a = bias_constrained_alpha(jnp.asarray(0.6), jnp.asarray(0.0), jnp.asarray(1.0), 1.0)
    assert float(a) == pytest.approx(0.6, rel=1e-15)


def test_alpha_under_jit_and_vmap_is_finite_at_zero_gap():
    # The rule runs inside jit/vmap; the unused (gamma - eps) / B branch must not leak NaN or inf at B = 0.
    f = jax.jit(jax.vmap(lambda B: bias_constrained_alpha(jnp.asarray(0.6), B, jnp.asarray(0.5), 1.0)))
    out = np.asarray(f(jnp.array([0.0, 1e-300, 1.0, 10.0])))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [0.6, 0.6, 0.5, 0.05], rtol=1e-14)


# ---------------------------------------------------------------------------------------------------------
# DDCG's quadratic-consistency test (Eq. 14) and ZoBG's zero-noise baseline, against hand-computed values


def test_quadratic_consistency_test_hand_computed_at_intermediate_n_and_c():
    from scipy.stats import chi2

    from trajopt.stats import quadratic_consistency_test

    # N = 7, c = 0.45, sigma = 0.2: rhs = 2 (1 - c) Var[f] / sigma^2 - 2 ||g||^2 = 2 * 0.55 * 0.03 / 0.04 - 2 * 0.1
    # = 0.825 - 0.2 = 0.625; lhs = max(v, 0.25 ||g||^2) * 6 / chi2.ppf(0.05, 6) = 0.05 * 2.3719... = 0.1186
    passed, lhs, rhs = quadratic_consistency_test(jnp.asarray(0.05), jnp.asarray(0.03), jnp.asarray(0.1), 0.2, 7,
                                                  c=0.45, confidence=0.95, variance_floor=0.25)
    factor = 6.0 / chi2.ppf(0.05, 6)
    assert float(rhs) == pytest.approx(0.625, rel=1e-12)
    assert float(lhs) == pytest.approx(0.05 * factor, rel=1e-12)
    assert not bool(passed)
    # c changes the right-hand side (c = 0.9: 2 * 0.1 * 0.75 - 0.2 = -0.05 -> passes)
    passed, _, rhs = quadratic_consistency_test(jnp.asarray(0.05), jnp.asarray(0.03), jnp.asarray(0.1), 0.2, 7, c=0.9)
    assert float(rhs) == pytest.approx(-0.05, rel=1e-12, abs=1e-15) and bool(passed)


def test_ddcg_test_uses_the_unbiased_value_variance_and_its_c():
    from scipy.stats import chi2

    from trajopt.oracles import DDCG

    f1 = jnp.array([1.0, 2.0, 4.0, 7.0, 11.0])  # mean 5; squared deviations 16 + 9 + 1 + 4 + 36 = 66
    var_f = 66.0 / 4  # ddof = 1 (not 66 / 5)
    g = jnp.array([0.3, -0.4])  # ||g||^2 = 0.25
    for c in (0.1, 0.6):
        oracle = DDCG(samples=5, sigma=0.5, c=c)
        passed, lhs, rhs = oracle.test(g, jnp.asarray(2.0), f1, 5)
        assert float(rhs) == pytest.approx(2.0 * (1.0 - c) * var_f / 0.25 - 2.0 * 0.25, rel=1e-12)
        assert float(lhs) == pytest.approx(2.0 * 4.0 / chi2.ppf(1.0 - oracle.confidence, 4), rel=1e-12)


def test_zobg_mean_with_a_large_constant_offset_is_the_gradient():
    # f(U) = K + sum((U - a)^2) with K = 1e6: the zero-noise baseline f(U) cancels K in every sample. The
    # mean of R independent estimates must equal the analytic gradient 2 (U - a) within 4 standard errors of
    # the same estimator on the offset-free f (K = 0), whose spread does not depend on K when the baseline is
    # subtracted. A baseline added instead of subtracted contributes 2 K sum(w) / (N sigma^2), ~1e7 here.
    from trajopt.oracles import ZoBG
    from trajopt.problem import Problem

    a = jnp.array([[0.5], [-1.0], [2.0]])
    U = jnp.zeros((3, 1))
    oracle = ZoBG(samples=10, sigma=0.1)
    keys = jax.random.split(jax.random.PRNGKey(7), 400)

    def estimates(K):
        problem = Problem("offset", U, lambda V: K + jnp.sum((V - a) ** 2))
        return np.asarray(jax.vmap(lambda k: oracle.estimate(k, problem, U)[0])(keys))

    with_offset, without = estimates(1e6), estimates(0.0)
    se = without.std(axis=0, ddof=1) / np.sqrt(len(keys))
    truth = np.asarray(2.0 * (U - a))
    assert np.all(np.abs(without.mean(axis=0) - truth) < 4.0 * se)
    assert np.all(np.abs(with_offset.mean(axis=0) - truth) < 4.0 * se)
    np.testing.assert_allclose(with_offset, without, atol=1e-6)  # K cancels sample by sample (up to rounding)
