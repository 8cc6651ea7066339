"""A problem file's ``[system]`` table: which system, its parameters, and whether its time step is stable.

    [system]
    name = "pushing"            # a registered system (`trajopt.systems.SYSTEMS`) or "package.module:Class"
    k = 1000.0                  # its parameters: the dataclass's fields (`trajopt.tables.parameter_types`)
    allow_unstable = false      # study an explicitly unstable time step instead of refusing it

`build_system` builds the system (a registered or user dataclass, a user factory, or a class with its own
``from_table``, such as `trajopt.systems.mjx.MJX`, which reads a model file named relative to the problem);
`check_system` tries a user's system before anything compiles (its sizes, ``stable_dt()`` and one ``step`` traced
abstractly); `check_stability` refuses an explicitly unstable time step. Each refusal is a `SpecError` at the key
path (``system.k``, ``system.dt``, ``system.name``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from trajopt.checks import FieldError
from trajopt.registry import UnknownName
from trajopt.systems import SYSTEMS
from trajopt.systems.base import names_problem
from trajopt.tables import build_config, coerce, describe, first_line
from trajopt.tomlio import SpecError

SYSTEM_RESERVED = ("name", "allow_unstable")  # keys of [system] that are not the system's parameters
MAX_SIZE = 10**6             # a user system's state_size / control_size


def build_system(raw: Mapping, source: str) -> tuple[Any, str, bool]:
    """(system, its name as written, allow_unstable) from a ``[system]`` table; a user's system
    (``package.module:Class``) is tried by `check_system`."""
    if "name" not in raw:
        raise SpecError(source, "system.name", f"missing; allowed: {', '.join(SYSTEMS.names())} or 'package.module:Class'")
    name = raw["name"]
    if not isinstance(name, str):
        raise SpecError(source, "system.name", f"found {describe(name)}, allowed: a string")
    try:
        cls = SYSTEMS.get(name)
    except UnknownName as e:
        raise SpecError(source, "system.name", str(e)) from None
    allow_unstable = coerce(raw.get("allow_unstable", False), bool, source, "system.allow_unstable")
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
            raise SpecError(source, "system", f"{name} could not be built: {type(e).__name__}: {first_line(e)}") from None
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
            raise SpecError(source, "system", f"{name} could not be built: {type(e).__name__}: {first_line(e)}") from None
    else:
        system = build_config(cls, raw, source, "system.", ignore=SYSTEM_RESERVED)
    for attr in ("control_size", "state_size"):
        if not hasattr(system, attr):
            raise SpecError(source, "system.name", f"{name} has no {attr}; a system needs state_size, control_size and step() (or one_step and cost())")
    if ":" in name:
        check_system(system, source, name)
    return system, name, allow_unstable


def check_system(system: Any, source: str, name: str = "") -> None:
    """A trial of a user's system before anything compiles: its sizes, ``stable_dt()``, and one ``step`` (or the
    one-step ``cost``) traced abstractly with `jax.eval_shape` on inputs of the declared sizes (no compilation,
    no computation). Whatever the user's code raises (a Python ``if`` on a traced value included) or returns
    in the wrong shape or dtype becomes a SpecError at ``system.name`` that says what was expected and what
    came back."""
    name = name or type(system).__name__
    key = "system.name"
    sizes = {}
    for attr in ("state_size", "control_size"):
        try:
            value = getattr(system, attr)
        except Exception as e:  # noqa: BLE001  a property of the user's
            raise SpecError(source, key, f"{name}: {attr} raised {type(e).__name__}: {first_line(e)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0 or value > MAX_SIZE:
            raise SpecError(source, key, f"{name}: {attr} is {value!r} ({type(value).__name__}), expected an integer "
                            f"in 0..{MAX_SIZE}")
        sizes[attr] = int(value)
    n, m = sizes["state_size"], sizes["control_size"]
    one_step = getattr(system, "one_step", False)
    if m < 1 or (not one_step and n < 1):
        raise SpecError(source, key, f"{name}: state_size {n}, control_size {m}; expected control_size >= 1"
                        + ("" if one_step else " and state_size >= 1"))
    for attr, size in (("state_names", n), ("control_names", m)):  # optional: the figures' axis labels
        try:
            wrong = names_problem(system, attr, size)
        except Exception as e:  # noqa: BLE001  a property of the user's
            wrong = f"{attr} raised {type(e).__name__}: {first_line(e)}"
        if wrong is not None:
            raise SpecError(source, key, f"{name}: {wrong}")
    stable = getattr(system, "stable_dt", None)
    if callable(stable):
        try:
            limit = stable()
            limit = float(limit)
        except Exception as e:  # noqa: BLE001
            raise SpecError(source, key, f"{name}: stable_dt() raised {type(e).__name__}: {first_line(e)}; "
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
        raise SpecError(source, key, f"{name}: {what} raised {type(e).__name__}: {first_line(e)} (a system must be a "
                        "pure JAX function: no Python if/while on values, use jnp.where or lax.cond)") from None
    shape, out_dtype = getattr(outcome, "shape", None), getattr(outcome, "dtype", None)
    if shape != expected or out_dtype != dtype:
        found = f"{out_dtype}{list(shape)}" if shape is not None else f"{type(outcome).__name__}"
        raise SpecError(source, key, f"{name}: {what} returned {found}, expected {expected_text}")


def check_stability(system: Any, allow_unstable: bool, source: str) -> None:
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
