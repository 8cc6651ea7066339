"""Shared pieces of the sampling baselines (cem, mppi, ps, dial): noise, batched costs, weights, box limits.

All randomness comes from the step's key (``gaussian_noise`` draws in float32 and casts, as the oracles
do), so a seed draws the same noise alone or in a batch.

The samplers rank their candidates on the problem's decision objective ``f = decision_objective(problem, key)``
(`trajopt.methods.base`), drawn once per step so that every candidate of the step is scored on the same
training batch (common random numbers); each candidate costs ``decision_rollouts(problem)`` rollouts, which they
count. Their reported ``value`` is ``problem.objective`` of the iterate, a monitor (counted only by PS, and
only where the two objectives are one function).

**Knots** (hydrax's ``sample_knots`` and spline interpolation; MuJoCo MPC's splines). A sampler's distribution
lives on K knots of the control sequence instead of its T steps: the knot times are the steps

    t_j = ⌊j (T − 1) / (K − 1) + ½⌋,   j = 0..K−1   (t_0 = 0, t_{K−1} = T − 1; K = 1: t_0 = 0)

(hydrax's ``linspace(0, horizon, K)``, rounded to the control grid), a candidate is K knot values [K, m], and its
control sequence is their interpolation at the T steps, U = W y ([T, K] @ [K, m]), by ``interpolation``:

* ``zero``: zero-order hold, u_t = y_j for t_j <= t < t_{j+1} (the last knot holds its own step);
* ``linear``: piecewise linear between the knots;
* ``cubic``: the natural cubic spline through the knots (second derivative 0 at both ends; hydrax's ``cubic``
  uses interpax's C2 cubic spline).

Knot samples are clipped to the box before interpolation (as hydrax does) and the controls again after it (a cubic
spline may overshoot). W is fixed by (T, K, interpolation): computed once in NumPy. With K = T the knot times are
every step and W = I: the interpolation is skipped and the sampler is bit for bit the per-step one. The state keeps
the knots beside U = W y; ``init`` (and so every closed-loop replan, see below) reads the knots off a given U at
the knot times, y_j = U[t_j] (exact when U is itself such a spline; U0 = a constant always is).

**Time shift** (the closed loop, `trajopt.closedloop`): a replan receives the last plan shifted by the r executed
steps, Ū[t] = plan[t + r], and takes its knots at the knot times, y_j = Ū[t_j] = plan[t_j + r]: the previous spline
evaluated at the shifted times (hydrax's ``optimize``: new_mean = interp(tk + t, tk, mean)), exactly, because the
knot times are steps; the knots beyond the last plan's end take the episode's fill rule (hold: the plan's last
control, where hydrax's zero-order hold also holds it). Rolling the knot array by one knot instead would shift the
plan by T / K steps, not r.

``knots`` = 0 (the default) is the rule min(``AUTO_KNOTS``, T) (below); a value in 1..T is used as given and a
larger one is refused (``check_knots_fit``, called by each sampler's ``check``). A policy or one-step problem's
decision has one row (T = 1): one knot, the per-step sampler.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt import checks
from trajopt.checks import FieldError
from trajopt.oracles.base import gaussian_noise

INTERPOLATIONS = ("zero", "linear", "cubic")
AUTO_KNOTS = 20  # knots = 0: min(AUTO_KNOTS, T) knots (its study: docs/baselines.md)


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


def check_knot_fields(knots, interpolation: str) -> None:
    """knots an integer >= 0 (0: the default rule), interpolation one of INTERPOLATIONS (FieldError otherwise); the
    upper bound, the horizon, is checked against a problem (`check_knots_fit`)."""
    if isinstance(knots, bool) or not isinstance(knots, int) or knots < 0:
        raise FieldError("knots", knots, f"an integer in 1..T (the horizon), or 0 for min({AUTO_KNOTS}, T)")
    checks.one_of("interpolation", interpolation, INTERPOLATIONS)


def horizon_of(problem) -> int:
    """T, the rows of the problem's decision (1 for a policy's parameters or a one-step problem)."""
    return int(np.shape(problem.U0)[0])


def resolved_knots(knots: int, problem) -> int:
    """K for a problem: ``knots``, or min(AUTO_KNOTS, T) for 0."""
    T = horizon_of(problem)
    return min(AUTO_KNOTS, T) if knots == 0 else int(knots)


def check_knots_fit(knots: int, problem, method: str) -> None:
    """FieldError (a ValueError naming the key ``knots``) unless ``knots`` (0: the default rule) fits the problem's
    horizon, 1 <= K <= T; ``method`` names the method in the sentence."""
    T = horizon_of(problem)
    if knots > T:
        what = "steps" if getattr(problem, "time_stepped", False) else \
            "row (a policy's parameters or a one-step decision have no time axis: 1 or 0)"
        raise FieldError("knots", knots, f"an integer in 1..{T} for {method} ({getattr(problem, 'name', 'the problem')}'s "
                         f"decision has {T} {what}), or 0 for min({AUTO_KNOTS}, T)")


def knot_times(T: int, K: int) -> np.ndarray:
    """t_j = floor(j (T - 1) / (K - 1) + 1/2), j = 0..K-1 (int64 [K]; [0] for K = 1): strictly increasing for K <= T."""
    if K == 1:
        return np.zeros(1, np.int64)
    return np.floor(np.arange(K) * (T - 1) / (K - 1) + 0.5).astype(np.int64)


@functools.lru_cache(maxsize=256)
def _interpolation_matrix(T: int, K: int, interpolation: str) -> np.ndarray:
    t = np.arange(T, dtype=np.float64)
    tk = knot_times(T, K).astype(np.float64)
    if K == 1:
        return np.ones((T, 1))
    seg = np.clip(np.searchsorted(tk, t, side="right") - 1, 0, K - 2)  # t in [tk[seg], tk[seg + 1]]
    W = np.zeros((T, K))
    if interpolation == "zero":
        W[np.arange(T), np.searchsorted(tk, t, side="right") - 1] = 1.0
        return W
    h = np.diff(tk)
    s = (t - tk[seg]) / h[seg]  # in [0, 1]
    if interpolation == "linear":
        W[np.arange(T), seg] += 1.0 - s
        W[np.arange(T), seg + 1] += s
        return W
    # natural cubic spline: second derivatives M (M_0 = M_{K-1} = 0) solve A M = B y for the interior knots
    A = np.zeros((K, K))
    B = np.zeros((K, K))
    A[0, 0] = A[-1, -1] = 1.0
    for i in range(1, K - 1):
        A[i, i - 1], A[i, i], A[i, i + 1] = h[i - 1], 2.0 * (h[i - 1] + h[i]), h[i]
        B[i, i - 1], B[i, i], B[i, i + 1] = 6.0 / h[i - 1], -6.0 / h[i - 1] - 6.0 / h[i], 6.0 / h[i]
    Mmap = np.linalg.solve(A, B)  # M = Mmap @ y
    hs = h[seg]
    a, b = 1.0 - s, s  # S(t) = a y_i + b y_{i+1} + ((a^3 - a) M_i + (b^3 - b) M_{i+1}) h^2 / 6
    rows = np.arange(T)
    W[rows, seg] += a
    W[rows, seg + 1] += b
    W += ((a**3 - a) * hs**2 / 6.0)[:, None] * Mmap[seg] + ((b**3 - b) * hs**2 / 6.0)[:, None] * Mmap[seg + 1]
    return W


def interpolation_matrix(T: int, K: int, interpolation: str) -> np.ndarray:
    """W: [T, K] float64 with U = W y for knot values y [K, m] (a new array each call)."""
    return _interpolation_matrix(int(T), int(K), interpolation).copy()


def knots_of(U: Array, K: int) -> Array:
    """The knot values of a control sequence U [T, m]: U at the knot times, [K, m] (U itself for K = T)."""
    T = U.shape[0]
    return U if K == T else U[knot_times(T, K)]


def controls_of(knots: Array, T: int, interpolation: str) -> Array:
    """The control sequences [..., T, m] of knot values [..., K, m] (the interpolation W y; the knots themselves,
    untouched, for K = T)."""
    K = knots.shape[-2]
    if K == T:
        return knots
    W = jnp.asarray(_interpolation_matrix(int(T), int(K), interpolation), knots.dtype)
    return jnp.einsum("tk,...km->...tm", W, knots)


def cost_spread(costs: Array) -> Array:
    """s = the standard deviation of the finite costs (population form), 1 where it is 0 or not finite: the unit of a
    relative temperature (MPPI's ``relative`` mode; DIAL-MPC's normalised costs)."""
    finite = jnp.isfinite(costs)
    count = jnp.maximum(jnp.sum(finite), 1)
    mean = jnp.sum(jnp.where(finite, costs, 0.0)) / count
    spread = jnp.sqrt(jnp.sum(jnp.where(finite, (costs - mean) ** 2, 0.0)) / count)
    return jnp.where((spread > 0) & jnp.isfinite(spread), spread, 1.0)


class OnKnots:
    """What every sampler on knots shares: a mixin of the frozen dataclasses with the fields ``knots``,
    ``interpolation``, ``u_min``, ``u_max`` and a ``name`` (CEM, MPPI, predictive sampling, DIAL, evosax)."""

    def check(self, problem) -> None:
        """Raise ValueError when ``knots`` exceeds the problem's horizon."""
        check_knots_fit(self.knots, problem, self.name)  # type: ignore[attr-defined]

    def _controls(self, knots: Array, T: int) -> Array:
        """clip(W y): [..., T, m] (the clipped knots themselves for K = T)."""
        U = controls_of(knots, T, self.interpolation)  # type: ignore[attr-defined]
        return U if knots.shape[-2] == T else jnp.clip(U, self.u_min, self.u_max)  # type: ignore[attr-defined]


def initial_spread(sigma_init: float, sigma_box: float, u_min: float, u_max: float) -> float:
    """The initial sampling spread: ``sigma_init`` if set (> 0), else ``sigma_box`` × (u_max − u_min) with a finite
    box, else 0.5 (CEM's σ, an evosax strategy's step size)."""
    if sigma_init > 0:
        return float(sigma_init)
    if math.isfinite(u_min) and math.isfinite(u_max):
        return float(sigma_box * (u_max - u_min))
    return 0.5
