"""What every system provides.

A system is a frozen dataclass whose fields are its physical parameters (their names and types are the
keys allowed in a problem file's ``[system]`` table), with

* ``state_size`` n and ``control_size`` m,
* ``step(x: [n], u: [m]) -> [n]``, a pure one-step map (semi-implicit Euler for the contact systems),
* ``stable_dt()``: the largest explicitly stable time step, or ``inf`` where no such limit applies.

Contact is written with real branches (``jnp.where(gap < 0, ...)`` with a strict inequality), so that
autodiff returns what a differentiable simulator returns; nothing is softened silently.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Protocol

from jax import Array


class System(Protocol):
    state_size: int
    control_size: int
    dt: float

    def step(self, x: Array, u: Array) -> Array: ...

    def stable_dt(self) -> float: ...


def parameter_types(cls: type) -> dict[str, type]:
    """{field name: python type} of a system (or oracle) dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def spring_stable_dt(stiffness: float, mass: float) -> float:
    """Largest stable semi-implicit Euler step for a penalty spring between two masses.

    Semi-implicit Euler on x'' = -w^2 x is stable for w*h < 2. Two equal masses coupled by a spring of
    stiffness k oscillate at w = sqrt(2k/m); interior masses of a chain reach w_max ~ 2*sqrt(k/m).
    We use the chain bound w = 2*sqrt(k/m) (the conservative one), so h_max = 2/w = sqrt(m/k).
    """
    if stiffness <= 0:
        return math.inf
    return 2.0 / (2.0 * math.sqrt(stiffness / mass))

