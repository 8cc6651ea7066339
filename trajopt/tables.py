"""Checking one TOML table: the helpers every owner of a problem-file table uses (the systems' [system], the
task's [task], the optimisers' [solve.optimizer], the oracles' [oracle], the methods' [variants.NAME] and
[method.NAME], the policies' [policy], ...). The ground floor of the file format, beside `trajopt.tomlio`
(`SpecError`, reading files) and `trajopt.checks` (`FieldError`): it imports no JAX and nothing registered (no
system, oracle or method).

Every refusal is a `SpecError` naming the file, the key path, what was found and what is allowed::

    FILE: KEY: found X, allowed: Y

`build_config` turns a table into a config dataclass (a system, an oracle, an optimiser, a method), checking each
key against the dataclass's fields (`parameter_types`) and turning the dataclass's own `FieldError` into a
`SpecError` at the full key path (``oracle.zobg.sigma``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any, Mapping, Sequence

import numpy as np

from trajopt.checks import FieldError
from trajopt.registry import UnknownName
from trajopt.tomlio import SpecError, check_number


def parameter_types(cls: type) -> dict[str, type]:
    """{field name: python type} of a system (or oracle) dataclass, in declaration order (a new dict each call;
    the type hints are resolved once per class: `typing.get_type_hints` was most of the time a study spent building
    10,000 cells)."""
    return dict(_parameter_types(cls))


@functools.lru_cache(maxsize=None)
def _parameter_types(cls: type) -> tuple:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)


def fields_of(cls_or_obj: Any) -> set:
    """The parameter names of a config dataclass (or of an instance's class); empty for anything else."""
    cls = cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj)
    return set(parameter_types(cls)) if dataclasses.is_dataclass(cls) else set()


def type_name(t: Any) -> str:
    """How a message names a field type: ``float`` is "a number"."""
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(t, str(t))


def describe(value: Any) -> str:
    """How a message names a value that was found: ``'x' (a string)``, ``a list of 3``, ``a table``, ``1.5``."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    return repr(value)


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (JAX's run to dozens), cut at `limit` characters."""
    text = (str(e).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def coerce(value: Any, typ: Any, source: str, key: str) -> Any:
    """Check one value against a dataclass field type (float accepts integers; ``tuple[X, ...]`` a list of X)."""
    if typing.get_origin(typ) is tuple:
        inner = typing.get_args(typ)[0]
        if not isinstance(value, list):
            raise SpecError(source, key, f"found {describe(value)}, allowed: a list of {type_name(inner).split(' ', 1)[-1]}s")
        return tuple(coerce(v, inner, source, key) for v in value)
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
    raise SpecError(source, key, f"found {describe(value)}, allowed: {type_name(typ)}")


def unknown(source: str, key: str, allowed: Sequence[str], what: str = "key") -> SpecError:
    """The error for an unknown key (or name) at ``key``, with the closest allowed one."""
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SpecError(source, key, f"unknown {what}{hint}; allowed: {', '.join(allowed) or 'none'}")


def sub_table(raw: Mapping, name: str, source: str, key: str) -> dict:
    """``raw[name]`` as a table ({} when absent); anything else is refused at ``key``."""
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise SpecError(source, key, f"found {describe(value)}, allowed: a table")
    return value


def check_keys(table: Mapping, allowed: Sequence[str], source: str, prefix: str) -> None:
    """Refuse the first key of ``table`` not in ``allowed`` (at ``prefix`` + key)."""
    for k in table:
        if k not in allowed:
            raise unknown(source, f"{prefix}{k}", allowed)


def float_array(value: Any, source: str, key: str) -> np.ndarray:
    """A number, a list or a list of lists as a float64 array: finite, and each entry's magnitude within
    `trajopt.tomlio.check_number`'s bounds."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(source, key, f"found {describe(value)}, allowed: numbers (a number, a list or a list of lists)") from None
    if arr.dtype == object or any(isinstance(v, bool) for v in np.asarray(value, dtype=object).ravel()):
        raise SpecError(source, key, f"found {describe(value)}, allowed: numbers")
    if not np.all(np.isfinite(arr)):
        raise SpecError(source, key, "found a non-finite number, allowed: finite numbers")
    nonzero = arr[arr != 0]
    if nonzero.size:  # the largest and the smallest entry in magnitude
        for v in (nonzero[np.argmax(np.abs(nonzero))], nonzero[np.argmin(np.abs(nonzero))]):
            check_number(float(v), source, key)
    return arr


def build_config(cls: type, params: Mapping, source: str, prefix: str, *, ignore: Sequence[str] = ()):
    """Instantiate a config dataclass (system, oracle, optimiser) from a TOML table, checking every key."""
    if not dataclasses.is_dataclass(cls):
        if params:
            raise unknown(source, prefix + next(iter(params)), [])
        return cls()
    types = parameter_types(cls)
    kwargs = {}
    for k, v in params.items():
        if k in ignore:
            continue
        if k not in types:
            raise unknown(source, prefix + k, list(types))
        kwargs[k] = coerce(v, types[k], source, prefix + k)
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


def lookup(registry: Any, name: str, source: str, key: str):
    """``registry.get(name)``, its `trajopt.registry.UnknownName` (which names the closest registered names) as a
    SpecError at ``key``."""
    try:
        return registry.get(name)
    except UnknownName as e:
        raise SpecError(source, key, str(e)) from None


def registered(registry: Any, table: Mapping, source: str, key: str):
    """(config, name) of a ``{name = ..., <params>}`` table against a registry."""
    name = table.get("name")
    if not isinstance(name, str):
        raise SpecError(source, f"{key}.name", f"found {describe(name) if name is not None else 'nothing'}, allowed: "
                        f"{', '.join(registry.names())} or 'package.module:Class'")
    cls = lookup(registry, name, source, f"{key}.name")
    return build_config(cls, table, source, f"{key}.", ignore=("name",)), name
