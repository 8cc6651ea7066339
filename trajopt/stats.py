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
