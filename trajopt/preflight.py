"""The preflight: whether a validated problem file's variants (or oracles) can run on its problem, checked before
anything compiles, runs or is written.

A file can be valid table by table and still not run: iLQR on a policy problem, rollouts of one step that would
hold terabytes, or a user's system or method that fails when traced under ``vmap`` and ``jax.grad``.
`check_variants` (solve, compare, mpc, study) and `check_oracles` (diagnose, sweep, landscape) refuse each with a
`SpecError` at ``variants.NAME`` / ``oracle.NAME``: the method's own applicability rule
(`trajopt.methods.base.check_applicable`), the working-set bound (`check_working_set`, `MAX_WORKING_SET` bytes of
rollout states per step), and a trace of one step of the user's code with `jax.eval_shape` (nothing compiled or
computed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

import jax
import jax.numpy as jnp

from trajopt.checks import FieldError
from trajopt.methods.base import REQUIRED_INFO, check_applicable, state_decision
from trajopt.tables import first_line
from trajopt.tomlio import SpecError

if TYPE_CHECKING:  # annotations only: the spec module imports this one
    from trajopt.spec import Spec

MAX_WORKING_SET = 1 << 34    # bytes: 16 GiB of rollout states per step (`check_working_set`)
TRACE_ALLOWED = ("pure JAX functions that trace under jax.vmap and jax.grad (jnp.where or lax.cond for a choice on a "
                 "value; lax.scan or a fori_loop with fixed bounds for a loop: lax.while_loop has no reverse-mode "
                 "gradient)")


def user_code(spec: "Spec", kind: str, base: str) -> list[str]:
    """The user's code (``package.module:Name`` in the file) among what a step of the oracle or method ``base``
    (``kind`` "oracle" or "method") runs on this spec's problem: its system, its policy and initial-state
    distribution (policy problems), and ``base`` itself; e.g. ``["system 'my:Arm'"]``."""
    parts = [("system", spec.system_name)]
    if spec.policy is not None:
        parts += [("policy", spec.policy.policy_name), ("initial_state", spec.policy.initial_name)]
    parts.append((kind, base))
    return [f"{what} {name!r}" for what, name in parts if ":" in name]


class _Contract(TypeError):
    """A method's step that traces but breaks the method contract the loop relies on."""


def _traced_step(method: Any, problem: Any, n_seeds: int) -> None:
    """One ``init`` and one ``step`` of a method traced abstractly, as the solver's loop traces them: under
    ``vmap`` over ``n_seeds`` seeds (an oracle's ``jax.grad`` inside), with `jax.eval_shape` (nothing is compiled
    or computed). Raises what the traced code raises; `_Contract` when the info lacks a required scalar or the
    state the step returns differs from the one ``init`` made (the loop carries it)."""

    def first_step(key):
        seed_keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(n_seeds))
        U0 = jnp.broadcast_to(problem.U0, (n_seeds, *problem.U0.shape))

        def one(seed_key, U):
            state = method.init(seed_key, problem, U)
            state_decision(state)
            new, info = method.step(jax.random.fold_in(seed_key, 0), problem, state)
            return state, new, info

        return jax.vmap(one)(seed_keys, U0)

    state, new, info = jax.eval_shape(first_step, jax.eval_shape(jax.random.PRNGKey, 0))
    fields = getattr(info, "_fields", None)
    if fields is None or any(f not in fields or getattr(info, f).shape != (n_seeds,) for f in REQUIRED_INFO):
        raise _Contract(f"step returned an info without the scalars {', '.join(REQUIRED_INFO)}")
    shapes = lambda tree: [(s.shape, s.dtype) for s in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    if jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(new) or shapes(state) != shapes(new):
        raise _Contract("step returned a state of another structure, shape or dtype than init's")


def _traced_estimate(oracle: Any, problem: Any, repeats: int = 2) -> None:
    """One gradient estimate of an oracle at U0 traced abstractly under ``vmap`` over keys, as sweep, landscape
    and diagnose trace their repeats (`jax.eval_shape`: nothing is compiled or computed)."""

    def estimates(key):
        keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(repeats))
        return jax.vmap(lambda k: oracle.estimate(k, problem, problem.U0))(keys)

    jax.eval_shape(estimates, jax.eval_shape(jax.random.PRNGKey, 0))


def _trace_refused(spec: "Spec", key: str, what: str, how: str, mine: list[str], e: Exception) -> SpecError:
    return SpecError(spec.source, key, f"found {type(e).__name__} in {' or '.join(mine)} when {what} was traced as "
                     f"the run traces it ({how}): {first_line(e).rstrip('.')}; allowed: {TRACE_ALLOWED}")


def rollouts_per_step(method: Any, problem: Any) -> Optional[int]:
    """The rollouts one step of ``method`` spends on ``problem`` when that is fixed (its ``calls``), else None."""
    calls = getattr(method, "calls", None)
    try:
        return int(calls(problem)[0]) if callable(calls) else None
    except (AttributeError, TypeError, ValueError):  # an oracle without a fixed count, a method that does not apply
        return None


def check_working_set(spec: "Spec", batches: Mapping[str, tuple[int, str]], problem: Any = None) -> None:
    """Refuse (SpecError at the key given) a run whose rollouts of one step would hold more than `MAX_WORKING_SET`
    bytes of states: batch x horizon x (state size + control size) x 8 bytes, ``batches`` {key: (batch, what the
    batch is)}, e.g. {"variants.zobg": (seeds x rollouts per step, "...")}. The rollouts of a step run side by
    side (vmap) and a differentiated one keeps its states, so samples = 1e6 on a horizon of 1e5 would ask for
    terabytes: refused here, before anything is allocated."""
    problem = spec.problem() if problem is None else problem
    horizon = int(spec.task.horizon)
    width = int(getattr(spec.system, "state_size", 0)) + int(getattr(spec.system, "control_size", 0))
    for key, (batch, what) in batches.items():
        size = batch * horizon * width * 8
        if size > MAX_WORKING_SET:
            raise SpecError(spec.source, key, f"found {what} = {batch:,} rollouts x horizon {horizon:,} x (state + "
                            f"control size) {width} x 8 bytes = {size:.3g} bytes of rollout states per step, allowed: "
                            f"at most {MAX_WORKING_SET:.3g} bytes ({MAX_WORKING_SET >> 30} GiB; fewer rollouts side by "
                            "side, or a shorter horizon)")


def _check_variant_sizes(spec: "Spec", problem: Any) -> None:
    """`check_working_set` for the selected variants: seeds x the rollouts each step spends (its ``calls``; 1 for a
    method without a fixed count)."""
    seeds = len(spec.solve.seeds)
    batches = {}
    for name, v in spec.variants.items():
        per_step = rollouts_per_step(v.method, problem) or 1
        batches[f"variants.{name}"] = (seeds * per_step, f"{seeds} seeds (solve.seeds) x {per_step:,} rollouts per step")
    check_working_set(spec, batches, problem)


def check_variants(spec: "Spec", problem: Any = None, *, trace: bool = True) -> None:
    """Every selected variant against the problem, before anything compiles or runs; a `SpecError` at
    ``variants.NAME`` for the first that cannot run.

    First each variant's method is asked whether it applies (`trajopt.methods.base.check_applicable`: iLQR needs
    a time-stepped open-loop problem), and the rollouts of one step must fit `MAX_WORKING_SET` (seeds x rollouts
    per step x horizon: `check_working_set`). Then, with ``trace``, one step of each variant that runs user code
    (`user_code`) is traced as the run will trace it (`_traced_step`: `jax.eval_shape`, no compilation): a
    system, policy or method that fails under ``vmap`` and ``jax.grad`` (a Python ``if`` on a value, a
    ``lax.while_loop`` differentiated in reverse mode, a callback without a vmap rule) is refused with the first
    line of its error, instead of a traceback after the variants before it have run. The library's own
    systems, policies, oracles and methods trace (their tests run them), so a file of them is not traced twice:
    a step's trace is about a tenth of a second, several percent of a short compare."""
    problem = spec.problem() if problem is None else problem
    for name, v in spec.variants.items():
        try:
            check_applicable(v.method, problem)
        except FieldError as e:  # a key of the variant's table that does not fit the problem (a sampler's knots)
            raise SpecError(spec.source, f"variants.{name}.{e.field}", f"found {e.found!r}, allowed: {e.allowed}") from None
        except ValueError as e:
            raise SpecError(spec.source, f"variants.{name}", first_line(e)) from None
    _check_variant_sizes(spec, problem)  # seeds x rollouts per step x horizon: refused before anything is allocated
    if not trace:
        return
    for name, v in spec.variants.items():
        mine = user_code(spec, v.kind, v.base)
        if mine:
            try:
                _traced_step(v.method, problem, len(spec.solve.seeds))
            except _Contract as e:
                raise SpecError(spec.source, f"variants.{name}", f"found {v.kind} {v.base!r} whose {e}, allowed: a "
                                "step that returns (state, info), the state as init made it and the info with the "
                                "scalars value, rollouts and gradients (the method contract, trajopt.methods.base)"
                                ) from None
            except Exception as e:  # noqa: BLE001  user code under tracing: whatever it raised
                raise _trace_refused(spec, f"variants.{name}", f"one step of {name}",
                                     "under vmap over seeds, with the oracle's gradients", mine, e) from None


def check_oracles(spec: "Spec", problem: Any = None, *, trace: bool = True) -> None:
    """`check_variants` for the oracle-level studies (diagnose, sweep, landscape): every oracle of
    ``solve.oracles`` applies to the problem, and, with ``trace``, one estimate of each that runs user code traces
    under ``vmap`` over repeats (`_traced_estimate`). A `SpecError` at ``oracle.NAME``."""
    problem = spec.problem() if problem is None else problem
    for name, oracle in spec.oracles.items():
        try:
            check_applicable(oracle, problem)
        except ValueError as e:
            raise SpecError(spec.source, f"oracle.{name}", first_line(e)) from None
        mine = user_code(spec, "oracle", name) if trace else []
        if mine:
            try:
                _traced_estimate(oracle, problem)
            except Exception as e:  # noqa: BLE001  user code under tracing: whatever it raised
                raise _trace_refused(spec, f"oracle.{name}", f"one estimate of {name}", "under vmap over repeats",
                                     mine, e) from None
