"""`MultiStart`: K starts of one method run side by side; the decision is the start with the lowest cost.

    U_i^0 = U0 + start_spread * eps_i,   eps_i ~ N(0, I)        (i = 0..K-1, one draw per start and seed)
    U_i^{k+1} = the method's step from U_i^k, with key fold_in(key_k, i)
    b_k = argmin_i f(U_i^k)   over the starts still running (a start whose step is not finite stops there)
    the decision: U0 before the first step, then U_{b_k}^{k+1} after step k

So the value step k reports is f of the decision it started from (the method contract's rule): f(U0) at step 0
(evaluated once at ``init``, for the record only, as every method's first value is), then f(U_{b_{k-1}}^k), the
cost the start computed itself. A local method on a landscape with several basins (stiff pushing's numbers of
pushes) ends in one of them by chance; K independent starts, the best kept, miss the best basin only when all
K do.

**Counts.** A step spends the K starts' rollouts and backward passes, plus one rollout per start for the cost
f(U_i^k) the choice compares, unless the method's own counted rollouts already evaluate f at its iterate
(``value_in_calls``: exact gradients, whose rollout is f(U)'s). A stopped start spends nothing.

**Spread.** With ``start_spread = 0`` every start begins at U0 and the starts differ only through their keys: a
deterministic method (exact gradients, finite differences, iLQR, L-BFGS: a ``deterministic`` flag) would run K
identical copies, so it needs ``start_spread > 0``, which is in the decision's units.

**Non-finite steps.** A start whose cost or new state is not finite stops and is never chosen again; the seed
goes on with the others. The seed stops (`solve`'s status ``non_finite``, its last decision with a finite cost kept)
only when the chosen start's next cost is not finite, or every start has stopped.

A variant asks for it with ``starts = K`` (and ``start_spread``) in its ``[variants.NAME]`` table, for any
oracle or method; ``starts = 1`` with no spread is the method itself. The info records ``start`` (whose cost
``value`` is; -1 for U0) and ``running`` (how many starts are still running) beside the method's own fields.
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
from trajopt.methods.base import REQUIRED_INFO, as_count, as_float, state_decision

MAX_STARTS = 1024
DETERMINISTIC_HINT = "a deterministic method"


class MultiStartState(NamedTuple):
    """U: [T, m] the decision (start ``best``'s newest iterate, or U0 while ``best`` is -1); starts: the method's
    state of each start, every leaf with a leading axis K; running: [K] bool, the starts whose steps have stayed
    finite; best: the start whose iterate U is (int32); initial: f(U0), the first value reported."""

    U: Array
    starts: Any
    running: Array
    best: Array
    initial: Array


@lru_cache(maxsize=None)
def info_type(method_fields: tuple[str, ...]) -> type:
    """The info NamedTuple of K starts of a method whose info has ``method_fields``: value, rollouts, gradients
    (the K starts' together), the method's other fields (of the start whose cost ``value`` is), then ``start``
    (that start's index) and ``running`` (how many starts are still running)."""
    rest = [f for f in method_fields if f not in REQUIRED_INFO and f not in ("start", "running")]
    return namedtuple("MultiStartInfo", [*REQUIRED_INFO, *rest, "start", "running"])


def _finite_each(tree) -> Array:
    """[K] whether every floating leaf of each start's state is finite."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    each = [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves]
    return jnp.all(jnp.stack(each), axis=0)


def method_name(method) -> str:
    """The oracle's name for a gradient method, else the method's."""
    oracle = getattr(method, "oracle", None)
    return getattr(oracle, "name", None) or getattr(method, "name", type(method).__name__)


@dataclass(frozen=True)
class MultiStart:
    """method: the method each start runs (any `trajopt.methods` configuration); starts: K >= 1; start_spread: the
    standard deviation of each start's Gaussian offset from U0 (>= 0). See the module docstring."""

    method: Any
    starts: int = 2
    start_spread: float = 0.0
    name: ClassVar[str] = "multistart"
    value_in_calls: ClassVar[bool] = True  # the cost it reports is one of the costs it has counted

    def __post_init__(self):
        if not (callable(getattr(self.method, "init", None)) and callable(getattr(self.method, "step", None))):
            raise TypeError(f"MultiStart: method must have init and step; got {type(self.method).__name__}")
        if isinstance(self.starts, bool) or not isinstance(self.starts, int) or not 1 <= self.starts <= MAX_STARTS:
            raise checks.FieldError("starts", self.starts, f"an integer in 1..{MAX_STARTS}")
        checks.non_negative("start_spread", self.start_spread)
        if self.starts > 1 and self.start_spread == 0 and getattr(self.method, "deterministic", False):
            raise checks.FieldError("start_spread", self.start_spread,
                                    f"a number > 0 for {self.starts} starts of {method_name(self.method)!r}, "
                                    f"{DETERMINISTIC_HINT}: from one U0 every start would be the same run")

    @property
    def deterministic(self) -> bool:
        return bool(getattr(self.method, "deterministic", False)) and self.start_spread == 0

    def _extra(self) -> int:
        """Rollouts per start and step for the cost the choice compares: none when the method's own include it."""
        return 0 if getattr(self.method, "value_in_calls", False) else 1

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: K times the method's, plus K rollouts for the costs the choice
        compares unless the method's own rollouts include them."""
        rollouts, gradients = self.method.calls(problem)
        return self.starts * (rollouts + self._extra()), self.starts * gradients

    def init(self, key: Array, problem, U0: Array) -> MultiStartState:
        k_method, k_offset = jax.random.split(key)
        U0 = jnp.asarray(U0)
        offsets = jax.random.normal(k_offset, (self.starts, *U0.shape), U0.dtype)
        U0s = U0 + self.start_spread * offsets
        states = jax.vmap(lambda k, U: self.method.init(k, problem, U))(jax.random.split(k_method, self.starts), U0s)
        return MultiStartState(U=U0, starts=states, running=jnp.ones(self.starts, bool),
                               best=jnp.asarray(-1, jnp.int32), initial=as_float(problem.objective(U0)))

    def step(self, key: Array, problem, state: MultiStartState):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(self.starts))
        new, info = jax.vmap(lambda k, s: self.method.step(k, problem, s))(keys, state.starts)
        value = info.value  # [K] f(U_i^k), each start's iterate on entry
        ok = state.running & jnp.isfinite(value) & _finite_each(new)
        starts = jax.tree_util.tree_map(
            lambda n, o: jnp.where(ok.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, state.starts)
        # the next decision: the lowest cost among the starts still running; none left is a blow-up, which
        # `solve` reports (a non-finite decision: status non_finite, the last decision with a finite cost kept)
        best = jnp.argmin(jnp.where(ok, value, jnp.inf)).astype(jnp.int32)
        U = jnp.where(jnp.any(ok), state_decision(starts)[best], jnp.nan)
        spent = state.running.astype(jnp.int32)  # a stopped start spends nothing (its step is computed, not used)
        kind = info_type(tuple(info._fields))
        first = state.best < 0  # the decision is U0, which no start is (with a spread)
        pick = lambda x: x[jnp.maximum(state.best, 0)]  # the start whose iterate this step's value is f of
        fields = {f: pick(getattr(info, f)) for f in kind._fields if f not in ("start", "running", *REQUIRED_INFO)}
        out = kind(**fields, value=jnp.where(first, state.initial, pick(value)),
                   rollouts=as_count(jnp.sum(spent * (info.rollouts + self._extra()))),
                   gradients=as_count(jnp.sum(spent * info.gradients)),
                   start=state.best, running=as_count(jnp.sum(ok)))
        return MultiStartState(U=U, starts=starts, running=ok, best=best,
                               initial=state.initial), out
