"""`evosax`: any distribution-based evolution strategy of evosax (CMA-ES, Sep-CMA-ES, OpenAI-ES, SNES, xNES, PGPE,
...) as a method, over the control sequence's knots (`trajopt.methods._sampling`) or, with ``knots`` = T, every
step; the optional extra ``trajopt-alpha[evosax]`` (tested: evosax 0.3.2, which needs flax).

The strategy (``strategy``: evosax's name, e.g. ``"CMA_ES"``, ``"Sep_CMA_ES"``, ``"Open_ES"``, ``"SNES"``) searches
the K × m knot values y of the sequence, as hydrax's ``Evosax`` controller does. One step is one generation of
evosax's ask/tell:

    y_i = clip(ask(key_ask, state)_i, u_min, u_max),  U_i = clip(W y_i),  c_i = f(U_i)    i = 1..N (N rollouts)
    state ← tell(key_tell, [y_i], [c_i], state)           (evosax minimises; a non-finite c_i is +inf)
    U = clip(W clip(mean(state)))                                                       (the iterate)

The population is told as evaluated (clipped to the box, as hydrax tells its clipped knots). The iterate is the
strategy's mean, as CEM's is: ``info.value`` = f(U) on entry, reported only, not counted; rollouts = population ×
B (B = ``decision_rollouts``), gradients = 0, like the samplers. The step key is split into evosax's ask and tell
keys, so a seed draws the same population alone or in a batch.

Options: ``population`` N (evosax's population_size; OpenAI-ES needs it even); ``sigma_init``: the initial step size
(the strategy's ``std_init`` parameter, or for a strategy with a ``std_schedule`` a constant schedule of it; 0, the
default: ``sigma_box`` × (u_max − u_min) with a finite box, else 0.5, as CEM); ``learning_rate``: for a strategy
with an optax optimiser (OpenAI-ES, SNES, xNES, PGPE, ...) Adam with this step, 0 (the default) keeps the strategy's
own optimiser; everything else is evosax's default (fitness shaping, CMA's weights and rates).

**Closed loop** (``warm_start``): the strategy's state carries over (its step size, covariance, evolution paths,
optimiser moments) with its mean replaced by the shifted plan's knots (the last spline time-shifted,
`trajopt.methods._sampling`); the covariance is not shifted (it couples knots, not times).

Strategies: every distribution-based evosax algorithm that builds from a population size and a solution alone
(``strategies()``; not RandomSearch, SV_CMA_ES, SV_Open_ES, which need more); population-based ones (GAs, PSO,
differential evolution) have another interface and are not offered. Without evosax installed the method still
parses and is refused with the install line when it is built.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.checks import FieldError
from trajopt.methods._sampling import (OnKnots, initial_spread, check_box, check_knot_fields, horizon_of,
                                       knots_of, resolved_knots, sample_costs)
from trajopt.methods.base import as_count, as_float, decision_objective, decision_rollouts

INSTALL = "pip install 'trajopt-alpha[evosax]'"
TESTED_VERSION = "0.3.2"


def _algorithms() -> dict:
    """evosax's distribution-based algorithms {name: class}; ValueError (one sentence) without evosax."""
    try:
        from evosax.algorithms import distribution_based_algorithms
    except ImportError as e:
        raise ValueError(f"the evosax method needs the optional package evosax ({INSTALL}; tested with evosax "
                         f"{TESTED_VERSION}): {e}") from None
    return dict(distribution_based_algorithms)


@functools.lru_cache(maxsize=None)
def strategies() -> tuple[str, ...]:
    """The names of the strategies this method runs: evosax's distribution-based algorithms whose constructor needs
    nothing but a population size and a solution."""
    out = []
    for name, cls in _algorithms().items():
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        if all(p.default is not inspect.Parameter.empty for p in params if p.name not in ("population_size", "solution")):
            out.append(name)
    return tuple(sorted(out))


@functools.lru_cache(maxsize=256)
def _build(strategy: str, population: int, dims: int, sigma: float, learning_rate: float):
    """(evosax strategy object, its params) for a d = K m dimensional search (cached: evosax's jitted methods take
    the object as a static argument, so one object per configuration). Built with concrete arrays even when first
    asked for inside a trace (`init` under `solve`'s jit): a cached tracer would leak into later programs."""
    import optax

    cls = _algorithms()[strategy]
    signature = inspect.signature(cls.__init__).parameters
    kwargs = {}
    if "std_schedule" in signature:
        kwargs["std_schedule"] = optax.constant_schedule(sigma)
    if "optimizer" in signature and learning_rate > 0:
        kwargs["optimizer"] = optax.adam(learning_rate)
    with jax.ensure_compile_time_eval():
        es = cls(population_size=population, solution=jnp.zeros(dims), **kwargs)
        params = es.default_params
        if hasattr(params, "std_init"):
            params = params.replace(std_init=jnp.asarray(sigma, dtype=jnp.result_type(float)))
    return es, params


class EvosaxState(NamedTuple):
    """U: [T, m] the iterate, the controls of the strategy's mean; knots: [K, m] the mean's knot values (clipped);
    es: evosax's state of the strategy (a pytree)."""

    U: Array
    knots: Array
    es: Any


class EvosaxInfo(NamedTuple):
    """value f(U); rollouts = population × B; gradients = 0; best_cost: the generation's lowest cost; mean_cost:
    the generation's mean finite cost."""

    value: Array
    rollouts: Array
    gradients: Array
    best_cost: Array
    mean_cost: Array


@dataclass(frozen=True)
class Evosax(OnKnots):
    """strategy: an evosax distribution-based algorithm's name ("CMA_ES", "Sep_CMA_ES", "Open_ES", "SNES", ...);
    population: N per generation; sigma_init: the initial step size (0: sigma_box × (u_max − u_min) with a finite
    box, else 0.5); sigma_box: that share of the box; learning_rate: Adam's step for a strategy with an optimiser (0:
    the strategy's own); knots: K knots of the sequence (1..T; 0: min(20, T)); interpolation: zero | linear | cubic;
    u_min, u_max: box limits on every control coordinate. See the module docstring."""

    strategy: str = "CMA_ES"
    population: int = 64
    sigma_init: float = 0.0
    sigma_box: float = 0.5
    learning_rate: float = 0.0
    knots: int = 0
    interpolation: str = "cubic"
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "evosax"

    def __post_init__(self):
        names = strategies()
        if self.strategy not in names:
            raise FieldError("strategy", self.strategy, f"one of {', '.join(names)} (evosax's distribution-based "
                                                        "algorithms)")
        checks.at_least("population", self.population, 2)
        checks.non_negative("sigma_init", self.sigma_init)
        checks.positive("sigma_box", self.sigma_box)
        checks.non_negative("learning_rate", self.learning_rate)
        check_knot_fields(self.knots, self.interpolation)
        check_box(self.u_min, self.u_max)
        try:  # the strategy's own requirements on the population (OpenAI-ES: even)
            _build(self.strategy, self.population, 2, self.initial_sigma, self.learning_rate)
        except AssertionError as e:
            raise FieldError("population", self.population, f"a population {self.strategy} accepts ({e})") from None

    @property
    def initial_sigma(self) -> float:
        """The initial step size: sigma_init if set (> 0), else sigma_box × (u_max − u_min) with a finite box, else
        0.5."""
        return initial_spread(self.sigma_init, self.sigma_box, self.u_min, self.u_max)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: population × B, 0 (fixed, for equal-budget comparisons)."""
        return self.population * decision_rollouts(problem), 0

    def _strategy(self, knots: Array):
        return _build(self.strategy, self.population, int(knots.size), self.initial_sigma, self.learning_rate)

    def init(self, key: Array, problem, U0: Array) -> EvosaxState:
        self.check(problem)
        knots = knots_of(jnp.clip(U0, self.u_min, self.u_max), resolved_knots(self.knots, problem))
        es, params = self._strategy(knots)
        state = es.init(key, knots.reshape(-1), params)
        # evosax starts its record of the best at NaN / inf: kept finite (the generation's best replaces it each step)
        state = state.replace(best_solution=knots.reshape(-1), best_fitness=jnp.asarray(0.0, knots.dtype))
        return EvosaxState(U=self._controls(knots, horizon_of(problem)), knots=knots, es=state)

    def warm_start(self, key: Array, problem, state: EvosaxState, U: Array, shift: int) -> EvosaxState:
        """The next replan's state (`trajopt.closedloop`): the strategy's state with its mean at the shifted plan's
        knots (see the module docstring)."""
        del key, shift
        self.check(problem)
        knots = knots_of(jnp.clip(U, self.u_min, self.u_max), state.knots.shape[0])
        es = state.es.replace(mean=knots.reshape(-1).astype(state.es.mean.dtype))
        return EvosaxState(U=self._controls(knots, horizon_of(problem)), knots=knots, es=es)

    def step(self, key: Array, problem, state: EvosaxState) -> tuple[EvosaxState, EvosaxInfo]:
        U, y = state.U, state.knots
        T, (K, m) = U.shape[0], y.shape
        es, params = self._strategy(y)
        value = problem.objective(U)  # reported only
        k_ask, k_tell = jax.random.split(key)
        population, es_state = es.ask(k_ask, state.es, params)
        knots = jnp.clip(population.reshape(self.population, K, m).astype(y.dtype), self.u_min, self.u_max)
        costs = sample_costs(decision_objective(problem, key), self._controls(knots, T))
        flat = knots.reshape(self.population, K * m)
        es_state, _ = es.tell(k_tell, flat, costs, es_state, params)
        best = jnp.argmin(costs)
        es_state = es_state.replace(best_solution=flat[best], best_fitness=costs[best])
        y_new = jnp.clip(es_state.mean.reshape(K, m).astype(y.dtype), self.u_min, self.u_max)
        finite = jnp.isfinite(costs)
        mean_cost = jnp.sum(jnp.where(finite, costs, 0.0)) / jnp.maximum(jnp.sum(finite), 1)
        return EvosaxState(U=self._controls(y_new, T), knots=y_new, es=es_state), EvosaxInfo(
            value=as_float(value), rollouts=as_count(self.calls(problem)[0]), gradients=as_count(0),
            best_cost=as_float(costs[best]), mean_cost=as_float(mean_cost))
