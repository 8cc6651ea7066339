"""The method contract: what `trajopt.solve` iterates.

A method is an immutable, hashable configuration (a frozen dataclass) with two pure functions, in the spirit
of optax's ``GradientTransformation`` and evosax's ask/tell:

    init(key, problem, U0) -> state
    step(key, problem, state) -> (state, info)

* ``state`` is a pytree (usually a NamedTuple) with a field ``U``: the current decision, shape
  ``problem.shape`` (``[T, m]``). Everything else the method carries lives beside it: optimiser moments,
  a sampling distribution, a regularisation weight, a stopping flag.
* ``info`` is the method's own NamedTuple of scalars. It always has

    - ``value``: f(U) of the iterate the step *started from* (``state.U`` on entry), the noise-free cost,
    - ``rollouts``: forward simulator rollouts the step spent (int32),
    - ``gradients``: backward passes (vector-Jacobian products through the rollout) the step spent (int32),

  optionally ``linearizations``: the Jacobians of the one-step map at the T points of a rollout the step
  evaluated (int32; iLQR's one per step; absent means 0), and any other scalar diagnostics the method has (α,
  variances, a line-search step, a stop reason). Counts
  are honest: every rollout the method uses to decide its next iterate is counted; evaluating f(U) only to
  report ``value`` is not (the oracle contract's rule). They are a seed's own, whatever the batch: under ``vmap``
  (seeds, MultiStart's starts) a loop whose trip count differs between elements runs as long as the longest, and
  both sides of a data-dependent branch run, so the hardware evaluates more than is counted (L-BFGS's zoom line
  search under `solve`'s vmap, even of one seed: 5 evaluations executed for the 3 a measured step used; iLQR's
  line search as long as the batch's longest).
* **Two objectives** (the Problem contract, `trajopt.problem`): ``value`` is ``problem.objective(U)``, the
  reported cost (on a policy problem: over its fixed evaluation batch). What a method compares or descends is
  the *decision objective* ``decision_objective(problem, key)`` (the function this module re-exports), and
  each evaluation of it costs ``decision_rollouts(problem)`` rollouts, which the method counts. A method draws
  it once per step from its step key, so every candidate of the step sees the same training batch (common
  random numbers), or with ``key = None`` when it needs one fixed function (L-BFGS). On an open-loop problem
  the two objectives are one function (``decision_is_objective(problem)``): a method evaluates f(U) once and
  may both report it and decide with it (then it counts it). On a policy problem the reported ``value`` is
  never what a method decided with, so it is never counted.
* Keys: ``init`` receives the seed's key ``fold_in(key, seed)``; step k receives ``fold_in(seed_key, k)``,
  so seed s draws the same noise alone or in a batch and any chunking of the loop gives the same iterates.
* Purity: no Python side effects, no host callbacks, no data-dependent Python control flow; ``step`` runs
  inside ``lax.scan`` under ``vmap``.

A method that has converged (iLQR on a tolerance, say) keeps returning its state unchanged and spends no
simulator calls. **Optional** ``stopped(state) -> bool scalar`` says so: True promises that ``step`` returns that
state unchanged, spends nothing (every count 0) and reports the same info at every later step, whatever the key.
`solve` then stops stepping the seed (a seed over its compute budget, or non-finite, is stopped too), and when
every seed has stopped it runs no further chunk: the rest of the history repeats the seed's last row, which is
what the method would have reported (iLQR has it; a method without one is never taken as stopped). `solve` stops
a seed whose ``value`` or new state is not finite (status ``non_finite``) and keeps the last iterate with a
finite cost.

Optional flags, read by `trajopt.methods.MultiStart` (K starts of a method): ``deterministic`` (its steps ignore
the key, so K starts from one U0 would be one run: exact and fd gradients, iLQR, L-BFGS; `trajopt.compare`
also runs such a method once and shares its result among the seeds) and ``value_in_calls``
(on a problem whose decision objective is its objective, the rollouts it counts include f of its iterate, the
``value`` it reports, so comparing starts costs nothing more: exact gradients, the one-sided ZoBG and the mixing
oracles, predictive sampling, iLQR, L-BFGS). A method without them is taken as stochastic and as not counting
f(U).

Optional members: ``calls(problem) -> (rollouts, backward passes)`` (or three numbers, with linearizations), the
calls one step spends when that is fixed (equal-budget comparisons in forward-step equivalents,
`trajopt.compute`; it must agree with what the step counts; a method without one has a variable cost and runs
under a budget until its spend reaches it), ``stopped(state)`` (above) and ``check(problem)``, which raises
ValueError with one sentence saying why the method cannot run on the problem (iLQR on anything but a
time-stepped problem, an open-loop oracle on a policy problem). `check_applicable` calls it; the CLI calls that
on every variant before anything compiles, and a method's ``init`` calls it too.

New methods: one module with the dataclass and one ``METHODS.register`` line in `trajopt.methods`; the
dataclass fields (ints, floats, bools, strings) are the keys of its TOML table (``[method.<name>]`` or a
``[variants.NAME]`` table with ``method = "<name>"``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax import Array

from trajopt.problem import Problem, decision_is_objective, decision_objective, decision_rollouts, problem_kind

__all__ = ["REQUIRED_INFO", "COUNT_FIELDS", "Method", "as_float", "as_count", "check_info", "check_applicable",
           "all_finite",
           "state_decision", "decision_objective", "decision_rollouts", "decision_is_objective", "problem_kind", "method_label"]

REQUIRED_INFO = ("value", "rollouts", "gradients")
COUNT_FIELDS = ("rollouts", "gradients", "linearizations")  # the simulator calls an info may count (the last optional)


class Method(Protocol):
    """Structural type of a method configuration (see the module docstring)."""

    name: str

    def init(self, key: Array, problem: Problem, U0: Array) -> Any: ...

    def step(self, key: Array, problem: Problem, state: Any) -> tuple[Any, NamedTuple]: ...


def check_applicable(method: Any, problem: Any) -> None:
    """Raise ValueError with one sentence saying why ``method`` cannot run on ``problem``, before anything compiles:
    the method's own optional ``check(problem)`` (the rule lives on its owner; `trajopt.methods.MultiStart` forwards
    to its method, `trajopt.methods.GradientMethod` to its oracle). A method without one applies everywhere. First the
    problem's system may refuse the method (its optional ``check_method(method, problem)``: an mjx system on MuJoCo's
    C simulator refuses a method that needs derivatives)."""
    refuse = getattr(getattr(problem, "system", None), "check_method", None)
    if callable(refuse):
        refuse(method, problem)
    check = getattr(method, "check", None)
    if callable(check):
        check(problem)


def as_float(v) -> Array:
    """A scalar in the working float dtype (float64 by default)."""
    return jnp.asarray(v, dtype=jnp.result_type(float))


def as_count(v) -> Array:
    """A simulator-call count as int32."""
    return jnp.asarray(v, dtype=jnp.int32)


def check_info(info: Any, method_name: str) -> None:
    """Raise TypeError unless ``info`` is a NamedTuple of scalars with the required fields."""
    fields = getattr(info, "_fields", None)
    if fields is None:
        raise TypeError(f"method {method_name!r}: step must return (state, info) with info a NamedTuple, "
                        f"got {type(info).__name__}")
    missing = [f for f in REQUIRED_INFO if f not in fields]
    if missing:
        raise TypeError(f"method {method_name!r}: info lacks {', '.join(missing)}; it needs {', '.join(REQUIRED_INFO)}")
    for f in fields:
        shape = jnp.shape(getattr(info, f))
        if shape != ():
            raise TypeError(f"method {method_name!r}: info.{f} has shape {list(shape)}, allowed: a scalar")


def all_finite(tree: Any) -> Array:
    """Whether every floating-point leaf of a pytree is finite (a bool scalar; True for a tree without any)."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def state_decision(state: Any) -> Array:
    """The current decision U of a method's state (its ``U`` field)."""
    try:
        return state.U
    except AttributeError:
        raise TypeError(f"a method's state needs a field U (the current decision); got {type(state).__name__}") from None


def method_label(method) -> str:
    """A default label: the method's registry name, or for a gradient method its oracle's; K starts of a method
    (`MultiStart`) are its label and "_xK" ("exact_x8")."""
    starts = getattr(method, "starts", None)
    if isinstance(starts, int) and callable(getattr(getattr(method, "method", None), "step", None)):
        return f"{method_label(method.method)}_x{starts}"
    oracle = getattr(method, "oracle", None)
    if oracle is not None:
        return getattr(oracle, "name", type(oracle).__name__)
    return getattr(method, "name", type(method).__name__)
