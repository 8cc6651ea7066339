"""`mppi`: model-predictive path integral control as an open-loop optimiser (Williams et al.; hydrax's
``MPPI``), one update of the whole control sequence per step.

    ε_i ~ N(0, σ² I),   U_i = clip(U + ε_i, u_min, u_max),   c_i = f(U_i)        i = 1..N (N rollouts)
    w_i = exp(−(c_i − min_j c_j) / λ) / Σ_k exp(−(c_k − min_j c_j) / λ)          (min-cost shift)
    U ← U + Σ_i w_i (U_i − U)  (= Σ_i w_i U_i, the running mean with the clipped perturbations)

λ = ``temperature`` is in the units of the cost (λ → 0: the best sample; λ → ∞: the plain average).
Samples with a non-finite cost get weight 0. The costs c_i are the problem's decision objective
(`trajopt.methods.base`: f itself on an open-loop problem, a training batch shared by the step's samples on a
policy problem). ``info.value`` = f(U) on entry, computed only for reporting (not counted): rollouts =
samples × B (B = ``decision_rollouts``, 1 open loop), gradients = 0. hydrax's MPPI has no incumbent sample
and no default for its num_samples, noise_level, temperature; the defaults here (128, 0.3, 0.1) are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.methods._sampling import check_box, effective_samples, exponential_weights, sample_costs, standard_noise
from trajopt.methods.base import as_count, as_float, decision_objective, decision_rollouts


class MPPIState(NamedTuple):
    """U: [T, m] the nominal control sequence."""

    U: Array


class MPPIInfo(NamedTuple):
    """value f(U); rollouts = samples × B; gradients = 0; best_cost: the lowest sample cost; ess: the effective
    sample size 1 / Σ w_i²."""

    value: Array
    rollouts: Array
    gradients: Array
    best_cost: Array
    ess: Array


@dataclass(frozen=True)
class MPPI:
    """samples: N perturbations per step; sigma: their std σ; temperature: λ (cost units); u_min, u_max:
    box limits on every control coordinate."""

    samples: int = 128
    sigma: float = 0.3
    temperature: float = 0.1
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "mppi"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 1)
        checks.positive("sigma", self.sigma)
        checks.positive("temperature", self.temperature)
        check_box(self.u_min, self.u_max)


    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: samples × B, 0 (fixed, for equal-budget comparisons)."""
        return self.samples * decision_rollouts(problem), 0

    def init(self, key: Array, problem, U0: Array) -> MPPIState:
        del key, problem
        return MPPIState(U=jnp.clip(U0, self.u_min, self.u_max))

    def step(self, key: Array, problem, state: MPPIState) -> tuple[MPPIState, MPPIInfo]:
        U = state.U
        value = problem.objective(U)  # reported only
        samples = jnp.clip(U + self.sigma * standard_noise(key, self.samples, U), self.u_min, self.u_max)
        costs = sample_costs(decision_objective(problem, key), samples)
        w = exponential_weights(costs, self.temperature)
        U_new = U + jnp.tensordot(w, samples - U, axes=1)
        return MPPIState(U=jnp.clip(U_new, self.u_min, self.u_max)), MPPIInfo(
            value=as_float(value), rollouts=as_count(self.calls(problem)[0]), gradients=as_count(0),
            best_cost=as_float(jnp.min(costs)), ess=as_float(effective_samples(w)))
