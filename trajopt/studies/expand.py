"""A study's expansion into cells: `expand` builds every cell (problem x variant x grid point) with its overrides,
folder and fingerprint, and validates each cell's problem spec before anything runs; `check_reach` refuses a [set] or
[grid] key no variant reads. A fidelity study's cells (one per problem x grid point, every oracle in each) are
`fidelity_expand`'s.

A cell's folder name is injective: a name that folder names cannot hold as written (characters other than
letters, digits and ``._=+,-``, a leading dot, more than `MAX_NAME` characters, or one that differs from a
sibling's only in letter case) keeps its readable part and gets ``~`` and a hash of the exact name. A cell's
fingerprint covers its problem document, overrides and variant, and the content of every file the problem
names (`trajopt.studies.sources`: an MJCF model and its includes, user modules).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from trajopt import spec as spec_mod  # a cell's spec: spec_mod.parse, looked up when called (tests wrap it)
from trajopt.fidelity import CellError, cell_overrides, fine_timestep, memory_needs, system_timestep, timestep_system
from trajopt.oracles import ORACLES
from trajopt.overrides import apply_overrides, iteration_overrides, unreached_override
from trajopt.preflight import MAX_WORKING_SET, check_oracles
from trajopt.studies.file import BUDGET_KEY, MAX_ROWS, MAX_STEPS, Axis, StudySpec, label_value, toml_value
from trajopt.studies.values import FIDELITY_AXES
from trajopt.studies.sources import SourceHashes
from trajopt.tomlio import SpecError, read_toml

MAX_NAME = 100            # characters of one folder name (a file system allows 255 bytes)


# ----------------------------------------------------------------------------------------------- names


def _safe(text: str) -> str:
    """A folder-name-safe version of ``text`` (no separators, no leading dot)."""
    text = re.sub(r"[^A-Za-z0-9._=+,-]", "_", text)
    return ("_" + text) if text.startswith(".") else text


def _digest(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def folder_names(texts: Sequence[str], exact: Optional[Sequence[str]] = None) -> list[str]:
    """File or folder names for sibling names ``texts``, injective in ``exact`` (distinct; default ``texts``): a
    text `_safe` keeps as it is (at most `MAX_NAME` characters, not empty) is its own name; any other is its
    safe part, ``~`` and a hash of the exact name (``~`` is never in a kept name). Names that would still meet,
    or differ only in letter case (one file on a case-insensitive file system), get the hash too."""
    exact = list(texts) if exact is None else list(exact)
    names = []
    for t, x in zip(texts, exact):
        safe = _safe(t)
        names.append(safe if safe == t and t and len(safe) <= MAX_NAME else f"{safe[:MAX_NAME]}~{_digest(x)}")
    folded: dict[str, int] = {}
    for n in names:
        folded[n.casefold()] = folded.get(n.casefold(), 0) + 1
    return [f"{n}~{_digest(x)}" if folded[n.casefold()] > 1 and "~" not in n else n for n, x in zip(names, exact)]


# ----------------------------------------------------------------------------------------------- cells


@dataclass(frozen=True, eq=False)
class Cell:
    """One problem x variant x grid point: one fused solve over the study's seeds (a closed-loop study's: one
    closed-loop run of the variant over the seeds).

    Attributes:
        index: position in the study (the order cells run and rows appear).
        problem: the problem file's stem; path: the file.
        doc: the problem file as decoded TOML (the worker needs no file system: it parses this).
        variant: the variant name.
        point: ((key, value), ...) the grid point.
        overrides: every override of the cell, in order: the study's variant tables, [set], the grid point,
            solve.variants, solve.seeds, solve.iterations (a closed-loop cell: solve.variants, mpc.variants, and
            mpc.seeds and mpc.iterations where the study sets them).
        seeds, iterations: what the cell runs (a closed-loop cell: its problem's seeds, K method steps per replan).
        folder: the cell's folder inside the study folder, ``cells/<problem>/<variant>/<key=value,...>``.
        fingerprint: a hash of everything that determines the cell's numbers (resume reuses a finished cell
            only when it matches), the content of the files the problem names included.
        error: the SpecError message when the cell's spec is invalid (the cell is recorded as failed).
        files: {"model:PATH" | "module:PATH": content hash} of those files (`trajopt.studies.sources`).
        verb: "compare" or "mpc" (the study's).
        step_costs: a closed-loop cell's `trajopt.compute.StepCosts` as a dict, filled in by `trajopt.studies.runner`
            before the cell runs (host measurements: not part of the fingerprint); None: measured by the cell. A
            budget cell's, filled in by `with_budget` (part of its fingerprint: they set its iterations).
        budget: a compare study's budget at this cell (forward-step equivalents per seed; its point's ``budget``), or
            None; ``iterations`` is then the variant's under it (`trajopt.compute.budget_steps`), set by
            `with_budget` with the ``variants.NAME.iterations`` override that ``trajopt compare --budget`` adds
            (0 until then).
        probes: a compare cell of a grid: the overrides of its grid's first point and of that point with one axis
            at its second value, one per axis of two values or more (the budget's aside): the runs whose traced
            loops say which constants the grid varies (`trajopt.studies.cells.lift_positions`), which every cell of
            the grid then takes as inputs of one compiled program (`trajopt.programs`); () otherwise.
        fidelity: a fidelity cell's (``verb = "fidelity"``, `fidelity_expand`) settings: {oracles, repeats, fd_step,
            reference_timestep (None: no fine reference), reference_overrides (the fine reference's overrides, or
            None)}; its ``variant`` is "fidelity", ``seeds`` the repeats' draws 0..R-1, ``iterations`` 0.
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
    files: Mapping = field(default_factory=dict)
    verb: str = "compare"
    step_costs: Optional[Mapping] = None
    budget: Optional[float] = None
    probes: tuple = ()
    fidelity: Optional[Mapping] = None

    @property
    def label(self) -> str:
        """``pushing_stiff / fobg / system.stiffness=1000``."""
        pt = ", ".join(f"{k}={label_value(v)}" for k, v in self.point)
        return f"{self.problem} / {self.variant}" + (f" / {pt}" if pt else "")


def _point_folders(grid: Sequence[Axis]) -> list[str]:
    """Folder names of the grid points, in product order: ``key=value,key=value`` (``default`` for no grid),
    made injective by `folder_names`."""
    points = list(itertools.product(*[a.values for a in grid]))
    names = [",".join(f"{a.key}={label_value(v)}" for a, v in zip(grid, p)) or "default" for p in points]
    if len(set(names)) != len(names):  # two values that print alike at 6 digits: use their full repr
        names = [",".join(f"{a.key}={toml_value(v)}" for a, v in zip(grid, p)) for p in points]
    return folder_names(names)


def _probes(grid: Sequence[Axis], point: tuple, overrides: tuple) -> tuple:
    """`Cell.probes` of the cell at ``point`` with ``overrides``: its overrides with each grid value replaced by the
    grid's first point's, and with one axis at a time at its second value (axes of two values or more; the budget's
    aside: it sets the iterations, not a constant). () for a grid without such an axis."""
    axes = [i for i, a in enumerate(grid) if a.key != BUDGET_KEY and len(a.values) > 1]
    if not axes:
        return ()
    own = {f"{a.key}={toml_value(v)}": i for i, (a, v) in enumerate(zip(grid, point)) if a.key != BUDGET_KEY}

    def at(values: dict) -> tuple:
        return tuple(f"{grid[own[o]].key}={toml_value(values[own[o]])}" if o in own else o for o in overrides)

    first = {i: a.values[0] for i, a in enumerate(grid)}
    return (at(first), *(at({**first, i: grid[i].values[1]}) for i in axes))


def fingerprint(doc: Mapping, overrides: Sequence[str], variant: str, files: Optional[Mapping[str, str]] = None,
                verb: str = "compare", budget: Optional[float] = None, step_costs: Optional[Mapping] = None,
                probes: tuple = (), fidelity: Optional[Mapping] = None) -> str:
    """sha256 of the problem document, the overrides, the variant, the verb and the content hashes of the files the
    problem names (``files``, `trajopt.studies.sources`; their paths are left out, so a moved study keeps its
    cells), and a budget cell's budget and step costs (ρ_b, ρ_l: where a seed stops): what determines a cell's
    numbers; a fidelity cell's settings (``fidelity``: oracles, repeats, steps, the fine reference's overrides). A
    problem that names no file hashes as it did before files were covered, and a compare cell without a budget as it
    did before closed-loop cells and budgets existed."""
    content = {"doc": doc, "overrides": list(overrides), "variant": variant}
    if files:
        content["files"] = sorted(f"{k.partition(':')[0]}:{v}" for k, v in files.items())
    if verb != "compare":
        content["verb"] = verb
    if probes:  # which constants its grid's program takes as inputs: a last bit can differ (trajopt.programs)
        content["probes"] = [list(p) for p in probes]
    if fidelity is not None:
        content["fidelity"] = dict(fidelity)
    if budget is not None:
        content["budget"] = toml_value(budget)
        content["step_costs"] = {k: (step_costs or {}).get(k) for k in ("backward", "linearization")}
        if (step_costs or {}).get("oracles"):  # oracles' own backward ratios (cfd's), where the system has any
            content["step_costs"]["oracles"] = dict(step_costs["oracles"])
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Expansion:
    """The cells of a study and the specs of the valid ones.

    Attributes:
        cells: every cell, in order (problem, then variant, then grid point with the last axis fastest).
        specs: {cell index: trajopt.spec.Spec} for the cells whose spec is valid.
        step_costs: a budget study's step costs per system once `with_budget` has set them (the records
            `trajopt.studies.runner.with_step_costs` returns, study.json's ``step_costs``); () otherwise.
    """

    cells: tuple
    specs: dict
    step_costs: tuple = ()

    @property
    def invalid(self) -> list:
        return [c for c in self.cells if c.error is not None]


class ExpansionStopped(Exception):
    """`expand`'s ``should_stop`` said stop (SIGINT/SIGTERM in the CLI): nothing was built."""


def expand(study: StudySpec, *, strict: bool = False, should_stop: Optional[Callable[[], bool]] = None) -> Expansion:
    """Expand a study into cells and load every cell's problem spec with its overrides (nothing runs).

    A cell whose spec is invalid at some grid points only (an unstable time step at the stiffest point) is kept
    with its ``error`` (recorded as failed), or refused with ``strict``. A (problem, variant) whose spec is
    invalid at every grid point is a bad study: a misspelt key, a variant the problem lacks. So is a [set] or
    [grid] key that no variant the study runs on a problem reads (`check_reach`). ``should_stop`` is polled
    between cells (a large study takes seconds to expand).

    Raises:
        SpecError: the first error of a bad study (naming the problem file, the key and what is allowed), or
            with ``strict`` the first invalid cell's.
        ExpansionStopped: when ``should_stop()`` became true.
    """
    if study.fidelity:
        return fidelity_expand(study, should_stop)
    grid_points = list(itertools.product(*[a.values for a in study.grid]))
    folders = _point_folders(study.grid)
    problem_folders = dict(zip(study.problems, folder_names([p.stem for p in study.problems])))
    variant_folders = dict(zip(study.variants, folder_names(list(study.variants))))
    variant_overrides = tuple(f"variants.{n}={toml_value(t)}" for n, t in study.variant_tables.items())
    closed = study.closed_loop
    if closed:  # the study's seeds and iterations replace the [mpc] table's, where it sets them
        run_overrides = ((f"mpc.seeds={toml_value(list(study.seeds))}",) if study.seeds is not None else ()) + \
            ((f"mpc.iterations={study.iterations}",) if study.iterations is not None else ())
    elif study.budget is not None:  # each variant's iterations come from the budget (`with_budget`), as compare's
        run_overrides = (f"solve.seeds={toml_value(list(study.seeds))}",)
    else:
        run_overrides = (f"solve.seeds={toml_value(list(study.seeds))}", f"solve.iterations={study.iterations}")
    sources = SourceHashes()
    cells, specs = [], {}
    for path in study.problems:
        source = str(path)
        doc = read_toml(path)
        for variant in study.variants:
            if study.skipped(path.stem, variant):  # the study's [skip]: no cell (the page says so)
                continue
            errors = []
            for point, folder in zip(grid_points, folders):
                if should_stop is not None and should_stop():
                    raise ExpansionStopped()
                # a closed-loop cell names its variant for the [mpc] table too (its config.toml reruns the cell)
                names = (f"solve.variants={toml_value([variant])}",) + \
                    ((f"mpc.variants={toml_value([variant])}",) if closed else ())
                overrides = (*variant_overrides, *study.fixed,
                             *(f"{a.key}={toml_value(v)}" for a, v in zip(study.grid, point) if a.key != BUDGET_KEY),
                             *names, *run_overrides)
                budget = dict(zip([a.key for a in study.grid], point)).get(BUDGET_KEY) \
                    if study.budget is not None else None
                index = len(cells)
                error = None
                raw = None
                seeds, iterations = study.seeds, (study.iterations if budget is None else 0)
                try:
                    raw = apply_overrides(doc, overrides, source)
                    specs[index] = spec_mod.parse(raw, source, closed_loop=closed)
                    if closed:
                        seeds, iterations = _closed_loop_run(specs[index], source)
                        # as trajopt mpc: every variant's step and sigma schedules span the K steps of one replan
                        k_items = (f"solve.iterations={iterations}",)
                        extra = iteration_overrides(specs[index], (*overrides, *k_items))
                        overrides = (*overrides, *k_items, *extra)
                        raw = apply_overrides(doc, overrides, source)
                        specs[index] = spec_mod.parse(raw, source, closed_loop=True)
                    else:
                        # the study's iterations reach a variant with its own too (its schedules re-resolved for them)
                        extra = iteration_overrides(specs[index], overrides)
                        if extra:
                            overrides = (*overrides, *extra)
                            raw = apply_overrides(doc, overrides, source)
                            specs[index] = spec_mod.parse(raw, source)
                except SpecError as e:
                    specs.pop(index, None)
                    error = e
                    errors.append(e)
                files = sources.of(raw if raw is not None else doc, source)
                probes = _probes(study.grid, point, overrides)
                cells.append(Cell(index=index, problem=path.stem, path=source, doc=doc, variant=variant,
                                  point=tuple((a.key, v) for a, v in zip(study.grid, point)), overrides=overrides,
                                  seeds=seeds, iterations=iterations,
                                  folder=f"cells/{problem_folders[path]}/{variant_folders[variant]}/{folder}",
                                  fingerprint=fingerprint(doc, overrides, variant, files, study.verb, probes=probes),
                                  error=None if error is None else str(error), files=files, verb=study.verb,
                                  budget=budget, probes=probes))
            if errors and len(errors) == len(grid_points):
                e = errors[0]
                hint = ""
                if e.key.startswith("solve.variants") or e.key.startswith("variants"):
                    hint = (f" (study {study.source}: variant {variant!r} must be a [variants] table of every problem, "
                            f"an oracle or a method; or define it once in the study as [variant.{variant}])")
                elif e.key in {a.key for a in study.grid}:  # the study's own key, set on the problem
                    hint = f" (from study {study.source}: grid.{e.key})"
                elif e.key in {item.partition("=")[0].strip() for item in study.fixed}:
                    hint = f" (from study {study.source}: set.{e.key})"
                raise SpecError(e.source, e.key, e.message + hint)
            if strict and errors:
                bad = next(c for c in cells if c.error is not None)
                e = errors[0]
                raise SpecError(e.source, e.key, e.message + f" (--strict: cell {bad.label} refused)")
    if closed:
        cells = _closed_loop_cells(study, cells, specs)
    expansion = Expansion(cells=tuple(cells), specs=specs)
    check_reach(study, expansion)
    return expansion


def with_budget(study: StudySpec, expansion: Expansion, *, recorded: Sequence[Mapping] = (),
                measure: Optional[Callable] = None, should_stop: Optional[Callable[[], bool]] = None) -> Expansion:
    """A budget study's expansion with each valid cell's iterations under its budget (the expansion as it is for a
    study without one). The step costs (ρ_b, ρ_l) of each system are taken once for the study
    (`trajopt.studies.runner.with_step_costs`: the ``recorded`` ones, what an earlier run of the study folder wrote
    in study.json, else ``measure(spec, problem, oracles=...)``, by default `trajopt.step_costs.step_costs_for`); then each cell
    gets `trajopt.compute.budget_steps` of its variant as the override ``variants.NAME.iterations=N``, the one
    ``trajopt compare --budget B`` adds, its spec loaded again with it and its fingerprint covering the budget and
    the step costs. A cell whose system could not be measured is kept as invalid, with the reason (recorded as
    failed). Measures (compiles a system's step); runs no cell.

    Raises:
        SpecError: naming the study file, ``budget``, the budget, the variant and the problem file, when one step
            of a variant costs more than the budget or its iterations pass a run's bounds; or when the cells'
            seed-iterations pass `MAX_STEPS`. Nothing has run.
        ExpansionStopped: when ``should_stop()`` became true while measuring.
    """
    if study.budget is None:
        return expansion
    from trajopt.compute import StepCosts, budget_steps
    from trajopt.step_costs import step_costs_for, system_identity
    from trajopt.studies.runner import with_step_costs

    reasons: dict = {}  # {system: why its measurement failed}

    def system(spec) -> str:
        return json.dumps(system_identity(spec), sort_keys=True, default=str)

    def measuring(spec, problem, oracles=()):  # the reason a system's measurement failed, for its cells' error
        try:  # (oracles: those of every cell of the system)
            return (measure or step_costs_for)(spec, problem, oracles=oracles)
        except Exception as e:  # noqa: BLE001  (with_step_costs leaves the cells without: they are recorded failed)
            reasons[system(spec)] = f"{type(e).__name__}: {e}"
            raise

    cells, records = with_step_costs(expansion, list(expansion.cells), list(recorded), measuring, should_stop)
    if should_stop is not None and should_stop():
        raise ExpansionStopped()
    specs = dict(expansion.specs)
    out = []
    for c in cells:
        if c.error is not None:
            out.append(c)
            continue
        if c.step_costs is None:
            why = reasons.get(system(specs.pop(c.index)), "") if c.index in specs else ""
            out.append(dataclasses.replace(c, error=f"{c.path}: budget: the step costs of its system could not be "
                                           f"measured on this host{': ' + why if why else ''}"))
            continue
        spec = specs[c.index]
        costs = StepCosts.from_dict(dict(c.step_costs))
        try:
            steps = budget_steps(spec.problem(), {c.variant: spec.variants[c.variant].method}, c.budget, costs,
                                 len(c.seeds))[c.variant]
        except ValueError as e:
            raise SpecError(study.source, BUDGET_KEY, f"{e}; problem {c.path} (step costs: ρ_b = {costs.backward:g}, "
                            f"ρ_l = {costs.linearization:g}, {costs.source})") from None
        overrides = (*c.overrides, f"variants.{c.variant}.iterations={steps}")
        specs[c.index] = spec_mod.parse(apply_overrides(c.doc, overrides, c.path), c.path)
        probes = tuple((*p, f"variants.{c.variant}.iterations={steps}") for p in c.probes)
        out.append(dataclasses.replace(c, overrides=overrides, iterations=steps, probes=probes,
                                       fingerprint=fingerprint(c.doc, overrides, c.variant, c.files, c.verb, c.budget,
                                                               c.step_costs, probes)))
    steps = sum(len(c.seeds) * c.iterations for c in out if c.error is None)
    if steps > MAX_STEPS:
        raise SpecError(study.source, BUDGET_KEY, f"found {len(out):,} cells whose budgets give {steps:,} recorded "
                        f"iterations (seeds x iterations), allowed: at most {MAX_STEPS:,} per study")
    return Expansion(cells=tuple(out), specs=specs, step_costs=tuple(records))


def _closed_loop_run(spec, source: str) -> tuple[tuple, int]:
    """(seeds, K) of a closed-loop cell's valid spec: its [mpc] seeds (else its solve.seeds) and iterations."""
    mpc = spec.closed_loop.mpc if spec.closed_loop is not None else None
    if mpc is None:  # [set] removed nothing; the table is checked in load_study: this is a guard
        raise SpecError(source, "mpc", "missing; allowed: an [mpc] table with episode and horizon")
    seeds = mpc.seeds if mpc.seeds is not None else spec.solve.seeds
    return tuple(int(s) for s in seeds), int(mpc.settings.iterations)


def _closed_loop_cells(study: StudySpec, cells: list, specs: Mapping) -> list:
    """A closed-loop study's cells with the seeds of their problem on the invalid ones (a problem's seeds are the
    same at every grid point: no [grid]/[set] key reaches them), then its size counted again: at most `MAX_ROWS`
    rows (cells x their seeds) and `MAX_STEPS` recorded plant steps (cells x seeds x episode, metrics.jsonl's
    lines; checked once the episodes are known)."""
    by_problem = {}
    for c in cells:
        if c.error is None:
            by_problem.setdefault(c.path, c.seeds)
    out = [c if c.error is None or c.seeds is not None else
           dataclasses.replace(c, seeds=by_problem.get(c.path, (0,))) for c in cells]
    rows = sum(len(c.seeds) for c in out)
    if rows > MAX_ROWS:
        raise SpecError(study.source, "seeds", f"found {len(out):,} cells with {rows:,} seeds in all (table rows), "
                        f"allowed: at most {MAX_ROWS:,}")
    steps = sum(len(c.seeds) * (specs[c.index].closed_loop.mpc.settings.episode + 1) for c in out if c.error is None)
    if steps > MAX_STEPS:
        raise SpecError(study.source, "seeds", f"found {len(out):,} cells x their seeds x (episode + 1) = {steps:,} "
                        f"recorded plant steps, allowed: at most {MAX_STEPS:,} per study")
    return out


def _unreached(study: StudySpec, spec, item: str) -> Optional[str]:
    """`trajopt.overrides.unreached_override` for a study's cell; in a compare study also a ``success.*`` key of a
    problem that is not a policy problem (its [success] table is the closed-loop episode's)."""
    if not study.closed_loop and item.split("=", 1)[0].strip().split(".")[0] == "success" and spec.policy is None:
        return ("the [success] table of a time-stepped problem is read by closed-loop cells only (verb = \"mpc\"); a "
                "compare cell computes no success")
    return unreached_override(spec, item, "oracles" if study.fidelity else "variants", "study",
                              closed_loop=bool(study.closed_loop))


def check_reach(study: StudySpec, expansion: Expansion) -> None:
    """Refuse a [set] or [grid] key that no variant the study runs on some problem reads (an oracle, method,
    variant or optimiser key of none of them, or one each of them sets in its own table): its cells would differ
    in the key's value only, a flat line against it. The reason is `trajopt.overrides.unreached_override`'s, the check
    a ``--set`` of solve and compare gets; it is judged on each (problem, variant)'s first valid cell.

    Raises:
        SpecError: naming the study file, ``set.KEY`` or ``grid.KEY``, why, and the problem file.
    """
    items = [(f"set.{item.partition('=')[0]}", item) for item in study.fixed]
    items += [(f"grid.{a.key}", f"{a.key}={toml_value(a.values[0])}") for a in study.grid
              if a.key != BUDGET_KEY and not (study.fidelity and a.key in FIDELITY_AXES)]
    if not items:
        return
    first: dict = {}
    for c in expansion.cells:
        if c.error is None and (c.path, c.variant) not in first:
            first[(c.path, c.variant)] = expansion.specs[c.index]
    for path in study.problems:
        specs = [(variant, sp) for (p, variant), sp in first.items() if p == str(path)]
        if not specs:
            continue
        for where, item in items:
            reasons = [_unreached(study, sp, item) for _, sp in specs]
            if all(r is not None for r in reasons):
                why = reasons[0] if len(specs) == 1 else "; ".join(f"{v}: {r}" for (v, _), r in zip(specs, reasons))
                raise SpecError(study.source, where, f"reaches no variant the study runs on {path}: {why}; allowed: a "
                                "key some selected variant reads (the cells would differ in this value only: a flat "
                                "line against it)")


FIDELITY_VARIANT = "fidelity"  # a fidelity cell's variant: it holds every oracle of the study


def fidelity_expand(study: StudySpec, should_stop: Optional[Callable[[], bool]] = None) -> Expansion:
    """A fidelity study's cells: one per problem x grid point, holding every oracle (so that a cell computes its
    finite-difference and fine references once), with what ``trajopt fidelity`` refuses refused here, before
    anything compiles: a policy problem, a ``timestep``/``solref`` axis on a problem without an MJX time step, a
    time step that does not divide an mjx problem's control period or breaks the time-step rule (the system's own
    refusal, named by the axis), an oracle that cannot differentiate the problem, a cell whose estimates would hold
    more than `trajopt.preflight.MAX_WORKING_SET` bytes at once. The grid's ``timestep`` and ``solref`` become the
    cell's `trajopt.fidelity.cell_overrides` (an mjx problem keeps its control period); its other keys, [set] and
    ``solve.oracles`` are overrides. The fine reference (``reference_timestep``: "auto" is the finest time step of
    the problem's cells / 4) is the same cell at that step (none on a problem without an MJX time step).

    Raises:
        SpecError: naming the study file, the key (``grid.timestep``, ``seeds``, ...), the problem and what is allowed.
        ExpansionStopped: when ``should_stop()`` became true.
    """
    keys = [a.key for a in study.grid]
    points = list(itertools.product(*[a.values for a in study.grid]))
    folders = _point_folders(study.grid)
    problem_folders = dict(zip(study.problems, folder_names([p.stem for p in study.problems])))
    oracles = f"solve.oracles={toml_value(list(study.variants))}"
    repeats = len(study.seeds)
    sources = SourceHashes()
    cells, specs = [], {}

    def load(doc, overrides, source, axis):
        try:
            return spec_mod.parse(apply_overrides(doc, overrides, source), source)
        except SpecError as e:  # the mjx system refuses a time step beyond its contacts' rule: named by the axis
            if e.key in ("system.timestep", "system.solref") and axis is not None:
                raise SpecError(study.source, axis, f"problem {source}: {e.message}") from None
            raise

    def check_memory(spec, oracles_, r, where, label):
        for what, size in memory_needs(spec.problem(), spec.system, oracles_, r).items():
            if size > MAX_WORKING_SET:
                raise SpecError(study.source, where, f"problem {spec.source} at {label}: needs {size:.3g} bytes at "
                                f"once for {what}; allowed: at most {MAX_WORKING_SET:.3g} bytes: fewer seeds "
                                "(repeats), a larger time step, a shorter horizon or duration")

    for path in study.problems:
        source, doc = str(path), read_toml(path)
        mine = []
        for point, folder in zip(points, folders):
            if should_stop is not None and should_stop():
                raise ExpansionStopped()
            at = dict(zip(keys, point))
            h, sr = at.get("timestep"), at.get("solref")
            label = ", ".join(f"{k}={label_value(v)}" for k, v in at.items()) or "the file's values"
            plain = (*study.fixed, *(f"{k}={toml_value(v)}" for k, v in at.items() if k not in FIDELITY_AXES), oracles)
            base = load(doc, plain, source, None)
            if base.policy is not None:
                raise SpecError(study.source, "problems", f"{source}: found a policy problem, allowed: open-loop "
                                "problems (fidelity compares gradients of a decision's cost)")
            axis = "grid.timestep" if h is not None else "grid.solref"
            if (h is not None or sr is not None) and timestep_system(base.system) is None:
                raise SpecError(study.source, axis, f"found a grid for {source} (system {base.system_name!r}), "
                                "allowed: problems over a system with an MJX time step and solref (mjx, mjx_toss)")
            try:
                extra = cell_overrides(base.system, h, sr)
            except CellError as e:
                raise SpecError(study.source, axis if e.key == "--timesteps" else "grid.solref",
                                f"problem {source}: {e.message}") from None
            spec = load(doc, (*plain, *extra), source, axis) if extra else base
            check_oracles(spec, spec.problem())  # an oracle that cannot differentiate the problem (cfd off MJX)
            check_memory(spec, spec.oracles, repeats, "seeds", label)
            mine.append((point, folder, plain, (*plain, *extra), spec, base, sr))
        fine_h = None
        if study.reference_timestep is not None and timestep_system(mine[0][5].system) is not None:
            fine_h = fine_timestep(study.reference_timestep, [system_timestep(m[4].system) for m in mine])
        for point, folder, plain, overrides, spec, base, sr in mine:
            reference = None
            if fine_h is not None:
                try:
                    reference = (*plain, *cell_overrides(base.system, fine_h, sr))
                except CellError as e:
                    raise SpecError(study.source, "reference_timestep", f"problem {source}: {e.message}") from None
                check_memory(load(doc, reference, source, "reference_timestep"), {"exact": ORACLES.get("exact")()}, 1,
                             "reference_timestep", f"reference_timestep {fine_h:g}")
            settings = {"oracles": list(study.variants), "repeats": repeats, "fd_step": study.fd_step,
                        "reference_timestep": fine_h, "reference_overrides": None if reference is None else list(reference)}
            index = len(cells)
            files = sources.of(apply_overrides(doc, overrides, source), source)
            specs[index] = spec
            cells.append(Cell(index=index, problem=path.stem, path=source, doc=doc, variant=FIDELITY_VARIANT,
                              point=tuple(zip(keys, point)), overrides=tuple(overrides), seeds=tuple(range(repeats)),
                              iterations=0, folder=f"cells/{problem_folders[path]}/{folder}",
                              fingerprint=fingerprint(doc, overrides, FIDELITY_VARIANT, files, study.verb,
                                                      fidelity=settings),
                              files=files, verb=study.verb, fidelity=settings))
    if study.reference_timestep not in (None, -1.0) and all(c.fidelity["reference_timestep"] is None for c in cells):
        # a time step given (not auto, not none) that no problem can take: refused as fidelity's flag is
        raise SpecError(study.source, "reference_timestep", f"found {study.reference_timestep:g}, allowed: a study with "
                        "a problem over a system with an MJX time step (mjx, mjx_toss), or none; no problem here has one")
    expansion = Expansion(cells=tuple(cells), specs=specs)
    check_reach(study, expansion)
    return expansion
