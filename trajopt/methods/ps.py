"""`ps`: predictive sampling (Howell et al. 2022, MuJoCo MPC; hydrax's ``PredictiveSampling``) as an
open-loop optimiser.

    y_i = clip(y + σ ε_i, u_min, u_max),  ε_i ~ N(0, I),  U_i = clip(W y_i),  i = 1..N
    (y, U) ← the argmin over {(y, U), (y_1, U_1), ..., (y_N, U_N)} of f(U_i)      (ties keep the incumbent)

sampled on K knots (y: the incumbent's knot values [K, m], U = W y its control sequence; ``knots``,
``interpolation``: `trajopt.methods._sampling`; K = T samples every step, bit for bit the per-step sampler).

The incumbent is one of the candidates (as in MuJoCo MPC and hydrax, which roll out the nominal plan with
the samples), so the cost never increases on a fixed cost. The candidates are compared on the problem's decision objective
(`trajopt.methods.base`), the incumbent re-evaluated with the samples on the step's batch: rollouts =
(samples + 1) × B (B = ``decision_rollouts``), gradients = 0. On an open-loop problem (B = 1) the incumbent's
cost is ``info.value`` itself, evaluated once and counted (``value_in_calls``); on a policy problem ``info.value``
is the evaluation batch's cost, reported only, and with ``resample = true`` each step draws a new training batch,
so the incumbent's cost may rise between steps. Defaults (samples 128, sigma 0.3) are ours (hydrax's constructor
has no defaults); knots and interpolation are chosen on the shipped problems (docs/baselines.md).

**Closed loop**: nothing but the plan carries over between replans (``init`` on the shifted plan: its knots are the
last spline time-shifted, `trajopt.methods._sampling`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.methods._sampling import (OnKnots, check_box, check_knot_fields, horizon_of,
                                       knots_of, resolved_knots, sample_costs, standard_noise)
from trajopt.methods.base import as_count, as_float, decision_is_objective, decision_objective, decision_rollouts


class PSState(NamedTuple):
    """U: [T, m] the incumbent, W y; knots: [K, m] its knot values y."""

    U: Array
    knots: Array


class PSInfo(NamedTuple):
    """value f(U); rollouts = (samples + 1) × B; gradients = 0; best_cost: the decision cost of the new incumbent;
    improved: 1.0 if a sample replaced the incumbent, else 0.0."""

    value: Array
    rollouts: Array
    gradients: Array
    best_cost: Array
    improved: Array


@dataclass(frozen=True)
class PredictiveSampling(OnKnots):
    """samples: N perturbations per step (plus the incumbent); sigma: their std σ (per knot); knots: K knots of the
    sequence (1..T; 0: min(20, T)); interpolation: zero | linear | cubic; u_min, u_max: box limits on every control
    coordinate."""

    samples: int = 128
    sigma: float = 0.3
    knots: int = 0
    interpolation: str = "cubic"
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "ps"
    value_in_calls: ClassVar[bool] = True  # open loop: the incumbent's cost, its value, is one of its counted samples + 1

    def __post_init__(self):
        checks.at_least("samples", self.samples, 1)
        checks.positive("sigma", self.sigma)
        check_knot_fields(self.knots, self.interpolation)
        check_box(self.u_min, self.u_max)


    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: (samples + 1) × B, 0 (fixed, for equal-budget comparisons)."""
        return (self.samples + 1) * decision_rollouts(problem), 0

    def init(self, key: Array, problem, U0: Array) -> PSState:
        del key
        self.check(problem)
        knots = knots_of(jnp.clip(U0, self.u_min, self.u_max), resolved_knots(self.knots, problem))
        return PSState(U=self._controls(knots, horizon_of(problem)), knots=knots)

    def step(self, key: Array, problem, state: PSState) -> tuple[PSState, PSInfo]:
        U, y = state.U, state.knots
        value = problem.objective(U)  # reported
        f = decision_objective(problem, key)
        incumbent = value if decision_is_objective(problem) else f(U)  # a candidate on the step's batch: counted
        samples = jnp.clip(y + self.sigma * standard_noise(key, self.samples, y), self.u_min, self.u_max)
        controls = self._controls(samples, U.shape[0])
        costs = jnp.concatenate([jnp.where(jnp.isfinite(incumbent), incumbent, jnp.inf)[None], sample_costs(f, controls)])
        best = jnp.argmin(costs)  # the first minimum: the incumbent wins ties
        candidates = jnp.concatenate([U[None], controls], axis=0)
        knots = jnp.concatenate([y[None], samples], axis=0)
        return PSState(U=candidates[best], knots=knots[best]), PSInfo(
            value=as_float(value), rollouts=as_count(self.calls(problem)[0]), gradients=as_count(0),
            best_cost=as_float(costs[best]), improved=as_float(best > 0))
