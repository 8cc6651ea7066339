"""`cem`: the cross-entropy method over the control sequence (trajax's ``cem``), sampled on K knots.

A diagonal Gaussian N(μ, diag σ²) over the knot values y ([K, m] each; ``knots``, ``interpolation``:
`trajopt.methods._sampling`; K = T is trajax's per-step CEM, bit for bit). One step:

    y_i = clip(μ + σ ⊙ ε_i, u_min, u_max),  ε_i ~ N(0, I),  U_i = clip(W y_i),  i = 1..N   (N = population rollouts)
    E   = the ⌊ρ N⌋ knot samples whose U_i cost least (at least 1)                 (ρ = elite_fraction)
    μ ← α_μ μ + (1 − α_μ) mean(E),   σ ← max(α_σ σ + (1 − α_σ) std(E), σ_min)   (then μ clipped to the box)

α is the weight of the *old* value, trajax's ``evolution_smoothing`` convention. The iterate is the mean's
controls U = clip(W μ);
``info.value`` = f(μ) on entry, computed only for reporting (not counted). The samples are ranked on the
problem's decision objective (`trajopt.methods.base`; the objective itself on an open-loop problem, a training
batch of initial states, shared by the step's samples, on a policy problem): rollouts = population × B, B =
``decision_rollouts`` (1 open loop), gradients = 0.

Defaults: population 400, elite_fraction 0.1, alpha_mu = alpha_sigma = 0.1 are trajax's
(num_samples, elite_portion, evolution_smoothing); ``sigma_init`` = 0 (the default) starts σ at
``sigma_box`` × (u_max − u_min) where both limits are finite (trajax's half the control range: sigma_box = 0.5), and
at 0.5 (ours) without limits; a positive sigma_init is used as given. sigma_min = 1e-3 is ours. trajax's
``sampling_smoothing`` (temporally correlated noise) is not implemented (it is 0 by default there); knots and
interpolation are chosen on the shipped problems (docs/baselines.md).

**Closed loop** (``warm_start``): the distribution carries over, shifted like the plan by the r executed steps: the
mean is the shifted plan's knots (the last spline time-shifted, `trajopt.methods._sampling`) and σ at knot j is the
last σ at the shifted time, σ(t_j + r) (the last knots' σ interpolated to the steps like the controls, floored at
sigma_min; with K = T simply σ[t + r]); a knot beyond the last plan's end restarts at the initial σ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt import checks
from trajopt.checks import FieldError
from trajopt.methods._sampling import (OnKnots, initial_spread, check_box, check_knot_fields, controls_of, horizon_of,
                                       knot_times, knots_of, resolved_knots, sample_costs, standard_noise)
from trajopt.methods.base import as_count, as_float, decision_objective, decision_rollouts


class CEMState(NamedTuple):
    """U: [T, m] the iterate, the mean's controls W μ; sigma: [K, m] the standard deviations; knots: [K, m] the mean
    μ."""

    U: Array
    sigma: Array
    knots: Array


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
class CEM(OnKnots):
    """population: N samples per step; elite_fraction: ρ in (0, 1], the share kept (⌊ρN⌋ >= 1);
    alpha_mu, alpha_sigma: the smoothing weights of the old mean and std in [0, 1); sigma_init: the initial
    std (0: sigma_box × (u_max − u_min) with a finite box, else 0.5); sigma_box: that share of the box; sigma_min:
    the std floor; knots: K knots of the sequence (1..T; 0: min(20, T)); interpolation: zero | linear | cubic;
    u_min, u_max: box limits on every control coordinate."""

    population: int = 400
    elite_fraction: float = 0.1
    alpha_mu: float = 0.1
    alpha_sigma: float = 0.1
    sigma_init: float = 0.0
    sigma_box: float = 0.5
    sigma_min: float = 1e-3
    knots: int = 0
    interpolation: str = "cubic"
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
        checks.non_negative("sigma_init", self.sigma_init)
        checks.positive("sigma_box", self.sigma_box)
        checks.non_negative("sigma_min", self.sigma_min)
        check_knot_fields(self.knots, self.interpolation)
        check_box(self.u_min, self.u_max)

    @property
    def initial_sigma(self) -> float:
        """σ at the start: sigma_init if set (> 0), else sigma_box × (u_max − u_min) with a finite box, else 0.5."""
        return initial_spread(self.sigma_init, self.sigma_box, self.u_min, self.u_max)

    @property
    def elites(self) -> int:
        """The number of elites, ⌊ρ N⌋."""
        return int(self.elite_fraction * self.population)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: population × B, 0 (fixed, for equal-budget comparisons)."""
        return self.population * decision_rollouts(problem), 0

    def init(self, key: Array, problem, U0: Array) -> CEMState:
        del key
        self.check(problem)
        knots = knots_of(jnp.clip(U0, self.u_min, self.u_max), resolved_knots(self.knots, problem))
        return CEMState(U=self._controls(knots, horizon_of(problem)), sigma=jnp.full_like(knots, self.initial_sigma),
                        knots=knots)

    def warm_start(self, key: Array, problem, state: CEMState, U: Array, shift: int) -> CEMState:
        """The next replan's state (`trajopt.closedloop`, see the module docstring): the mean from the shifted plan
        U, σ shifted by ``shift`` steps like the plan, the knots past the last plan's end at the initial σ."""
        new = self.init(key, problem, U)
        T_last = state.U.shape[0]
        sigma_steps = jnp.maximum(controls_of(state.sigma, T_last, self.interpolation), self.sigma_min)  # [T_last, m]
        t = knot_times(horizon_of(problem), new.knots.shape[0]) + int(shift)
        inside = jnp.asarray(t <= T_last - 1)[:, None]
        sigma = jnp.where(inside, sigma_steps[np.minimum(t, T_last - 1)], self.initial_sigma)
        return new._replace(sigma=sigma.astype(new.sigma.dtype))

    def step(self, key: Array, problem, state: CEMState) -> tuple[CEMState, CEMInfo]:
        mu, sigma = state.knots, state.sigma
        T = state.U.shape[0]
        value = problem.objective(state.U)  # reported only
        samples = jnp.clip(mu + sigma * standard_noise(key, self.population, mu), self.u_min, self.u_max)
        costs = sample_costs(decision_objective(problem, key), self._controls(samples, T))
        neg, idx = jax.lax.top_k(-costs, self.elites)
        elite = samples[idx]
        mu_new = self.alpha_mu * mu + (1.0 - self.alpha_mu) * jnp.mean(elite, axis=0)
        sigma_new = self.alpha_sigma * sigma + (1.0 - self.alpha_sigma) * jnp.std(elite, axis=0)
        sigma_new = jnp.maximum(sigma_new, self.sigma_min)
        mu_new = jnp.clip(mu_new, self.u_min, self.u_max)
        new = CEMState(U=self._controls(mu_new, T), sigma=sigma_new, knots=mu_new)
        return new, CEMInfo(value=as_float(value), rollouts=as_count(self.calls(problem)[0]), gradients=as_count(0),
                            best_cost=as_float(-neg[0]), elite_cost=as_float(-jnp.mean(neg)),
                            sigma_mean=as_float(jnp.mean(sigma_new)))
