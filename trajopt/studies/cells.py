"""Running one cell: a pure top-level function of the cell (problem document, overrides, variant, seeds,
iterations) that returns its rows and the arrays of its run folder. It reads and writes no file, so the same
function runs in-process, in a Ray worker on this machine or on a remote node; the driver writes the cell's
folder (`trajopt.studies.store`) when the outcome comes back.

A compare cell is one fused `trajopt.solver` run; its rows are `ROW_COLUMNS`. A closed-loop cell (``verb = "mpc"``)
is one `trajopt.closedloop.mpc` call, exactly what ``trajopt mpc PROBLEM --variants VARIANT`` runs with the cell's
overrides (the file's [mpc], [plant] and [success] tables, its solve.key); its rows are `MPC_ROW_COLUMNS`, one per
seed:

    seed, status                     the seed and its episode's status ("ok", "non_finite": the plant state blew up)
    closed_loop_cost                 the task's cost of the realised trajectory (null where not finite)
    success                          1 / 0 where the problem has a [success] table, else null
    rollouts_per_step,               the seed's compute per control step: the mean over its replans of the
    gradients_per_step,              horizon-H rollouts, backward passes, linearisations, and forward-step
    linearizations_per_step,         equivalents (H (rollouts + rho_b gradients + rho_l linearizations), rho_b and
    forward_equivalents_per_step     rho_l the cell's step costs)
    plan_failures                    replans whose plan was not finite (the shifted guess was applied)
    plan_seconds_p50/_p95/_max,      the cell's timing, the same on each of its rows: measured on the cell's FIRST
    deadline_miss_rate,              seed only (a timing-only pass replaying its episode replan by replan, one
    realtime_factor                  seed, no batching: what a controller runs), on the host that ran the cell
    run_seconds, compile_seconds     the cell's batched episode (shared by its seeds: they ran as one vmap)
    plant_<label>                    the seed's factor of each of the plant's per-seed draws (a [plant.scale] range
                                     [low, high]: ``plant_geom_friction``, ``plant_dof_damping.NAME``; one number per
                                     draw and seed, result.json's ``plant.per_seed``), only in the rows of a cell
                                     whose plant draws (`plant_columns`; the table leaves them empty elsewhere)
    error                            a failed cell's message

A fidelity cell (``verb = "fidelity"``) is one `trajopt.fidelity.measure` call on its grid point, exactly what
``trajopt fidelity PROBLEM --oracles O --repeats R`` computes for that cell at U0 (`run_fidelity_cell`); its rows
(`FIDELITY_ROW_COLUMNS`) are fidelity.csv's, one per oracle (and one for the finite-difference reference ``fd``
against the fine one, where there is a fine reference), its ``variant`` the oracle, with the cell's ``horizon``,
``reference_timestep`` and a ``status``: "ok", or "non_finite" where the estimate's norm is not finite.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping, Optional

import numpy as np

from trajopt import fidelity as fidelity_lib  # measure, looked up when called (tests count its calls)
from trajopt.studies.expand import Cell

# Columns of the study table, in order; the grid keys come between ``variant`` and ``seed``.
LEAD_COLUMNS = ("problem", "variant")
ROW_COLUMNS = ("seed", "status", "final_cost", "best_cost", "initial_cost", "rollouts", "gradients", "run_seconds",
               "compile_seconds", "error")
MPC_ROW_COLUMNS = ("seed", "status", "closed_loop_cost", "success", "rollouts_per_step", "gradients_per_step",
                   "linearizations_per_step", "forward_equivalents_per_step", "plan_failures", "plan_seconds_p50", "plan_seconds_p95",
                   "plan_seconds_max", "deadline_miss_rate", "realtime_factor", "run_seconds", "compile_seconds",
                   "error")
FIDELITY_ROW_COLUMNS = ("horizon", "reference_timestep", "status", *fidelity_lib.CSV_COLUMNS, "error")
CELL_OK, CELL_FAILED, CELL_INTERRUPTED = "ok", "failed", "interrupted"
PLANT_PREFIX = "plant_"  # a closed-loop row's per-seed plant draws: plant_<label> (`trajopt.closedloop.plant.Draw`)


def row_columns(verb: str = "compare", budget: bool = False) -> tuple:
    """The per-seed columns of a study's rows: `ROW_COLUMNS` (with a ``budget``, ``forward_equivalents`` after
    ``gradients``: what the seed spent), a closed-loop study's `MPC_ROW_COLUMNS`, or a fidelity study's per-oracle
    `FIDELITY_ROW_COLUMNS` (its ``timestep`` and ``solref`` are the grid's where the grid has them)."""
    if verb == "mpc":
        return MPC_ROW_COLUMNS
    if verb == "fidelity":
        return FIDELITY_ROW_COLUMNS
    at = ROW_COLUMNS.index("gradients") + 1
    return ROW_COLUMNS[:at] + ("forward_equivalents",) + ROW_COLUMNS[at:] if budget else ROW_COLUMNS


class StorageError(OSError):
    """An OSError of the store a local cell's history streams to (a full disk, a file-size limit): the
    environment's failure, not the cell's, so it is raised (the study stops, its finished cells kept) instead
    of being recorded as the cell's error."""


@dataclass(frozen=True, eq=False)
class CellOutcome:
    """What running a cell produced.

    Attributes:
        index: the cell's index in the study.
        status: "ok" (the solve ran; seeds may still be non-finite, see the rows), "failed" (an invalid spec, an
            exception, or a worker that died past its retries: ``error`` says which) or "interrupted".
        rows: one dict per seed (the table's columns).
        result: the `trajopt.solver.Result` (None unless the solve ran).
        summary: result.json's content for the cell's run folder (None unless the solve ran).
        error: the error message of a failed cell.
        attempts: how many times the cell was started (Ray retries count), when known.
    """

    index: int
    status: str
    rows: list
    result: object = None
    summary: Optional[dict] = None
    error: Optional[str] = None
    attempts: int = 1


def _finite(x) -> Optional[float]:
    x = float(x)
    return x if math.isfinite(x) else None


def cell_compile_seconds(result) -> float:
    """A compare cell's compile seconds: its loop's and its final evaluation's (a cell is one run, so that program is
    its own; `trajopt.Result.final_evaluation_seconds`, apart from ``compile_seconds`` since a command's variants
    share it)."""
    return float(result.compile_seconds) + float(getattr(result, "final_evaluation_seconds", None) or 0.0)


def cell_rows(cell: Cell, result=None, error: Optional[str] = None) -> list[dict]:
    """One row per seed: problem, variant, each grid key, then `ROW_COLUMNS` (a closed-loop cell's: `mpc_cell_rows`).

    With a ``result`` (`Result`, arrays [S, ...]): per seed its status, f(U) of the returned U, the best cost, the
    initial cost, the simulator calls it spent, and the cell's run and compile seconds (shared by its seeds: they
    ran as one vmap). Without one: status "failed", the costs None and ``error``.
    """
    if cell.verb == "fidelity":
        return fidelity_cell_rows(cell, error=error)
    if cell.verb == "mpc":  # a closed-loop result's rows need its step costs too: mpc_cell_rows
        if result is not None:
            raise ValueError("cell_rows: a closed-loop cell's rows with a result are mpc_cell_rows(cell, result, step_costs)")
        return mpc_cell_rows(cell, error=error)
    base = {"problem": cell.problem, "variant": cell.variant, **{k: v for k, v in cell.point}}
    rows = []
    for i, seed in enumerate(cell.seeds):
        if result is None:
            row = {"seed": int(seed), "status": CELL_FAILED, "final_cost": None, "best_cost": None, "initial_cost": None,
                   "rollouts": None, "gradients": None, "run_seconds": None, "compile_seconds": None, "error": error}
        else:
            roll = result.history.get("rollouts")
            grad = result.history.get("gradients")
            row = {
                "seed": int(seed), "status": result.status[i], "final_cost": _finite(result.final_cost[i]),
                "best_cost": _finite(result.best_cost[i]), "initial_cost": _finite(result.cost[i, 0]),
                "rollouts": int(np.nansum(roll[i])) if roll is not None else None,
                "gradients": int(np.nansum(grad[i])) if grad is not None else None,
                "run_seconds": float(result.run_seconds), "compile_seconds": cell_compile_seconds(result),
                "error": error,
            }
        if cell.budget is not None:  # a budget cell's: the forward-step equivalents the seed spent
            row["forward_equivalents"] = None if result is None else float(result.seed_forward_equivalents()[i])
        rows.append({**base, **row})
    return rows


def mpc_cell_rows(cell: Cell, result=None, step_costs=None, error: Optional[str] = None) -> list[dict]:
    """A closed-loop cell's rows: problem, variant, each grid key, then `MPC_ROW_COLUMNS` (see the module docstring),
    and where its plant draws per seed, each draw's factor (`plant_columns`).

    With a ``result`` (the variant's `trajopt.closedloop.MPCResult`, arrays [S, ...]) and the ``step_costs``
    (`trajopt.compute.StepCosts`) that convert its counts: per seed its numbers. Without one: status "failed", the
    numbers None and ``error``."""
    base = {"problem": cell.problem, "variant": cell.variant, **{k: v for k, v in cell.point}}
    if result is None:
        empty = {k: None for k in MPC_ROW_COLUMNS}
        return [{**base, **empty, "seed": int(seed), "status": CELL_FAILED, "error": error} for seed in cell.seeds]
    from trajopt.runs_mpc import forward_equivalents_of

    fse = forward_equivalents_of(result, step_costs)
    timing = {f"plan_seconds_{k}": _finite(v) for k, v in result.plan_seconds_summary().items()}
    timing.update(deadline_miss_rate=_finite(result.deadline_miss_rate), realtime_factor=_finite(result.realtime_factor))
    rows = []
    for i, seed in enumerate(result.seeds):
        success = None if result.success is None else _finite(result.success[i])
        rows.append({**base, "seed": int(seed), "status": result.status[i],
                     "closed_loop_cost": _finite(result.closed_loop_cost[i]), "success": success,
                     "rollouts_per_step": float(np.mean(result.rollouts[i])),
                     "gradients_per_step": float(np.mean(result.gradients[i])),
                     "linearizations_per_step": float(np.mean(result.linearizations[i])),
                     "forward_equivalents_per_step": float(np.mean(fse[i])),
                     "plan_failures": int(result.plan_failures[i]), **timing,
                     "run_seconds": float(result.run_seconds), "compile_seconds": float(result.compile_seconds),
                     **plant_columns(result.plant_factors, i), "error": error})
    return rows


def plant_columns(factors: Mapping, i: int) -> dict:
    """{``plant_<label>``: seed i's factor} of each per-seed draw of a closed-loop cell's plant, in the draws' order.

    factors: {label: [S]} (an `MPCResult`'s ``plant_factors``, or `recorded_plant_factors` of its result.json), label
    a `trajopt.closedloop.plant.Draw`'s (``geom_friction`` or ``geom_friction.NAME``): each draw is one factor per
    seed (it multiplies every coefficient of its target, e.g. a geom's three friction coefficients, alike)."""
    return {PLANT_PREFIX + label: float(np.ravel(v)[i]) for label, v in factors.items()}


def recorded_plant_factors(summary: Mapping) -> Optional[dict]:
    """{label: [S] factors} of a closed-loop run's per-seed draws as its result.json records them (``plant.per_seed``:
    {label: {"range", "factors"}}; {} for a plant that draws nothing or a summary without a plant record), None where
    the record is not of that shape."""
    plant = summary.get("plant", {}) if isinstance(summary, Mapping) else None
    if not isinstance(plant, Mapping):
        return None
    per_seed = plant.get("per_seed", {})
    if not isinstance(per_seed, Mapping):
        return None
    out = {}
    for label, d in per_seed.items():
        factors = d.get("factors") if isinstance(d, Mapping) else None
        if not isinstance(label, str) or not isinstance(factors, list) or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) for f in factors):
            return None
        out[label] = [float(f) for f in factors]
    return out


def cell_spec(cell: Cell):
    """The cell's validated problem spec (parsed from its document and overrides: no file is read)."""
    from trajopt import spec as spec_mod

    return spec_mod.parse(spec_mod.apply_overrides(cell.doc, cell.overrides, cell.path), cell.path,
                          closed_loop=cell.verb == "mpc")


def run_cell(cell: Cell, should_stop: Optional[Callable[[], bool]] = None, *, history_store=None,
             memory_limit: Optional[int] = None) -> CellOutcome:
    """Run one cell: load its spec, solve its variant over its seeds as one fused loop, summarise.

    Pure apart from the clock (timings): no file is read or written, unless the caller gives a ``history_store``
    (a `trajopt.solver.HistoryStore`, e.g. `trajopt.runs.DiskHistory`) and a ``memory_limit`` in bytes: a cell
    whose recorded history is larger (`trajopt.solver.Prepared.history_bytes`) keeps it there instead of in
    memory (the local executor's choice; a Ray cell returns its arrays, so its history must fit in memory).
    An exception inside is caught and returned as a failed outcome with its message (deterministic errors would
    fail again on a retry), except an OSError while the history streams to the store (`StorageError`: the
    disk's failure, raised); a worker that dies raises nothing here, and the executor records it.
    """
    if cell.error is not None:
        return CellOutcome(cell.index, CELL_FAILED, cell_rows(cell, error=cell.error), error=cell.error)
    if cell.verb == "mpc":
        return run_closed_loop_cell(cell)
    if cell.verb == "fidelity":
        return run_fidelity_cell(cell, should_stop)
    on_disk = False
    try:
        import jax

        from trajopt.solver import STATUS_INTERRUPTED, prepare

        spec = cell_spec(cell)
        variant = spec.variants[cell.variant]
        loop = prepare(spec.problem(), variant.method, key=jax.random.PRNGKey(spec.solve.key),
                       iterations=spec.iterations_of(cell.variant), seeds=spec.solve.seeds, chunk=spec.solve.chunk,
                       lift=lift_positions(cell), **budget_options(cell))
        on_disk = history_store is not None and memory_limit is not None and loop.history_bytes() > memory_limit
        result = loop.run(should_stop=should_stop, name=cell.variant, history_store=history_store if on_disk else None)
        if any(s == STATUS_INTERRUPTED for s in result.status):
            return CellOutcome(cell.index, CELL_INTERRUPTED, [])
        return compare_outcome(cell, spec, result, on_disk=on_disk)
    except Exception as e:  # noqa: BLE001  (recorded in the table; the study goes on)
        if isinstance(e, OSError) and on_disk:  # the history's files: the disk failed, not the cell
            raise StorageError(e.errno, e.strerror or str(e), e.filename) from e
        msg = f"{type(e).__name__}: {e}"
        tb = traceback.format_exc(limit=3)
        return CellOutcome(cell.index, CELL_FAILED, cell_rows(cell, error=msg), error=msg + "\n" + tb)


def compare_outcome(cell: Cell, spec, result, *, on_disk: bool = False, group: Optional[dict] = None) -> CellOutcome:
    """The outcome of a compare cell whose solve ran (``result``, a `Result` of its seeds): its rows and result.json
    (`trajopt.runs.summarise`, with ``history`` "disk" or "memory", the cell's ``study_cell`` record and, for a cell
    that ran in a group of cells as one program (`trajopt.studies.groups`), ``program.group``)."""
    import jax

    from trajopt import runs

    summary = runs.summarise(spec, {cell.variant: result}, verb="study", versions=runs.versions(),
                             platform_name=jax.default_backend(), x64=bool(jax.config.jax_enable_x64),
                             created=datetime.now().isoformat(timespec="seconds"))
    summary["variants"][cell.variant]["history"] = "disk" if on_disk else "memory"
    if group is not None:
        summary["variants"][cell.variant]["program"]["group"] = dict(group)
    summary["study_cell"] = {"label": cell.label, "point": {k: v for k, v in cell.point},
                             "overrides": list(cell.overrides), "fingerprint": cell.fingerprint,
                             "files": dict(cell.files)}
    return CellOutcome(cell.index, CELL_OK, cell_rows(cell, result), result=result, summary=summary)


def budget_options(cell: Cell) -> dict:
    """`trajopt.solver.prepare`'s budget arguments for a budget cell (what ``trajopt compare --budget`` passes: the
    budget, the step costs `trajopt.studies.expand.with_budget` set, a deterministic method run once for every
    seed); {} for any other. A budget cell without step costs gets none (the solver refuses it: nothing runs)."""
    if cell.budget is None:
        return {}
    from trajopt.compute import StepCosts

    costs = StepCosts.from_dict(dict(cell.step_costs)) if cell.step_costs is not None else None
    return {"budget": cell.budget, "step_costs": costs, "once": True}


_POSITIONS: dict = {}  # lift_positions' answers in this process, by the cell's probes


def _loop_of(cell: Cell, overrides: tuple):
    """The constants of the cell's run with ``overrides`` instead of its own: its loop's
    (`trajopt.solver.loop_constants`), or a closed-loop cell's programs' (`trajopt.closedloop.mpc_constants`, a
    tuple)."""
    import jax

    from trajopt import spec as spec_mod
    from trajopt.solver import loop_constants

    spec = spec_mod.parse(spec_mod.apply_overrides(cell.doc, overrides, cell.path), cell.path,
                          closed_loop=cell.verb == "mpc")
    if cell.verb == "mpc":
        from trajopt.closedloop.runner import mpc_constants

        cl = spec.closed_loop
        return mpc_constants(spec.closed_loop_problem(), spec.variants[cell.variant].method, settings=cl.mpc.settings,
                             plant=cl.plant.plant if cl.plant is not None else None,
                             key=jax.random.PRNGKey(spec.solve.key), seeds=cell.seeds,
                             initial_states=spec.closed_loop_starts(cell.seeds))
    return loop_constants(spec.problem(), spec.variants[cell.variant].method, key=jax.random.PRNGKey(spec.solve.key),
                          iterations=spec.iterations_of(cell.variant), seeds=spec.solve.seeds, chunk=spec.solve.chunk,
                          **budget_options(cell))


def lift_positions(cell: Cell):
    """The constants of the cell's loop that its grid varies (`trajopt.programs.Positions`; a closed-loop cell's:
    one per program of its closed loop, `trajopt.closedloop.mpc`'s ``lift``), which the cell's program takes as
    inputs so that every cell of the grid shares one compilation; None for a cell without probes (no grid) or when
    `trajopt.programs` is off (``TRAJOPT_COMPILE_ONCE=0``).

    They are where the loop of the grid's first point differs from the loop with one axis at its second value
    (`Cell.probes`; traced, not compiled), over the axes; an axis that changes the program itself (a sample count,
    a horizon) adds none: its cells are other programs. Deterministic: a cell's program depends on the study's
    grid, not on which cells ran before it. A cell whose loop differs elsewhere too (a value that coincides at the
    probes) is still right: its own constants are in its program's text, which then compiles apart."""
    from trajopt import programs

    if not cell.probes or not programs.enabled():
        return None
    key = (cell.path, cell.variant, cell.probes, cell.budget)
    if key not in _POSITIONS:
        try:
            first, *others = [_loop_of(cell, p) for p in cell.probes]
        except Exception:  # noqa: BLE001 - a probe point the spec refuses (an unstable step): no lifting
            _POSITIONS[key] = None
            return None
        if cell.verb == "mpc":  # per program of the closed loop (the episode, and the timing pass's three)
            _POSITIONS[key] = tuple(_union(f, [o[i] for o in others]) for i, f in enumerate(first))
        else:
            _POSITIONS[key] = _union(first, others)
    return _POSITIONS[key]


def _union(first, others):
    """The positions where any of ``others`` differs from ``first`` (`trajopt.programs.Constants`), or None."""
    from trajopt import programs

    positions = programs.Positions()
    for other in others:
        differs = first.differing(other)
        positions = positions | differs if differs is not None else positions
    return positions or None


def cell_step_costs(cell: Cell):
    """The `trajopt.compute.StepCosts` a closed-loop cell converts its counts with: the cell's ``step_costs`` (the
    runner fills them in: one measurement per system for the whole study), else measured now on this host (no file
    is read or written)."""
    from trajopt.compute import StepCosts, declared_backward_steps, measure_step_costs
    from trajopt.step_costs import host, system_identity, variant_oracles

    if cell.step_costs is not None:
        return StepCosts.from_dict(dict(cell.step_costs))
    spec = cell_spec(cell)
    ident = system_identity(spec)
    own = declared_backward_steps(spec.system, variant_oracles(spec))  # its oracle's own backward map (cfd's)
    costs = measure_step_costs(spec.closed_loop_problem().step, ident["n"], ident["m"], backward_steps=own)
    return StepCosts(costs.backward, costs.linearization, f"{costs.source}, on {host()}", costs.oracles)


def run_closed_loop_cell(cell: Cell) -> CellOutcome:
    """Run one closed-loop cell: its variant as a receding-horizon controller over its seeds, one
    `trajopt.closedloop.mpc` call with the problem's [mpc] settings, [plant] and [success] and its solve.key (what
    ``trajopt mpc`` runs), then summarise as `trajopt.runs_mpc.summarise` does for a run folder.

    A grid's cells take the constants the grid varies as inputs of shared programs (`lift_positions`). The
    outcome's ``result`` is {variant: MPCResult} (its method left out: the arrays travel from a Ray worker); an
    exception is a failed outcome with its message, as in `run_cell`. The episode is one compiled program: a stop
    request is honoured between cells, not inside one."""
    import dataclasses

    try:
        import jax

        from trajopt import runs, runs_mpc
        from trajopt.closedloop import mpc
        from trajopt.methods.base import check_applicable

        spec = cell_spec(cell)
        cl = spec.closed_loop
        variant = spec.variants[cell.variant]
        problem = spec.closed_loop_problem()
        check_applicable(variant.method, problem)
        costs = cell_step_costs(cell)
        lift = lift_positions(cell)
        results = mpc(problem, {cell.variant: variant.method}, settings=cl.mpc.settings,
                      plant=cl.plant.plant if cl.plant is not None else None, key=jax.random.PRNGKey(spec.solve.key),
                      seeds=cell.seeds, success=cl.success, initial_states=spec.closed_loop_starts(cell.seeds),
                      lift=None if lift is None else {cell.variant: lift})
        summary = runs_mpc.summarise(spec, results, step_costs=costs, versions=runs.versions(),
                                     platform_name=jax.default_backend(), x64=bool(jax.config.jax_enable_x64),
                                     created=datetime.now().isoformat(timespec="seconds"))
        summary["study_cell"] = {"label": cell.label, "point": {k: v for k, v in cell.point},
                                 "overrides": list(cell.overrides), "fingerprint": cell.fingerprint,
                                 "files": dict(cell.files)}
        # the method and the plant stay here: the arrays travel from a Ray worker, and an MJX system (the plant's) holds
        # a custom_vjp step that unpickles nowhere (summarise has already read the plant's describe())
        result = dataclasses.replace(results[cell.variant], method=None, plant=None)
        return CellOutcome(cell.index, CELL_OK, mpc_cell_rows(cell, result, costs), result={cell.variant: result},
                           summary=summary)
    except Exception as e:  # noqa: BLE001  (recorded in the table; the study goes on)
        msg = f"{type(e).__name__}: {e}"
        tb = traceback.format_exc(limit=3)
        return CellOutcome(cell.index, CELL_FAILED, cell_rows(cell, error=msg), error=msg + "\n" + tb)


def step_counts(cell: Cell) -> dict:
    """Simulator calls of one step of the cell's method, {"rollouts": r, "gradients": g}, from one evaluated
    step at U0 (one seed; compiles the step once). A closed-loop cell's step is on its first replan's horizon
    problem (H = mpc.horizon steps from the start, the initial guess's first H controls)."""
    import jax

    spec = cell_spec(cell)
    method = spec.variants[cell.variant].method
    problem = spec.closed_loop_problem() if cell.verb == "mpc" else spec.problem()
    if cell.verb == "mpc":
        from trajopt.closedloop.episode import initial_guess
        from trajopt.problem import trajectory_problem

        guess = initial_guess(problem, spec.closed_loop.mpc.settings)
        problem = trajectory_problem(cell.variant, problem.step, problem.x0, problem.cost, guess)
    key = jax.random.PRNGKey(0)

    @jax.jit
    def one(k):
        state = method.init(k, problem, problem.U0)
        _, info = method.step(k, problem, state)
        return info.rollouts, info.gradients

    r, g = one(key)
    return {"rollouts": int(np.asarray(r)), "gradients": int(np.asarray(g))}


def fidelity_oracles(cell: Cell) -> list[str]:
    """The ``variant`` of each row of a fidelity cell, in order: ``fd`` first where the cell has a fine reference
    (the cell's own finite differences against it), then the study's oracles (`trajopt.fidelity.measure`'s order)."""
    settings = cell.fidelity or {}
    return (["fd"] if settings.get("reference_timestep") is not None else []) + list(settings.get("oracles", []))


def fidelity_cell_rows(cell: Cell, rows=None, horizon: Optional[int] = None, error: Optional[str] = None) -> list[dict]:
    """A fidelity cell's rows: problem, variant (the oracle), each grid key, then `FIDELITY_ROW_COLUMNS` (the grid's
    ``timestep`` and ``solref`` where it has them: the cell's own values). With ``rows`` (`trajopt.fidelity.measure`'s)
    their numbers (`trajopt.fidelity.flat_row`); without, one failed row per oracle with ``error``."""
    point = {k: v for k, v in cell.point}
    base = {"problem": cell.problem, **point, "reference_timestep": (cell.fidelity or {}).get("reference_timestep")}
    if rows is None:
        empty = {k: None for k in FIDELITY_ROW_COLUMNS if k not in base and k not in point}
        return [{**empty, **base, "variant": o, "oracle": o, "status": CELL_FAILED, "error": error}
                for o in fidelity_oracles(cell)]
    out = []
    for r in rows:
        flat = {k: v for k, v in fidelity_lib.flat_row(r).items() if k not in point}
        norm = r.get("norm", {}).get("median")
        status = "ok" if norm is not None and math.isfinite(norm) else "non_finite"
        out.append({**base, "variant": r["oracle"], "horizon": horizon, "status": status, **flat, "error": error})
    return out


def run_fidelity_cell(cell: Cell, should_stop: Optional[Callable[[], bool]] = None) -> CellOutcome:
    """Run one fidelity cell: its problem at the grid point (the cell's spec, `trajopt.fidelity.cell_overrides`
    among its overrides), the fine reference's (where the cell has one), then `trajopt.fidelity.measure` at U0 with
    the problem's solve.key, the study's repeats and finite-difference step: what ``trajopt fidelity`` computes for
    the cell. The outcome's ``summary`` is the cell's fidelity.json (the command's keys, with ``study_cell``); a
    stop request between estimates returns an interrupted outcome (nothing is kept)."""
    try:
        import jax

        from trajopt import spec as spec_mod

        settings = cell.fidelity
        spec = cell_spec(cell)
        problem = spec.problem()
        fine = None
        if settings["reference_overrides"] is not None:
            fine_spec = spec_mod.parse(spec_mod.apply_overrides(cell.doc, settings["reference_overrides"], cell.path),
                                       cell.path)
            fine = fidelity_lib.grid_cell(fine_spec, fine_spec.problem())
        stopped: list = []

        def stop() -> bool:
            if should_stop is not None and should_stop():
                stopped.append(True)
            return bool(stopped)

        rows, references = fidelity_lib.measure(
            jax.random.PRNGKey(spec.solve.key), [[fidelity_lib.grid_cell(spec, problem)]], [fine],
            [{"U": problem.U0, "oracle": None}], settings["repeats"], settings["fd_step"], should_stop=stop)
        if stopped:
            return CellOutcome(cell.index, CELL_INTERRUPTED, [])
        eps = settings["fd_step"]
        summary = {"problem": spec.name, "source": spec.source, "title": spec.title, "at": "init",
                   "oracles": list(spec.oracles),
                   "oracle_config": {n: fidelity_lib.oracle_config(o) for n, o in spec.oracles.items()},
                   "repeats": settings["repeats"], "key": spec.solve.key, "timesteps": [rows[0]["timestep"]],
                   "solrefs": [rows[0]["solref"]], "reference_timestep": settings["reference_timestep"], "fd_step": eps,
                   "fd_check": fidelity_lib.FD_CHECK * eps, "fd_agree": fidelity_lib.FD_AGREE,
                   "references": references, "rows": rows, "status": "complete",
                   "study_cell": {"label": cell.label, "point": {k: v for k, v in cell.point},
                                  "overrides": list(cell.overrides), "fingerprint": cell.fingerprint,
                                  "files": dict(cell.files)}}
        horizon = int(problem.shape[0]) if getattr(problem, "time_stepped", False) else None
        return CellOutcome(cell.index, CELL_OK, fidelity_cell_rows(cell, rows, horizon), summary=summary)
    except Exception as e:  # noqa: BLE001  (recorded in the table; the study goes on)
        msg = f"{type(e).__name__}: {e}"
        return CellOutcome(cell.index, CELL_FAILED, fidelity_cell_rows(cell, error=msg),
                           error=msg + "\n" + traceback.format_exc(limit=3))


def fidelity_counts(cell: Cell, spec) -> dict:
    """What a fidelity cell runs, counted without compiling: {"rollouts": r, "gradients": g} of its estimates: the
    finite-difference reference and its check (4 d rollouts), each oracle's repeats (`trajopt.fidelity.oracle_batch`)
    and, with a fine reference, its exact gradient and finite differences (1 + 4 d, at the finer step)."""
    problem = spec.problem()
    d = int(problem.dimension)
    rollouts, gradients = 4 * d, 0
    for oracle in spec.oracles.values():
        r, g = fidelity_lib.oracle_batch(oracle, problem, cell.fidelity["repeats"])
        rollouts, gradients = rollouts + r, gradients + g
    if cell.fidelity["reference_timestep"] is not None:
        rollouts, gradients = rollouts + 1 + 4 * d, gradients + 1
    return {"rollouts": rollouts, "gradients": gradients}
