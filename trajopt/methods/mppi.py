"""`mppi`: model-predictive path integral control as an open-loop optimiser (Williams et al.; hydrax's
``MPPI``), one update of the whole control sequence per step, sampled on K knots (`trajopt.methods._sampling`).

With the mean's knot values y ([K, m]; the iterate U = W y, [T, m]):

    ε_i ~ N(0, σ² I),   y_i = clip(y + ε_i, u_min, u_max),   c_i = f(clip(W y_i))      i = 1..N (N rollouts)
    w_i = exp(−(c_i − min_j c_j) / λ') / Σ_k exp(−(c_k − min_j c_j) / λ')              (min-cost shift)
    y ← clip(y + Σ_i w_i (y_i − y))  (= Σ_i w_i y_i, the running mean with the clipped perturbations)

with λ' = λ s, s the standard deviation of the step's finite sample costs (1 if it is 0), for
``temperature_mode = "relative"`` (the default: λ = ``temperature`` is then a share of the costs' spread, as in
DIAL-MPC's normalised costs), or λ' = λ in the units of the cost for ``"absolute"`` (hydrax's MPPI). An absolute λ
is right for one cost scale only: at λ = 0.1 the effective sample size 1 / Σ w_i² (``info.ess``) was 1 on
every shipped problem (costs in the hundreds and thousands: the update jumped to the best sample), where the
relative λ keeps it at a few samples on each. Samples with a non-finite cost get weight 0. The costs c_i are the
problem's decision objective (`trajopt.methods.base`: f itself on an open-loop problem, a training batch shared by
the step's samples on a policy problem). ``info.value`` = f(U) on entry, computed only for reporting (not counted):
rollouts = samples × B (B = ``decision_rollouts``, 1 open loop), gradients = 0.

``knots`` = T (or a horizon of at most ``AUTO_KNOTS`` steps under the default ``knots = 0``) samples every step,
bit for bit the per-step MPPI. hydrax's MPPI has no default for num_samples, noise_level, temperature and samples
4 knots by zero-order hold; the defaults here are chosen on the shipped problems (docs/baselines.md).

**Closed loop**: nothing but the plan carries over between replans (``init`` on the shifted plan: its knots at the
knot times are the last spline time-shifted; see `trajopt.methods._sampling`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.methods._sampling import (OnKnots, check_box, check_knot_fields, cost_spread,
                                       effective_samples, exponential_weights, horizon_of, knots_of, resolved_knots,
                                       sample_costs, standard_noise)
from trajopt.methods.base import as_count, as_float, decision_objective, decision_rollouts

TEMPERATURE_MODES = ("relative", "absolute")


class MPPIState(NamedTuple):
    """U: [T, m] the nominal control sequence, W y; knots: [K, m] its knot values y."""

    U: Array
    knots: Array


class MPPIInfo(NamedTuple):
    """value f(U); rollouts = samples × B; gradients = 0; best_cost: the lowest sample cost; ess: the effective
    sample size 1 / Σ w_i²; temperature: λ', the temperature the weights used (λ s, or λ)."""

    value: Array
    rollouts: Array
    gradients: Array
    best_cost: Array
    ess: Array
    temperature: Array


@dataclass(frozen=True)
class MPPI(OnKnots):
    """samples: N perturbations per step; sigma: their std σ (per knot); temperature: λ > 0; temperature_mode:
    "relative" (λ times the sample costs' standard deviation) or "absolute" (λ in cost units); knots: K knots of the
    sequence (1..T; 0: min(20, T)); interpolation: zero | linear | cubic; u_min, u_max: box limits on every control
    coordinate."""

    samples: int = 128
    sigma: float = 0.3
    temperature: float = 0.1
    temperature_mode: str = "relative"
    knots: int = 0
    interpolation: str = "cubic"
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "mppi"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 1)
        checks.positive("sigma", self.sigma)
        checks.positive("temperature", self.temperature)
        checks.one_of("temperature_mode", self.temperature_mode, TEMPERATURE_MODES)
        check_knot_fields(self.knots, self.interpolation)
        check_box(self.u_min, self.u_max)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: samples × B, 0 (fixed, for equal-budget comparisons)."""
        return self.samples * decision_rollouts(problem), 0

    def init(self, key: Array, problem, U0: Array) -> MPPIState:
        del key
        self.check(problem)
        knots = knots_of(jnp.clip(U0, self.u_min, self.u_max), resolved_knots(self.knots, problem))
        return MPPIState(U=self._controls(knots, horizon_of(problem)), knots=knots)

    def step(self, key: Array, problem, state: MPPIState) -> tuple[MPPIState, MPPIInfo]:
        U, y = state.U, state.knots
        value = problem.objective(U)  # reported only
        samples = jnp.clip(y + self.sigma * standard_noise(key, self.samples, y), self.u_min, self.u_max)
        costs = sample_costs(decision_objective(problem, key), self._controls(samples, U.shape[0]))
        scale = cost_spread(costs) if self.temperature_mode == "relative" else 1.0
        w = exponential_weights(costs, self.temperature, scale)
        y_new = jnp.clip(y + jnp.tensordot(w, samples - y, axes=1), self.u_min, self.u_max)
        return MPPIState(U=self._controls(y_new, U.shape[0]), knots=y_new), MPPIInfo(
            value=as_float(value), rollouts=as_count(self.calls(problem)[0]), gradients=as_count(0),
            best_cost=as_float(jnp.min(costs)), ess=as_float(effective_samples(w)),
            temperature=as_float(self.temperature * scale))
