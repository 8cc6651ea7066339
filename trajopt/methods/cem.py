"""`cem`: the cross-entropy method over the whole control sequence (trajax's ``cem``).

A diagonal Gaussian N(μ, diag σ²) over U ([T, m] each). One step:

    U_i = clip(μ + σ ⊙ ε_i, u_min, u_max),  ε_i ~ N(0, I),  i = 1..N            (N = population rollouts)
    E   = the ⌊ρ N⌋ samples of lowest cost (at least 1)                           (ρ = elite_fraction)
    μ ← α_μ μ + (1 − α_μ) mean(E),   σ ← max(α_σ σ + (1 − α_σ) std(E), σ_min)   (then μ clipped to the box)

α is the weight of the *old* value, trajax's ``evolution_smoothing`` convention. The iterate is the mean μ;
``info.value`` = f(μ) on entry, computed only for reporting (not counted). The samples are ranked on the
problem's decision objective (`trajopt.methods.base`; the objective itself on an open-loop problem, a training
batch of initial states, shared by the step's samples, on a policy problem): rollouts = population × B, B =
``decision_rollouts`` (1 open loop), gradients = 0.

Defaults: population 400, elite_fraction 0.1, alpha_mu = alpha_sigma = 0.1 are trajax's
(num_samples, elite_portion, evolution_smoothing); sigma_init = 0.5 and sigma_min = 1e-3 are ours (trajax
starts σ at half the control range, undefined without limits). trajax's ``sampling_smoothing`` (temporally
correlated noise) is not implemented (it is 0 by default there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.checks import FieldError
from trajopt.methods._sampling import check_box, sample_costs, standard_noise
from trajopt.methods.base import as_count, as_float, decision_objective, decision_rollouts


class CEMState(NamedTuple):
    """U: [T, m] the mean μ (the iterate); sigma: [T, m] the standard deviations."""

    U: Array
    sigma: Array


class CEMInfo(NamedTuple):
    """value f(μ); rollouts = population × B; gradients = 0; best_cost: the lowest sample cost; elite_cost: the
    mean elite cost; sigma_mean: the mean of σ after the update."""

    value: Array
    rollouts: Array
    gradients: Array
    best_cost: Array
    elite_cost: Array
    sigma_mean: Array


@dataclass(frozen=True)
class CEM:
    """population: N samples per step; elite_fraction: ρ in (0, 1], the share kept (⌊ρN⌋ >= 1);
    alpha_mu, alpha_sigma: the smoothing weights of the old mean and std in [0, 1); sigma_init: the initial
    std; sigma_min: the std floor; u_min, u_max: box limits on every control coordinate."""

    population: int = 400
    elite_fraction: float = 0.1
    alpha_mu: float = 0.1
    alpha_sigma: float = 0.1
    sigma_init: float = 0.5
    sigma_min: float = 1e-3
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "cem"

    def __post_init__(self):
        checks.at_least("population", self.population, 2)
        checks.in_interval("elite_fraction", self.elite_fraction, 0.0, 1.0)
        if self.elites < 1:
            raise FieldError("elite_fraction", self.elite_fraction,
                             f"a number in (0, 1] with elite_fraction * population >= 1 (population {self.population})")
        checks.in_interval("alpha_mu", self.alpha_mu, 0.0, 1.0)
        checks.in_interval("alpha_sigma", self.alpha_sigma, 0.0, 1.0)
        if self.alpha_mu == 1.0:
            raise FieldError("alpha_mu", self.alpha_mu, "a number in [0, 1) (1 never moves the mean)")
        checks.positive("sigma_init", self.sigma_init)
        checks.non_negative("sigma_min", self.sigma_min)
        check_box(self.u_min, self.u_max)

    @property
    def elites(self) -> int:
        """The number of elites, ⌊ρ N⌋."""
        return int(self.elite_fraction * self.population)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: population × B, 0 (fixed, for equal-budget comparisons)."""
        return self.population * decision_rollouts(problem), 0

    def init(self, key: Array, problem, U0: Array) -> CEMState:
        del key, problem
        return CEMState(U=jnp.clip(U0, self.u_min, self.u_max), sigma=jnp.full_like(U0, self.sigma_init))

    def step(self, key: Array, problem, state: CEMState) -> tuple[CEMState, CEMInfo]:
        mu, sigma = state.U, state.sigma
        value = problem.objective(mu)  # reported only
        samples = jnp.clip(mu + sigma * standard_noise(key, self.population, mu), self.u_min, self.u_max)
        costs = sample_costs(decision_objective(problem, key), samples)
        neg, idx = jax.lax.top_k(-costs, self.elites)
        elite = samples[idx]
        mu_new = self.alpha_mu * mu + (1.0 - self.alpha_mu) * jnp.mean(elite, axis=0)
        sigma_new = self.alpha_sigma * sigma + (1.0 - self.alpha_sigma) * jnp.std(elite, axis=0)
        sigma_new = jnp.maximum(sigma_new, self.sigma_min)
        new = CEMState(U=jnp.clip(mu_new, self.u_min, self.u_max), sigma=sigma_new)
        return new, CEMInfo(value=as_float(value), rollouts=as_count(self.calls(problem)[0]), gradients=as_count(0),
                            best_cost=as_float(-neg[0]), elite_cost=as_float(-jnp.mean(neg)),
                            sigma_mean=as_float(jnp.mean(sigma_new)))
