"""A problem file's ``[task]`` table: what a trajectory problem asks of its system (`trajopt.problem`).

    [task]                       # a time-stepped system
    horizon = 50                 # T steps
    x0 = [0.0, 0.0, 1.0, 0.0]    # [n] start (default: the system's own ``default_x0()``, where it has one)
    goal = [1.0, 0.0, 1.0, 0.0]  # [n]
    Q = [1.0, 0.1, 1.0, 0.1]     # [n] diagonal or [n, n] symmetric weights, >= 0 on the diagonal
    R = [0.01]                   # [m] or [m, m]
    Qf = [100.0, 1.0, 100.0, 1.0]  # [n] or [n, n]; default Q
    u_init = 0.0                 # U0 [T, m]: a number, one control [m], or T controls
    wrap = [0]                   # state indices whose error is an angle (wrapped to [-pi, pi))

A one-step system (``one_step = True``: a cost of the decision) has ``u_init`` only. The cost these describe is
`trajopt.problem.QuadraticCost`: J = sum_{t<T} (e_t' Q e_t + u_t' R u_t) + e_T' Qf e_T, e_t = x_t - goal (wrapped to
[-pi, pi) at the ``wrap`` indices).
A policy file's [task] (`trajopt.policies.table`) uses the same vectors and weights (`vector`, `weight`,
`wrap_indices`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from trajopt.tables import check_keys, coerce, describe, float_array
from trajopt.tomlio import SpecError

TASK_KEYS = ("horizon", "x0", "goal", "Q", "R", "Qf", "u_init", "wrap")
ONE_STEP_TASK_KEYS = ("u_init",)
MAX_HORIZON = 10**6
MAX_DECISION = 10**8         # horizon x control_size (U0's entries)


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


def vector(raw: Mapping, name: str, size: int, source: str) -> np.ndarray:
    """``task.<name>``: a required list of ``size`` numbers (a state such as x0 or goal)."""
    key = f"task.{name}"
    if name not in raw:
        raise SpecError(source, key, f"missing; allowed: a list of {size} numbers")
    arr = float_array(raw[name], source, key)
    if arr.shape != (size,):
        raise SpecError(source, key, f"found shape {list(arr.shape)}, allowed: a list of {size} numbers (the system's size)")
    return arr


def start_state(raw: Mapping, system: Any, n: int, source: str) -> np.ndarray:
    """task.x0, or the system's own start (``default_x0()``, e.g. an MJCF model's initial configuration)."""
    default = getattr(system, "default_x0", None)
    if "x0" not in raw and callable(default):
        return np.asarray(default(), float)
    return vector(raw, "x0", n, source)


def weight(raw: Mapping, name: str, size: int, source: str, default: Optional[np.ndarray] = None) -> np.ndarray:
    """A cost weight: a list of `size` (the diagonal) or a `size` x `size` symmetric matrix, >= 0 diagonal."""
    key = f"task.{name}"
    if name not in raw:
        if default is not None:
            return default
        raise SpecError(source, key, f"missing; allowed: a list of {size} numbers (diagonal) or a {size}x{size} matrix")
    arr = float_array(raw[name], source, key)
    if arr.shape == (size,):
        arr = np.diag(arr)
    elif arr.shape != (size, size):
        raise SpecError(source, key, f"found shape {list(arr.shape)}, allowed: a list of {size} numbers (diagonal) or a {size}x{size} matrix")
    if not np.allclose(arr, arr.T):
        raise SpecError(source, key, "found a non-symmetric matrix, allowed: a symmetric matrix")
    if np.any(np.diag(arr) < 0):
        raise SpecError(source, key, "found a negative diagonal entry, allowed: weights >= 0")
    return arr


def initial_guess(raw: Mapping, horizon: int, m: int, source: str) -> np.ndarray:
    """U0 [horizon, m] from ``task.u_init``: a number, one control [m], [horizon, m], or [horizon] when m = 1."""
    key = "task.u_init"
    arr = float_array(raw.get("u_init", 0.0), source, key)
    if arr.ndim == 0:
        return np.full((horizon, m), float(arr))
    if arr.shape == (m,):
        return np.broadcast_to(arr, (horizon, m)).copy()
    if arr.shape == (horizon, m):
        return arr
    if m == 1 and arr.shape == (horizon,):
        return arr[:, None]
    raise SpecError(source, key, f"found shape {list(arr.shape)}, allowed: a number, a list of {m} (one control), or {horizon} lists of {m}")


def wrap_indices(raw: Mapping, n: int, source: str) -> tuple[int, ...]:
    """task.wrap: distinct state indices in 0..n-1 whose error is an angle (open-loop and policy problems alike)."""
    wrap_raw = raw.get("wrap", [])
    if not isinstance(wrap_raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i in wrap_raw) \
            or len(set(wrap_raw)) != len(wrap_raw):
        raise SpecError(source, "task.wrap", f"found {describe(wrap_raw)}, allowed: a list of distinct state indices in 0..{n - 1} "
                        "whose error is an angle (wrapped to [-pi, pi))")
    return tuple(wrap_raw)


def build_task(raw: Mapping, system: Any, source: str) -> TaskSpec:
    """The ``[task]`` table of an open-loop problem on ``system`` (its state_size n and control_size m)."""
    m = int(system.control_size)
    if getattr(system, "one_step", False):
        check_keys(raw, ONE_STEP_TASK_KEYS, source, "task.")
        return TaskSpec(horizon=1, U0=initial_guess(raw, 1, m, source))
    check_keys(raw, TASK_KEYS, source, "task.")
    n = int(system.state_size)
    if "horizon" not in raw:
        raise SpecError(source, "task.horizon", "missing; allowed: an integer >= 1")
    horizon = coerce(raw["horizon"], int, source, "task.horizon")
    if horizon < 1:
        raise SpecError(source, "task.horizon", f"found {horizon}, allowed: an integer >= 1")
    if horizon > MAX_HORIZON or horizon * m > MAX_DECISION:
        raise SpecError(source, "task.horizon", f"found {horizon}, allowed: an integer in 1..{MAX_HORIZON} with horizon x "
                        f"control size <= {MAX_DECISION} (the decision and the rollout are kept in memory)")
    Q = weight(raw, "Q", n, source)
    return TaskSpec(wrap=wrap_indices(raw, n, source),
        horizon=horizon, U0=initial_guess(raw, horizon, m, source), x0=start_state(raw, system, n, source),
        goal=vector(raw, "goal", n, source), Q=Q, R=weight(raw, "R", m, source), Qf=weight(raw, "Qf", n, source, Q),
    )
