"""`MultiStart`: K starts of one method run side by side; the decision is the start with the lowest cost.

    U_i^0 = U0 + start_spread * eps_i,   eps_i ~ N(0, I)        (i = 0..K-1, one draw per start and seed)
    U_i^{k+1} = the method's step from U_i^k, with key fold_in(key_k, i)
    b_k = argmin_i c(U_i^k)   over the starts running at step k whose costs are finite
    the decision: U0 before the first step, then U_{b_k}^k after step k

c is the problem's decision objective (`trajopt.methods.base`) with the step's key, one function for all the
starts: on an open-loop problem f itself, on a policy problem the mean closed-loop cost over one training batch
shared by the K starts (never the evaluation batch the results are reported on).

On an open-loop problem step k compares the costs f(U_i^k) its starts computed (their ``value``), so the decision
after it is an iterate whose cost is known and finite, and the value step k + 1 reports, f of the decision it
began from, is that lowest cost (the method contract's rule); on a policy problem it reports the chosen start's
``value`` (the evaluation batch's cost) and compares on the training batch. Step 0 reports f(U0), evaluated once at
``init`` for the record, as every method's first value is. The decision trails the starts by one step: the last step's update is not returned. A local
method on a landscape with several basins (stiff pushing's numbers of pushes) ends in one of them by chance; K
independent starts, the best kept, miss the best basin only when all K do.

**Counts.** A step spends the K starts' rollouts and backward passes, plus, per start, the rollouts of one
evaluation of the decision objective (``decision_rollouts``: 1 open loop, a policy problem's training batch) for
the cost the choice compares, unless the problem is open-loop and the method's own counted rollouts already
evaluate f at its iterate (its ``value_in_calls`` flag: exact gradients, the one-sided ZoBG and the mixing
oracles, predictive sampling, iLQR, L-BFGS). A stopped start spends nothing. The K starts' own ``value`` on a
policy problem (each method's report, over the evaluation batch) is not counted.

**Spread.** With ``start_spread = 0`` every start begins at U0 and the starts differ only through their keys: a
deterministic method (exact gradients, finite differences, iLQR, L-BFGS: a ``deterministic`` flag) would run K
identical copies, so it needs ``start_spread > 0``, which is in the decision's units.

**Blow-ups.** A start whose cost or new state is not finite stops and is not chosen again; the others go on. When
every start has stopped, the decision is not finite either and `solve` stops the seed (status ``non_finite``,
its last decision with a finite cost kept).

On a policy problem the starts are compared on a training batch, not on the evaluation batch that the reported
cost uses, so the kept start's reported cost is not selected on the batch it is reported on.

A variant asks for it with ``starts = K`` (and ``start_spread``) in its ``[variants.NAME]`` table, for any
oracle or method; ``starts = 1`` with no spread is the method itself. The info of step k has ``value`` (f of the
decision the step began from), the method's own fields of the start chosen at step k, ``start`` (that start:
its iterate is the next decision) and ``running`` (how many starts still run). A seed's rows after it stopped
record 0 in both, as in every count.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.methods._batching import per_element, vectorised
from trajopt.methods.base import (REQUIRED_INFO, all_finite, as_count, as_float, check_applicable, decision_is_objective,
                                  decision_objective, decision_rollouts, method_label, state_decision)

MAX_STARTS = 1024
OWN_FIELDS = ("start", "running")


class MultiStartState(NamedTuple):
    """U: [T, m] the decision (U0, then the iterate with the lowest cost the last step compared); value: f(U),
    its reported cost, known; starts: the method's state of each start, every leaf with a leading axis K; running: [K] bool, the
    starts whose steps have stayed finite."""

    U: Array
    value: Array
    starts: Any
    running: Array


@lru_cache(maxsize=None)
def info_type(method_fields: tuple[str, ...]) -> type:
    """The info NamedTuple of K starts of a method whose info has ``method_fields``: value, rollouts, gradients
    (the K starts' together), the method's other fields (of the start chosen), then ``start`` and ``running``."""
    rest = [f for f in method_fields if f not in REQUIRED_INFO and f not in OWN_FIELDS]
    return namedtuple("MultiStartInfo", [*REQUIRED_INFO, *rest, *OWN_FIELDS])


@dataclass(frozen=True)
class MultiStart:
    """method: the method each start runs (any `trajopt.methods` configuration); starts: K >= 1; start_spread: the
    standard deviation of each start's Gaussian offset from U0 (>= 0). See the module docstring."""

    method: Any
    starts: int = 2
    start_spread: float = 0.0
    name: ClassVar[str] = "multistart"
    value_in_calls: ClassVar[bool] = True  # open loop: the cost it reports is one it compared and counted

    def __post_init__(self):
        if not (callable(getattr(self.method, "init", None)) and callable(getattr(self.method, "step", None))):
            raise TypeError(f"MultiStart: method must have init and step; got {type(self.method).__name__}")
        if isinstance(self.starts, bool) or not isinstance(self.starts, int) or not 1 <= self.starts <= MAX_STARTS:
            raise checks.FieldError("starts", self.starts, f"an integer in 1..{MAX_STARTS}")
        checks.non_negative("start_spread", self.start_spread)
        if self.starts > 1 and self.start_spread == 0 and getattr(self.method, "deterministic", False):
            raise checks.FieldError("start_spread", self.start_spread,
                                    f"a number > 0 for {self.starts} starts of {method_label(self.method)!r}, a "
                                    "deterministic method: from one U0 every start would be the same run")

    def check(self, problem) -> None:
        """Raise ValueError when its method cannot run on the problem (the method's own ``check``)."""
        check_applicable(self.method, problem)

    @property
    def deterministic(self) -> bool:
        return bool(getattr(self.method, "deterministic", False)) and self.start_spread == 0

    def _compare_rollouts(self, problem) -> int:
        """Rollouts per start and step for the cost the choice compares: one evaluation of the decision objective,
        none on an open-loop problem when the method's own counted rollouts include it."""
        if decision_is_objective(problem) and getattr(self.method, "value_in_calls", False):
            return 0
        return decision_rollouts(problem)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: K times the method's, plus K evaluations of the decision objective
        for the costs the choice compares unless the method's own rollouts include them (open loop)."""
        rollouts, gradients = self.method.calls(problem)
        return self.starts * (rollouts + self._compare_rollouts(problem)), self.starts * gradients

    def init(self, key: Array, problem, U0: Array) -> MultiStartState:
        k_method, k_offset = jax.random.split(key)
        U0 = jnp.asarray(U0)
        offsets = jax.random.normal(k_offset, (self.starts, *U0.shape), U0.dtype)
        U0s = U0 + self.start_spread * offsets
        states = jax.vmap(lambda k, U: self.method.init(k, problem, U))(jax.random.split(k_method, self.starts), U0s)
        return MultiStartState(U=U0, value=as_float(problem.objective(U0)), starts=states,
                               running=jnp.ones(self.starts, bool))

    def step(self, key: Array, problem, state: MultiStartState):
        # one seed at a time under `solve`'s vmap, its K starts one batch inside (`trajopt.methods._batching`): a seed's
        # starts are a batch of K alone and beside other seeds alike, so its iterates are the same
        return per_element(lambda key, state: self._step(key, problem, state))(key, state)

    def _step(self, key: Array, problem, state: MultiStartState):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(self.starts))
        with vectorised():  # the starts one batch (a fixed-cost step stays vectorised; iLQR and L-BFGS map them)
            new, info = jax.vmap(lambda k, s: self.method.step(k, problem, s))(keys, state.starts)
        value = info.value  # [K] f(U_i^k), each start's iterate on entry (reported)
        compared = state.running & jnp.isfinite(value)
        if decision_is_objective(problem):
            cost = value
        else:  # one training batch for the K starts (common random numbers), counted in _compare_rollouts
            cost = jax.vmap(decision_objective(problem, key))(state_decision(state.starts))
            compared = compared & jnp.isfinite(cost)
        running = compared & jax.vmap(all_finite)(new)
        best = jnp.argmin(jnp.where(compared, cost, jnp.inf)).astype(jnp.int32)
        # the decision: the start with the lowest compared cost, at the iterate it was compared at; once every
        # start has stopped, a blow-up `solve` reports (non-finite: status non_finite, the last good one kept)
        U = jnp.where(jnp.any(running), state_decision(state.starts)[best], jnp.nan)
        starts = jax.tree_util.tree_map(
            lambda n, o: jnp.where(running.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, state.starts)
        spent = state.running.astype(jnp.int32)  # a stopped start spends nothing (its step is computed, not used)
        kind = info_type(tuple(info._fields))
        fields = {f: getattr(info, f)[best] for f in kind._fields if f not in (*REQUIRED_INFO, *OWN_FIELDS)}
        if "linearizations" in fields:  # a count, like rollouts and gradients: the running starts' together
            fields["linearizations"] = as_count(jnp.sum(spent * info.linearizations))
        out = kind(**fields, value=state.value,
                   rollouts=as_count(jnp.sum(spent * (info.rollouts + self._compare_rollouts(problem)))),
                   gradients=as_count(jnp.sum(spent * info.gradients)), start=best, running=as_count(jnp.sum(running)))
        return MultiStartState(U=U, value=as_float(value[best]), starts=starts, running=running), out
