"""`ps`: predictive sampling (Howell et al. 2022, MuJoCo MPC; hydrax's ``PredictiveSampling``) as an
open-loop optimiser.

    U_i = clip(U + σ ε_i, u_min, u_max),  ε_i ~ N(0, I),  i = 1..N
    U ← argmin over {U, U_1, ..., U_N} of f                                      (ties keep the incumbent)

The incumbent is one of the candidates (as in MuJoCo MPC and hydrax, which roll out the nominal plan with
the samples), so the cost never increases. Its cost is ``info.value``, and it is used to decide, so it
counts: rollouts = samples + 1, gradients = 0. Defaults (samples 128, sigma 0.3) are ours (hydrax's
constructor has no defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.methods._sampling import check_box, sample_costs, standard_noise
from trajopt.methods.base import as_count, as_float


class PSState(NamedTuple):
    """U: [T, m] the incumbent."""

    U: Array


class PSInfo(NamedTuple):
    """value f(U); rollouts = samples + 1; gradients = 0; best_cost: the cost of the new incumbent;
    improved: 1.0 if a sample replaced the incumbent, else 0.0."""

    value: Array
    rollouts: Array
    gradients: Array
    best_cost: Array
    improved: Array


@dataclass(frozen=True)
class PredictiveSampling:
    """samples: N perturbations per step (plus the incumbent); sigma: their std σ; u_min, u_max: box
    limits on every control coordinate."""

    samples: int = 128
    sigma: float = 0.3
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "ps"
    value_in_calls: ClassVar[bool] = True  # the incumbent's cost is one of its counted samples + 1

    def __post_init__(self):
        checks.at_least("samples", self.samples, 1)
        checks.positive("sigma", self.sigma)
        check_box(self.u_min, self.u_max)


    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: fixed, for equal-budget comparisons."""
        return self.samples + 1, 0

    def init(self, key: Array, problem, U0: Array) -> PSState:
        del key, problem
        return PSState(U=jnp.clip(U0, self.u_min, self.u_max))

    def step(self, key: Array, problem, state: PSState) -> tuple[PSState, PSInfo]:
        U = state.U
        value = problem.objective(U)  # the incumbent's cost: a candidate, counted
        samples = jnp.clip(U + self.sigma * standard_noise(key, self.samples, U), self.u_min, self.u_max)
        candidates = jnp.concatenate([U[None], samples], axis=0)
        costs = jnp.concatenate([jnp.where(jnp.isfinite(value), value, jnp.inf)[None], sample_costs(problem, samples)])
        best = jnp.argmin(costs)  # the first minimum: the incumbent wins ties
        return PSState(U=candidates[best]), PSInfo(
            value=as_float(value), rollouts=as_count(self.samples + 1), gradients=as_count(0),
            best_cost=as_float(costs[best]), improved=as_float(best > 0))
