"""TOML problem files -> validated, immutable specs. The only module that knows the file format.

A file has these top-level keys (see the README's TOML reference for every key):

    name, title, description  strings (name defaults to the file's stem; it names the run folder)
    [system]               name = "<registered system>" or "package.module:Class", plus its parameters
    [task]                 horizon, x0, goal, Q, R, Qf, u_init   (one-step systems: u_init only)
    [solve]                iterations, seeds, key, oracles, variants, chunk, on_non_finite, and
                           [solve.optimizer] name + parameters
    [oracle]               scalar keys: defaults for every oracle that has that parameter;
    [oracle.<name>]        parameters of one oracle
    [method.<name>]        parameters of one method (cem, ilqr, ...)
    [variants.<NAME>]      a named method configuration: ``oracle = "<oracle>"`` (with the file's [oracle]
                           options, overridable here, and an ``optimizer`` table) or ``method = "<method>"``
                           (with [method.<method>]'s options, overridable here)

A variant name in ``solve.variants`` (or ``--variants``) is looked up as a ``[variants.NAME]`` table first,
then as an oracle (a gradient method with the file's optimiser), then as a method (with its defaults).

Every key is checked before anything compiles. A problem raises `SpecError`, which names the file, the
key path, what was found and what is allowed. Unknown keys are errors, with the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from trajopt.checks import FieldError
from trajopt.methods import METHODS, GradientMethod, MultiStart
from trajopt.optim import OPTIMIZERS
from trajopt.oracles import ORACLES
from trajopt.problem import Problem, QuadraticCost, one_step_problem, trajectory_problem
from trajopt.registry import UnknownName
from trajopt.systems import SYSTEMS
from trajopt.systems.base import parameter_types
from trajopt.tomlio import MAX_DEPTH, SpecError, check_depth, check_number, read_toml
from trajopt.tomlio import loads as toml_loads

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


TOP_LEVEL = ("name", "title", "description", "system", "task", "solve", "oracle", "method", "variants", "policy",
             "initial_state", "success", "mpc", "plant")
CLOSED_LOOP_TABLES = ("mpc", "plant", "success")  # a time-stepped problem's closed-loop tables (trajopt.closedloop.tables)
POLICY_TASK_KEYS = ("horizon", "goal", "Q", "R", "Qf", "wrap", "sigma", "n_init", "resample", "n_eval", "eval_seed",
                    "train_seed", "test_seed", "theta0")
POLICY_OPTIONS = {"sigma": float, "n_init": int, "resample": bool, "n_eval": int, "eval_seed": int, "train_seed": int,
                  "test_seed": int}
SUCCESS_KEYS = ("radius", "held_out", "positions")
TASK_KEYS = ("horizon", "x0", "goal", "Q", "R", "Qf", "u_init", "wrap")
ONE_STEP_TASK_KEYS = ("u_init",)
SOLVE_KEYS = ("iterations", "seeds", "key", "oracles", "variants", "optimizer", "chunk", "on_non_finite")
GRADIENT_KEYS = ("sigma_schedule", "sigma_final")  # keys of a gradient variant that belong to the method, not the oracle
START_KEYS = ("starts", "start_spread")  # keys of any variant: K starts of its method, best kept (`MultiStart`)
OWN_VARIANT_KEYS = ("oracle", "method", "optimizer", "iterations", *START_KEYS)  # not its oracle's or method's
NON_FINITE_POLICIES = ("stop", "skip")
SYSTEM_RESERVED = ("name", "allow_unstable")
# Bounds on sizes (each refusal names the key, what was found and the bound). Seeds and the key are folded into
# the PRNG as uint32 (`jax.random.fold_in`), so they must be < 2**32 (larger ones would draw the noise of
# their value mod 2**32). The history solve records is iterations x seeds x (about 13 arrays: the cost and the
# info fields) x 8 bytes per variant, about 10 GiB at iterations x seeds = MAX_HISTORY, and metrics.jsonl
# about 300 bytes per iteration and seed (30 GB there). The CLI streams a history past TRAJOPT_HISTORY_MEMORY
# (1 GiB) to disk and writes metrics.jsonl as it goes; memory then holds a chunk or two of the history. The caps
# hold for a variant's own iterations too.
from trajopt.limits import MAX_HISTORY, MAX_ITERATIONS, MAX_SEED, MAX_SEEDS  # noqa: E402 (the solver's bounds too)
MAX_HORIZON = 10**6
MAX_SIZE = 10**6             # a user system's state_size / control_size
MAX_DECISION = 10**8         # horizon x control_size (U0's entries)
MAX_CLOSED_LOOP_STEPS = 10**8  # a policy problem's batch x horizon: steps one evaluation simulates
MAX_WORKING_SET = 1 << 34    # bytes: 16 GiB of rollout states per step (`check_working_set`)

DEFAULT_SOLVE = {"iterations": 500, "seeds": 5, "key": 0, "oracles": ["fobg", "zobg", "aobg"], "on_non_finite": "stop"}
DEFAULT_OPTIMIZER = {"name": "sgd"}


# --------------------------------------------------------------------------------------------- types


def _type_name(t: Any) -> str:
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(t, str(t))


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    return repr(value)


def _coerce(value: Any, typ: Any, source: str, key: str) -> Any:
    """Check one value against a dataclass field type (float accepts integers; ``tuple[X, ...]`` a list of X)."""
    import typing

    if typing.get_origin(typ) is tuple:
        inner = typing.get_args(typ)[0]
        if not isinstance(value, list):
            raise SpecError(source, key, f"found {_describe(value)}, allowed: a list of {_type_name(inner).split(' ', 1)[-1]}s")
        return tuple(_coerce(v, inner, source, key) for v in value)
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond a float's range (10**400)
            raise SpecError(source, key, f"found an integer of {len(str(abs(value)))} digits, allowed: a number of "
                            "magnitude between 1e-100 and 1e100 (or 0)") from None
        return check_number(number, source, key)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    if typ is str and isinstance(value, str):
        return value
    raise SpecError(source, key, f"found {_describe(value)}, allowed: {_type_name(typ)}")


def _unknown(source: str, key: str, allowed: Sequence[str], what: str = "key") -> SpecError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SpecError(source, key, f"unknown {what}{hint}; allowed: {', '.join(allowed) or 'none'}")


def _table(raw: Mapping, name: str, source: str, key: str) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise SpecError(source, key, f"found {_describe(value)}, allowed: a table")
    return value


def _check_keys(table: Mapping, allowed: Sequence[str], source: str, prefix: str) -> None:
    for k in table:
        if k not in allowed:
            raise _unknown(source, f"{prefix}{k}", allowed)


def build_config(cls: type, params: Mapping, source: str, prefix: str, *, ignore: Sequence[str] = ()):
    """Instantiate a config dataclass (system, oracle, optimiser) from a TOML table, checking every key."""
    if not dataclasses.is_dataclass(cls):
        if params:
            raise _unknown(source, prefix + next(iter(params)), [])
        return cls()
    types = parameter_types(cls)
    kwargs = {}
    for k, v in params.items():
        if k in ignore:
            continue
        if k not in types:
            raise _unknown(source, prefix + k, list(types))
        kwargs[k] = _coerce(v, types[k], source, prefix + k)
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise SpecError(source, prefix + e.field, f"found {e.found!r}, allowed: {e.allowed}") from None
    except (ValueError, TypeError) as e:
        raise SpecError(source, prefix.rstrip("."), str(e)) from None


def config_dict(obj: Any) -> dict:
    """A config dataclass as a TOML-ready dict (name first)."""
    out = {"name": obj.name} if hasattr(obj, "name") else {}
    if dataclasses.is_dataclass(obj):
        out.update(dataclasses.asdict(obj))
    return out


# ---------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True, eq=False)
class TaskSpec:
    """Arrays are numpy float64. Time-stepped: x0, goal [n]; Q, Qf [n, n]; R [m, m]; U0 [T, m].
    One-step: horizon = 1, U0 = [1, d], the rest None."""

    horizon: int
    U0: np.ndarray
    x0: Optional[np.ndarray] = None
    goal: Optional[np.ndarray] = None
    Q: Optional[np.ndarray] = None
    R: Optional[np.ndarray] = None
    Qf: Optional[np.ndarray] = None
    wrap: tuple[int, ...] = ()


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
class Variant:
    """A named method configuration, ready to run.

    Attributes:
        name: the variant's name (a ``[variants.NAME]`` table, or a bare oracle or method name).
        kind: "oracle" (a `GradientMethod` of that oracle and an optimiser) or "method".
        base: the oracle's or the method's registered name (or ``module:attribute``).
        method: the method object `trajopt.solve` runs.
        table: the resolved ``[variants.NAME]`` table (every default filled in), for config.toml.
        iterations: the variant's own number of steps (an equal-budget comparison), or None for ``solve.iterations``.
    """

    name: str
    kind: str
    base: str
    method: Any
    table: dict
    iterations: Optional[int] = None

    @property
    def oracle(self) -> Any:
        """The oracle of a gradient variant, else None."""
        return getattr(self.each_start, "oracle", None)

    @property
    def optimizer(self) -> Any:
        """The optimiser config of a gradient variant, else None."""
        return getattr(self.each_start, "optimizer", None)

    @property
    def each_start(self) -> Any:
        """The method one start runs: ``method`` itself, or what its `MultiStart` runs K times."""
        return self.method.method if isinstance(self.method, MultiStart) else self.method


@dataclass(frozen=True, eq=False)
class PolicySpec:
    """The closed-loop part of a policy problem file (a ``[policy]`` table makes the file one).

    Attributes:
        policy, policy_name: the policy config (`trajopt.policies.POLICIES`) and its name as written.
        initial, initial_name: the initial-state distribution (`trajopt.policies.INITIAL_STATES`) and its name.
        options: the PolicyProblem options from [task] (sigma, n_init, resample, n_eval and the seeds).
        theta0: [p] initial parameters, or None for the policy's own.
        success_radius: ``[success] radius`` (None: no success read-out); held_out: how many held-aside initial
            states it is measured on; positions: the state coordinates compared with the goal's.
    """

    policy: Any
    policy_name: str
    initial: Any
    initial_name: str
    options: dict
    theta0: Optional[tuple] = None
    success_radius: Optional[float] = None
    held_out: int = 500
    positions: tuple[int, ...] = (0, 1)


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
            from trajopt.policies import PolicyProblem

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
        import jax

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


def _float_array(value: Any, source: str, key: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(source, key, f"found {_describe(value)}, allowed: numbers (a number, a list or a list of lists)") from None
    if arr.dtype == object or any(isinstance(v, bool) for v in np.asarray(value, dtype=object).ravel()):
        raise SpecError(source, key, f"found {_describe(value)}, allowed: numbers")
    if not np.all(np.isfinite(arr)):
        raise SpecError(source, key, "found a non-finite number, allowed: finite numbers")
    nonzero = arr[arr != 0]
    if nonzero.size:  # the largest and the smallest entry in magnitude
        for v in (nonzero[np.argmax(np.abs(nonzero))], nonzero[np.argmin(np.abs(nonzero))]):
            check_number(float(v), source, key)
    return arr


def _vector(raw: Mapping, name: str, size: int, source: str) -> np.ndarray:
    key = f"task.{name}"
    if name not in raw:
        raise SpecError(source, key, f"missing; allowed: a list of {size} numbers")
    arr = _float_array(raw[name], source, key)
    if arr.shape != (size,):
        raise SpecError(source, key, f"found shape {list(arr.shape)}, allowed: a list of {size} numbers (the system's size)")
    return arr


def _start(raw: Mapping, system: Any, n: int, source: str) -> np.ndarray:
    """task.x0, or the system's own start (``default_x0()``, e.g. an MJCF model's initial configuration)."""
    default = getattr(system, "default_x0", None)
    if "x0" not in raw and callable(default):
        return np.asarray(default(), float)
    return _vector(raw, "x0", n, source)


def _weight(raw: Mapping, name: str, size: int, source: str, default: Optional[np.ndarray] = None) -> np.ndarray:
    """A cost weight: a list of `size` (the diagonal) or a `size` x `size` symmetric matrix, >= 0 diagonal."""
    key = f"task.{name}"
    if name not in raw:
        if default is not None:
            return default
        raise SpecError(source, key, f"missing; allowed: a list of {size} numbers (diagonal) or a {size}x{size} matrix")
    arr = _float_array(raw[name], source, key)
    if arr.shape == (size,):
        arr = np.diag(arr)
    elif arr.shape != (size, size):
        raise SpecError(source, key, f"found shape {list(arr.shape)}, allowed: a list of {size} numbers (diagonal) or a {size}x{size} matrix")
    if not np.allclose(arr, arr.T):
        raise SpecError(source, key, "found a non-symmetric matrix, allowed: a symmetric matrix")
    if np.any(np.diag(arr) < 0):
        raise SpecError(source, key, "found a negative diagonal entry, allowed: weights >= 0")
    return arr


def _initial_guess(raw: Mapping, horizon: int, m: int, source: str) -> np.ndarray:
    key = "task.u_init"
    arr = _float_array(raw.get("u_init", 0.0), source, key)
    if arr.ndim == 0:
        return np.full((horizon, m), float(arr))
    if arr.shape == (m,):
        return np.broadcast_to(arr, (horizon, m)).copy()
    if arr.shape == (horizon, m):
        return arr
    if m == 1 and arr.shape == (horizon,):
        return arr[:, None]
    raise SpecError(source, key, f"found shape {list(arr.shape)}, allowed: a number, a list of {m} (one control), or {horizon} lists of {m}")


def _wrap(raw: Mapping, n: int, source: str) -> tuple[int, ...]:
    """task.wrap: distinct state indices in 0..n-1 whose error is an angle (open-loop and policy problems alike)."""
    wrap_raw = raw.get("wrap", [])
    if not isinstance(wrap_raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in wrap_raw) \
            or len(set(wrap_raw)) != len(wrap_raw):
        raise SpecError(source, "task.wrap", f"found {_describe(wrap_raw)}, allowed: a list of distinct state indices in 0..{n - 1} "
                        "whose error is an angle (wrapped to [-pi, pi))")
    return tuple(wrap_raw)


def _build_task(raw: Mapping, system: Any, source: str) -> TaskSpec:
    m = int(system.control_size)
    if getattr(system, "one_step", False):
        _check_keys(raw, ONE_STEP_TASK_KEYS, source, "task.")
        return TaskSpec(horizon=1, U0=_initial_guess(raw, 1, m, source))
    _check_keys(raw, TASK_KEYS, source, "task.")
    n = int(system.state_size)
    if "horizon" not in raw:
        raise SpecError(source, "task.horizon", "missing; allowed: an integer >= 1")
    horizon = _coerce(raw["horizon"], int, source, "task.horizon")
    if horizon < 1:
        raise SpecError(source, "task.horizon", f"found {horizon}, allowed: an integer >= 1")
    if horizon > MAX_HORIZON or horizon * m > MAX_DECISION:
        raise SpecError(source, "task.horizon", f"found {horizon}, allowed: an integer in 1..{MAX_HORIZON} with horizon x "
                        f"control size <= {MAX_DECISION} (the decision and the rollout are kept in memory)")
    Q = _weight(raw, "Q", n, source)
    return TaskSpec(wrap=_wrap(raw, n, source),
        horizon=horizon, U0=_initial_guess(raw, horizon, m, source), x0=_start(raw, system, n, source),
        goal=_vector(raw, "goal", n, source), Q=Q, R=_weight(raw, "R", m, source), Qf=_weight(raw, "Qf", n, source, Q),
    )


def _registered(registry, table: Mapping, source: str, key: str):
    """(config, name) of a ``{name = ..., <params>}`` table against a registry."""
    name = table.get("name")
    if not isinstance(name, str):
        raise SpecError(source, f"{key}.name", f"found {_describe(name) if name is not None else 'nothing'}, allowed: "
                        f"{', '.join(registry.names())} or 'package.module:Class'")
    cls = _lookup(registry, name, source, f"{key}.name")
    return build_config(cls, table, source, f"{key}.", ignore=("name",)), name


def _build_policy(raw: Mapping, system: Any, source: str) -> tuple[PolicySpec, TaskSpec]:
    """The [policy], [initial_state] and [success] tables and the policy problem's [task] (see `PolicySpec`)."""
    from trajopt.policies import INITIAL_STATES, POLICIES

    if getattr(system, "one_step", False):
        raise SpecError(source, "policy", "a feedback policy needs a time-stepped system (step(x, u)); this one is one-step")
    policy, policy_name = _registered(POLICIES, _table(raw, "policy", source, "policy"), source, "policy")
    if "initial_state" not in raw:
        raise SpecError(source, "initial_state", "missing; allowed: an [initial_state] table (name = point, uniform, gaussian "
                        "or tennis, with its parameters)")
    initial, initial_name = _registered(INITIAL_STATES, _table(raw, "initial_state", source, "initial_state"), source,
                                        "initial_state")
    t = _table(raw, "task", source, "task")
    _check_keys(t, POLICY_TASK_KEYS, source, "task.")
    n, m = int(system.state_size), int(system.control_size)
    if "horizon" not in t:
        raise SpecError(source, "task.horizon", "missing; allowed: an integer >= 1 (closed-loop steps H)")
    horizon = _coerce(t["horizon"], int, source, "task.horizon")
    options = {k: _coerce(t[k], typ, source, f"task.{k}") for k, typ in POLICY_OPTIONS.items() if k in t}
    Q = _weight(t, "Q", n, source)
    p = int(policy.param_size(n, m))
    theta0 = None
    if "theta0" in t:
        theta0 = _float_array(t["theta0"], source, "task.theta0")
        if theta0.shape != (p,):
            raise SpecError(source, "task.theta0", f"found shape {list(theta0.shape)}, allowed: a list of {p} numbers "
                            f"(the {policy_name} policy's size for n = {n}, m = {m})")
    U0 = (np.asarray(policy.init_params(n, m), float) if theta0 is None else theta0)[None]
    task = TaskSpec(horizon=horizon, U0=U0, goal=_vector(t, "goal", n, source), Q=Q, R=_weight(t, "R", m, source),
                    Qf=_weight(t, "Qf", n, source, Q), wrap=_wrap(t, n, source))  # checked as an open-loop task's
    success = _table(raw, "success", source, "success")
    _check_keys(success, SUCCESS_KEYS, source, "success.")
    radius = _coerce(success["radius"], float, source, "success.radius") if "radius" in success else None
    if radius is not None and not radius > 0:
        raise SpecError(source, "success.radius", f"found {radius}, allowed: a number > 0")
    held_out = _coerce(success.get("held_out", 500), int, source, "success.held_out")
    if not 1 <= held_out <= 100_000:
        raise SpecError(source, "success.held_out", f"found {held_out}, allowed: an integer in 1..100000")
    positions = tuple(_coerce(success.get("positions", [0, 1]), tuple[int, ...], source, "success.positions"))
    if not positions or any(not 0 <= i < n for i in positions):
        raise SpecError(source, "success.positions", f"found {list(positions)}, allowed: state indices in 0..{n - 1}")
    _check_closed_loop_sizes(horizon, options, held_out, source)
    spec = PolicySpec(policy=policy, policy_name=policy_name, initial=initial, initial_name=initial_name,
                      options=options, theta0=None if theta0 is None else tuple(theta0.tolist()),
                      success_radius=radius, held_out=held_out, positions=positions)
    try:  # the problem's own checks (sizes, seeds, the distribution's state size) before anything compiles
        spec_problem_check(system, policy, initial, horizon, options, U0[0])
    except FieldError as e:
        key = f"task.{e.field}" if e.field in POLICY_TASK_KEYS else e.field
        raise SpecError(source, key, f"found {e.found!r}, allowed: {e.allowed}") from None
    return spec, task


def _check_closed_loop_sizes(horizon: int, options: Mapping, held_out: int, source: str) -> None:
    """Bound what one evaluation of a policy problem simulates, before the problem is built (building it draws
    its evaluation and training batches): the horizon, and n_eval x horizon (the evaluation batch behind every
    reported cost), the decision batch x horizon and held_out x horizon (the success rate's rollouts, kept whole)
    each at most `MAX_CLOSED_LOOP_STEPS` closed-loop steps."""
    from trajopt.policies import PolicyProblem

    if horizon > MAX_HORIZON:
        raise SpecError(source, "task.horizon", f"found {horizon}, allowed: an integer in 1..{MAX_HORIZON} (closed-loop "
                        "steps H)")
    default = {f.name: f.default for f in dataclasses.fields(PolicyProblem) if f.name in POLICY_OPTIONS}
    n_eval, n_init = options.get("n_eval", default["n_eval"]), options.get("n_init", default["n_init"])
    batch = n_init if n_init or not options.get("resample", default["resample"]) else n_eval
    for key, count, what in (("task.n_eval", n_eval, "the evaluation batch behind every reported cost"),
                             ("task.n_init", batch, "the training batch a method decides on"),
                             ("success.held_out", held_out, "the held-aside states of the success rate")):
        if count * horizon > MAX_CLOSED_LOOP_STEPS:
            raise SpecError(source, key, f"found {count} x task.horizon {horizon} = {count * horizon:,} closed-loop "
                            f"steps ({what}), allowed: at most {MAX_CLOSED_LOOP_STEPS:,} per evaluation")


def spec_problem_check(system, policy, initial, horizon, options, theta0) -> None:
    """Build the PolicyProblem once (cheap: no compilation) so its checks run at validation."""
    from trajopt.policies import PolicyProblem

    goal = jnp.zeros(int(system.state_size))
    cost = QuadraticCost(Q=jnp.eye(goal.size), R=jnp.eye(int(system.control_size)), Qf=jnp.eye(goal.size), goal=goal)
    PolicyProblem(name="check", system=system, policy=policy, task_cost=cost, initial=initial, horizon=horizon,
                  theta0=jnp.asarray(theta0), **options)


def _build_system(raw: Mapping, source: str) -> tuple[Any, str, bool]:
    if "name" not in raw:
        raise SpecError(source, "system.name", f"missing; allowed: {', '.join(SYSTEMS.names())} or 'package.module:Class'")
    name = raw["name"]
    if not isinstance(name, str):
        raise SpecError(source, "system.name", f"found {_describe(name)}, allowed: a string")
    try:
        cls = SYSTEMS.get(name)
    except UnknownName as e:
        raise SpecError(source, "system.name", str(e)) from None
    allow_unstable = _coerce(raw.get("allow_unstable", False), bool, source, "system.allow_unstable")
    if callable(getattr(cls, "from_table", None)):
        # a system that builds itself from its table (e.g. one that reads a file named relative to the problem)
        try:
            system = cls.from_table({k: v for k, v in raw.items() if k not in SYSTEM_RESERVED}, source)
        except SpecError:
            raise
        except FieldError as e:
            raise SpecError(source, "system." + e.field, f"found {e.found!r}, allowed: {e.allowed}") from None
        except (ValueError, TypeError, OSError) as e:
            raise SpecError(source, "system", f"{name} could not be built: {e}") from None
        except Exception as e:  # noqa: BLE001  a user's from_table: whatever it raised
            raise SpecError(source, "system", f"{name} could not be built: {type(e).__name__}: {_first_line(e)}") from None
    elif not dataclasses.is_dataclass(cls) and callable(cls):
        try:
            system = cls(**{k: v for k, v in raw.items() if k not in SYSTEM_RESERVED})
        except Exception as e:  # a user's factory: report whatever it raised, with the key path
            raise SpecError(source, "system", f"{name} could not be built: {e}") from None
    elif ":" in name:
        try:  # user code: whatever its __post_init__ raises is reported with the key path
            system = build_config(cls, raw, source, "system.", ignore=SYSTEM_RESERVED)
        except SpecError:
            raise
        except Exception as e:  # noqa: BLE001
            raise SpecError(source, "system", f"{name} could not be built: {type(e).__name__}: {_first_line(e)}") from None
    else:
        system = build_config(cls, raw, source, "system.", ignore=SYSTEM_RESERVED)
    for attr in ("control_size", "state_size"):
        if not hasattr(system, attr):
            raise SpecError(source, "system.name", f"{name} has no {attr}; a system needs state_size, control_size and step() (or one_step and cost())")
    if ":" in name:
        check_system(system, source, name)
    return system, name, allow_unstable


def _first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (JAX's run to dozens), cut at `limit` characters."""
    text = (str(e).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_system(system: Any, source: str, name: str = "") -> None:
    """A trial of a user's system before anything compiles: its sizes, ``stable_dt()``, and one ``step`` (or the
    one-step ``cost``) traced abstractly with `jax.eval_shape` on inputs of the declared sizes (no compilation,
    no computation). Whatever the user's code raises (a Python ``if`` on a traced value included) or returns
    in the wrong shape or dtype becomes a SpecError at ``system.name`` that says what was expected and what
    came back."""
    import jax

    name = name or type(system).__name__
    key = "system.name"
    sizes = {}
    for attr in ("state_size", "control_size"):
        try:
            value = getattr(system, attr)
        except Exception as e:  # noqa: BLE001  a property of the user's
            raise SpecError(source, key, f"{name}: {attr} raised {type(e).__name__}: {_first_line(e)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0 or value > MAX_SIZE:
            raise SpecError(source, key, f"{name}: {attr} is {value!r} ({type(value).__name__}), expected an integer "
                            f"in 0..{MAX_SIZE}")
        sizes[attr] = int(value)
    n, m = sizes["state_size"], sizes["control_size"]
    one_step = getattr(system, "one_step", False)
    if m < 1 or (not one_step and n < 1):
        raise SpecError(source, key, f"{name}: state_size {n}, control_size {m}; expected control_size >= 1"
                        + ("" if one_step else " and state_size >= 1"))
    from trajopt.systems.base import names_problem

    for attr, size in (("state_names", n), ("control_names", m)):  # optional: the figures' axis labels
        try:
            wrong = names_problem(system, attr, size)
        except Exception as e:  # noqa: BLE001  a property of the user's
            wrong = f"{attr} raised {type(e).__name__}: {_first_line(e)}"
        if wrong is not None:
            raise SpecError(source, key, f"{name}: {wrong}")
    stable = getattr(system, "stable_dt", None)
    if callable(stable):
        try:
            limit = stable()
            limit = float(limit)
        except Exception as e:  # noqa: BLE001
            raise SpecError(source, key, f"{name}: stable_dt() raised {type(e).__name__}: {_first_line(e)}; "
                            "expected a number (math.inf for a smooth system)") from None
        if not limit > 0:  # nan, 0 or negative: the stability check would compare dt with nonsense
            raise SpecError(source, key, f"{name}: stable_dt() returned {limit!r}; expected a number > 0 (math.inf for a smooth system)")
    dtype = jnp.result_type(float)
    if one_step:
        call, args, expected, what = getattr(system, "cost", None), (m,), (), f"cost(theta: {dtype}[{m}])"
        expected_text = f"a {dtype} scalar"
    else:
        call, args, expected, what = getattr(system, "step", None), (n, m), (n,), f"step(x: {dtype}[{n}], u: {dtype}[{m}])"
        expected_text = f"{dtype}[{n}] (the next state)"
    if not callable(call):
        raise SpecError(source, key, f"{name}: {what.split('(')[0]} is not callable; expected a method {what}")
    try:
        outcome = jax.eval_shape(call, *(jax.ShapeDtypeStruct((k,), dtype) for k in args))
    except Exception as e:  # noqa: BLE001  user code under tracing: TracerBoolConversionError, shape errors, ...
        raise SpecError(source, key, f"{name}: {what} raised {type(e).__name__}: {_first_line(e)} (a system must be a "
                        "pure JAX function: no Python if/while on values, use jnp.where or lax.cond)") from None
    shape, out_dtype = getattr(outcome, "shape", None), getattr(outcome, "dtype", None)
    if shape != expected or out_dtype != dtype:
        found = f"{out_dtype}{list(shape)}" if shape is not None else f"{type(outcome).__name__}"
        raise SpecError(source, key, f"{name}: {what} returned {found}, expected {expected_text}")


def _check_stability(system: Any, allow_unstable: bool, source: str) -> None:
    """Refuse an explicitly unstable time step (omega * h >= 2) unless allow_unstable is set."""
    stable = getattr(system, "stable_dt", None)
    dt = getattr(system, "dt", math.nan)
    if stable is None or allow_unstable or not math.isfinite(dt):
        return
    limit = float(stable())
    if not limit > 0:  # the arithmetic on the parameters overflowed or underflowed (a bound is missing somewhere)
        raise SpecError(source, "system", f"found a largest stable time step of {limit!r} for these parameters, "
                        "allowed: a number > 0 (check the parameters' magnitudes)")
    if dt >= limit:
        raise SpecError(
            source, "system.dt",
            f"found {dt:g}, which is explicitly unstable for this stiffness (omega*dt >= 2); the largest stable dt "
            f"is {limit:.4g}. Use dt < {limit:.4g}, or set system.allow_unstable = true to study the instability",
        )


def _build_solve(raw: Mapping, source: str) -> SolveSpec:
    _check_keys(raw, SOLVE_KEYS, source, "solve.")
    merged = {**DEFAULT_SOLVE, **raw}
    iterations = _coerce(merged["iterations"], int, source, "solve.iterations")
    if iterations < 1:
        raise SpecError(source, "solve.iterations", f"found {iterations}, allowed: an integer >= 1")
    if iterations > MAX_ITERATIONS:
        raise SpecError(source, "solve.iterations", f"found {iterations}, allowed: an integer in 1..{MAX_ITERATIONS} "
                        "(the per-iteration history is recorded)")
    seeds_raw = merged["seeds"]
    if isinstance(seeds_raw, list):
        if len(seeds_raw) > MAX_SEEDS:
            raise SpecError(source, "solve.seeds", f"found a list of {len(seeds_raw)}, allowed: at most {MAX_SEEDS} seeds")
        seeds = tuple(_coerce(s, int, source, "solve.seeds") for s in seeds_raw)
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise SpecError(source, "solve.seeds", f"found {seeds_raw!r}, allowed: a count >= 1 or a non-empty list of distinct integers >= 0")
        if max(seeds) > MAX_SEED:
            raise SpecError(source, "solve.seeds", f"found seed {max(seeds)}, allowed: seed numbers in 0..{MAX_SEED} (2**32 - 1; "
                            "seeds are folded into the key as uint32, so a larger one would repeat the noise of its value mod 2**32)")
    else:
        count = _coerce(seeds_raw, int, source, "solve.seeds")
        if count < 1:
            raise SpecError(source, "solve.seeds", f"found {count}, allowed: a count >= 1 or a list of seed numbers")
        if count > MAX_SEEDS:
            raise SpecError(source, "solve.seeds", f"found {count}, allowed: a count in 1..{MAX_SEEDS}")
        seeds = tuple(range(count))
    if iterations * len(seeds) > MAX_HISTORY:
        raise SpecError(source, "solve.iterations", f"found {iterations} iterations x {len(seeds)} seeds = "
                        f"{iterations * len(seeds)}, allowed: iterations x seeds <= {MAX_HISTORY} (the recorded history, "
                        "about 100 bytes per iteration and seed, and 300 in metrics.jsonl)")
    key = _coerce(merged["key"], int, source, "solve.key")
    if key < 0 or key > MAX_SEED:
        raise SpecError(source, "solve.key", f"found {key}, allowed: an integer in 0..{MAX_SEED} (2**32 - 1, a uint32 PRNG seed)")
    oracles_raw = merged["oracles"]
    if isinstance(oracles_raw, str):
        oracles_raw = [oracles_raw]
    if not isinstance(oracles_raw, list) or not oracles_raw or not all(isinstance(o, str) for o in oracles_raw):
        raise SpecError(source, "solve.oracles", f"found {_describe(oracles_raw)}, allowed: a non-empty list of oracle names ({', '.join(ORACLES.names())})")
    if len(set(oracles_raw)) != len(oracles_raw):
        raise SpecError(source, "solve.oracles", f"found a repeated name in {oracles_raw!r}, allowed: distinct oracle names")
    variants_raw = merged.get("variants", oracles_raw)
    if isinstance(variants_raw, str):
        variants_raw = [variants_raw]
    if not isinstance(variants_raw, list) or not variants_raw or not all(isinstance(o, str) and o for o in variants_raw):
        raise SpecError(source, "solve.variants", f"found {_describe(variants_raw)}, allowed: a non-empty list of variant, oracle or method names")
    if len(set(variants_raw)) != len(variants_raw):
        raise SpecError(source, "solve.variants", f"found a repeated name in {variants_raw!r}, allowed: distinct names")
    chunk = merged.get("chunk")
    if chunk is not None:
        chunk = _coerce(chunk, int, source, "solve.chunk")
        if chunk < 1 or chunk > MAX_ITERATIONS:
            raise SpecError(source, "solve.chunk", f"found {chunk}, allowed: an integer in 1..{MAX_ITERATIONS}")
    on_non_finite = _coerce(merged["on_non_finite"], str, source, "solve.on_non_finite")
    if on_non_finite not in NON_FINITE_POLICIES:
        raise SpecError(source, "solve.on_non_finite", f"found {on_non_finite!r}, allowed: 'stop' (end that seed) or 'skip' (skip the update)")
    opt_raw = _table(merged, "optimizer", source, "solve.optimizer") if "optimizer" in merged else dict(DEFAULT_OPTIMIZER)
    optimizer = _build_optimizer(opt_raw, source, "solve.optimizer", iterations)
    return SolveSpec(iterations=iterations, seeds=seeds, key=key, oracles=tuple(oracles_raw), optimizer=optimizer, chunk=chunk,
                     on_non_finite=on_non_finite, variants=tuple(variants_raw))


def _build_optimizer(table: Mapping, source: str, key: str, iterations: int):
    """An optimiser config from a ``{name = ..., step = ...}`` table (name defaults to sgd); a schedule's
    ``decay_steps = 0`` becomes the run's iterations."""
    opt_name = table.get("name", "sgd")
    if not isinstance(opt_name, str):
        raise SpecError(source, f"{key}.name", f"found {_describe(opt_name)}, allowed: {', '.join(OPTIMIZERS.names())}")
    try:
        opt_cls = OPTIMIZERS.get(opt_name)
    except UnknownName as e:
        raise SpecError(source, f"{key}.name", str(e)) from None
    opt = build_config(opt_cls, table, source, f"{key}.", ignore=("name",))
    if getattr(opt, "schedule", "constant") != "constant" and getattr(opt, "decay_steps", 1) == 0:
        try:
            opt = dataclasses.replace(opt, decay_steps=iterations)
        except FieldError as e:
            raise SpecError(source, f"{key}.{e.field}", f"found {e.found!r}, allowed: {e.allowed}") from None
    return opt


def _oracle_fields(registry=ORACLES) -> set[str]:
    fields: set[str] = set()
    for name in registry:
        cls = registry.get(name)
        if dataclasses.is_dataclass(cls):
            fields.update(parameter_types(cls))
    return fields


def _oracle_params(raw: Mapping, cls: type, name: str) -> dict:
    """An oracle's parameters from the [oracle] table: the shared scalars it has, then its own table."""
    own = parameter_types(cls) if dataclasses.is_dataclass(cls) else {}
    params = {k: v for k, v in raw.items() if not isinstance(v, dict) and k in own}
    table = raw.get(name, {})
    params.update(table if isinstance(table, dict) else {})
    return params


def _build_oracles(raw: Mapping, names: Sequence[str], source: str, registry=ORACLES) -> dict:
    """The oracles named in ``solve.oracles``; every ``[oracle.<name>]`` table in the file is validated, used or not."""
    shared = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    known_fields = sorted(_oracle_fields(registry))
    for k in shared:
        if k not in known_fields:
            allowed = known_fields + [f"[oracle.<name>] tables for {', '.join(registry.names())}"]
            raise _unknown(source, f"oracle.{k}", allowed)
    for k in tables:
        if k not in registry and ":" not in k:
            raise _unknown(source, f"oracle.{k}", registry.names(), what="oracle")
    oracles = {}
    for name in list(names) + [t for t in tables if t not in names]:
        try:
            cls = registry.get(name)
        except UnknownName as e:
            hint = (f"; {name!r} is a method: name it in solve.variants (--variants), not solve.oracles (--oracles)"
                    if name in METHODS else "")
            raise SpecError(source, "solve.oracles" if name in names else f"oracle.{name}", str(e) + hint) from None
        built = build_config(cls, _oracle_params(raw, cls, name), source, f"oracle.{name}.")
        if name in names:
            oracles[name] = built
    return oracles


def _lookup(registry, name: str, source: str, key: str):
    try:
        return registry.get(name)
    except UnknownName as e:
        raise SpecError(source, key, str(e)) from None


def _build_variant(name: str, table: Mapping, raw: Mapping, solve: SolveSpec, source: str, registry=ORACLES) -> Variant:
    """One variant from its ``[variants.NAME]`` table (empty for a bare oracle or method name)."""
    prefix = f"variants.{name}."
    if "oracle" in table and "method" in table:
        raise SpecError(source, f"variants.{name}", "found both 'oracle' and 'method', allowed: one of them")
    for k in ("oracle", "method"):
        if k in table and not (isinstance(table[k], str) and table[k]):
            raise SpecError(source, prefix + k, f"found {_describe(table[k])}, allowed: a name")
    if "oracle" in table or ("method" not in table and (name in registry or (":" in name and name not in METHODS))):
        kind, base = "oracle", table.get("oracle", name)
    elif "method" in table or name in METHODS:
        kind, base = "method", table.get("method", name)
    else:
        known = list(raw.get("variants", {}) or {}) + registry.names() + [m for m in METHODS.names() if m != "gradient"]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(source, f"variants.{name}" if table else "solve.variants",
                        f"unknown variant {name!r}{hint}: not a [variants.{name}] table, an oracle or a method; "
                        f"known: {', '.join(known)}")
    params = {k: v for k, v in table.items() if k not in OWN_VARIANT_KEYS}
    own_iterations = None
    if "iterations" in table:
        own_iterations = _coerce(table["iterations"], int, source, prefix + "iterations")
        if own_iterations < 1:
            raise SpecError(source, prefix + "iterations", f"found {own_iterations}, allowed: an integer >= 1")
        if own_iterations > MAX_ITERATIONS or own_iterations * len(solve.seeds) > MAX_HISTORY:
            # the caps of solve.iterations hold for a variant's own count (an equal-budget compare sets it)
            raise SpecError(source, prefix + "iterations", f"found {own_iterations} iterations x {len(solve.seeds)} "
                            f"seeds, allowed: an integer in 1..{MAX_ITERATIONS} with iterations x seeds <= "
                            f"{MAX_HISTORY} (the recorded history, about 100 bytes per iteration and seed, and 300 "
                            "in metrics.jsonl)")
    steps = own_iterations or solve.iterations
    gradient_params = {k: params.pop(k) for k in GRADIENT_KEYS if k in params and kind == "oracle"}
    if kind == "oracle":
        cls = _lookup(registry, base, source, prefix + "oracle" if "oracle" in table else "solve.variants")
        own = list(parameter_types(cls)) if dataclasses.is_dataclass(cls) else []
        for k in params:
            if k not in own:
                raise _unknown(source, prefix + k, [k for k in OWN_VARIANT_KEYS if k != "method"] + [*GRADIENT_KEYS, *own])
        merged = {**_oracle_params(_table(raw, "oracle", source, "oracle"), cls, base), **params}
        oracle = build_config(cls, merged, source, prefix)
        file_opt = _table(raw.get("solve", {}) or {}, "optimizer", source, "solve.optimizer") if "optimizer" in (raw.get("solve") or {}) else dict(DEFAULT_OPTIMIZER)
        opt_table = table.get("optimizer", {})
        if not isinstance(opt_table, dict):
            raise SpecError(source, prefix + "optimizer", f"found {_describe(opt_table)}, allowed: a table such as {{ name = \"adam\", step = 0.1 }}")
        if opt_table.get("name", file_opt.get("name", "sgd")) == file_opt.get("name", "sgd"):
            opt_table = {**file_opt, **opt_table}  # same optimiser: the variant overrides some of the file's keys
        optimizer = _build_optimizer(opt_table, source, prefix + "optimizer", steps)
        schedule = _coerce(gradient_params.get("sigma_schedule", "constant"), str, source, prefix + "sigma_schedule")
        final = _coerce(gradient_params.get("sigma_final", 0.0), float, source, prefix + "sigma_final")
        if schedule != "constant" and "sigma_final" not in gradient_params:
            raise SpecError(source, prefix + "sigma_final", f"missing; allowed: the σ at the last iteration (a number > 0) for sigma_schedule = {schedule!r}")
        try:
            method = GradientMethod(oracle, optimizer, skip_non_finite=solve.on_non_finite == "skip",
                                    sigma_schedule=schedule, sigma_final=final,
                                    sigma_steps=steps if schedule != "constant" else 0)
        except FieldError as e:
            raise SpecError(source, prefix + e.field, f"found {e.found!r}, allowed: {e.allowed}") from None
        resolved = {"oracle": base, **{k: v for k, v in config_dict(oracle).items() if k != "name"},
                    "optimizer": config_dict(optimizer)}
        if schedule != "constant":
            resolved.update(sigma_schedule=schedule, sigma_final=final)
    else:
        variant_keys = [k for k in OWN_VARIANT_KEYS if k not in ("oracle", "optimizer")]
        if "optimizer" in table:
            known = METHODS.get(base) if base in METHODS else None
            raise _unknown(source, prefix + "optimizer", variant_keys + (list(parameter_types(known)) if dataclasses.is_dataclass(known) else []))
        if base == "gradient":
            raise SpecError(source, prefix + "method", "'gradient' is built from an oracle: write oracle = \"<name>\" and an optimizer table instead")
        cls = _lookup(METHODS, base, source, prefix + "method" if "method" in table else "solve.variants")
        defaults = _table(_table(raw, "method", source, "method"), base, source, f"method.{base}") if ":" not in base else {}
        if dataclasses.is_dataclass(cls):  # each key named where it is written: [method.NAME] or the variant's table
            fields = list(parameter_types(cls))
            _check_keys(defaults, fields, source, f"method.{base}.")
            _check_keys(params, variant_keys + fields, source, prefix)
        method = build_config(cls, {**defaults, **params}, source, prefix)
        resolved = {"method": base, **{k: v for k, v in config_dict(method).items() if k != "name"}}
    method, starts = _with_starts(method, table, source, prefix)
    resolved.update(starts)
    if own_iterations is not None:
        resolved["iterations"] = own_iterations
    return Variant(name=name, kind=kind, base=base, method=method, table=resolved, iterations=own_iterations)


def _with_starts(method: Any, table: Mapping, source: str, prefix: str) -> tuple[Any, dict]:
    """The variant's method as K starts, best kept (`MultiStart`), when its table sets ``starts`` > 1 or a
    ``start_spread``, with the resolved keys; else the method itself and no keys."""
    if not any(k in table for k in START_KEYS):
        return method, {}
    starts = _coerce(table.get("starts", 1), int, source, prefix + "starts")
    spread = _coerce(table.get("start_spread", 0.0), float, source, prefix + "start_spread")
    if starts == 1 and spread == 0:
        return method, {"starts": 1}
    try:
        return MultiStart(method, starts=starts, start_spread=spread), {"starts": starts, "start_spread": spread}
    except FieldError as e:
        raise SpecError(source, prefix + e.field, f"found {e.found!r}, allowed: {e.allowed}") from None


def _build_variants(raw: Mapping, solve: SolveSpec, source: str, registry=ORACLES,
                    defined: Optional[dict] = None) -> dict:
    """The variants named in ``solve.variants`` (every ``[variants.*]`` and ``[method.*]`` table is validated);
    ``defined`` (if given) receives {name: (kind, base, own keys)} of every variant built, selected or not."""
    tables = _table(raw, "variants", source, "variants")
    for name, t in tables.items():
        if not isinstance(t, dict):
            raise SpecError(source, f"variants.{name}", f"found {_describe(t)}, allowed: a table (oracle = ... or method = ...)")
    for name, t in _table(raw, "method", source, "method").items():
        if not isinstance(t, dict):
            raise SpecError(source, f"method.{name}", f"found {_describe(t)}, allowed: a table of the method's parameters")
        if name not in METHODS and ":" not in name:
            raise _unknown(source, f"method.{name}", [m for m in METHODS.names() if m != "gradient"], what="method")
    built = {}
    for name in list(solve.variants) + [n for n in tables if n not in solve.variants]:
        table = tables.get(name, {})
        v = _build_variant(name, table, raw, solve, source, registry)
        if defined is not None:
            own = frozenset(k for k in table if k not in (*OWN_VARIANT_KEYS, *GRADIENT_KEYS))
            defined[name] = (v.kind, v.base, own)
        if name in solve.variants:
            built[name] = v
    return built


# ------------------------------------------------------------------------------------------ preflight

TRACE_ALLOWED = ("pure JAX functions that trace under jax.vmap and jax.grad (jnp.where or lax.cond for a choice on a "
                 "value; lax.scan or a fori_loop with fixed bounds for a loop: lax.while_loop has no reverse-mode "
                 "gradient)")


def _applicable(method: Any, problem: Any) -> None:
    """Raise ValueError (one sentence) when a method or an oracle cannot run on ``problem`` (iLQR on a policy or a
    one-step problem): `trajopt.methods.base.check_applicable`, the rule on its owner."""
    from trajopt.methods.base import check_applicable

    check_applicable(method, problem)


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
    import jax

    from trajopt.methods.base import REQUIRED_INFO, state_decision

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
    import jax

    def estimates(key):
        keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(repeats))
        return jax.vmap(lambda k: oracle.estimate(k, problem, problem.U0))(keys)

    jax.eval_shape(estimates, jax.eval_shape(jax.random.PRNGKey, 0))


def _trace_refused(spec: "Spec", key: str, what: str, how: str, mine: list[str], e: Exception) -> SpecError:
    return SpecError(spec.source, key, f"found {type(e).__name__} in {' or '.join(mine)} when {what} was traced as "
                     f"the run traces it ({how}): {_first_line(e).rstrip('.')}; allowed: {TRACE_ALLOWED}")


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
            _applicable(v.method, problem)
        except ValueError as e:
            raise SpecError(spec.source, f"variants.{name}", _first_line(e)) from None
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
            _applicable(oracle, problem)
        except ValueError as e:
            raise SpecError(spec.source, f"oracle.{name}", _first_line(e)) from None
        mine = user_code(spec, "oracle", name) if trace else []
        if mine:
            try:
                _traced_estimate(oracle, problem)
            except Exception as e:  # noqa: BLE001  user code under tracing: whatever it raised
                raise _trace_refused(spec, f"oracle.{name}", f"one estimate of {name}", "under vmap over repeats",
                                     mine, e) from None


def _check_run_name(raw: Mapping, source: str) -> None:
    """The top-level ``name`` names the default run folder (``runs/<name>/...``): one plain path component
    (letters, digits, ``_``, ``-``, ``.``; not ``.`` or ``..``), so that no file can put a run outside runs/."""
    import re

    value = raw.get("name")
    if value is not None and (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", value) or value in (".", "..")):
        raise SpecError(source, "name", f"found {value!r}, allowed: a plain name of letters, digits, '_', '-' and '.' "
                        "(at most 128; it names the run folder runs/<name>/, so no '/', '\\' or '..')")


def parse(raw: Mapping, source: str = "<string>", name: Optional[str] = None, *, closed_loop: bool = False) -> Spec:
    """Validate a decoded TOML document and build its Spec.

    ``closed_loop``: the spec of a closed-loop run (`trajopt mpc`): a policy file's variants then name open-loop
    oracles (the planner chooses the controls over the horizon; the policy is not used), as in any other file."""
    _check_keys(raw, TOP_LEVEL, source, "")
    for k in ("name", "title", "description"):
        if k in raw and not isinstance(raw[k], str):
            raise SpecError(source, k, f"found {_describe(raw[k])}, allowed: a string")
    _check_run_name(raw, source)
    system_raw = _table(raw, "system", source, "system")
    if "system" not in raw:
        raise SpecError(source, "system", "missing; allowed: a [system] table with a name")
    system, system_name, allow_unstable = _build_system(system_raw, source)
    _check_stability(system, allow_unstable, source)
    task_raw = _table(raw, "task", source, "task")
    policy = None
    registry = ORACLES
    if "policy" in raw:
        from trajopt.policies import POLICY_ORACLES

        policy, task = _build_policy(raw, system, source)
        if not closed_loop:
            registry = POLICY_ORACLES  # the same oracle names, estimated through the closed loop
    else:
        if "initial_state" in raw:
            raise SpecError(source, "initial_state", "allowed only with a [policy] table (a closed-loop policy problem)")
        task = _build_task(task_raw, system, source)
    closed_loop = None
    if any(k in raw for k in ("mpc", "plant")) or ("success" in raw and policy is None):
        if getattr(system, "one_step", False):
            k = next(k for k in CLOSED_LOOP_TABLES if k in raw)
            raise SpecError(source, k, "allowed only for a time-stepped problem (a one-step problem has no dynamics "
                            "to step)")
        from trajopt.closedloop.success import Success
        from trajopt.closedloop.tables import build_closed_loop

        # a policy file's [success] is its own (radius, held_out, positions): the closed loop reads radius and positions
        tables = {k: v for k, v in raw.items() if not (policy is not None and k == "success")}
        closed_loop = build_closed_loop(tables, source, system, {k: v for k, v in system_raw.items()},
                                        lambda table, src: _build_system(table, src)[0])
        if policy is not None and policy.success_radius is not None:
            closed_loop = dataclasses.replace(closed_loop, success=Success(radius=policy.success_radius,
                                                                            positions=tuple(policy.positions)))
    solve = _build_solve(_table(raw, "solve", source, "solve"), source)
    oracles = _build_oracles(_table(raw, "oracle", source, "oracle"), solve.oracles, source, registry)
    defined: dict = {}
    variants = _build_variants(raw, solve, source, registry, defined)
    stem = name or raw.get("name") or Path(source).stem
    oracle_keys = {k: frozenset(t) for k, t in _table(raw, "oracle", source, "oracle").items() if isinstance(t, dict)}
    spec = Spec(
        oracle_keys=oracle_keys,
        source=source, name=stem, title=raw.get("title", stem), description=raw.get("description", ""),
        system=system, task=task, solve=solve, oracles=oracles, variants=variants, policy=policy, system_name=system_name,
        allow_unstable=allow_unstable, raw_task=dict(task_raw), defined_variants=defined, closed_loop=closed_loop,
    )
    return spec


# ------------------------------------------------------------------------------------------ overrides


def key_type(raw: Mapping, key: str) -> type:
    """The Python type a dotted key takes in a problem file (float for vectors and unknown keys)."""
    parts = key.split(".")
    try:
        if parts[0] == "task":
            return int if parts[1:] == ["horizon"] else float
        if parts[0] == "system" and len(parts) == 2:
            return parameter_types(SYSTEMS.get(raw["system"]["name"])).get(parts[1], float)
        if parts[0] == "oracle" and len(parts) == 3:
            return parameter_types(ORACLES.get(parts[1])).get(parts[2], float)
        if parts[0] == "oracle" and len(parts) == 2:
            for name in ORACLES:
                types = parameter_types(ORACLES.get(name))
                if parts[1] in types:
                    return types[parts[1]]
        if parts[0] == "variants" and len(parts) == 3:
            if parts[2] in ("iterations", "starts"):
                return int
            table = raw.get("variants", {}).get(parts[1], {})
            base = table.get("oracle") or table.get("method") or parts[1]
            registry = METHODS if ("method" in table or (base in METHODS and base not in ORACLES)) else ORACLES
            return parameter_types(registry.get(base)).get(parts[2], float)
        if parts[0] == "solve" and len(parts) == 3 and parts[1] == "optimizer":
            return parameter_types(OPTIMIZERS.get(raw["solve"]["optimizer"].get("name", "sgd"))).get(parts[2], float)
        if parts[0] == "solve" and len(parts) == 2:
            return int if parts[1] in ("iterations", "seeds", "key", "chunk") else str
    except (KeyError, TypeError, UnknownName, AttributeError):
        pass
    return float



def parse_value(text: str, source: str = "<--set>", key: str = "") -> Any:
    """A ``--set`` value as TOML (``1e-3``, ``true``, ``[1, 2]``, ``"sgd"``); bare words are strings. A value nested
    thousands deep is a SpecError (``source``, ``key``), not the parser's RecursionError."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise SpecError(source, key, f"found nesting deeper than {MAX_DEPTH} levels, allowed: tables and arrays "
                        f"nested at most {MAX_DEPTH} deep") from None


def apply_overrides(raw: dict, overrides: Sequence[str], source: str) -> dict:
    """Apply ``key.path=value`` assignments to a decoded document (a deep copy is returned)."""
    import copy

    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise SpecError(source, f"--set {item}", "found no '=', allowed: KEY.PATH=VALUE, e.g. oracle.aobg.gamma=0.01")
        path, _, text = item.partition("=")
        keys = [k.strip() for k in path.strip().split(".")]
        if not all(keys):
            raise SpecError(source, f"--set {item}", "found an empty key, allowed: KEY.PATH=VALUE")
        value = parse_value(text.strip(), source, f"--set {path.strip()}")
        check_depth(value, source, f"--set {path.strip()}", start=len(keys))  # the key path nests too
        table = out
        for i, k in enumerate(keys[:-1]):
            nxt = table.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise SpecError(source, ".".join(keys[: i + 1]), f"is {_describe(nxt)}, not a table; cannot set {path}")
            table = nxt
        table[keys[-1]] = value
    return out


USES = ("variants", "oracles", "all", "none")


def _fields(cls_or_obj: Any) -> set:
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    return set(parameter_types(cls)) if dataclasses.is_dataclass(cls) else set()


def unreached_override(spec: Spec, item: str, use: str = "variants", verb: str = "this command") -> Optional[str]:
    """Why a command-line override ``KEY.PATH=VALUE`` reaches nothing the command runs; None when it reaches something.

    Only the keys that configure what is run are checked: shared ``[oracle]`` keys, ``[oracle.NAME]``,
    ``[method.NAME]``, ``[variants.NAME]`` and ``[solve.optimizer]``; problem keys (system, task, ...) and the rest of
    ``[solve]`` always apply. ``use`` says what the command runs: "variants" (solve, compare: the selected
    variants), "oracles" (diagnose, sweep, landscape: ``solve.oracles``), "all" (validate: either) or "none" (a
    command that runs no oracle, method or optimiser). A file's own tables are not checked here (an unused
    ``[oracle.NAME]`` table or a shared ``[oracle]`` default is validated and kept): an override given on the
    command line that reaches nothing would be a silent no-op, and is refused instead.
    """
    if use not in USES:
        raise ValueError(f"use: found {use!r}, allowed: {', '.join(USES)}")
    path, _, text = item.partition("=")
    parts = [k.strip() for k in path.strip().split(".")]
    value = parse_value(text.strip())
    variants = dict(spec.variants) if use in ("variants", "all") else {}
    oracles = dict(spec.oracles) if use in ("oracles", "all") else {}
    for v in variants.values():
        if v.kind == "oracle":
            oracles.setdefault(v.base, v.oracle)
    methods = {v.base for v in variants.values() if v.kind == "method"}
    if use == "variants":
        selected = list(variants)
    elif use == "oracles":
        selected = list(oracles)
    else:
        selected = list(dict.fromkeys([*variants, *spec.oracles]))

    def through(kind: str, bases) -> list[str]:  # the file's variants that take a key of these oracles or methods
        return [n for n, (k, b, _) in spec.defined_variants.items() if k == kind and b in bases and n not in bases]

    def shadowed(kind: str, bases, field: str, shared: bool = False) -> Optional[str]:
        """Why the override of ``field`` reaches none of the selected variants (or studied oracles) of these bases
        although some are selected: each sets the field in a table that wins, its own [variants.NAME] table or,
        for a ``shared`` [oracle] key, its oracle's [oracle.NAME] table (in the file or another override)."""
        if use == "oracles":
            winners = [f"oracle.{n}.{field}" for n in bases if shared and field in spec.oracle_keys.get(n, ())]
            if shared and bases and len(winners) == len(bases):
                return (f"reaches no studied oracle: {', '.join(winners)} set{'s' if len(winners) == 1 else ''} it "
                        "in the file or another override (an [oracle.NAME] key wins over the shared one; set that "
                        "key instead)")
            return None
        reached = [n for n in variants if spec.defined_variants.get(n, (None,))[0] == kind
                   and spec.defined_variants[n][1] in bases]
        winners = []
        for n in reached:
            base = spec.defined_variants[n][1]
            if field in spec.defined_variants[n][2]:
                winners.append(f"variants.{n}.{field}")
            elif shared and kind == "oracle" and field in spec.oracle_keys.get(base, ()):
                winners.append(f"oracle.{base}.{field}")
        if reached and use == "variants" and len(winners) == len(reached):
            winners = list(dict.fromkeys(winners))
            return (f"reaches no selected variant: {', '.join(winners)} set{'s' if len(winners) == 1 else ''} it "
                    "in the file or another override (set that key instead)")
        return None

    head = parts[0]
    if head == "oracle" and len(parts) == 2 and not isinstance(value, dict):  # a shared key: every oracle with it
        field = parts[1]
        having = {n for n, o in oracles.items() if field in _fields(o)}
        if having:
            return shadowed("oracle", having, field, shared=True)
        bases = [n for n in ORACLES.names() if field in _fields(ORACLES.get(n))]
        targets = bases + through("oracle", set(bases))
    elif head in ("oracle", "method", "variants") and len(parts) >= 2:
        name = parts[1]
        if name in {"oracle": oracles, "method": methods, "variants": variants}[head]:
            return shadowed(head, {name}, parts[2]) if head != "variants" and len(parts) == 3 else None
        targets = [name] + (through(head, {name}) if head != "variants" else [])
    elif parts[:2] == ["solve", "optimizer"]:
        own = getattr(spec.solve.optimizer, "name", None)
        if any(v.kind == "oracle" and getattr(v.optimizer, "name", None) == own for v in variants.values()):
            return None
        what = f"applies to variants of an oracle under the file's optimiser ({own})"
        if use in ("oracles", "none"):
            return f"{what}, in solve and compare; {verb} runs no optimiser"
        return f"{what} (none selected: each selected variant is a method or has an optimiser of its own); " \
               f"selected: {', '.join(selected) or 'none'}"
    elif head == "solve" and len(parts) == 2 and use != "all":
        return _unreached_solve_key(spec, parts[1], value, use, verb, variants)
    elif head == "success" and use in ("oracles", "none") and spec.policy is not None:
        return f"applies to the held-aside success rate that solve and compare report; {verb} computes none"
    else:
        return None
    shown = ", ".join(targets) or "nothing registered"
    if use == "none":
        return f"applies to {shown}; {verb} runs no oracle, method or variant"
    return f"applies to {shown} (not selected); selected: {', '.join(selected) or 'none'}"


RUN_KEYS = ("iterations", "seeds", "chunk", "on_non_finite", "variants")  # [solve] keys only runs read


def _unreached_solve_key(spec: Spec, key: str, value: Any, use: str, verb: str, variants: dict) -> Optional[str]:
    """`unreached_override` for a ``solve.KEY`` (the optimiser aside): ``key`` (the root PRNG key) reaches every
    command; the run keys (`RUN_KEYS`) only solve and compare; ``oracles`` the oracle-level studies' oracles (which
    they set themselves) and compare's variants where ``solve.variants`` is not set; ``on_non_finite = "skip"``
    only gradient variants (a method's seed stops at a non-finite cost)."""
    if use in ("oracles", "none"):
        if key in RUN_KEYS:
            return f"applies to the runs of solve and compare (variants, iterations, seeds); {verb} runs none"
        if key == "oracles":
            return (f"{verb} runs no oracle" if use == "none" else
                    f"{verb} sets the oracles it studies itself (--oracles where it has one)")
        return None
    if key == "oracles" and tuple(spec.solve.variants) != tuple(spec.solve.oracles):
        return (f"names the variants only where solve.variants is not set; solve.variants is set "
                f"({', '.join(spec.solve.variants)}) and {verb} runs those (--variants or --set solve.variants "
                "chooses them)")
    if key == "on_non_finite" and value == "skip" and variants and all(v.kind != "oracle" for v in variants.values()):
        return (f"'skip' skips a gradient variant's update at a non-finite gradient (oracle = ...); none is selected "
                f"({', '.join(variants)}: a method's seed stops at a non-finite cost)")
    return None


def check_override(spec: Spec, item: str, use: str = "variants", verb: str = "this command",
                   label: Optional[str] = None) -> None:
    """`unreached_override` as a SpecError naming the file and the override (``--set KEY.PATH``, or ``label``)."""
    why = unreached_override(spec, item, use, verb)
    if why is not None:
        raise SpecError(spec.source, label or f"--set {item.partition('=')[0].strip()}", why)



def iteration_overrides(spec: "Spec", overrides: Sequence[str]) -> list[str]:
    """``variants.NAME.iterations=N`` items that carry ``solve.iterations=N`` given as an override (``--iterations``
    on the command line, ``Loaded.compare(iterations=N)``) to every selected variant that sets its own
    ``iterations`` in the file: an explicit override reaches them too instead of being silently outweighed by
    the file. A variant whose own iterations are also among ``overrides`` keeps those. Load the file again with
    ``overrides + iteration_overrides(spec, overrides)`` (their step and σ schedules then span N)."""
    keys = [str(item).split("=", 1)[0].strip() for item in overrides]
    if "solve.iterations" not in keys:
        return []
    n = spec.solve.iterations
    return [f"variants.{name}.iterations={n}" for name, v in spec.variants.items()
            if v.iterations is not None and v.iterations != n and f"variants.{name}.iterations" not in keys]


def load(path: str | Path, overrides: Sequence[str] = (), *, closed_loop: bool = False) -> Spec:
    """Read, override and validate a problem file (``closed_loop``: as `parse`)."""
    source = str(path)
    return parse(apply_overrides(read_toml(path), overrides, source), source, closed_loop=closed_loop)


def loads(text: str, source: str = "<string>", name: Optional[str] = None, overrides: Sequence[str] = ()) -> Spec:
    return parse(apply_overrides(toml_loads(text, source), overrides, source), source, name=name)
