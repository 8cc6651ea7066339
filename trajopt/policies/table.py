"""A policy problem file's tables: ``[policy]``, ``[initial_state]``, ``[success]`` and its ``[task]``.

    [policy]                   # a registered policy (`trajopt.policies.POLICIES`) and its parameters
    name = "linear"
    [initial_state]            # the distribution of start states (`trajopt.policies.INITIAL_STATES`)
    name = "uniform"
    low = [-0.5, -0.1]
    high = [0.5, 0.1]
    [task]
    horizon = 100              # closed-loop steps H
    goal = [0.0, 0.0]          # the cost as an open-loop task's (`trajopt.task`): goal, Q, R, Qf, wrap
    Q = [1.0, 0.1]
    R = [0.01]
    sigma = 0.05               # PolicyProblem options: sigma, n_init, resample, n_eval and the seeds
    theta0 = [0.0, 0.0]        # [p] initial parameters (default: the policy's own)
    [success]                  # the held-aside success rate (optional)
    radius = 0.1               # a final state within this distance of the goal ...
    positions = [0, 1]         # ... in these state coordinates
    held_out = 500             # on this many held-aside initial states

`build_policy` validates them (a `PolicySpec` and the task) and builds the `PolicyProblem` once, cheaply, so that
its own checks run before anything compiles; `check_closed_loop_sizes` bounds what one evaluation simulates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from trajopt.checks import FieldError
from trajopt.policies import INITIAL_STATES, POLICIES, PolicyProblem
from trajopt.problem import QuadraticCost
from trajopt.tables import check_keys, coerce, float_array, registered, sub_table
from trajopt.task import MAX_HORIZON, TaskSpec, vector, weight, wrap_indices
from trajopt.tomlio import SpecError

POLICY_TASK_KEYS = ("horizon", "goal", "Q", "R", "Qf", "wrap", "sigma", "n_init", "resample", "n_eval", "eval_seed",
                    "train_seed", "test_seed", "theta0")
POLICY_OPTIONS = {"sigma": float, "n_init": int, "resample": bool, "n_eval": int, "eval_seed": int, "train_seed": int,
                  "test_seed": int}
SUCCESS_KEYS = ("radius", "held_out", "positions")
MAX_CLOSED_LOOP_STEPS = 10**8  # a policy problem's batch x horizon: steps one evaluation simulates


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


def build_policy(raw: Mapping, system: Any, source: str) -> tuple[PolicySpec, TaskSpec]:
    """The [policy], [initial_state] and [success] tables and the policy problem's [task] (see `PolicySpec`);
    ``raw`` is the whole document."""
    if getattr(system, "one_step", False):
        raise SpecError(source, "policy", "a feedback policy needs a time-stepped system (step(x, u)); this one is one-step")
    policy, policy_name = registered(POLICIES, sub_table(raw, "policy", source, "policy"), source, "policy")
    if "initial_state" not in raw:
        raise SpecError(source, "initial_state", "missing; allowed: an [initial_state] table (name = point, uniform, gaussian "
                        "or tennis, with its parameters)")
    initial, initial_name = registered(INITIAL_STATES, sub_table(raw, "initial_state", source, "initial_state"), source,
                                       "initial_state")
    t = sub_table(raw, "task", source, "task")
    check_keys(t, POLICY_TASK_KEYS, source, "task.")
    n, m = int(system.state_size), int(system.control_size)
    if "horizon" not in t:
        raise SpecError(source, "task.horizon", "missing; allowed: an integer >= 1 (closed-loop steps H)")
    horizon = coerce(t["horizon"], int, source, "task.horizon")
    options = {k: coerce(t[k], typ, source, f"task.{k}") for k, typ in POLICY_OPTIONS.items() if k in t}
    Q = weight(t, "Q", n, source)
    p = _param_size(policy, policy_name, n, m, source)
    theta0 = None
    if "theta0" in t:
        theta0 = float_array(t["theta0"], source, "task.theta0")
        if theta0.shape != (p,):
            raise SpecError(source, "task.theta0", f"found shape {list(theta0.shape)}, allowed: a list of {p} numbers "
                            f"(the {policy_name} policy's size for n = {n}, m = {m})")
    if theta0 is None:
        initial_params = policy.init_params(n, m)  # called once: a user's initialiser may draw from a global RNG
        if np.shape(initial_params) != (p,):
            raise SpecError(source, "policy.name", f"{policy_name}: init_params({n}, {m}) returned shape "
                            f"{list(np.shape(initial_params))}, allowed: a vector of param_size({n}, {m}) = {p} numbers")
    U0 = (np.asarray(initial_params, float) if theta0 is None else theta0)[None]
    _check_policy_output(policy, policy_name, U0[0], n, m, source)
    task = TaskSpec(horizon=horizon, U0=U0, goal=vector(t, "goal", n, source), Q=Q, R=weight(t, "R", m, source),
                    Qf=weight(t, "Qf", n, source, Q), wrap=wrap_indices(t, n, source))  # checked as an open-loop task's
    success = sub_table(raw, "success", source, "success")
    check_keys(success, SUCCESS_KEYS, source, "success.")
    radius = coerce(success["radius"], float, source, "success.radius") if "radius" in success else None
    if radius is not None and not radius > 0:
        raise SpecError(source, "success.radius", f"found {radius}, allowed: a number > 0")
    held_out = coerce(success.get("held_out", 500), int, source, "success.held_out")
    if not 1 <= held_out <= 100_000:
        raise SpecError(source, "success.held_out", f"found {held_out}, allowed: an integer in 1..100000")
    positions = tuple(coerce(success.get("positions", [0, 1]), tuple[int, ...], source, "success.positions"))
    if not positions or any(not 0 <= i < n for i in positions):
        raise SpecError(source, "success.positions", f"found {list(positions)}, allowed: state indices in 0..{n - 1}")
    check_closed_loop_sizes(horizon, options, held_out, source)
    spec = PolicySpec(policy=policy, policy_name=policy_name, initial=initial, initial_name=initial_name,
                      options=options, theta0=None if theta0 is None else tuple(theta0.tolist()),
                      success_radius=radius, held_out=held_out, positions=positions)
    try:  # the problem's own checks (sizes, seeds, the distribution's state size) before anything compiles
        spec_problem_check(system, policy, initial, horizon, options, U0[0])
    except FieldError as e:
        key = f"task.{e.field}" if e.field in POLICY_TASK_KEYS else e.field
        raise SpecError(source, key, f"found {e.found!r}, allowed: {e.allowed}") from None
    return spec, task


def _param_size(policy, policy_name: str, n: int, m: int, source: str) -> int:
    """``policy.param_size(n, m)``, refused at ``policy.name`` unless it is a positive integer (a float such as 3.0
    is not a size)."""
    p = policy.param_size(n, m)
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
        raise SpecError(source, "policy.name", f"{policy_name}: param_size({n}, {m}) returned {p!r}, allowed: an "
                        "integer >= 1 (the size of theta)")
    return int(p)


def _check_policy_output(policy, policy_name: str, theta, n: int, m: int, source: str) -> None:
    """The policy's control for one state, traced abstractly (`jax.eval_shape`, nothing computed): [m] floats, or
    refused at ``policy.name`` naming what it returned (a wrong shape otherwise surfaced as a failed matrix product
    in the oracle's trace, or was broadcast silently)."""
    try:
        out = jax.eval_shape(policy, jnp.asarray(theta, jnp.result_type(float)), jnp.zeros(n, jnp.result_type(float)))
    except Exception as e:  # noqa: BLE001  user code: its own error, named
        raise SpecError(source, "policy.name", f"{policy_name}(theta, x) raised {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''} (theta [{np.size(theta)}], x [{n}]); allowed: a "
                        f"pure JAX function returning the control, [{m}]") from None
    shape = getattr(out, "shape", None)
    if shape != (m,) or not jnp.issubdtype(getattr(out, "dtype", jnp.int32), jnp.floating):
        found = f"shape {list(shape)} {out.dtype}" if shape is not None else type(out).__name__
        raise SpecError(source, "policy.name", f"{policy_name}(theta, x) returned {found}, allowed: the control, a "
                        f"float vector of shape [{m}] (the system's control_size)")


def check_closed_loop_sizes(horizon: int, options: Mapping, held_out: int, source: str) -> None:
    """Bound what one evaluation of a policy problem simulates, before the problem is built (building it draws
    its evaluation and training batches): the horizon, and n_eval x horizon (the evaluation batch behind every
    reported cost), the decision batch x horizon and held_out x horizon (the success rate's rollouts, kept whole)
    each at most `MAX_CLOSED_LOOP_STEPS` closed-loop steps."""
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
    goal = jnp.zeros(int(system.state_size))
    cost = QuadraticCost(Q=jnp.eye(goal.size), R=jnp.eye(int(system.control_size)), Qf=jnp.eye(goal.size), goal=goal)
    PolicyProblem(name="check", system=system, policy=policy, task_cost=cost, initial=initial, horizon=horizon,
                  theta0=jnp.asarray(theta0), **options)
