"""Driving a study: skip the finished cells, run the others through an executor, write each as it arrives.

    run_study(study, expansion, folder, executor, should_stop=..., on_cell=...) -> StudyRun

The loop writes through `trajopt.studies.store` only, and the table after every cell (after fewer once a
table takes long to write: at most about a twentieth of the time goes to it; every finished cell's marker is
on disk at once, and the last table is always written); it never prints (the ``on_cell`` callback is the CLI's
progress hook).

A closed-loop study's cells convert their counts into forward-step equivalents with one `trajopt.compute.StepCosts`
per system (its resolved [system] table and sizes): those an earlier run of the study folder recorded in study.json
(so that a resumed study keeps one currency), else measured once on this host before the cells run
(``step_costs``, by default `trajopt.step_costs.step_costs_for`: its cache file only when the compilation cache is
asked for); study.json's ``step_costs`` lists them, each cell's result.json holds its own.

Whatever stops it, the finished cells stay on disk: an OSError while writing (a full disk, a file-size limit, a
read-only or forbidden folder) becomes a `trajopt.studies.store.StudyWriteError` after the table has been
written as "interrupted" where the disk still allows; a KeyboardInterrupt (a second Ctrl-C) writes the table as
"interrupted" before it propagates.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

from trajopt import runs
from trajopt import step_costs as step_cost_files
from trajopt.compute import StepCosts
from trajopt.step_costs import system_identity
from trajopt.studies import store
from trajopt.studies.cells import CELL_FAILED, CELL_INTERRUPTED, CELL_OK, CellOutcome, run_cell
from trajopt.studies.expand import Expansion
from trajopt.studies.file import StudySpec

STUDY_COMPLETE, STUDY_INTERRUPTED, STUDY_RUNNING = "complete", "interrupted", "running"


@dataclass(frozen=True, eq=False)
class StudyRun:
    """What a study run did.

    Attributes:
        status: "complete" (every cell finished: ok or failed) or "interrupted".
        rows: the table, one dict per (finished cell, seed), in cell order.
        cell_status: {cell index: "ok" | "failed" | "pending"}.
        ran, skipped: indices of the cells run now and of those reused from an earlier run.
        errors: {cell index: error message} of the failed cells.
        notes: why finished-looking cells were run again (a damaged or forged cell.json, a link; `store.check_cell`).
        step_costs: a closed-loop study's step costs per system (study.json's ``step_costs``; empty otherwise).
    """

    status: str
    rows: list
    cell_status: dict
    ran: list
    skipped: list
    errors: dict
    notes: list = field(default_factory=list)
    step_costs: list = field(default_factory=list)


def meta(study: StudySpec, expansion: Expansion, cell_status: dict, status: str, backend: str,
         step_costs: Optional[list] = None) -> dict:
    """study.json: the definition, the cells and their status, versions and the time of writing; a closed-loop
    study's step costs per system (``step_costs``: [{system, n, m, problems, backward, linearization, source}])."""
    out = {
        "study": study.definition(), "status": status, "backend": backend,
        "identity": {"name": study.name, "file": str(Path(study.source).resolve())},
        "columns": store.columns(study),
        "cells": [{"index": c.index, "label": c.label, "problem": c.problem, "variant": c.variant,
                   "point": {k: v for k, v in c.point}, "folder": c.folder, "status": cell_status.get(c.index, "pending")}
                  for c in expansion.cells],
        "versions": runs.versions(), "updated": datetime.now().isoformat(timespec="seconds"),
    }
    if study.closed_loop or study.budget is not None:
        out["step_costs"] = list(step_costs or [])
    return out


def _identity_key(ident: dict) -> str:
    # as study.json holds it (runs.dumps_json: a NaN or inf parameter, the pendulum's absent wall, is null there), so
    # that a recorded entry is found again for its system
    return json.dumps(json.loads(runs.dumps_json({k: ident[k] for k in ("system", "n", "m")})), sort_keys=True)


def recorded_step_costs(folder: Path) -> list:
    """The step costs an earlier run of the study folder recorded in its study.json (empty when none or unreadable)."""
    try:
        entries = store.read_meta(folder).get("step_costs", [])
    except (ValueError, OSError, AttributeError):
        return []
    if not isinstance(entries, list):
        return []
    good = []
    for e in entries:
        try:
            StepCosts.from_dict(e)
            _identity_key(e)
            good.append(e)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return good


def with_step_costs(expansion: Expansion, cells: list, recorded: list, measure: Optional[Callable] = None,
                    should_stop: Optional[Callable[[], bool]] = None) -> tuple[list, list]:
    """(cells with their ``step_costs`` filled in, the study's step-cost records): one `StepCosts` per system, the
    recorded one where there is one, else ``measure(spec, problem, oracles=...)`` (default
    `trajopt.step_costs.step_costs_for`; ``oracles``: those of every cell of the system, whose own backward ratios
    are measured with ρ_b) once per system. A system whose measurement raises leaves its cells without (each cell then measures, and
    fails with the reason). ``should_stop`` is polled between measurements (the rest are left to the cells)."""
    if measure is None:  # looked up when called
        measure = step_cost_files.step_costs_for
    known = {_identity_key(e): dict(e) for e in recorded}
    failed = set()
    out = []
    oracles: dict = {}  # per system, the oracles of all its cells: one measurement charges each its own ratio
    for c in cells:
        if c.error is None and expansion.specs.get(c.index) is not None:
            spec = expansion.specs[c.index]
            oracles.setdefault(_identity_key(system_identity(spec)), []).extend(step_cost_files.variant_oracles(spec))
    for c in cells:
        spec = expansion.specs.get(c.index)
        if c.error is not None or spec is None:
            out.append(c)
            continue
        ident = system_identity(spec)
        key = _identity_key(ident)
        if key not in known and key not in failed and not (should_stop is not None and should_stop()):
            try:
                costs = measure(spec, spec.closed_loop_problem(), oracles=oracles.get(key, []))
                known[key] = {**ident, "problems": [], **costs.as_dict()}
            except Exception:  # noqa: BLE001  (the cells measure again and record the reason)
                failed.add(key)
        if key in known:
            entry = known[key]
            if c.problem not in entry.setdefault("problems", []):
                entry["problems"].append(c.problem)
            out.append(dataclasses.replace(c, step_costs={k: entry[k] for k in ("backward", "linearization", "source",
                                                                               "oracles") if k in entry}))
        else:
            out.append(c)
    return out, list(known.values())


def _rows(expansion: Expansion, by_cell: dict) -> list:
    return [r for c in expansion.cells for r in by_cell.get(c.index, [])]


def run_study(study: StudySpec, expansion: Expansion, folder: Path, executor, *,
              should_stop: Optional[Callable[[], bool]] = None, retry_failed: bool = False,
              on_cell: Optional[Callable[[object, CellOutcome, int, int], None]] = None,
              cell_fn: Callable = run_cell, step_costs: Optional[Callable] = None) -> StudyRun:
    """Run the unfinished cells of ``expansion`` into the study folder ``folder`` (already `store.prepare`d).

    A cell is reused when its marker's fingerprint matches and it reads back whole (`store.check_cell`; a failed
    one too, unless ``retry_failed``). Each outcome is written (run folder, then marker) and the table rewritten
    as it arrives; an interrupted cell writes nothing and runs again next time. ``on_cell(cell, outcome, done,
    total)`` after each cell. ``step_costs(spec, problem, oracles=...)``: how a closed-loop study's systems are measured when
    the folder records none (see the module docstring).

    Raises:
        store.StudyWriteError: writing failed (the finished cells are on disk; a rerun reuses them).
        KeyboardInterrupt: passed on, after the table was written as "interrupted".
    """
    folder = Path(folder)
    by_cell, cell_status, errors, skipped, notes = {}, {}, {}, [], []
    todo = []
    for c in expansion.cells:
        marker, note = store.check_cell(folder, c)
        if note is not None:
            notes.append(note)
        if marker is not None and not (retry_failed and marker.get("status") == CELL_FAILED):
            by_cell[c.index] = marker["rows"]
            cell_status[c.index] = marker.get("status", CELL_OK)
            if cell_status[c.index] == CELL_FAILED:
                errors[c.index] = marker.get("error") or ""
            skipped.append(c.index)
        else:
            todo.append(c)
    backend = getattr(executor, "name", type(executor).__name__)
    last = {"at": -float("inf"), "took": 0.0}
    costs: list = list(expansion.step_costs)  # a budget study's: set with its cells' iterations (expand.with_budget)
    if study.closed_loop:  # one currency per system for the whole study (recorded ones first)
        todo, costs = with_step_costs(expansion, todo, recorded_step_costs(folder), step_costs, should_stop)

    def write_table(status: str) -> None:
        started = time.monotonic()
        store.write_table(folder, study, _rows(expansion, by_cell),
                          meta(study, expansion, cell_status, status, backend, costs))
        last.update(at=time.monotonic(), took=time.monotonic() - started)

    ran, interrupted, writing = [], False, None
    try:
        write_table(STUDY_RUNNING if todo else STUDY_COMPLETE)
        cells = {c.index: c for c in expansion.cells}
        invalid = [c for c in todo if c.error is not None]  # refused by their spec: recorded here, never sent to a worker
        valid = [c for c in todo if c.error is None]
        outcomes = itertools.chain((run_cell(c) for c in invalid), executor.run(valid, should_stop=should_stop, cell_fn=cell_fn))
        for outcome in outcomes:
            cell = cells[outcome.index]
            if outcome.status == CELL_INTERRUPTED:
                interrupted = True
                break
            writing = cell.folder
            store.write_cell(folder, cell, outcome, expansion.specs.get(cell.index))
            by_cell[cell.index] = outcome.rows
            cell_status[cell.index] = outcome.status
            if outcome.status == CELL_FAILED:
                errors[cell.index] = outcome.error or ""
            ran.append(cell.index)
            writing = None
            # a table that takes long to write (a large study) is written after fewer cells: at most ~5 % of the time
            if last["took"] < 0.5 or time.monotonic() - last["at"] >= 20 * last["took"]:
                write_table(STUDY_RUNNING)
            if on_cell is not None:
                on_cell(cell, outcome, len(by_cell), len(expansion.cells))
        status = STUDY_COMPLETE if len(by_cell) == len(expansion.cells) and not interrupted else STUDY_INTERRUPTED
        write_table(status)
    except KeyboardInterrupt:
        write_table(STUDY_INTERRUPTED)  # the finished cells' markers are on disk: the table says so too
        raise
    except OSError as e:
        if isinstance(e, store.StudyWriteError):
            raise
        try:  # a full disk may still take the (smaller) table; if not, the markers are what a rerun reads
            write_table(STUDY_INTERRUPTED)
        except OSError:
            pass
        path = e.filename or (str(folder / writing) if writing else str(folder))
        raise store.StudyWriteError(str(path), e.strerror or str(e), len(by_cell), e.errno) from e
    return StudyRun(status=status, rows=_rows(expansion, by_cell), cell_status=cell_status, ran=ran, skipped=skipped,
                    errors=errors, notes=notes, step_costs=costs)
