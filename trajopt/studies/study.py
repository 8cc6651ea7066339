"""The study file and its expansion into cells.

A study names problem files, variants, a grid of ``--set``-style overrides, seeds and iterations::

    title = "Stiffness story"
    problems = ["../../problems/pushing_stiff.toml", "../../problems/chain3_stiff.toml"]   # relative to this file
    variants = ["fobg", "zobg", "aobg", "fobg_adam"]   # each must resolve in every problem (or be defined below)
    seeds = 20                        # a count (seeds 0..N-1) or a list of seed numbers
    iterations = 500
    [grid]                            # the cartesian product of these axes (in this order)
    "system.stiffness" = "logspace:1:4:7"          # a list "1,10,100", linspace:a:b:n, logspace:a:b:n
    "oracle.samples" = [10, 100]                   # or a TOML list of values (any type)
    [set]                             # overrides applied to every cell (before the grid point)
    "task.horizon" = 100
    [variants.fobg_adam]              # variants defined by the study, replacing any table of that name in each problem
    oracle = "fobg"
    optimizer = { name = "adam", step = 0.1 }
    [resources]                       # per-cell Ray requests (ignored by the local executor)
    num_cpus = 1
    num_gpus = 0
    retries = 2

`load_study` validates the file (unknown keys, types, paths; errors are `trajopt.spec.SpecError` naming the
study file and the key); `expand` turns it into cells, problem x variant x grid point, each one fused solve
with its seeds vmapped, and loads every cell's problem spec with its overrides before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from trajopt.tomlio import SpecError

STUDY_KEYS = ("title", "description", "problems", "variants", "seeds", "iterations", "grid", "set", "variant",
              "resources")
RESOURCE_KEYS = ("num_cpus", "num_gpus", "retries")
DEFAULT_RESOURCES = {"num_cpus": 1.0, "num_gpus": 0.0, "retries": 2}


# ----------------------------------------------------------------------------------------------- values


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
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def label_value(v: Any) -> str:
    """A grid value as it appears in a cell's folder name and in messages (``1000``, ``31.6228``, ``adam``)."""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return v
    return toml_value(v)


def _safe(text: str) -> str:
    """A folder-name-safe version of ``text`` (no separators, no leading dot)."""
    text = re.sub(r"[^A-Za-z0-9._=+,-]", "_", text)
    return ("_" + text) if text.startswith(".") else text


# ----------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class Axis:
    """One grid axis: a dotted key of the problem files and its values (in order); ``log`` for a log x axis."""

    key: str
    values: tuple
    log: bool = False


@dataclass(frozen=True)
class Resources:
    """Per-cell Ray requests: CPUs and GPUs per task and the number of retries of a task whose worker died."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    retries: int = 2


@dataclass(frozen=True, eq=False)
class StudySpec:
    """A validated study file.

    Attributes:
        source: the study file as given (used in messages).
        name: its stem.
        title, description: free text.
        problems: the problem files, resolved against the study file's folder, in order.
        variants: the variant names every problem runs.
        variant_tables: {name: table} variants the study defines (replacing a same-named table of a problem).
        seeds: the seed numbers; iterations: K.
        grid: the axes, in the file's order (the product is taken with the last axis fastest).
        fixed: overrides applied to every cell, as ``key=value`` strings (from ``[set]``).
        resources: per-cell Ray requests.
    """

    source: str
    name: str
    title: str
    description: str
    problems: tuple
    variants: tuple
    variant_tables: dict
    seeds: tuple
    iterations: int
    grid: tuple = ()
    fixed: tuple = ()
    resources: Resources = field(default_factory=Resources)

    def definition(self) -> dict:
        """The study as a JSON-able dict (written into study.json)."""
        return {"source": self.source, "name": self.name, "title": self.title, "description": self.description,
                "problems": [str(p) for p in self.problems], "variants": list(self.variants),
                "variant_tables": self.variant_tables, "seeds": list(self.seeds), "iterations": self.iterations,
                "grid": [{"key": a.key, "values": list(a.values), "log": a.log} for a in self.grid],
                "set": list(self.fixed), "resources": {"num_cpus": self.resources.num_cpus,
                                                       "num_gpus": self.resources.num_gpus,
                                                       "retries": self.resources.retries}}


def _describe(v: Any) -> str:
    return f"{type(v).__name__} {v!r}"


def _seeds(value: Any, source: str, key: str) -> tuple:
    if isinstance(value, bool):
        raise SpecError(source, key, f"found {_describe(value)}, allowed: a count >= 1 or a list of distinct seed numbers >= 0")
    if isinstance(value, int) and value >= 1:
        return tuple(range(value))
    if (isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
            and len(set(value)) == len(value)):
        return tuple(value)
    raise SpecError(source, key, f"found {_describe(value)}, allowed: a count >= 1 or a list of distinct seed numbers >= 0")


def parse_seeds(text: str, source: str = "--seeds") -> tuple:
    """``--seeds``: a count (``20``) or a comma-separated list (``0,3,7``)."""
    text = text.strip()
    try:
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


def _axis(key: str, value: Any, key_type: type, source: str) -> Axis:
    from trajopt.analysis import parse_grid

    where = f"grid.{key}"
    if isinstance(value, str):
        if key_type not in (int, float):
            raise SpecError(source, where, f"found {value!r} for a key of type {key_type.__name__}; a string grid "
                            "(1,10,100 / linspace / logspace) is for numeric keys, allowed here: a TOML list of values")
        try:
            values = parse_grid(value, integer=key_type is int)
        except ValueError as e:
            raise SpecError(source, where, str(e)) from None
        log = value.strip().startswith("logspace:")
    elif isinstance(value, list) and value:
        values = list(value)
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        log = len(nums) == len(values) and min(nums) > 0 and max(nums) / min(nums) >= 100
    else:
        raise SpecError(source, where, f"found {_describe(value)}, allowed: a non-empty TOML list of values, "
                        "\"1,10,100\", \"linspace:START:STOP:COUNT\" or \"logspace:START:STOP:COUNT\"")
    if len({toml_value(v) for v in values}) != len(values):
        raise SpecError(source, where, f"found repeated values in {values!r}, allowed: distinct values")
    return Axis(key=key, values=tuple(values), log=bool(log))


def load_study(path: str | Path, *, seeds: Optional[Sequence[int]] = None, iterations: Optional[int] = None) -> StudySpec:
    """Read and validate a study file; ``seeds`` and ``iterations`` replace the file's (the CLI's options).

    Raises:
        SpecError: naming the study file, the key, what was found and what is allowed.
    """
    from trajopt import spec as spec_mod

    source = str(path)
    raw = spec_mod.read_toml(path)
    for k in raw:
        if k not in STUDY_KEYS:
            raise SpecError(source, k, f"unknown key; allowed: {', '.join(dict.fromkeys(STUDY_KEYS))}")
    for k in ("title", "description"):
        if k in raw and not isinstance(raw[k], str):
            raise SpecError(source, k, f"found {_describe(raw[k])}, allowed: a string")
    for k in ("problems", "variants"):
        if k not in raw:
            raise SpecError(source, k, "missing; a study needs `problems` (problem files) and `variants` (names)")
    base = Path(path).parent
    problems = tuple(Path(os.path.normpath(base / p)) for p in _names(raw["problems"], source, "problems", "problem files (paths relative to the study file)"))
    for i, p in enumerate(problems):
        if not p.is_file():
            raise SpecError(source, f"problems[{i}]", f"{raw['problems'][i]!r}: no such file ({p})")
    stems = [p.stem for p in problems]
    if len(set(stems)) != len(stems):
        raise SpecError(source, "problems", f"found two problem files with the same name {stems}, allowed: distinct "
                        "file names (a cell's folder and table rows are keyed by the name)")
    variants = _names(raw["variants"], source, "variants", "variant names")
    # `variants` is the list of names (TOML cannot make it a table too): study-defined variants are [variant.NAME].
    defined = raw.get("variant", {})
    if not isinstance(defined, dict) or not all(isinstance(t, dict) for t in defined.values()):
        raise SpecError(source, "variant", f"found {_describe(defined)}, allowed: [variant.NAME] tables")
    for name in variant_tables_unused(defined, variants):
        raise SpecError(source, f"variant.{name}", f"defined but not listed in `variants` {list(variants)}; "
                        "allowed: a table for a name the study runs")
    variant_tables = {k: dict(v) for k, v in defined.items()}
    n_seeds = seeds if seeds is not None else _seeds(raw.get("seeds", 5), source, "seeds")
    if "iterations" in raw and (not isinstance(raw["iterations"], int) or isinstance(raw["iterations"], bool)
                                or raw["iterations"] < 1):
        raise SpecError(source, "iterations", f"found {_describe(raw['iterations'])}, allowed: an integer >= 1")
    iters = iterations if iterations is not None else raw.get("iterations", 500)
    if not isinstance(iters, int) or iters < 1:
        raise SpecError(source, "iterations", f"found {iters!r}, allowed: an integer >= 1")
    fixed_raw = raw.get("set", {})
    if not isinstance(fixed_raw, dict):
        raise SpecError(source, "set", f"found {_describe(fixed_raw)}, allowed: a table of \"key.path\" = value")
    fixed = tuple(f"{k}={toml_value(v)}" for k, v in _flatten_set(fixed_raw))
    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise SpecError(source, "grid", f"found {_describe(grid_raw)}, allowed: a table of \"key.path\" = values")
    first = spec_mod.apply_overrides(spec_mod.read_toml(problems[0]), fixed, str(problems[0]))
    axes = []
    for k, v in grid_raw.items():
        if isinstance(v, dict):
            raise SpecError(source, f"grid.{k}", "found a table, allowed: values; write a dotted key in quotes: "
                            "\"system.stiffness\" = \"logspace:1:4:7\"")
        axes.append(_axis(k, v, spec_mod.key_type(first, k), source))
    res_raw = raw.get("resources", {})
    if not isinstance(res_raw, dict):
        raise SpecError(source, "resources", f"found {_describe(res_raw)}, allowed: a table")
    res = dict(DEFAULT_RESOURCES)
    for k, v in res_raw.items():
        if k not in RESOURCE_KEYS:
            raise SpecError(source, f"resources.{k}", f"unknown key; allowed: {', '.join(RESOURCE_KEYS)}")
        ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 0) if k == "retries" else \
            (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0)
        if not ok:
            allowed = "an integer >= 0" if k == "retries" else "a number >= 0"
            raise SpecError(source, f"resources.{k}", f"found {_describe(v)}, allowed: {allowed}")
        res[k] = v
    return StudySpec(
        source=source, name=Path(path).stem, title=raw.get("title", Path(path).stem),
        description=raw.get("description", ""), problems=problems, variants=variants, variant_tables=variant_tables,
        seeds=tuple(n_seeds), iterations=int(iters), grid=tuple(axes), fixed=fixed,
        resources=Resources(float(res["num_cpus"]), float(res["num_gpus"]), int(res["retries"])),
    )


def variant_tables_unused(defined: Mapping, variants: Sequence[str]) -> list[str]:
    """Names of study-defined [variant.NAME] tables that the study does not run (a likely typo)."""
    return [n for n in defined if n not in variants]


def _flatten_set(table: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    """[set] entries as (dotted key, value); a nested table written as [set.system] is flattened too."""
    out = []
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not prefix and "." not in k and k in ("system", "task", "solve", "oracle", "method"):
            out += _flatten_set(v, key + ".")
        else:
            out.append((key, v))
    return out


# ----------------------------------------------------------------------------------------------- cells


@dataclass(frozen=True, eq=False)
class Cell:
    """One problem x variant x grid point: one fused solve over the study's seeds.

    Attributes:
        index: position in the study (the order cells run and rows appear).
        problem: the problem file's stem; path: the file.
        doc: the problem file as decoded TOML (the worker needs no file system: it parses this).
        variant: the variant name.
        point: ((key, value), ...) the grid point.
        overrides: every override of the cell, in order: the study's variant tables, [set], the grid point,
            solve.variants, solve.seeds, solve.iterations.
        seeds, iterations: what the cell runs.
        folder: the cell's folder inside the study folder, ``cells/<problem>/<variant>/<key=value,...>``.
        fingerprint: a hash of everything that determines the cell's numbers (resume reuses a finished cell
            only when it matches).
        error: the SpecError message when the cell's spec is invalid (the cell is recorded as failed).
    """

    index: int
    problem: str
    path: str
    doc: dict
    variant: str
    point: tuple
    overrides: tuple
    seeds: tuple
    iterations: int
    folder: str
    fingerprint: str
    error: Optional[str] = None

    @property
    def label(self) -> str:
        """``pushing_stiff / fobg / system.stiffness=1000``."""
        pt = ", ".join(f"{k}={label_value(v)}" for k, v in self.point)
        return f"{self.problem} / {self.variant}" + (f" / {pt}" if pt else "")


def _point_folders(grid: Sequence[Axis]) -> list[str]:
    """Folder names of the grid points, in product order: ``key=value,key=value`` (``default`` for no grid)."""
    points = list(itertools.product(*[a.values for a in grid]))
    names = [",".join(f"{a.key}={label_value(v)}" for a, v in zip(grid, p)) or "default" for p in points]
    if len(set(names)) != len(names):  # two values that print alike at 6 digits: use their full repr
        names = [",".join(f"{a.key}={toml_value(v)}" for a, v in zip(grid, p)) for p in points]
    return [_safe(n) for n in names]


def fingerprint(doc: Mapping, overrides: Sequence[str], variant: str) -> str:
    """sha256 of the problem document, the overrides and the variant: what determines a cell's numbers."""
    text = json.dumps({"doc": doc, "overrides": list(overrides), "variant": variant}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Expansion:
    """The cells of a study and the specs of the valid ones.

    Attributes:
        cells: every cell, in order (problem, then variant, then grid point with the last axis fastest).
        specs: {cell index: trajopt.spec.Spec} for the cells whose spec is valid.
    """

    cells: tuple
    specs: dict

    @property
    def invalid(self) -> list:
        return [c for c in self.cells if c.error is not None]


def expand(study: StudySpec, *, strict: bool = False) -> Expansion:
    """Expand a study into cells and load every cell's problem spec with its overrides (nothing runs).

    A cell whose spec is invalid at some grid points only (an unstable time step at the stiffest point) is kept
    with its ``error`` (recorded as failed), or refused with ``strict``. A (problem, variant) whose spec is
    invalid at every grid point is a bad study: a misspelt key, a variant the problem lacks.

    Raises:
        SpecError: the first error of a bad study (naming the problem file, the key and what is allowed), or
            with ``strict`` the first invalid cell's.
    """
    from trajopt import spec as spec_mod

    grid_points = list(itertools.product(*[a.values for a in study.grid]))
    folders = _point_folders(study.grid)
    variant_overrides = tuple(f"variants.{n}={toml_value(t)}" for n, t in study.variant_tables.items())
    seeds_override = f"solve.seeds={toml_value(list(study.seeds))}"
    cells, specs = [], {}
    for path in study.problems:
        source = str(path)
        doc = spec_mod.read_toml(path)
        for variant in study.variants:
            errors = []
            for point, folder in zip(grid_points, folders):
                overrides = (*variant_overrides, *study.fixed,
                             *(f"{a.key}={toml_value(v)}" for a, v in zip(study.grid, point)),
                             f"solve.variants={toml_value([variant])}", seeds_override,
                             f"solve.iterations={study.iterations}")
                index = len(cells)
                error = None
                try:
                    specs[index] = spec_mod.parse(spec_mod.apply_overrides(doc, overrides, source), source)
                    # the study's iterations reach a variant with its own too (its schedules re-resolved for them)
                    extra = spec_mod.iteration_overrides(specs[index], overrides)
                    if extra:
                        overrides = (*overrides, *extra)
                        specs[index] = spec_mod.parse(spec_mod.apply_overrides(doc, overrides, source), source)
                except SpecError as e:
                    error = e
                    errors.append(e)
                cells.append(Cell(index=index, problem=path.stem, path=source, doc=doc, variant=variant,
                                  point=tuple((a.key, v) for a, v in zip(study.grid, point)), overrides=overrides,
                                  seeds=study.seeds, iterations=study.iterations,
                                  folder=f"cells/{_safe(path.stem)}/{_safe(variant)}/{folder}",
                                  fingerprint=fingerprint(doc, overrides, variant),
                                  error=None if error is None else str(error)))
            if errors and len(errors) == len(grid_points):
                e = errors[0]
                hint = ""
                if e.key.startswith("solve.variants") or e.key.startswith("variants"):
                    hint = (f" (study {study.source}: variant {variant!r} must be a [variants] table of every problem, "
                            f"an oracle or a method; or define it once in the study as [variant.{variant}])")
                raise SpecError(e.source, e.key, e.message + hint)
            if strict and errors:
                bad = next(c for c in cells if c.error is not None)
                e = errors[0]
                raise SpecError(e.source, e.key, e.message + f" (--strict: cell {bad.label} refused)")
    return Expansion(cells=tuple(cells), specs=specs)
