"""What every system provides.

A system is a frozen dataclass whose fields are its physical parameters (their names and types are the
keys allowed in a problem file's ``[system]`` table), with

* ``state_size`` n and ``control_size`` m,
* ``step(x: [n], u: [m]) -> [n]``, a pure one-step map (semi-implicit Euler for the contact systems),
* ``stable_dt()``: the largest explicitly stable time step, or ``inf`` where no such limit applies,
* optionally ``state_names`` (n short strings, one per state coordinate: "theta", "ball x") and
  ``control_names`` (m, one per control: "torque"), which every figure that labels a state or control axis
  uses (read them through `state_names` / `control_names` below, which fall back to "x0".."x{n-1}" and
  "u0".."u{m-1}" for a system without them, e.g. a user's). One-step systems have no state
  (``state_names = ()``); their ``control_names`` name the decision's coordinates. An MJX model's names come
  from the model: qpos and qvel per joint, ctrl per actuator (`trajopt.systems.mjx`).

A system may also say where its model came from: ``model_source``, a JSON-ready dict (an MJX model's package,
distribution and version, or its file, with the sha256 of the model and of each file it reads); every run's
result.json records it (`model_source` below).

Contact is written with real branches (``jnp.where(gap < 0, ...)`` with a strict inequality), so that
autodiff returns what a differentiable simulator returns; nothing is softened silently.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

from jax import Array

from trajopt.tables import parameter_types  # noqa: F401  (the [system] table's keys: re-exported for trajopt.systems)


class System(Protocol):
    state_size: int
    control_size: int
    dt: float

    def step(self, x: Array, u: Array) -> Array: ...

    def stable_dt(self) -> float: ...


def spring_stable_dt(stiffness: float, mass: float) -> float:
    """Largest stable semi-implicit Euler step for a penalty spring between two masses.

    Semi-implicit Euler on x'' = -w^2 x is stable for w*h < 2. Two equal masses coupled by a spring of
    stiffness k oscillate at w = sqrt(2k/m); interior masses of a chain reach w_max ~ 2*sqrt(k/m).
    We use the chain bound w = 2*sqrt(k/m) (the conservative one), so h_max = 2/w = sqrt(m/k).
    """
    if stiffness <= 0:
        return math.inf
    return 2.0 / (2.0 * math.sqrt(stiffness / mass))


def model_source(system: Any) -> dict | None:
    """What a run records of where ``system``'s model came from: its ``model_source`` (module doc), or None for a
    system without one (every hand-written system: its parameters are in the run's config)."""
    source = getattr(system, "model_source", None)
    return dict(source) if isinstance(source, dict) else None


def default_names(prefix: str, size: int) -> tuple[str, ...]:
    """("x0", "x1", ...): the names of a system's coordinates when it gives none."""
    return tuple(f"{prefix}{i}" for i in range(size))


def names_problem(system: Any, attr: str, size: int) -> str | None:
    """What is wrong with ``system.<attr>`` (``state_names`` or ``control_names``) for ``size`` coordinates,
    or None when it is absent or right: a sequence of ``size`` non-empty strings."""
    names = getattr(system, attr, None)
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        return f"{attr} is {names!r}, expected a tuple of {size} non-empty strings (one per coordinate)"
    if len(names) != size or not all(isinstance(v, str) and v for v in names):
        return f"{attr} is {tuple(names)!r}, expected a tuple of {size} non-empty strings (one per coordinate)"
    return None


def _names(system: Any, attr: str, size: int, prefix: str) -> tuple[str, ...]:
    try:
        if getattr(system, attr, None) is not None and names_problem(system, attr, size) is None:
            return tuple(getattr(system, attr))
    except Exception:  # noqa: BLE001  a user's property that raises (refused at load: spec.check_system)
        pass
    return default_names(prefix, size)


def state_names(system: Any) -> tuple[str, ...]:
    """The system's ``state_names`` [n], or "x0".."x{n-1}" when it has none (or ones of the wrong length)."""
    return _names(system, "state_names", int(system.state_size), "x")


def control_names(system: Any) -> tuple[str, ...]:
    """The system's ``control_names`` [m], or "u0".."u{m-1}" when it has none (or ones of the wrong length)."""
    return _names(system, "control_names", int(system.control_size), "u")
