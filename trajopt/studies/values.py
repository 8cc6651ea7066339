"""The study file's values: how a value is written as TOML (`toml_value`, an override's VALUE) and shown
(`label_value`, in folder names and messages), normalised through its key's type (`normalise`, `key_type`), and
checked (`_check_value`, `_check_key`); the seeds (`parse_seeds`, a count or a list) and name lists a study reads.

Pure functions of values: they read no file. The study file's tables and their rules are `trajopt.studies.file`'s,
which uses these (and re-exports `toml_value`, `label_value` and `parse_seeds`, which other modules import from it).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, Optional

from trajopt.limits import MAX_SEED, MAX_SEEDS
from trajopt.overrides import key_type as problem_key_type
from trajopt.tomlio import SpecError

MPC_INT_KEYS = ("episode", "horizon", "replan_every", "iterations")


def toml_value(v: Any) -> str:
    """A Python value as an inline TOML value (what a ``--set KEY=VALUE`` override's VALUE is)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):  # a TOML basic string: characters as they are (not as JSON's \uXXXX surrogate pairs)
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_value(k)


def label_value(v: Any) -> str:
    """A grid value as it appears in a cell's folder name and in messages (``1000``, ``31.6228``, ``adam``)."""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return v
    return toml_value(v)



def _describe(v: Any) -> str:
    return f"{type(v).__name__} {v!r}"


def _seeds(value: Any, source: str, key: str) -> tuple:
    """A count (seeds 0..N-1) or a list of distinct seed numbers, within the problem files' bounds (at most
    `trajopt.limits.MAX_SEEDS` seeds, each in 0..`trajopt.limits.MAX_SEED`): checked before a range is built."""
    allowed = f"a count >= 1 (at most {MAX_SEEDS:,}) or a list of distinct seed numbers >= 0 (at most {MAX_SEEDS:,}, each <= {MAX_SEED})"
    if isinstance(value, bool):
        raise SpecError(source, key, f"found {_describe(value)}, allowed: {allowed}")
    if isinstance(value, int) and 1 <= value <= MAX_SEEDS:
        return tuple(range(value))
    if (isinstance(value, list) and 0 < len(value) <= MAX_SEEDS
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value)
            and len(set(value)) == len(value)):
        return tuple(value)
    shown = f"a list of {len(value):,}" if isinstance(value, list) and len(value) > 8 else _describe(value)
    raise SpecError(source, key, f"found {shown}, allowed: {allowed}")


def parse_seeds(text: str, source: str = "--seeds") -> tuple:
    """``--seeds``: a count (``20``) or a comma-separated list (``0,3,7``)."""
    text = text.strip()
    try:
        if len(text) > 2_000_000:
            raise ValueError
        value = [int(s) for s in text.split(",")] if "," in text else int(text)
    except ValueError:
        raise SpecError(source, "", f"found {text!r}, allowed: a count >= 1 or comma-separated seed numbers") from None
    return _seeds(value, source, "")


def _names(value: Any, source: str, key: str, what: str) -> tuple:
    if (not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value)):
        raise SpecError(source, key, f"found {_describe(value)}, allowed: a non-empty list of {what}")
    if len(set(value)) != len(value):
        raise SpecError(source, key, f"found a repeated name in {value!r}, allowed: distinct {what}")
    return tuple(value)


def normalise(value: Any, key_type: type) -> Any:
    """A grid or [set] value through its key's type, where that loses nothing: an integer of a float key is
    that float (``10`` -> ``10.0``), an integral float of an integer key that integer (``1e2`` -> ``100``);
    anything else as it is (the problem's own validation judges it)."""
    if isinstance(value, bool):
        return value
    if key_type is float and isinstance(value, int):
        return float(value)
    if key_type is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def key_type(raw: Mapping, key: str) -> type:
    """The Python type a dotted key takes in a problem file: `trajopt.overrides.key_type`, and the closed-loop
    tables' keys (``mpc.episode``, ``horizon``, ``replan_every``, ``iterations`` and ``success.hold`` integers,
    ``mpc.warm_start`` a string, ``plant.NAME`` the type of the system's parameter NAME; ``plant.scale.NAME`` and
    ``plant.state_noise`` numbers, as unknown keys are)."""
    parts = key.split(".")
    if parts[0] == "mpc" and len(parts) == 2:
        return int if parts[1] in MPC_INT_KEYS else (str if parts[1] == "warm_start" else float)
    if parts[0] == "plant" and len(parts) == 2 and parts[1] not in ("state_noise", "scale", "disturbance"):
        return problem_key_type(raw, f"system.{parts[1]}")
    if parts == ["success", "hold"]:
        return int
    return problem_key_type(raw, key)



MAX_DEPTH = 32  # nesting of a [set], [grid] or [variant] value (lists and tables in lists and tables)


def _check_value(value: Any, source: str, where: str, depth: int = 0) -> None:
    """A value a study passes on as an override: booleans, numbers, strings, and lists and tables of them (not a
    TOML date or time, which no problem key takes), nested at most `MAX_DEPTH` deep."""
    if depth > MAX_DEPTH:
        raise SpecError(source, where, f"found a value nested deeper than {MAX_DEPTH} levels, allowed: at most {MAX_DEPTH}")
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_value(v, source, where, depth + 1)
    elif isinstance(value, Mapping):
        for v in value.values():
            _check_value(v, source, where, depth + 1)
    elif not isinstance(value, (bool, int, float, str)):
        raise SpecError(source, where, f"found {_describe(value)}, allowed: numbers, strings, booleans, and lists "
                        "and tables of them")


def _plain_key(part: str) -> bool:
    """One component of a dotted key path that an override ``KEY.PATH=VALUE`` carries as written."""
    return bool(part) and part == part.strip() and "." not in part and "=" not in part


def _check_key(key: str, source: str, where: str) -> None:
    """A [grid]/[set] key: a dotted path of non-empty components without '=' or surrounding spaces."""
    if not all(_plain_key(p) for p in key.split(".")):
        raise SpecError(source, where, f"found the key {key!r}, allowed: a dotted key path such as "
                        "\"system.stiffness\" (non-empty parts, no '=' and no surrounding spaces)")



# a fidelity study's grid axes (`trajopt.fidelity.cell_overrides` maps them onto the problem), and the raw keys they
# stand for: a [grid] or [set] over these is refused in a fidelity study
FIDELITY_AXES = {"timestep": "system.timestep", "solref": "system.solref"}
FIDELITY_RAW_KEYS = {"system.timestep": "timestep", "system.substeps": "timestep", "system.solref": "solref"}
FD_STEP_MAX = 0.1  # the largest finite-difference step (relative to |U_j| above 1), as trajopt fidelity --fd-step
SOLREF_ALLOWED = ("[timeconst, dampratio] pairs (both > 0) or [-stiffness, -damping] (stiffness > 0, damping >= 0), "
                  "as trajopt fidelity --solrefs")


def _pair(v: Any) -> Any:
    """A solref value with its numbers as floats (``[0.02, 1]`` is ``[0.02, 1.0]``), anything else as it is."""
    if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return [float(x) for x in v]
    return v


def fidelity_axis(key: str, value: Any, source: str) -> Any:
    """A fidelity study's ``timestep`` or ``solref`` grid value (the file's), its solref pairs as floats, after each
    value is checked as ``trajopt fidelity`` checks --timesteps (finite, > 0) and --solrefs (`SOLREF_ALLOWED`);
    a numeric string ("1e-3,3e-4", "logspace:...") is left to the axis reader and checked there."""
    where = f"grid.{key}"
    if not isinstance(value, list):
        return value
    out = [_pair(v) for v in value] if key == "solref" else value
    for i, v in enumerate(out):
        check_fidelity_value(key, v, source, where, f" (value {i + 1} of the list)")
    return out


def check_fidelity_value(key: str, v: Any, source: str, where: str, which: str = "") -> None:
    """Refuse a ``timestep`` that is not a finite number > 0 (seconds), or a ``solref`` that is not a valid pair."""
    if key == "timestep":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise SpecError(source, where, f"found {_describe(v)}{which}, allowed: time steps > 0 (seconds), e.g. "
                            "[1e-3, 3e-4]")
        return
    ok = (isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) and math.isfinite(x) for x in v)
          and ((v[0] > 0 and v[1] > 0) or (v[0] < 0 and v[1] <= 0)))
    if not ok:
        raise SpecError(source, where, f"found {_describe(v)}{which}, allowed: {SOLREF_ALLOWED}, e.g. "
                        "[[0.02, 1.0], [0.2, 1.0]]")


def reference_timestep(value: Any, source: str) -> Optional[float]:
    """A fidelity study's ``reference_timestep``: "auto" (-1.0: the finest time step of the problem's cells / 4),
    "none" (None: no fine reference) or a time step > 0, as ``trajopt fidelity --reference-timestep``."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "none"):
        return -1.0 if value.strip().lower() == "auto" else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SpecError(source, "reference_timestep", f"found {_describe(value)}, allowed: \"auto\" (the finest "
                        "cell's time step / 4), \"none\", or a time step > 0 (seconds)")
    return float(value)


def fd_step(value: Any, source: str) -> float:
    """A fidelity study's ``fd_step``: the finite-difference reference's eps, a number in (0, `FD_STEP_MAX`]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= FD_STEP_MAX:
        raise SpecError(source, "fd_step", f"found {_describe(value)}, allowed: a number in (0, {FD_STEP_MAX:g}] "
                        "(relative to |U_j| above 1; default float64 eps^(1/3) = 6.06e-6)")
    return float(value)
