"""Statistics the oracles share: trace variance, the Bernstein confidence radius and the alpha rules.

Conventions follow the 2022 paper (PAPER.md §1.4-1.5):

* Var[z] means E||z - E z||^2, a scalar (the trace of the covariance).
* The empirical variance of N per-sample gradients uses the 1/(N - 1) normaliser (Def. 2.5).
"""

from __future__ import annotations

import math
from typing import Literal

import jax.numpy as jnp
from jax import Array

DeltaConvention = Literal["reference", "confidence"]


def sample_mean_and_trace_variance(samples: Array) -> tuple[Array, Array]:
    """Mean and empirical trace variance of N samples.

    Args:
        samples: [N, ...] per-sample vectors (any trailing shape).

    Returns:
        mean: [...];  var: scalar  sigma_hat^2 = 1/(N-1) * sum_i ||z_i - mean||^2.
    """
    n = samples.shape[0]
    mean = samples.mean(axis=0)
    var = jnp.sum((samples - mean) ** 2) / (n - 1)
    return mean, var


def failure_log_term(dimension: int, delta: float, convention: DeltaConvention) -> float:
    """log((d + 1) / p_fail) of the vector Bernstein bound, with the delta convention made explicit.

    * ``"reference"``: delta is plugged straight in as the failure probability, p_fail = delta. This is
      what the authors' code does (delta = 0.95 in every example), which gives narrow radii; use it to
      reproduce the paper's gamma values.
    * ``"confidence"``: delta is the confidence level the paper's text speaks of, p_fail = 1 - delta.
    """
    if convention == "reference":
        p_fail = delta
    elif convention == "confidence":
        p_fail = 1.0 - delta
    else:
        raise ValueError(f"delta convention must be 'reference' or 'confidence', not {convention!r}")
    return math.log((dimension + 1) / p_fail)


def bernstein_radius(var_zero: Array, n: int, log_term: float, L: float) -> Array:
    """Confidence radius eps on ||ZoBG mean - grad F|| (PAPER.md §1.5, App. C.4, code's choice):

        eps = sqrt(2 * var_zero * log_term / N) + (2 L / (3 N)) * log_term

    with var_zero the ZoBG's empirical trace variance and L the fixed a.s. bound hyper-parameter (R).
    The second term does not depend on the data: if gamma is below it, AoBG is the ZoBG.
    """
    return jnp.sqrt(2.0 * var_zero * log_term / n) + (2.0 * L / (3.0 * n)) * log_term


def inverse_variance_alpha(var_first: Array, var_zero: Array, regulariser: float) -> Array:
    """alpha_inf = var_zero / (var_first + var_zero + regulariser): the inverse-variance weight (Eq. 5)."""
    return var_zero / (var_first + var_zero + regulariser)


def bias_constrained_alpha(alpha_inf: Array, bias_gap: Array, radius: Array, gamma: float) -> Array:
    """The closed-form solution of the robust interpolation protocol (Eq. 4 / Lemma 4.4):

        eps > gamma                 -> alpha = 0          (infeasible: fall back to the ZoBG)
        alpha_inf * B <= gamma - eps -> alpha = alpha_inf  (constraint inactive)
        otherwise                   -> alpha = (gamma - eps) / B

    gamma = inf gives alpha_inf (plain inverse-variance weighting). The result is clipped to [0, 1].
    """
    slack = gamma - radius
    constrained = slack / jnp.where(bias_gap > 0, bias_gap, 1.0)
    alpha = jnp.where(radius > gamma, 0.0, jnp.where(alpha_inf * bias_gap <= slack, alpha_inf, constrained))
    return jnp.clip(alpha, 0.0, 1.0)


def per_coordinate_variance(samples: Array) -> Array:
    """Empirical variance of each coordinate of N samples, 1/(N-1) normaliser: [N, ...] -> [...].

    Its sum over coordinates is the trace variance of `sample_mean_and_trace_variance`.
    """
    n = samples.shape[0]
    return jnp.sum((samples - samples.mean(axis=0)) ** 2, axis=0) / (n - 1)


# ---------------------------------------------------------------------------------------------------------
# DDCG: the local-quadratic consistency test of the 2026 follow-up (PAPER.md §4.3)


def chi2_variance_upper_factor(n: int, confidence: float) -> float:
    """(N-1) / chi2_{1-confidence}(N-1): the one-sided chi-squared upper confidence bound on a variance,
    as a multiple of the sample variance (computed in Python with scipy; N is static).

    For i.i.d. Gaussian scalars (N-1) v_hat / v ~ chi2(N-1), so v <= v_hat (N-1) / chi2_{1-confidence}(N-1)
    with probability ``confidence``. For a trace variance (a sum of weighted chi-squares with more degrees of
    freedom) the bound is conservative. N = 10, confidence = 0.95 gives 2.707.
    """
    from scipy.stats import chi2

    if n < 2:
        raise ValueError(f"the chi-squared bound needs N >= 2 samples, not {n}")
    return float((n - 1) / chi2.ppf(1.0 - confidence, n - 1))


def quadratic_consistency_test(var_first: Array, value_var: Array, grad_mean_sqnorm: Array, sigma: float, n: int, *,
                               c: float = 0.3, confidence: float = 0.95, variance_floor: float = 0.25,
                               variance_floor_abs: float = 0.0) -> tuple[Array, Array, Array]:
    """DDCG's test (Eq. 14 of the 2026 follow-up, as printed; PAPER.md §4.3): is the FoBG's sample variance
    consistent with what a local quadratic model of f predicts from the spread of the function values?

        v + eps_v  >=  2 (1 - c) Var[f] / sigma^2  -  2 ||g||^2

    Under an exact quadratic f(U + w) = a + g^T w + 1/2 w^T H w, Var[grad f] = 2 Var[f] / sigma^2 - 2 ||g||^2
    holds exactly (PAPER.md §4.3 [I]); c > 0 tolerates non-quadratic behaviour. A discontinuity (or an
    unresolved stiff feature) gives a large Var[f] but a quiet sample gradient, so the test fails there.

    Args:
        var_first: v_hat, the FoBG's empirical trace variance (1/(N-1)).
        value_var: Var[f], the sample variance (1/(N-1)) of f(U + w_i) over the same batch.
        grad_mean_sqnorm: ||g||^2 with g the FoBG mean of the same batch.
        sigma, n: the perturbation std and the batch size N (static).
        c: the tolerance (the follow-up's c = 0.3, "fixed for all tasks").
        confidence: level of the chi-squared upper bound that gives eps_v (OUR choice; the paper's delta is
            not available): v_up = v_hat * (N-1) / chi2_{1-confidence}(N-1), eps_v = v_up - v_hat.
        variance_floor, variance_floor_abs: the floor on v_hat before the slack (OUR choice; the paper says
            only that there is one): v_hat <- max(v_hat, variance_floor * ||g||^2, variance_floor_abs). The
            relative part is scale-free: Var[f]'s own sampling noise makes the right-hand side fluctuate by
            about 2 (1 - c) ||g||^2 sqrt(2 / (N-1)) even for a linear f, where v_hat = 0 exactly; with the default
            0.25 a linear f keeps the test passing in about 95% of N = 10 batches (81% without a floor). It is
            0 where the FoBG mean is 0 (a flat branch), so it never hides a plateau.

    Returns:
        (passed, lhs, rhs): passed = lhs >= rhs, lhs = v_up (floored v_hat plus eps_v), rhs as above.

    Where the issue's prose and the printed equation differ: "(1 - c) times the quadratic prediction" would
    be (1 - c)(2 Var[f]/sigma^2 - 2||g||^2), stricter by 2c||g||^2; we follow the printed Eq. 14 (identical at
    c = 0). With the stricter form a linear f fails the test in about half the batches at any N.
    """
    floored = jnp.maximum(jnp.maximum(var_first, variance_floor * grad_mean_sqnorm), variance_floor_abs)
    lhs = floored * chi2_variance_upper_factor(n, confidence)
    rhs = 2.0 * (1.0 - c) * value_var / sigma**2 - 2.0 * grad_mean_sqnorm
    return lhs >= rhs, lhs, rhs


# ------------------------------------------------------------------------- summaries over seeds (host numpy)


def nan_band(values, axis=None):
    """Median and interquartile range of ``values`` along ``axis``, ignoring NaN and inf (failed seeds).

    Returns (median, q25, q75) as numpy arrays (floats for ``axis=None``); NaN where nothing is finite.
    The one NaN-aware median/IQR of the package: tables, result.json, figures and studies all use it.
    """
    import warnings

    import numpy as np

    v = np.asarray(values, dtype=float)
    v = np.where(np.isfinite(v), v, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if v.size == 0:
            nan = np.float64(np.nan)
            return nan, nan, nan
        if not np.isnan(v).any():  # the common case, vectorised (NumPy's NaN-aware quantiles loop in Python per column)
            q25, q75 = np.percentile(v, [25, 75], axis=axis)
            return np.median(v, axis=axis), q25, q75
        return (np.nanmedian(v, axis=axis), np.nanpercentile(v, 25, axis=axis), np.nanpercentile(v, 75, axis=axis))


def nan_median(values) -> float:
    """The median of the finite entries of ``values`` (NaN when there are none), as a Python float."""
    return float(nan_band(values)[0])
