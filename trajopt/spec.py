"""TOML problem files -> validated, immutable specs: reads the file, applies the overrides, and hands each table
to the code that owns it.

A file has these top-level keys (see the README's TOML reference for every key), each validated by its owner:

    name, title, description  strings (name defaults to the file's stem; it names the run folder)    here
    [system]               name = "<registered system>" or "package.module:Class", plus its      trajopt.systems.table
                           parameters
    [task]                 horizon, x0, goal, Q, R, Qf, u_init, wrap (one-step systems: u_init)  trajopt.task
    [solve]                iterations, seeds, key, oracles, variants, chunk, on_non_finite        here
    [solve.optimizer]      name + parameters                                                     trajopt.optim
    [oracle]               scalar keys: defaults for every oracle that has that parameter;       trajopt.oracles.table
    [oracle.<name>]        parameters of one oracle
    [method.<name>]        parameters of one method (cem, ilqr, ...)                             trajopt.methods.variants
    [variants.<NAME>]      a named method configuration: ``oracle = "<oracle>"`` (with the file's [oracle]
                           options, overridable here, and an ``optimizer`` table) or ``method = "<method>"``
                           (with [method.<method>]'s options, overridable here)
    [policy], [initial_state], [success]  a closed-loop policy problem (its [task] too)            trajopt.policies.table
    [mpc], [plant], [success]  a time-stepped problem's closed-loop run (`trajopt mpc`)          trajopt.closedloop.tables

``--set KEY.PATH=VALUE`` overrides are applied to the decoded document before it is validated
(`trajopt.overrides`); what a validated file's variants need to run is checked by `trajopt.preflight`. The generic
checks every owner uses (types, unknown keys with the closest valid name, arrays) are `trajopt.tables`.

A variant name in ``solve.variants`` (or ``--variants``) is looked up as a ``[variants.NAME]`` table first,
then as an oracle (a gradient method with the file's optimiser), then as a method (with its defaults).

Every key is checked before anything compiles. A problem raises `SpecError`, which names the file, the
key path, what was found and what is allowed. Unknown keys are errors, with the closest valid name.

This module also re-exports the names that lived here before the tables moved to their owners (`Variant`,
`TaskSpec`, `check_variants`, `apply_overrides`, `key_type`, `unreached_override`, `check_system`, ...), so that
``from trajopt.spec import X`` keeps working.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trajopt.checks import FieldError
from trajopt.closedloop.success import Success
from trajopt.closedloop.tables import build_closed_loop
from trajopt.limits import MAX_HISTORY, MAX_ITERATIONS, MAX_SEED, MAX_SEEDS
from trajopt.methods import METHODS
from trajopt.methods.variants import GRADIENT_KEYS, OWN_VARIANT_KEYS, START_KEYS, Variant, build_variants
from trajopt.optim import DEFAULT_OPTIMIZER, build_optimizer
from trajopt.oracles import ORACLES
from trajopt.oracles.table import build_oracles
from trajopt.overrides import (RUN_KEYS, USES, apply_overrides, check_override, iteration_overrides, key_type,
                               parse_value, unreached_override)
from trajopt.policies import POLICY_ORACLES, PolicyProblem
from trajopt.policies.table import (MAX_CLOSED_LOOP_STEPS, POLICY_OPTIONS, POLICY_TASK_KEYS, SUCCESS_KEYS, PolicySpec,
                                    build_policy, spec_problem_check)
from trajopt.preflight import (MAX_WORKING_SET, TRACE_ALLOWED, check_oracles, check_variants, check_working_set,
                               rollouts_per_step, user_code)
from trajopt.problem import Problem, QuadraticCost, one_step_problem, trajectory_problem
from trajopt.systems.table import MAX_SIZE, SYSTEM_RESERVED, build_system, check_stability, check_system
from trajopt.tables import build_config, check_keys, coerce, config_dict, describe, sub_table
from trajopt.task import MAX_DECISION, MAX_HORIZON, ONE_STEP_TASK_KEYS, TASK_KEYS, TaskSpec, build_task
from trajopt.tomlio import MAX_DEPTH, SpecError, read_toml
from trajopt.tomlio import loads as toml_loads

__all__ = [
    # this module's own: the file, the [solve] table, reading and validating
    "Spec", "SolveSpec", "parse", "load", "loads", "TOP_LEVEL", "CLOSED_LOOP_TABLES", "SOLVE_KEYS",
    "NON_FINITE_POLICIES", "DEFAULT_SOLVE",
    # re-exported from their owners (their import path before the split)
    "SpecError", "FieldError", "read_toml", "MAX_DEPTH", "MAX_HISTORY", "MAX_ITERATIONS", "MAX_SEED", "MAX_SEEDS",
    "build_config", "config_dict",
    "TaskSpec", "TASK_KEYS", "ONE_STEP_TASK_KEYS", "MAX_HORIZON", "MAX_DECISION",
    "SYSTEM_RESERVED", "MAX_SIZE", "check_system",
    "DEFAULT_OPTIMIZER",
    "Variant", "GRADIENT_KEYS", "START_KEYS", "OWN_VARIANT_KEYS",
    "PolicySpec", "POLICY_TASK_KEYS", "POLICY_OPTIONS", "SUCCESS_KEYS", "MAX_CLOSED_LOOP_STEPS", "spec_problem_check",
    "MAX_WORKING_SET", "TRACE_ALLOWED", "user_code", "rollouts_per_step", "check_working_set", "check_variants",
    "check_oracles",
    "USES", "RUN_KEYS", "key_type", "parse_value", "apply_overrides", "unreached_override", "check_override",
    "iteration_overrides",
]

TOP_LEVEL = ("name", "title", "description", "system", "task", "solve", "oracle", "method", "variants", "policy",
             "initial_state", "success", "mpc", "plant")
CLOSED_LOOP_TABLES = ("mpc", "plant", "success")  # a time-stepped problem's closed-loop tables (trajopt.closedloop.tables)
SOLVE_KEYS = ("iterations", "seeds", "key", "oracles", "variants", "optimizer", "chunk", "on_non_finite")
NON_FINITE_POLICIES = ("stop", "skip")
# The bounds on sizes (seeds, iterations, the recorded history) are trajopt.limits', which the solver holds a run to
# too; each refusal names the key, what was found and the bound.
DEFAULT_SOLVE = {"iterations": 500, "seeds": 5, "key": 0, "oracles": ["fobg", "zobg", "aobg"], "on_non_finite": "stop"}


@dataclass(frozen=True)
class SolveSpec:
    """``oracles``: the oracles the oracle-level studies use (diagnose, sweep, landscape) and the default
    variants; ``variants``: the names `compare` runs (``solve.variants``, else ``solve.oracles``)."""

    iterations: int
    seeds: tuple[int, ...]
    key: int
    oracles: tuple[str, ...]
    optimizer: Any
    chunk: Optional[int] = None
    on_non_finite: str = "stop"
    variants: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Spec:
    """A validated problem file.

    Attributes:
        source: the file path as given (used in messages).
        name: the file's stem (``pushing_stiff``).
        title, description: free text.
        system: the system config dataclass instance; system_name: its name as written in the file.
        task, solve: see TaskSpec and SolveSpec.
        oracles: {name: oracle config instance} for every oracle in ``solve.oracles``.
        variants: {name: Variant} for every name in ``solve.variants``, in run order.
        allow_unstable: the ``[system] allow_unstable`` flag.
        raw_task: the task table as written (for the resolved config).
        defined_variants: {name: (kind, base, own)} for every ``[variants.NAME]`` table of the file and every
            selected variant, ``own`` the oracle or method parameters its table sets itself (what an override could
            reach, and what shadows one: `unreached_override`).
        oracle_keys: {name: the keys its ``[oracle.NAME]`` table sets}, which win over the shared ``[oracle]`` keys.
    """

    source: str
    name: str
    title: str
    description: str
    system: Any
    task: TaskSpec
    solve: SolveSpec
    oracles: dict
    variants: dict = dataclasses.field(default_factory=dict)
    policy: Optional[PolicySpec] = None
    system_name: str = ""
    allow_unstable: bool = False
    raw_task: Optional[dict] = None
    defined_variants: dict = dataclasses.field(default_factory=dict)
    oracle_keys: dict = dataclasses.field(default_factory=dict)  # {name: keys its [oracle.NAME] table sets}
    closed_loop: Optional[Any] = None  # trajopt.closedloop.tables.ClosedLoopSpec: [mpc], [plant], [success]

    @property
    def one_step(self) -> bool:
        return bool(getattr(self.system, "one_step", False))

    def iterations_of(self, name: str) -> int:
        """The iterations the selected variant ``name`` runs: its table's own ``iterations``, else
        ``solve.iterations``."""
        return self.variants[name].iterations or self.solve.iterations

    def problem(self) -> Problem:
        """The Problem this spec describes (arrays as jax float arrays); a `PolicyProblem` for a policy file."""
        U0 = jnp.asarray(self.task.U0)
        if self.policy is not None:
            t = self.task
            cost = QuadraticCost(Q=jnp.asarray(t.Q), R=jnp.asarray(t.R), Qf=jnp.asarray(t.Qf), goal=jnp.asarray(t.goal),
                                 wrap=t.wrap)
            return PolicyProblem(name=self.name, system=self.system, policy=self.policy.policy, task_cost=cost,
                                 initial=self.policy.initial, horizon=t.horizon, theta0=U0[0], **self.policy.options)
        if self.one_step:
            return one_step_problem(self.name, self.system.cost, U0)
        t = self.task
        cost = QuadraticCost(Q=jnp.asarray(t.Q), R=jnp.asarray(t.R), Qf=jnp.asarray(t.Qf), goal=jnp.asarray(t.goal),
                             wrap=t.wrap)
        return trajectory_problem(self.name, self.system.step, jnp.asarray(t.x0), cost, U0)

    def closed_loop_problem(self) -> Problem:
        """The time-stepped problem a closed-loop run (`trajopt mpc`) plans on: `problem` for an open-loop file; for a
        policy file, its system, task cost and horizon with zero initial controls (the policy is not used: the
        planner chooses the controls), started at the first of the evaluation batch's states (each seed of a
        closed-loop run starts from its own: `closed_loop_starts`)."""
        if self.policy is None:
            return self.problem()
        t = self.task
        cost = QuadraticCost(Q=jnp.asarray(t.Q), R=jnp.asarray(t.R), Qf=jnp.asarray(t.Qf), goal=jnp.asarray(t.goal),
                             wrap=t.wrap)
        x0 = self.closed_loop_starts([0])[0]
        U0 = jnp.zeros((t.horizon, int(self.system.control_size)))
        return trajectory_problem(self.name, self.system.step, jnp.asarray(x0), cost, U0)

    def closed_loop_starts(self, seeds) -> Optional[np.ndarray]:
        """[S, n] each seed's start in a closed-loop run of a policy file: seed s draws one state from the file's
        initial-state distribution with fold_in(PRNGKey(test_seed), s) (the held-aside stream, never the training or
        evaluation batches); None for an open-loop file (every seed starts at task.x0)."""
        if self.policy is None:
            return None
        seed = int(self.policy.options.get("test_seed", 2))
        keys = [jax.random.fold_in(jax.random.PRNGKey(seed), int(s)) for s in seeds]
        return np.stack([np.asarray(self.policy.initial.sample(k, 1))[0] for k in keys])

    def resolved(self) -> dict:
        """The resolved configuration: every default filled in, re-loadable with `loads`."""
        system = {"name": self.system_name, **config_dict(self.system)}
        if self.allow_unstable:
            system["allow_unstable"] = True
        task = {k: v for k, v in (self.raw_task or {}).items()}
        if not self.one_step:
            task.setdefault("Qf", task["Q"])
        task.setdefault("u_init", 0.0)
        solve = {
            "iterations": self.solve.iterations,
            "seeds": list(self.solve.seeds),
            "key": self.solve.key,
            "oracles": list(self.solve.oracles),
            "variants": list(self.variants),
            "optimizer": config_dict(self.solve.optimizer),
        }
        solve["on_non_finite"] = self.solve.on_non_finite
        if self.solve.chunk is not None:
            solve["chunk"] = self.solve.chunk
        oracle = {name: {k: v for k, v in config_dict(o).items() if k != "name"} for name, o in self.oracles.items()}
        variants = {name: v.table for name, v in self.variants.items()}
        out = {"name": self.name, "title": self.title, "description": self.description, "system": system, "task": task,
               "solve": solve, "oracle": oracle, "variants": variants}
        if self.policy is not None:
            task.pop("u_init", None)
            task.update({k: v for k, v in self.policy.options.items()})
            out["policy"] = {"name": self.policy.policy_name, **{k: v for k, v in config_dict(self.policy.policy).items() if k != "name"}}
            out["initial_state"] = {"name": self.policy.initial_name,
                                    **{k: v for k, v in config_dict(self.policy.initial).items() if k != "name"}}
            if self.policy.success_radius is not None:
                out["success"] = {"radius": self.policy.success_radius, "held_out": self.policy.held_out,
                                  "positions": list(self.policy.positions)}
        if self.closed_loop is not None:
            tables = self.closed_loop.resolved()
            if self.policy is not None:  # a policy file's [success] is its own table, written above
                tables.pop("success", None)
            out.update(tables)
        return out


def _build_solve(raw: Mapping, source: str) -> SolveSpec:
    check_keys(raw, SOLVE_KEYS, source, "solve.")
    merged = {**DEFAULT_SOLVE, **raw}
    iterations = coerce(merged["iterations"], int, source, "solve.iterations")
    if iterations < 1:
        raise SpecError(source, "solve.iterations", f"found {iterations}, allowed: an integer >= 1")
    if iterations > MAX_ITERATIONS:
        raise SpecError(source, "solve.iterations", f"found {iterations}, allowed: an integer in 1..{MAX_ITERATIONS} "
                        "(the per-iteration history is recorded)")
    seeds_raw = merged["seeds"]
    if isinstance(seeds_raw, list):
        if len(seeds_raw) > MAX_SEEDS:
            raise SpecError(source, "solve.seeds", f"found a list of {len(seeds_raw)}, allowed: at most {MAX_SEEDS} seeds")
        seeds = tuple(coerce(s, int, source, "solve.seeds") for s in seeds_raw)
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise SpecError(source, "solve.seeds", f"found {seeds_raw!r}, allowed: a count >= 1 or a non-empty list of distinct integers >= 0")
        if max(seeds) > MAX_SEED:
            raise SpecError(source, "solve.seeds", f"found seed {max(seeds)}, allowed: seed numbers in 0..{MAX_SEED} (2**32 - 1; "
                            "seeds are folded into the key as uint32, so a larger one would repeat the noise of its value mod 2**32)")
    else:
        count = coerce(seeds_raw, int, source, "solve.seeds")
        if count < 1:
            raise SpecError(source, "solve.seeds", f"found {count}, allowed: a count >= 1 or a list of seed numbers")
        if count > MAX_SEEDS:
            raise SpecError(source, "solve.seeds", f"found {count}, allowed: a count in 1..{MAX_SEEDS}")
        seeds = tuple(range(count))
    if iterations * len(seeds) > MAX_HISTORY:
        raise SpecError(source, "solve.iterations", f"found {iterations} iterations x {len(seeds)} seeds = "
                        f"{iterations * len(seeds)}, allowed: iterations x seeds <= {MAX_HISTORY} (the recorded history, "
                        "about 100 bytes per iteration and seed, and 300 in metrics.jsonl)")
    key = coerce(merged["key"], int, source, "solve.key")
    if key < 0 or key > MAX_SEED:
        raise SpecError(source, "solve.key", f"found {key}, allowed: an integer in 0..{MAX_SEED} (2**32 - 1, a uint32 PRNG seed)")
    oracles_raw = merged["oracles"]
    if isinstance(oracles_raw, str):
        oracles_raw = [oracles_raw]
    if not isinstance(oracles_raw, list) or not oracles_raw or not all(isinstance(o, str) for o in oracles_raw):
        raise SpecError(source, "solve.oracles", f"found {describe(oracles_raw)}, allowed: a non-empty list of oracle names ({', '.join(ORACLES.names())})")
    if len(set(oracles_raw)) != len(oracles_raw):
        raise SpecError(source, "solve.oracles", f"found a repeated name in {oracles_raw!r}, allowed: distinct oracle names")
    variants_raw = merged.get("variants", oracles_raw)
    if isinstance(variants_raw, str):
        variants_raw = [variants_raw]
    if not isinstance(variants_raw, list) or not variants_raw or not all(isinstance(o, str) and o for o in variants_raw):
        raise SpecError(source, "solve.variants", f"found {describe(variants_raw)}, allowed: a non-empty list of variant, oracle or method names")
    if len(set(variants_raw)) != len(variants_raw):
        raise SpecError(source, "solve.variants", f"found a repeated name in {variants_raw!r}, allowed: distinct names")
    chunk = merged.get("chunk")
    if chunk is not None:
        chunk = coerce(chunk, int, source, "solve.chunk")
        if chunk < 1 or chunk > MAX_ITERATIONS:
            raise SpecError(source, "solve.chunk", f"found {chunk}, allowed: an integer in 1..{MAX_ITERATIONS}")
    on_non_finite = coerce(merged["on_non_finite"], str, source, "solve.on_non_finite")
    if on_non_finite not in NON_FINITE_POLICIES:
        raise SpecError(source, "solve.on_non_finite", f"found {on_non_finite!r}, allowed: 'stop' (end that seed) or 'skip' (skip the update)")
    opt_raw = sub_table(merged, "optimizer", source, "solve.optimizer") if "optimizer" in merged else dict(DEFAULT_OPTIMIZER)
    optimizer = build_optimizer(opt_raw, source, "solve.optimizer", iterations)
    return SolveSpec(iterations=iterations, seeds=seeds, key=key, oracles=tuple(oracles_raw), optimizer=optimizer, chunk=chunk,
                     on_non_finite=on_non_finite, variants=tuple(variants_raw))



def _check_run_name(raw: Mapping, source: str) -> None:
    """The top-level ``name`` names the default run folder (``runs/<name>/...``): one plain path component
    (letters, digits, ``_``, ``-``, ``.``; not ``.`` or ``..``), so that no file can put a run outside runs/."""
    value = raw.get("name")
    if value is not None and (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", value) or value in (".", "..")):
        raise SpecError(source, "name", f"found {value!r}, allowed: a plain name of letters, digits, '_', '-' and '.' "
                        "(at most 128; it names the run folder runs/<name>/, so no '/', '\\' or '..')")


def parse(raw: Mapping, source: str = "<string>", name: Optional[str] = None, *, closed_loop: bool = False) -> Spec:
    """Validate a decoded TOML document and build its Spec.

    ``closed_loop``: the spec of a closed-loop run (`trajopt mpc`): a policy file's variants then name open-loop
    oracles (the planner chooses the controls over the horizon; the policy is not used), as in any other file."""
    check_keys(raw, TOP_LEVEL, source, "")
    for k in ("name", "title", "description"):
        if k in raw and not isinstance(raw[k], str):
            raise SpecError(source, k, f"found {describe(raw[k])}, allowed: a string")
    _check_run_name(raw, source)
    system_raw = sub_table(raw, "system", source, "system")
    if "system" not in raw:
        raise SpecError(source, "system", "missing; allowed: a [system] table with a name")
    system, system_name, allow_unstable = build_system(system_raw, source)
    check_stability(system, allow_unstable, source)
    task_raw = sub_table(raw, "task", source, "task")
    policy = None
    registry = ORACLES
    if "policy" in raw:
        policy, task = build_policy(raw, system, source)
        if not closed_loop:
            registry = POLICY_ORACLES  # the same oracle names, estimated through the closed loop
    else:
        if "initial_state" in raw:
            raise SpecError(source, "initial_state", "allowed only with a [policy] table (a closed-loop policy problem)")
        task = build_task(task_raw, system, source)
    closed_loop = None
    if any(k in raw for k in ("mpc", "plant")) or ("success" in raw and policy is None):
        if getattr(system, "one_step", False):
            k = next(k for k in CLOSED_LOOP_TABLES if k in raw)
            raise SpecError(source, k, "allowed only for a time-stepped problem (a one-step problem has no dynamics "
                            "to step)")
        # a policy file's [success] is its own (radius, held_out, positions): the closed loop reads radius and positions
        tables = {k: v for k, v in raw.items() if not (policy is not None and k == "success")}
        closed_loop = build_closed_loop(tables, source, system, {k: v for k, v in system_raw.items()},
                                        lambda table, src: build_system(table, src)[0])
        if policy is not None and policy.success_radius is not None:
            closed_loop = dataclasses.replace(closed_loop, success=Success(radius=policy.success_radius,
                                                                            positions=tuple(policy.positions)))
    solve = _build_solve(sub_table(raw, "solve", source, "solve"), source)
    oracles = build_oracles(sub_table(raw, "oracle", source, "oracle"), solve.oracles, source, registry, METHODS)
    defined: dict = {}
    variants = build_variants(raw, solve, source, registry, defined)
    stem = name or raw.get("name") or Path(source).stem
    oracle_keys = {k: frozenset(t) for k, t in sub_table(raw, "oracle", source, "oracle").items() if isinstance(t, dict)}
    spec = Spec(
        oracle_keys=oracle_keys,
        source=source, name=stem, title=raw.get("title", stem), description=raw.get("description", ""),
        system=system, task=task, solve=solve, oracles=oracles, variants=variants, policy=policy, system_name=system_name,
        allow_unstable=allow_unstable, raw_task=dict(task_raw), defined_variants=defined, closed_loop=closed_loop,
    )
    return spec


def load(path: str | Path, overrides: Sequence[str] = (), *, closed_loop: bool = False) -> Spec:
    """Read, override and validate a problem file (``closed_loop``: as `parse`)."""
    source = str(path)
    return parse(apply_overrides(read_toml(path), overrides, source), source, closed_loop=closed_loop)


def loads(text: str, source: str = "<string>", name: Optional[str] = None, overrides: Sequence[str] = ()) -> Spec:
    return parse(apply_overrides(toml_loads(text, source), overrides, source), source, name=name)
