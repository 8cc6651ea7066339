"""Shared pieces of the sampling baselines (cem, mppi, ps, dial): noise, batched costs, weights, box limits.

All randomness comes from the step's key (``gaussian_noise`` draws in float32 and casts, as the oracles
do), so a seed draws the same noise alone or in a batch.

The samplers rank their candidates on the problem's decision objective ``f = decision_objective(problem, key)``
(`trajopt.methods.base`), drawn once per step so that every candidate of the step is scored on the same
training batch (common random numbers); each candidate costs ``decision_rollouts(problem)`` rollouts, which they
count. Their reported ``value`` is ``problem.objective`` of the iterate, a monitor (counted only by PS, and
only where the two objectives are one function).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array

from trajopt.checks import FieldError
from trajopt.oracles.base import gaussian_noise


def check_box(u_min: float, u_max: float) -> None:
    """u_min < u_max, u_min a number or -inf, u_max a number or inf (FieldError otherwise)."""
    if math.isnan(u_min) or u_min == math.inf:
        raise FieldError("u_min", u_min, "a number or -inf")
    if math.isnan(u_max) or u_max == -math.inf:
        raise FieldError("u_max", u_max, "a number or inf")
    if not u_min < u_max:
        raise FieldError("u_max", u_max, f"a number > u_min ({u_min})")


def standard_noise(key: Array, n: int, U: Array) -> Array:
    """eps_i ~ N(0, I): [N, T, m], drawn in float32, cast to U's dtype."""
    return gaussian_noise(key, n, U.shape, 1.0, U.dtype)


def sample_costs(f, samples: Array) -> Array:
    """f(U_i) for samples [N, T, m] -> [N] (N evaluations of f, the decision objective); a non-finite cost becomes
    +inf (never chosen)."""
    c = jax.vmap(f)(samples)
    return jnp.where(jnp.isfinite(c), c, jnp.inf)


def exponential_weights(costs: Array, temperature, scale=1.0) -> Array:
    """w_i = exp(-(c_i - min c) / (temperature * scale)) / sum_j (...): [N], the min-cost shift keeps the
    largest term 1; infinite costs get weight 0."""
    shifted = (costs - jnp.min(costs)) / (temperature * scale)
    w = jnp.where(jnp.isfinite(shifted), jnp.exp(-shifted), 0.0)
    return w / jnp.sum(w)


def effective_samples(w: Array) -> Array:
    """1 / sum w_i^2, the effective sample size of normalised weights."""
    return 1.0 / jnp.sum(w**2)
