"""`dial`: annealed MPPI after DIAL-MPC (Xue et al. 2024, "Full-order sampling-based MPC for torque-level
locomotion control via diffusion-style annealing"; hydrax's ``DIAL``), one update per step.

The sequence is sampled on H knots (``knots``, ``interpolation``: `trajopt.methods._sampling`; the iterate U = W y
with y the mean's knot values [H, m]; H = T samples every step). Iteration i (0, 1, ...) perturbs knot h = 0..H−1
with the annealed std

    σ(i, h) = σ₀ · exp(−i / (β₁ K) − (H − h) / (β₂ H))

(K = ``iterations_scale``, the number of iterations the schedule spans; the noise shrinks over the
iterations and is smaller early in the horizon; hydrax's DIAL anneals over its knots the same way), then updates as
MPPI with DIAL-MPC's cost normalisation:

    y_j = clip(y + σ ⊙ ε_j, u_min, u_max),  c_j = f(clip(W y_j)),  j = 1..N             (N rollouts)
    w_j = exp(−(c_j − min c) / (λ s)) / Σ_k (...),   s = std_j(c_j) (1 if 0 or not finite)
    y ← Σ_j w_j y_j

(DIAL-MPC's softmax of the standardised rewards over ``temp_sample``; the shift by min c instead of the mean
does not change the weights). Non-finite costs get weight 0. The state carries the iteration count i.
The costs c_j are the problem's decision objective (`trajopt.methods.base`: f itself on an open-loop problem,
a training batch shared by the step's samples on a policy problem). ``info.value`` = f(U) on entry, reported
only: rollouts = samples × B (B = ``decision_rollouts``, 1 open loop), gradients = 0.

Defaults: temperature 0.05 is DIAL-MPC's temp_sample; beta1 = beta2 = 1 the paper's unscaled schedule;
samples 128, sigma 0.3, iterations_scale 100 are ours (DIAL-MPC uses 2048 samples on a GPU); knots and
interpolation are chosen on the shipped problems (docs/baselines.md).

**Closed loop**: the annealing restarts at every replan (DIAL-MPC's rule: each control step runs its own
annealed iterations, i = 0..K−1 again; ``init`` on the shifted plan), and the knots are the last spline
time-shifted (`trajopt.methods._sampling`); nothing else carries over.
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


class DIALState(NamedTuple):
    """U: [T, m] the nominal control sequence, W y; iteration: int32 i, the annealing step; knots: [H, m] y."""

    U: Array
    iteration: Array
    knots: Array


class DIALInfo(NamedTuple):
    """value f(U); rollouts = samples × B; gradients = 0; best_cost: the lowest sample cost; sigma_max: the
    largest σ(i, h) of this step; ess: the effective sample size 1 / Σ w_j²."""

    value: Array
    rollouts: Array
    gradients: Array
    best_cost: Array
    sigma_max: Array
    ess: Array


@dataclass(frozen=True)
class DIAL(OnKnots):
    """samples: N perturbations per step; sigma: σ₀; beta1, beta2: the iteration and horizon annealing
    rates β₁, β₂ > 0; iterations_scale: K, the iterations the schedule spans; temperature: λ, applied to
    standardised costs; knots: H knots of the sequence (1..T; 0: min(20, T)); interpolation: zero | linear | cubic;
    u_min, u_max: box limits on every control coordinate."""

    samples: int = 128
    sigma: float = 0.3
    beta1: float = 1.0
    beta2: float = 1.0
    iterations_scale: int = 100
    temperature: float = 0.05
    knots: int = 0
    interpolation: str = "cubic"
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "dial"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.positive("beta1", self.beta1)
        checks.positive("beta2", self.beta2)
        checks.at_least("iterations_scale", self.iterations_scale, 1)
        checks.positive("temperature", self.temperature)
        check_knot_fields(self.knots, self.interpolation)
        check_box(self.u_min, self.u_max)

    def noise_scale(self, iteration: Array, horizon: int) -> Array:
        """σ(i, h) for knots h = 0..H−1: [H]."""
        h = jnp.arange(horizon)
        return self.sigma * jnp.exp(-iteration / (self.beta1 * self.iterations_scale)
                                    - (horizon - h) / (self.beta2 * horizon))


    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: samples × B, 0 (fixed, for equal-budget comparisons)."""
        return self.samples * decision_rollouts(problem), 0

    def init(self, key: Array, problem, U0: Array) -> DIALState:
        del key
        self.check(problem)
        knots = knots_of(jnp.clip(U0, self.u_min, self.u_max), resolved_knots(self.knots, problem))
        return DIALState(U=self._controls(knots, horizon_of(problem)), iteration=as_count(0), knots=knots)

    def step(self, key: Array, problem, state: DIALState) -> tuple[DIALState, DIALInfo]:
        U, y = state.U, state.knots
        value = problem.objective(U)  # reported only
        scale = self.noise_scale(state.iteration, y.shape[0]).astype(U.dtype)[:, None]  # [H, 1]
        samples = jnp.clip(y + scale * standard_noise(key, self.samples, y), self.u_min, self.u_max)
        costs = sample_costs(decision_objective(problem, key), self._controls(samples, U.shape[0]))
        w = exponential_weights(costs, self.temperature, cost_spread(costs))
        y_new = jnp.clip(y + jnp.tensordot(w, samples - y, axes=1), self.u_min, self.u_max)
        return DIALState(U=self._controls(y_new, U.shape[0]), iteration=state.iteration + 1, knots=y_new), DIALInfo(
            value=as_float(value), rollouts=as_count(self.calls(problem)[0]), gradients=as_count(0),
            best_cost=as_float(jnp.min(costs)), sigma_max=as_float(jnp.max(scale)), ess=as_float(effective_samples(w)))
