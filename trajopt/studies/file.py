"""The study file: its keys, their validation (`load_study`), and the validated `StudySpec`.

A study names problem files, variants, a grid of ``--set``-style overrides, seeds and iterations::

    title = "Stiffness story"
    problems = ["../../problems/pushing_stiff.toml", "../../problems/chain3_stiff.toml"]   # relative to this file
    variants = ["fobg", "zobg", "aobg", "fobg_adam"]   # each must resolve in every problem (or be defined below)
    seeds = 20                        # a count (seeds 0..N-1) or a list of seed numbers
    iterations = 500                  # or budget = B / [B1, B2, ...]: compute per seed instead (below)
    [grid]                            # the cartesian product of these axes (in this order)
    "system.stiffness" = "logspace:1:4:7"          # a list "1,10,100", linspace:a:b:n, logspace:a:b:n
    "oracle.samples" = [10, 100]                   # or a TOML list of values (any type)
    [set]                             # overrides applied to every cell (before the grid point)
    "task.horizon" = 100
    [variants.fobg_adam]              # variants defined by the study, replacing any table of that name in each problem
    oracle = "fobg"
    optimizer = { name = "adam", step = 0.1 }
    [skip]                            # variant = [problem names]: pairs the study does not run
    ilqr = ["mjx_push_stiff"]         # (a method that cannot run a problem: the page lists what was skipped)
    [resources]                       # per-cell Ray requests (ignored by the local executor)
    num_cpus = 1
    num_gpus = 0
    retries = 2

`load_study` validates the file (unknown keys, types, paths; errors are `trajopt.tomlio.SpecError` naming the
study file and the key); `trajopt.studies.expand.expand` turns it into cells, problem x variant x grid point, each one fused solve
with its seeds vmapped, and loads every cell's problem spec with its overrides before anything runs.

Rules the two enforce (each a SpecError, exit 2 in the CLI, before any cell is built or run):

* bounds: at most `MAX_CELLS` cells, `MAX_ROWS` table rows (cells x seeds) and `MAX_STEPS` seed-iterations
  (cells x seeds x iterations), counted from the axis sizes before anything is expanded (a budget study's
  seed-iterations once its cells' iterations are known);
* grid values are normalised through their key's type (``10`` and ``10.0`` of a float key are one value,
  as are ``1e-3`` and ``0.001``), and an axis whose values repeat after that is refused;
* a [grid] or [set] key over the run's own settings (`RUN_KEYS`: iterations, seeds, variants, oracles) is refused
  (every cell runs the study's own `iterations`, `seeds` and `variants`), and so is one that no variant the study
  runs on a problem reads (`trajopt.overrides.unreached_override`, the check `--set` gets): it would draw a flat line.

**A compute budget** (``budget``, or ``--budget`` on the command line; a compare study only): forward-step
equivalents per seed (`trajopt.compute`), one number or a list of distinct ones in 1..`MAX_BUDGET`. It replaces
``iterations`` (a file with both is refused; the CLI's ``--budget`` or ``--iterations`` replaces whichever the file
gives): every cell runs what ``trajopt compare PROBLEM --budget B --variants V`` runs, the same iterations, stopping
and numbers (`trajopt.studies.expand.with_budget`: the step costs once per system for the study, then
`trajopt.compute.budget_steps` per cell). The budget is the grid's first axis, key ``budget`` (`BUDGET_KEY`, one
value or the list's: a list is one cell per value; it is no key of the problem files), so every row carries it; a
budget cell's rows add ``forward_equivalents``, the FSE the seed spent. Refused with a budget: a [grid] or [set] key
``variants.NAME.iterations`` (the budget sets them) and, always, one named ``budget``; a closed-loop study's
``budget`` (its compute axis is ``mpc.iterations``). A variant one step of which costs more than the budget is
refused when the cells are built, before anything runs.

**Closed-loop studies** (``verb = "mpc"``; the default ``verb = "compare"`` is the above): every cell is one
`trajopt.closedloop.mpc` call, its problem file's ``[mpc]``, ``[plant]`` and ``[success]`` tables run as `trajopt mpc`
runs them, for one variant over the seeds (a problem without an ``[mpc]`` table is refused). The study's keys map
onto the ``[mpc]`` table: ``seeds`` (or ``--seeds``) replaces ``mpc.seeds`` (absent: each problem's own, else its
``solve.seeds``), ``iterations`` (or ``--iterations``) replaces ``mpc.iterations``, the method steps per replan
(absent: each problem's own); both are optional. [grid] and [set] reach ``mpc.*`` (horizon, replan_every,
iterations, warm_start, episode) and ``plant.*`` (a parameter of the system, ``plant.scale.NAME``,
``plant.state_noise``) and ``success.*``; refused there: ``mpc.seeds`` and ``mpc.variants`` (the study's ``seeds`` and
``variants``), ``mpc.iterations`` when the study sets ``iterations``, and the ``[solve]`` keys only an open-loop run
reads (`MPC_UNREAD`). A compare study refuses ``mpc.*`` and ``plant.*`` keys (no compare cell reads them), and
``success.*`` on a problem that is not a policy problem. A plant key the system lacks is refused by the problem's own
validation (`trajopt.closedloop.tables`). What a cell records is `trajopt.studies.cells`' business.

    verb = "mpc"
    problems = ["../../problems/cartpole_swingup.toml"]
    variants = ["exact_adam", "cem"]
    seeds = 5
    [grid]
    "mpc.iterations" = [1, 2, 4, 8]        # the compute budget per control step
    "plant.scale.pole_mass" = [1.0, 1.5]

Cell folder names, fingerprints and the expansion into cells are `trajopt.studies.expand`'s.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from trajopt.analysis import parse_grid
from trajopt.fidelity import FD_STEP, oracle_refusal
from trajopt.limits import MAX_ITERATIONS
from trajopt.overrides import apply_overrides
from trajopt.studies.values import (  # noqa: F401  (toml_value, label_value, parse_seeds: re-exported, imported from here)
    FIDELITY_AXES, FIDELITY_RAW_KEYS, _check_key, _check_value, _describe, _names, _plain_key, _seeds, fd_step,
    fidelity_axis, key_type, label_value, normalise, parse_seeds, reference_timestep, toml_value,
)
from trajopt.tomlio import SpecError, read_toml

STUDY_KEYS = ("title", "description", "verb", "problems", "variants", "seeds", "iterations", "budget", "grid", "set",
              "variant", "skip", "resources", "reference_timestep", "fd_step")
FIDELITY_KEYS = ("reference_timestep", "fd_step")  # keys of a fidelity study only
BUDGET_KEY = "budget"  # a compare study's compute budget (forward-step equivalents per seed): its grid axis's key
MAX_BUDGET = 10**12    # the largest budget, as trajopt compare --budget takes
VERBS = ("compare", "mpc", "fidelity")  # what every cell runs: a fused open-loop solve, a closed-loop (MPC) run, or
# the gradient fidelity of the study's oracles at one grid point (`trajopt.fidelity.measure`)
# keys of a problem's [solve] that a study sets itself for every cell: a [grid] or [set] over them is refused
RUN_KEYS = {"solve.iterations": "iterations", "solve.seeds": "seeds", "solve.variants": "variants",
            "solve.oracles": "variants"}
# keys a closed-loop (verb = "mpc") study sets itself, or that no closed-loop cell reads: refused in [grid]/[set]
MPC_RUN_KEYS = {"mpc.seeds": "seeds", "mpc.variants": "variants", "solve.seeds": "seeds", "solve.variants": "variants",
                "solve.oracles": "variants"}
MPC_UNREAD = {"solve.iterations": "a closed-loop cell takes mpc.iterations method steps per replan (a grid over "
                                  "mpc.iterations is a compute-budget sweep)",
              "solve.chunk": "a closed-loop episode is one compiled program (no chunks)",
              "solve.on_non_finite": "a closed-loop episode keeps a method's last finite step and counts non-finite "
                                     "plans (trajopt.closedloop.episode)"}
CLOSED_LOOP_HEADS = ("mpc", "plant")  # tables only closed-loop cells read (and success, on a time-stepped problem)
MAX_CELLS = 10_000        # problems x variants x grid points
MAX_ROWS = 1_000_000      # cells x seeds: rows of the study table
MAX_STEPS = 10**9         # cells x seeds x iterations: history lines written (metrics.jsonl)
RESOURCE_KEYS = ("num_cpus", "num_gpus", "retries")
DEFAULT_RESOURCES = {"num_cpus": 1.0, "num_gpus": 0.0, "retries": 2}


# ----------------------------------------------------------------------------------------------- the file


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
        seeds: the seed numbers; iterations: K (a compare study's iterations; a closed-loop study's method steps per
            replan). A closed-loop study may leave either None: each problem's own ``[mpc]`` (or ``[solve]``) seeds,
            its own ``mpc.iterations``.
        grid: the axes, in the file's order (the product is taken with the last axis fastest).
        fixed: overrides applied to every cell, as ``key=value`` strings (from ``[set]``).
        resources: per-cell Ray requests.
        verb: "compare" (each cell a fused open-loop solve) or "mpc" (each cell a closed-loop run).
        budget: a compare study's compute budgets in forward-step equivalents per seed (one value, or the values of
            its ``budget`` list), or None; with a budget ``iterations`` is None and ``grid`` starts with the axis
            ``budget`` of these values (`BUDGET_KEY`: not a problem key; every cell runs what ``trajopt compare
            --budget B`` runs, `trajopt.studies.expand.with_budget`).
    """

    source: str
    name: str
    title: str
    description: str
    problems: tuple
    variants: tuple
    variant_tables: dict
    seeds: Optional[tuple]
    iterations: Optional[int]
    grid: tuple = ()
    fixed: tuple = ()
    resources: Resources = field(default_factory=Resources)
    verb: str = "compare"
    budget: Optional[tuple] = None
    reference_timestep: Optional[float] = None
    fd_step: Optional[float] = None
    skip: tuple = ()

    def skipped(self, problem: str, variant: str) -> bool:
        """Whether the study's [skip] leaves out ``variant`` on the problem named ``problem`` (its file's stem)."""
        return (variant, problem) in self.skip

    @property
    def closed_loop(self) -> bool:
        """Whether every cell is a closed-loop (MPC) run."""
        return self.verb == "mpc"

    @property
    def fidelity(self) -> bool:
        """Whether every cell measures gradient fidelity (``verb = "fidelity"``)."""
        return self.verb == "fidelity"

    def definition(self) -> dict:
        """The study as a JSON-able dict (written into study.json)."""
        out = {"source": self.source, "name": self.name, "title": self.title, "description": self.description,
               "problems": [str(p) for p in self.problems], "variants": list(self.variants),
               "variant_tables": self.variant_tables,
               "seeds": None if self.seeds is None else list(self.seeds), "iterations": self.iterations,
               "grid": [{"key": a.key, "values": list(a.values), "log": a.log} for a in self.grid],
               "set": list(self.fixed), "resources": {"num_cpus": self.resources.num_cpus,
                                                      "num_gpus": self.resources.num_gpus,
                                                      "retries": self.resources.retries}}
        if self.verb != "compare":  # a compare study's definition stays as it was
            out["verb"] = self.verb
        if self.fidelity:
            out.update(reference_timestep="auto" if self.reference_timestep == -1.0 else self.reference_timestep,
                       fd_step=self.fd_step)
        if self.budget is not None:  # so does one without a budget
            out["budget"] = list(self.budget)
        if self.skip:  # and one without a [skip]
            out["skip"] = [list(pair) for pair in self.skip]
        return out


def _axis(key: str, value: Any, key_type: type, source: str) -> Axis:
    where = f"grid.{key}"
    if isinstance(value, str):
        if key_type not in (int, float):
            raise SpecError(source, where, f"found {value!r} for a key of type {key_type.__name__}; a string grid "
                            "(1,10,100 / linspace / logspace) is for numeric keys, allowed here: a TOML list of values")
        parts = value.strip().split(":")
        if parts[0] in ("linspace", "logspace") and len(parts) == 4:  # the count before numpy allocates it
            try:
                count = int(parts[3])
            except ValueError:
                count = 0
            if count > MAX_CELLS:
                raise SpecError(source, where, f"found {value!r}: {count:,} values, allowed: at most "
                                f"{MAX_CELLS:,} (cells per study)")
        try:
            values = parse_grid(value, integer=key_type is int)
        except ValueError as e:
            raise SpecError(source, where, str(e)) from None
        log = value.strip().startswith("logspace:")
    elif isinstance(value, list) and value:
        values = [normalise(v, key_type) for v in value]
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        log = len(nums) == len(values) and min(nums) > 0 and max(nums) / min(nums) >= 100
    else:
        raise SpecError(source, where, f"found {_describe(value)}, allowed: a non-empty TOML list of values, "
                        "\"1,10,100\", \"linspace:START:STOP:COUNT\" or \"logspace:START:STOP:COUNT\"")
    seen: dict = {}
    for i, v in enumerate(values):
        text = toml_value(v)
        if text in seen:
            j = seen[text]
            spelt = value[j] if isinstance(value, list) else None
            same = (f" ({_describe(spelt)} and {_describe(value[i])} are one {key_type.__name__} value)"
                    if isinstance(value, list) and toml_value(spelt) != toml_value(value[i]) else "")
            shown = repr(v) if isinstance(v, str) else label_value(v)
            raise SpecError(source, where, f"found the value {shown} twice (values {j + 1} and {i + 1})"
                            f"{same}, allowed: distinct values")
        seen[text] = i
    return Axis(key=key, values=tuple(values), log=bool(log))


def _run_key(key: str, source: str, where: str, verb: str = "compare", iterations_set: bool = False,
             budget_set: bool = False) -> None:
    """Refuse a [grid]/[set] key over the run's own settings (`RUN_KEYS`; a closed-loop study's `MPC_RUN_KEYS`): the
    study sets them for every cell; in a closed-loop study also a key no closed-loop cell reads (`MPC_UNREAD`) and
    ``mpc.iterations`` when the study sets ``iterations`` (``iterations_set``); in a compare study a key of the
    closed-loop tables (`CLOSED_LOOP_HEADS`), ``budget`` (the study's own key), and with a budget (``budget_set``)
    a variant's ``iterations`` (the budget sets them)."""
    key = key.strip()
    head = key.split(".", 1)[0]
    if verb == "fidelity" and (key in FIDELITY_RAW_KEYS or (key in FIDELITY_AXES and where.startswith("set."))):
        axis = FIDELITY_RAW_KEYS.get(key, key)
        raise SpecError(source, where, f"sets {key}, which a fidelity study's grid axis `{axis}` sets (through "
                        "trajopt.fidelity.cell_overrides: an mjx problem keeps its control period, substeps = period / "
                        f"timestep); allowed: [grid] {axis} = [...] (one value: every cell's)")
    if verb != "mpc" and head == BUDGET_KEY:
        raise SpecError(source, where, f"sets {key}, which is the study's own top-level `budget` key; allowed: "
                        "budget = B (forward-step equivalents per seed) or budget = [B1, B2, ...] (its grid axis) at "
                        "the top of the study file")
    parts = key.split(".")
    if budget_set and len(parts) == 3 and parts[0] == "variants" and parts[2] == "iterations":
        raise SpecError(source, where, f"sets {key}, which the study's `budget` sets for every variant (as trajopt "
                        "compare --budget does: floor(budget / its cost per step), or until its spend reaches the "
                        "budget); allowed: one of them")
    if verb == "mpc":
        if key in MPC_UNREAD:
            raise SpecError(source, where, f"sets {key}, which no closed-loop cell reads: {MPC_UNREAD[key]}; allowed: "
                            "mpc.*, plant.*, success.* and the problem's, oracles', methods' and variants' keys")
        if key == "mpc.iterations" and iterations_set:
            raise SpecError(source, where, "sets mpc.iterations, which the study's `iterations` (or --iterations) sets "
                            "for every cell; allowed: one of them (a grid over mpc.iterations without `iterations` is a "
                            "compute-budget sweep)")
        own = MPC_RUN_KEYS.get(key)
        if own is not None:
            hint = {"seeds": "every cell runs every seed of the study's `seeds` (or --seeds; absent: each problem's "
                             "own mpc.seeds, else solve.seeds), a table row each",
                    "variants": "the study's `variants` list names what every problem runs (each variant a line of "
                                "the figure)"}
            raise SpecError(source, where, f"sets {key}, which the study sets itself for every cell (the table and "
                            f"figure would show values that were not run); allowed: the study's `{own}` key: {hint[own]}")
        return
    if head in CLOSED_LOOP_HEADS:
        raise SpecError(source, where, f"sets {key}, a key of the [{head}] table, which only closed-loop cells read; "
                        "allowed: verb = \"mpc\" (every cell a closed-loop run), or a key a compare cell reads")
    own = RUN_KEYS.get(key)
    if own is None:
        return
    hint = {"iterations": "every cell runs the study's `iterations` (or --iterations); a grid over a variant's own "
                          "count is variants.NAME.iterations",
            "seeds": "every cell runs every seed of the study's `seeds` (or --seeds), a table row each",
            "variants": "the study's `variants` list names what every problem runs (each variant a line of the figure)"}
    raise SpecError(source, where, f"sets {key.strip()}, which the study sets itself for every cell (the table and "
                    f"figure would show values that were not run); allowed: the study's `{own}` key: {hint[own]}")


def _budget(value: Any, source: str, key: str) -> tuple:
    """A compare study's budget: a number in 1..`MAX_BUDGET` (forward-step equivalents per seed), or a non-empty list
    of distinct ones (its grid axis); an integral float is that integer (``2.5e4`` is ``25000``)."""
    allowed = ("forward-step equivalents per seed, a number in 1..1e12 or a non-empty list of distinct "
               "such numbers (a grid axis: one cell per value)")
    values = value if isinstance(value, list) else [value]
    if not values:
        raise SpecError(source, key, f"found {_describe(value)}, allowed: {allowed}")
    out = []
    for i, v in enumerate(values):
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                or not 1 <= v <= MAX_BUDGET):
            shown = f"{_describe(v)} (value {i + 1} of the list)" if isinstance(value, list) else _describe(v)
            raise SpecError(source, key, f"found {shown}, allowed: {allowed}")
        v = normalise(v, int)
        seen = [j for j, w in enumerate(out) if toml_value(v) == toml_value(w)]
        if seen:
            raise SpecError(source, key, f"found the value {label_value(v)} twice (values {seen[0] + 1} and {i + 1}), "
                            f"allowed: {allowed}")
        out.append(v)
    return tuple(out)


def _fidelity_keys(raw: Mapping, source: str, variants: Sequence[str], iterations: Optional[int],
                   budget: Optional[float]) -> tuple[Optional[float], float]:
    """A fidelity study's own rules: no ``iterations`` or ``budget`` (file or command line) and no [variant] tables
    (``variants`` are oracle names, as ``trajopt fidelity --oracles`` takes them: registered or module:Class, not
    ``fd``, the reference); (reference time step: -1.0 "auto", None "none" or seconds; the finite-difference step)."""
    for key, given in (("iterations", iterations), (BUDGET_KEY, budget)):
        if given is not None or key in raw:
            found = f"--{key} {given}" if given is not None else _describe(raw[key])
            raise SpecError(source, key, f"found {found} with verb = \"fidelity\", allowed: none (a fidelity cell "
                            "measures gradients at the problem's U0: nothing iterates; the repeats are `seeds`)")
    if "variant" in raw:
        raise SpecError(source, "variant", "found [variant] tables with verb = \"fidelity\", allowed: none (`variants` "
                        "are oracle names, as trajopt fidelity --oracles takes them; an oracle's settings are the "
                        "problem's [oracle.NAME] table, or [set] \"oracle.NAME.KEY\" = ...)")
    for i, name in enumerate(variants):
        why = oracle_refusal(name)
        if why is not None:
            raise SpecError(source, f"variants[{i}]", why)
    ref = reference_timestep(raw.get("reference_timestep", "auto"), source)
    return ref, fd_step(raw["fd_step"], source) if "fd_step" in raw else FD_STEP


def load_study(path: str | Path, *, seeds: Optional[Sequence[int]] = None, iterations: Optional[int] = None,
               budget: Optional[float] = None) -> StudySpec:
    """Read and validate a study file; ``seeds``, ``iterations`` and ``budget`` replace the file's (the CLI's
    options; ``iterations`` or ``budget`` replaces whichever of the two the file gives: the compute each cell runs).

    Raises:
        SpecError: naming the study file, the key, what was found and what is allowed.
    """
    source = str(path)
    raw = read_toml(path)
    for k in raw:
        if k not in STUDY_KEYS:
            raise SpecError(source, k, f"unknown key; allowed: {', '.join(dict.fromkeys(STUDY_KEYS))}")
    for k in ("title", "description"):
        if k in raw and not isinstance(raw[k], str):
            raise SpecError(source, k, f"found {_describe(raw[k])}, allowed: a string")
    verb = raw.get("verb", "compare")
    if verb not in VERBS:
        raise SpecError(source, "verb", f"found {_describe(verb)}, allowed: \"compare\" (each cell a fused open-loop "
                        "solve, the default), \"mpc\" (each cell a closed-loop run of the problem's [mpc] table) or "
                        "\"fidelity\" (each cell the gradient fidelity of the oracles at one grid point)")
    for k in FIDELITY_KEYS:
        if k in raw and verb != "fidelity":
            raise SpecError(source, k, f"found {_describe(raw[k])} with verb = {verb!r}, allowed: {k} only with verb = "
                            "\"fidelity\" (the fine reference's time step and the finite-difference step)")
    for k in ("problems", "variants"):
        if k not in raw:
            raise SpecError(source, k, "missing; a study needs `problems` (problem files) and `variants` (names)")
    base = Path(path).parent
    problems = tuple(Path(os.path.normpath(base / p)) for p in _names(raw["problems"], source, "problems", "problem files (paths relative to the study file)"))
    for i, p in enumerate(problems):
        try:
            found = p.is_file()
        except (OSError, ValueError):  # a name no file system holds (a NUL, too long)
            found = False
        if not found:
            raise SpecError(source, f"problems[{i}]", f"{raw['problems'][i]!r}: no such file ({p})")
    if verb == "mpc":  # a closed-loop cell runs the problem's [mpc] table: a problem without one is refused here
        for i, p in enumerate(problems):
            doc = read_toml(p)
            if "mpc" not in doc:
                raise SpecError(source, f"problems[{i}]", f"{p} has no [mpc] table; allowed with verb = \"mpc\": "
                                "problem files with an [mpc] table (episode and horizon at least; see "
                                "docs/closed_loop.md)")
    stems = [p.stem for p in problems]
    if len(set(stems)) != len(stems):
        raise SpecError(source, "problems", f"found two problem files with the same name {stems}, allowed: distinct "
                        "file names (a cell's folder and table rows are keyed by the name)")
    variants = _names(raw["variants"], source, "variants", "variant names")
    fid = verb == "fidelity"
    fid_settings = _fidelity_keys(raw, source, variants, iterations, budget) if fid else (None, None)
    # `variants` is the list of names (TOML cannot make it a table too): study-defined variants are [variant.NAME].
    defined = raw.get("variant", {})
    if not isinstance(defined, dict) or not all(isinstance(t, dict) for t in defined.values()):
        raise SpecError(source, "variant", f"found {_describe(defined)}, allowed: [variant.NAME] tables")
    for name in variant_tables_unused(defined, variants):
        raise SpecError(source, f"variant.{name}", f"defined but not listed in `variants` {list(variants)}; "
                        "allowed: a table for a name the study runs")
    for name in defined:  # it reaches each problem as the override variants.NAME={...}
        if not _plain_key(name):
            raise SpecError(source, f"variant.{name}", f"found the name {name!r}, allowed: a variant name without "
                            "'.', '=' or surrounding spaces (a study-defined variant is passed to each problem as "
                            "variants.NAME)")
    for name, table in defined.items():
        _check_value(table, source, f"variant.{name}")
    variant_tables = {k: dict(v) for k, v in defined.items()}
    if fid and "skip" in raw:
        raise SpecError(source, "skip", f"found {_describe(raw['skip'])} with verb = \"fidelity\", allowed: no [skip] "
                        "in a fidelity study (each of its cells measures every oracle of `variants`)")
    skip = _skip(raw.get("skip", {}), source, variants, stems)
    closed = verb == "mpc"  # seeds and iterations optional: each problem's own [mpc] (or [solve]) values
    budget_values = None
    if closed and (budget is not None or BUDGET_KEY in raw):
        found = f"--budget {budget}" if budget is not None else _describe(raw[BUDGET_KEY])
        raise SpecError(source, BUDGET_KEY, f"found {found} with verb = \"mpc\", allowed: no budget in a closed-loop "
                        "study: its compute axis is mpc.iterations, the method steps per replan (the study's "
                        "`iterations`, or a [grid] over \"mpc.iterations\": a compute-budget sweep)")
    if budget is not None and iterations is not None:
        raise SpecError(source, BUDGET_KEY, "found a budget and iterations, allowed: one of them (the budget sets "
                        "each variant's iterations)")
    if budget is not None:
        budget_values = _budget(budget, "--budget", "")
    elif iterations is None and BUDGET_KEY in raw:
        if "iterations" in raw:
            raise SpecError(source, "iterations", f"found {_describe(raw['iterations'])} with `budget`, allowed: one "
                            "of them (the budget sets each variant's iterations, as trajopt compare --budget does: "
                            "floor(budget / its cost per step), or until its spend reaches the budget)")
        budget_values = _budget(raw[BUDGET_KEY], source, BUDGET_KEY)
    if seeds is not None:
        n_seeds = seeds
    elif closed and "seeds" not in raw:
        n_seeds = None
    else:
        n_seeds = _seeds(raw.get("seeds", 5), source, "seeds")
    if "iterations" in raw and (not isinstance(raw["iterations"], int) or isinstance(raw["iterations"], bool)
                                or raw["iterations"] < 1):
        raise SpecError(source, "iterations", f"found {_describe(raw['iterations'])}, allowed: an integer >= 1")
    if fid and tuple(n_seeds) != tuple(range(len(n_seeds))):
        raise SpecError(source, "seeds", f"found the seed numbers {list(n_seeds)[:8]}, allowed: a count R (a fidelity "
                        "study's repeats: each stochastic oracle is drawn R times, keys fold_in(key, r) for r < R, as "
                        "trajopt fidelity --repeats R)")
    iters = iterations if iterations is not None else raw.get("iterations", None if closed or fid else 500)
    if budget_values is not None:  # each variant's iterations come from the budget (`trajopt.studies.expand`)
        iters = None
    if iters is not None and (not isinstance(iters, int) or isinstance(iters, bool) or iters < 1
                              or iters > MAX_ITERATIONS):
        raise SpecError(source, "iterations", f"found {iters!r}, allowed: an integer in 1..{MAX_ITERATIONS:,}")
    fixed_raw = raw.get("set", {})
    if not isinstance(fixed_raw, dict):
        raise SpecError(source, "set", f"found {_describe(fixed_raw)}, allowed: a table of \"key.path\" = value")
    fixed_items = _flatten_set(fixed_raw)
    for k, v in fixed_items:
        _check_value(v, source, f"set.{k}")
        _check_key(k, source, f"set.{k}")
        _run_key(k, source, f"set.{k}", verb, iters is not None, budget_values is not None)
    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise SpecError(source, "grid", f"found {_describe(grid_raw)}, allowed: a table of \"key.path\" = values")
    for k, v in grid_raw.items():
        _check_value(v, source, f"grid.{k}")
        _check_key(k, source, f"grid.{k}")
        _run_key(k, source, f"grid.{k}", verb, iters is not None, budget_values is not None)
    first_raw = read_toml(problems[0])
    fixed = tuple(f"{k}={toml_value(normalise(v, key_type(first_raw, k)))}" for k, v in fixed_items)
    first = apply_overrides(first_raw, fixed, str(problems[0]))
    # a budget is the first axis (one value: every cell's; a list: a grid axis), not a key of the problem files
    axes = [] if budget_values is None else [Axis(BUDGET_KEY, budget_values, log=len(budget_values) > 1)]
    for k, v in grid_raw.items():
        if isinstance(v, dict):
            raise SpecError(source, f"grid.{k}", "found a table, allowed: values; write a dotted key in quotes: "
                            "\"system.stiffness\" = \"logspace:1:4:7\"")
        if fid and k in FIDELITY_AXES:  # mapped through trajopt.fidelity.cell_overrides when the cells are built
            axis = _axis(k, fidelity_axis(k, v, source), float if k == "timestep" else list, source)
            axes.append(Axis(k, tuple(fidelity_axis(k, list(axis.values), source)), log=k == "timestep" and len(axis.values) > 1))
            continue
        axes.append(_axis(k, v, key_type(first, k), source))
    # a closed-loop study's seeds (when per problem) and steps are counted again once its cells are built (`expand`)
    _check_size(source, len(problems), 1 if fid else len(variants), axes, len(n_seeds) if n_seeds is not None else 1,
                int(iters) if iters is not None and not closed else 1)  # a budget's iterations: once they are known
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
        seeds=None if n_seeds is None else tuple(n_seeds), iterations=None if iters is None else int(iters),
        grid=tuple(axes), fixed=fixed,
        resources=Resources(float(res["num_cpus"]), float(res["num_gpus"]), int(res["retries"])), verb=verb,
        budget=budget_values, reference_timestep=fid_settings[0], fd_step=fid_settings[1], skip=skip,
    )


def _skip(table: Any, source: str, variants: Sequence[str], stems: Sequence[str]) -> tuple:
    """The study's [skip] table, ``variant = [problem names]``, as (variant, problem) pairs in the study's order: the
    cells it does not build (a method that cannot run a problem, such as iLQR on an MJX model without forward-mode
    derivatives). Each variant must be one the study runs, each name one of its problems' file stems, listed once,
    and every problem must keep a variant."""
    if not isinstance(table, dict):
        raise SpecError(source, "skip", f"found {_describe(table)}, allowed: a table of variant = [problem names]")
    pairs = set()
    for variant, names in table.items():
        if variant not in variants:
            raise SpecError(source, f"skip.{variant}", f"found the variant {variant!r}, allowed: a variant the study "
                            f"runs {list(variants)}")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise SpecError(source, f"skip.{variant}", f"found {_describe(names)}, allowed: a non-empty list of "
                            f"problem names (file stems) {list(stems)}")
        for name in names:
            if name not in stems:
                raise SpecError(source, f"skip.{variant}", f"found {name!r}, allowed: the name (file stem) of a "
                                f"problem of the study {list(stems)}")
            if (variant, name) in pairs:
                raise SpecError(source, f"skip.{variant}", f"found {name!r} twice, allowed: each problem once")
            pairs.add((variant, name))
    for name in stems:
        if all((v, name) in pairs for v in variants):
            raise SpecError(source, "skip", f"found every variant skipped on {name!r}, allowed: at least one variant "
                            "per problem (or leave the problem out of `problems`)")
    return tuple((v, n) for n in stems for v in variants if (v, n) in pairs)


def _check_size(source: str, problems: int, variants: int, axes: Sequence[Axis], seeds: int, iterations: int) -> None:
    """Refuse a study larger than `MAX_CELLS` cells, `MAX_ROWS` rows or `MAX_STEPS` seed-iterations, counted from
    the axis sizes (before a cell is built)."""
    cells = problems * variants * math.prod(len(a.values) for a in axes)
    shape = " x ".join([f"{problems} problems", f"{variants} variants", *(f"{len(a.values)} {a.key}" for a in axes)])
    if cells > MAX_CELLS:
        raise SpecError(source, "grid" if axes else "variants", f"found {cells:,} cells ({shape}), allowed: at most "
                        f"{MAX_CELLS:,} cells per study (split it into several studies)")
    if cells * seeds > MAX_ROWS:
        raise SpecError(source, "seeds", f"found {cells:,} cells x {seeds:,} seeds = {cells * seeds:,} table rows, "
                        f"allowed: at most {MAX_ROWS:,}")
    if cells * seeds * iterations > MAX_STEPS:
        raise SpecError(source, "iterations", f"found {cells:,} cells x {seeds:,} seeds x {iterations:,} iterations = "
                        f"{cells * seeds * iterations:,} recorded iterations, allowed: at most {MAX_STEPS:,} per study")


def variant_tables_unused(defined: Mapping, variants: Sequence[str]) -> list[str]:
    """Names of study-defined [variant.NAME] tables that the study does not run (a likely typo)."""
    return [n for n in defined if n not in variants]


def _flatten_set(table: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    """[set] entries as (dotted key, value); a nested table written as [set.system] is flattened too."""
    out = []
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not prefix and "." not in k and k in ("system", "task", "solve", "oracle", "method",
                                                                        "mpc", "plant", "success"):
            out += _flatten_set(v, key + ".")
        else:
            out.append((key, v))
    return out
