"""The study folder: what `trajopt study` writes, and reading it back (the study's counterpart of
`trajopt.runs`, and like it the only study module that touches files).

    study.json         the study's definition, the cells (label, folder, status), versions, status
    study.csv          one row per (cell, seed): problem, variant, each grid key, seed, status, final_cost,
                       best_cost, initial_cost, rollouts, gradients, run_seconds, compile_seconds, error
    study.parquet      the same table (when pyarrow is importable)
    study_<key>.png    final cost against each grid axis (one panel per problem, one line per variant)
    task_<problem>.png a closed-loop study's figure per problem (`trajopt.studies.figures.task_figure`)
    report.html        the study's page: figures, a table of cells, links to the cells' folders
    cells/<problem>/<variant>/<key=value,...>/
        config.toml, metrics.jsonl, result.json, trajectory.npz   a run folder (`trajopt.runs.write_run`)
        cell.json      the marker, written last: the cell's fingerprint, status, error and rows

A closed-loop study (``verb = "mpc"``) writes the same files with closed-loop content: study.csv's per-seed columns
are `trajopt.studies.cells.MPC_ROW_COLUMNS` (closed-loop cost, success, compute per control step, the cell's plan
timing) and, where a cell's plant draws per seed, ``plant_<label>`` (each seed's drawn factor, read back from the
cell's result.json where an older marker lacks it), study_<key>.png draws the closed-loop cost (and, for an
``mpc.iterations`` axis, also study_<key>_compute.png: against forward-step equivalents per control step; every
figure states under its title what its cells ran with, `cell_settings`), ``best.csv`` holds the best variant at each
grid point (`trajopt.studies.figures.best_rows`), study.json the step costs per system, and each cell's folder is a
`trajopt mpc` run folder (`trajopt.runs_mpc.write_run`).

A fidelity study (``verb = "fidelity"``) has one row per cell and oracle (`trajopt.studies.cells.FIDELITY_ROW_COLUMNS`:
fidelity.csv's columns), ``fidelity_<problem>.png`` per problem (relative error against the grid, a line per
oracle), and each cell's folder holds what ``trajopt fidelity`` writes: fidelity.json (everything, the references'
gradients included, with the cell's fingerprint) and fidelity.csv, in place of a run folder.

A cell is finished when its cell.json exists, its fingerprint matches and it reads back whole (`check_cell`:
rows of the cell's shape, agreeing with the cell's result.json and run files; anything else runs again, with
a note); a failed cell has a cell.json and no run files. Every file is written atomically, and the table after
each cell (after fewer of them once writing the table takes long), so an interrupted study leaves a folder that
reads as it stands.

The folder belongs to one study (study.json names it; `prepare` refuses another's). Nothing is written through a
symbolic link: a link (or a stray file) where a cell's folder or one of its parents under ``cells/`` should be is
replaced by a real folder, so no file lands outside the study folder; temporaries that an interrupted write left
(``.NAME.*.tmp``, ``.history-*``) are removed when the folder is prepared again. Every reader bounds what it
reads (`MAX_JSON_BYTES`) and never opens a file that is not a regular one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from trajopt import runs, runs_mpc
from trajopt.compute import StepCosts
from trajopt.fidelity import METRICS, csv_text
from trajopt.studies.cells import (CELL_FAILED, CELL_OK, LEAD_COLUMNS, MPC_ROW_COLUMNS, PLANT_PREFIX, CellOutcome,
                                   fidelity_oracles, plant_columns, recorded_plant_factors, row_columns)
from trajopt.studies.expand import Cell
from trajopt.studies.file import StudySpec
from trajopt.studies.values import toml_value

STUDY_JSON, TABLE, CELL_JSON, REPORT, BEST = "study.json", "study", "cell.json", "report.html", "best.csv"
RUN_FILES = (runs.CONFIG, runs.METRICS, runs.TRAJECTORY, runs.RESULT)  # an ok cell's run folder, result.json last
FIDELITY_JSON, FIDELITY_CSV = "fidelity.json", "fidelity.csv"  # an ok fidelity cell's files (trajopt fidelity's)
MAX_JSON_BYTES = 64 << 20  # a cell.json or study.json larger than this was not written by trajopt
TEMPORARY = re.compile(r"^\..+\.tmp$")  # `trajopt.runs.atomic_file`'s temporaries: .NAME.RANDOM.tmp


class StudyFolderError(ValueError):
    """An --out folder that is not a study folder (and so is neither resumed nor emptied), or another study's."""


class StudyWriteError(OSError):
    """Writing the study folder failed (a full disk, a file-size limit, a read-only or forbidden path, an I/O
    error). ``path``: what was being written; ``reason``: the system's words; ``kept``: the finished cells that
    are on disk and will be reused by a rerun."""

    def __init__(self, path: str, reason: str, kept: int, errno: Optional[int] = None):
        super().__init__(errno, reason, path)
        self.path, self.reason, self.kept = path, reason, kept


def is_study_dir(path: Path) -> bool:
    return (Path(path) / STUDY_JSON).is_file()


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file trajopt wrote: a regular file (not a link, FIFO or device: never opened otherwise) of at most
    ``limit`` bytes. Raises ValueError saying what is wrong (missing, not regular, too large, not JSON)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ValueError("missing") from None
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise ValueError("is a symbolic link, not a file trajopt wrote")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("is not a regular file")
    if st.st_size > limit:
        raise ValueError(f"is {st.st_size:,} bytes, larger than trajopt writes ({limit:,})")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        return json.loads(data.decode("utf-8"))
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"not valid JSON ({type(e).__name__})") from None


def study_name(folder: Path) -> Optional[str]:
    """The name of the study a study folder holds (its study.json's); None when study.json is unreadable."""
    try:
        meta = read_json(Path(folder) / STUDY_JSON)
        name = meta.get("identity", {}).get("name", meta["study"]["name"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def prepare(folder: Path, *, fresh: bool, name: Optional[str] = None) -> int:
    """Make ``folder`` ready: create it, or empty it with ``fresh``; remove temporaries an interrupted write left.
    A non-empty folder that is not a study folder is refused (never emptied), and so is the folder of another
    study (``name``: this study's name; a study is its file's name, which names the default folder). Returns the
    number of temporaries removed."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise StudyFolderError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not is_study_dir(folder):
        raise StudyFolderError(f"{folder}: not empty and not a study folder (no {STUDY_JSON}); choose another --out")
    if name is not None and folder.is_dir() and is_study_dir(folder):
        held = study_name(folder)
        if held is None and not fresh:
            raise StudyFolderError(f"{folder}: its {STUDY_JSON} cannot be read, so the study it holds is unknown; "
                                   f"allowed: --fresh to empty it for study {name!r}, or another --out")
        if held is not None and held != name:
            raise StudyFolderError(f"{folder}: holds the study {held!r}, not {name!r}; allowed: that study's own "
                                   "folder, or another --out (a study folder is never shared or taken over)")
    if fresh and folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return clean_temporaries(folder)


def clean_temporaries(folder: Path) -> int:
    """Remove what interrupted writes left in a study folder: ``.NAME.*.tmp`` files anywhere in it and
    ``.history-*`` folders at its top (`trajopt.runs.DiskHistory`). Links are removed, never followed. Call it
    only with the folder locked (no writer is running). Returns how many were removed."""
    removed = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        for n in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            if TEMPORARY.match(n):
                try:
                    os.unlink(os.path.join(root, n))
                    removed += 1
                except OSError:
                    pass
        if Path(root) == Path(folder):
            for d in list(dirs):
                if d.startswith(runs.DiskHistory.PREFIX) and not os.path.islink(os.path.join(root, d)):
                    shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                    dirs.remove(d)
                    removed += 1
    return removed


def _link_in(folder: Path, rel: str) -> Optional[str]:
    """The first component of ``rel`` under ``folder`` that is a symbolic link or not a folder, if any."""
    cur = Path(folder)
    for part in Path(rel).parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None
        except OSError:
            return str(cur)
        if not stat.S_ISDIR(st.st_mode):
            return str(cur)
    return None


def real_dir(folder: Path, rel: str) -> Path:
    """``folder / rel`` as a real folder: missing components are made, and a symbolic link or a stray file in
    their place is removed (the link itself, never what it points to) and replaced by a folder, so that nothing
    written into it lands outside ``folder``."""
    cur = Path(folder)
    for part in Path(rel).parts:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur)
            continue
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(cur)
            os.mkdir(cur)
    return cur


def columns(study: StudySpec, rows: Sequence[Mapping] = ()) -> list[str]:
    """The table's columns: problem, variant, each grid key, then seed ... error (`trajopt.studies.cells.row_columns`);
    a closed-loop study's with the ``plant_<label>`` columns of its ``rows`` (sorted) before ``error``."""
    keys = [a.key for a in study.grid]
    own = [c for c in row_columns(study.verb, study.budget is not None) if c not in keys]
    if study.closed_loop:
        drawn = sorted({k for r in rows for k in r if k.startswith(PLANT_PREFIX) and k not in keys and k not in own})
        own = own[:-1] + drawn + own[-1:]
    return [*LEAD_COLUMNS, *keys, *own]


def read_cell(folder: Path, cell: Cell) -> Optional[dict]:
    """The finished cell's marker (``status``, ``error``, ``rows``), or None when the cell must run (`check_cell`)."""
    return check_cell(folder, cell)[0]


def _finite_or_none(v, *, low: float = -math.inf) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= low)


def _row_problem(row: Any, i: int, cell: Cell) -> Optional[str]:
    """Why row ``i`` of a marker is not a row of ``cell`` (None when it is)."""
    where = f"rows[{i}]"
    if not isinstance(row, dict):
        return f"{where}: found {type(row).__name__}, expected an object"
    missing = [k for k in (*LEAD_COLUMNS, *(k for k, _ in cell.point), *row_columns(cell.verb, cell.budget is not None)) if k not in row]
    if missing:
        return f"{where}: missing {', '.join(missing)}"
    variant = fidelity_oracles(cell)[i] if cell.verb == "fidelity" else cell.variant
    if row["problem"] != cell.problem or row["variant"] != variant:
        return f"{where}: belongs to {row['problem']!r} / {row['variant']!r}, not this cell"
    for k, v in cell.point:
        try:
            same = toml_value(row[k]) == toml_value(v)
        except (TypeError, ValueError, RecursionError):
            same = False
        if not same:
            return f"{where}.{k}: found {row[k]!r}, expected the cell's {v!r}"
    if cell.verb == "fidelity":
        return _fidelity_row_problem(row, where)
    if isinstance(row["seed"], bool) or row["seed"] != cell.seeds[i]:
        return f"{where}.seed: found {row['seed']!r}, expected {cell.seeds[i]}"
    if not isinstance(row["status"], str) or not 0 < len(row["status"]) <= 64:
        return f"{where}.status: found {row['status']!r}, expected a status"
    if row["error"] is not None and not isinstance(row["error"], str):
        return f"{where}.error: found {type(row['error']).__name__}, expected text or null"
    if cell.verb == "mpc":
        return _mpc_row_problem(row, where)
    for k in ("final_cost", "best_cost", "initial_cost"):
        if not _finite_or_none(row[k]):
            return f"{where}.{k}: found {row[k]!r}, expected a finite number or null"
    for k in ("rollouts", "gradients"):
        if row[k] is not None and (isinstance(row[k], bool) or not isinstance(row[k], int) or row[k] < 0):
            return f"{where}.{k}: found {row[k]!r}, expected a count >= 0 or null"
    for k in ("run_seconds", "compile_seconds"):
        if not _finite_or_none(row[k], low=0.0):
            return f"{where}.{k}: found {row[k]!r}, expected seconds >= 0 or null"
    return None


def _fidelity_row_problem(row: dict, where: str) -> Optional[str]:
    """Why a fidelity row's status and numbers are not what a fidelity cell writes (None when they are)."""
    if not isinstance(row["status"], str) or not 0 < len(row["status"]) <= 64:
        return f"{where}.status: found {row['status']!r}, expected a status"
    if row["error"] is not None and not isinstance(row["error"], str):
        return f"{where}.error: found {type(row['error']).__name__}, expected text or null"
    for k in [f"{m}_{s}" for m in METRICS for s in ("median", "q25", "q75")] + ["fd_agreement", "fine_fd_agreement"]:
        if row[k] is not None and (isinstance(row[k], bool) or not isinstance(row[k], (int, float))):
            return f"{where}.{k}: found {row[k]!r}, expected a number or null"
    for k in ("run_seconds", "compile_seconds"):
        if not _finite_or_none(row[k], low=0.0):
            return f"{where}.{k}: found {row[k]!r}, expected seconds >= 0 or null"
    return None


def _fidelity_run_problem(cell_dir: Path, cell: Cell, rows: list) -> Optional[str]:
    """`_run_problem` for a fidelity cell: fidelity.json and fidelity.csv are regular files, fidelity.json is this
    cell's (fingerprint), and its rows' oracles and relative errors are the marker's."""
    for name in (FIDELITY_CSV, FIDELITY_JSON):
        try:
            if not stat.S_ISREG(os.lstat(cell_dir / name).st_mode):
                return f"{name}: not a regular file"
        except OSError:
            return f"{name}: missing"
    try:
        report = read_json(cell_dir / FIDELITY_JSON)
    except ValueError as e:
        return f"{FIDELITY_JSON}: {e}"
    tag = report.get("study_cell") if isinstance(report, dict) else None
    if not isinstance(tag, dict) or tag.get("fingerprint") != cell.fingerprint:
        return f"{FIDELITY_JSON}: written for another cell or study (its fingerprint differs)"
    written = report.get("rows")
    if not isinstance(written, list) or [r.get("oracle") if isinstance(r, dict) else None for r in written] != \
            [r["variant"] for r in rows]:
        return f"{FIDELITY_JSON}: its rows' oracles differ from the cell's rows"
    for key in ("rel_fd", "rel_fine"):
        if [(r.get(key) or {}).get("median") for r in written] != [r[f"{key}_median"] for r in rows]:
            return f"{FIDELITY_JSON}: its {key} differs from the cell's rows"
    return None


def _mpc_row_problem(row: dict, where: str) -> Optional[str]:
    """Why a closed-loop row's numbers are not what a closed-loop cell writes (None when they are)."""
    if not _finite_or_none(row["closed_loop_cost"]):
        return f"{where}.closed_loop_cost: found {row['closed_loop_cost']!r}, expected a finite number or null"
    if row["success"] not in (None, 0.0, 1.0) or isinstance(row["success"], bool):
        return f"{where}.success: found {row['success']!r}, expected 1, 0 or null"
    for k in ("rollouts_per_step", "gradients_per_step", "linearizations_per_step", "forward_equivalents_per_step",
              "plan_seconds_p50",
              "plan_seconds_p95", "plan_seconds_max", "realtime_factor", "run_seconds", "compile_seconds"):
        if not _finite_or_none(row[k], low=0.0):
            return f"{where}.{k}: found {row[k]!r}, expected a number >= 0 or null"
    for k in (k for k in row if k.startswith(PLANT_PREFIX)):
        if not _finite_or_none(row[k], low=0.0):
            return f"{where}.{k}: found {row[k]!r}, expected a factor >= 0 or null"
    rate = row["deadline_miss_rate"]
    if not _finite_or_none(rate, low=0.0) or (rate is not None and rate > 1):
        return f"{where}.deadline_miss_rate: found {rate!r}, expected a share in 0..1 or null"
    k = row["plan_failures"]
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        return f"{where}.plan_failures: found {k!r}, expected a count >= 0 or null"
    return None


def _run_problem(cell_dir: Path, cell: Cell, rows: list) -> Optional[str]:
    """Why an ok cell's run folder does not back its marker's rows (None when it does): every run file present
    (regular files), result.json of this cell (fingerprint) with the rows' seeds, statuses and costs (a fidelity
    cell's: `_fidelity_run_problem`)."""
    if cell.verb == "fidelity":
        return _fidelity_run_problem(cell_dir, cell, rows)
    for name in RUN_FILES:
        try:
            st = os.lstat(cell_dir / name)
        except OSError:
            return f"{name}: missing"
        if not stat.S_ISREG(st.st_mode):
            return f"{name}: not a regular file"
    if cell.verb == "mpc":
        return _mpc_run_problem(cell_dir, cell, rows)
    try:
        result = runs.read_result(cell_dir)
    except (runs.RunFolderError, ValueError, OSError, RecursionError) as e:
        return f"{runs.RESULT}: {str(e).replace(str(cell_dir / runs.RESULT) + ': ', '')}"
    tag = result.get("study_cell")
    if not isinstance(tag, dict) or tag.get("fingerprint") != cell.fingerprint:
        return f"{runs.RESULT}: written for another cell or study (its fingerprint differs)"
    entry = runs.variant_entries(result).get(cell.variant)
    if result.get("seeds") != list(cell.seeds) or not isinstance(entry, dict):
        return f"{runs.RESULT}: does not hold variant {cell.variant!r} on the cell's seeds"
    for key, col in (("status", "status"), ("final_cost", "final_cost"), ("best_cost", "best_cost")):
        if entry.get(key) != [r[col] for r in rows]:
            return f"{runs.RESULT}: its {key} differs from the cell's rows"
    return None


def _mpc_run_problem(cell_dir: Path, cell: Cell, rows: list) -> Optional[str]:
    """`_run_problem` for a closed-loop cell: its result.json (`trajopt.runs_mpc`) is this cell's (fingerprint),
    holds the variant on the cell's seeds, and its statuses, closed-loop costs and per-seed plant draws
    (``plant.per_seed``) are the rows'; rows without any ``plant_<label>`` column (a marker written before the
    columns existed) get them from result.json, in place."""
    try:
        result = read_json(cell_dir / runs.RESULT)
    except ValueError as e:
        return f"{runs.RESULT}: {e}"
    if not isinstance(result, dict) or result.get("verb") != "mpc":
        return f"{runs.RESULT}: not a closed-loop run's summary"
    tag = result.get("study_cell")
    if not isinstance(tag, dict) or tag.get("fingerprint") != cell.fingerprint:
        return f"{runs.RESULT}: written for another cell or study (its fingerprint differs)"
    entry = result.get("variants", {}).get(cell.variant) if isinstance(result.get("variants"), dict) else None
    if result.get("seeds") != list(cell.seeds) or not isinstance(entry, dict):
        return f"{runs.RESULT}: does not hold variant {cell.variant!r} on the cell's seeds"
    for key in ("status", "closed_loop_cost"):
        if entry.get(key) != [r[key] for r in rows]:
            return f"{runs.RESULT}: its {key} differs from the cell's rows"
    factors = recorded_plant_factors(result)
    if factors is None or any(len(f) != len(rows) for f in factors.values()):
        return f"{runs.RESULT}: plant.per_seed: not one factor per seed and draw"
    recorded = [plant_columns(factors, i) for i in range(len(rows))]
    if not any(k.startswith(PLANT_PREFIX) for r in rows for k in r):
        for r, drawn in zip(rows, recorded):
            r.update(drawn)
    elif [{k: v for k, v in r.items() if k.startswith(PLANT_PREFIX)} for r in rows] != recorded:
        return f"{runs.RESULT}: its plant.per_seed factors differ from the cell's rows"
    return None


def check_cell(folder: Path, cell: Cell) -> tuple[Optional[dict], Optional[str]]:
    """``(marker, None)`` for a finished cell that reads back whole, else ``(None, note)``: the note says why a
    marker that exists is not used (damaged, forged, of another shape, its run files missing or disagreeing
    with its rows; an ok cell has them unless its marker says ``run_folder = false``, a cell function that
    returned rows only),
    None when there is no marker or it is another version of the cell (the study changed). The cell then runs
    again; the caller reports the note."""
    where = f"{cell.folder}/{CELL_JSON}"
    link = _link_in(folder, cell.folder)
    if link is not None:
        return None, f"{Path(link).relative_to(folder)}: a symbolic link or a file where a folder belongs; the cell " \
                     "runs again, into a real folder"
    path = Path(folder) / cell.folder / CELL_JSON
    try:
        marker = read_json(path)
    except ValueError as e:
        return None, (None if str(e) == "missing" else f"{where}: {e}; the cell runs again")
    if not isinstance(marker, dict):
        return None, f"{where}: found a JSON {type(marker).__name__}, expected an object; the cell runs again"
    if marker.get("fingerprint") != cell.fingerprint:
        return None, None
    why = None
    rows = marker.get("rows")
    if marker.get("status") not in (CELL_OK, CELL_FAILED):
        why = f"status: found {marker.get('status')!r}, expected {CELL_OK!r} or {CELL_FAILED!r}"
    elif marker.get("label") != cell.label:
        why = f"label: found {marker.get('label')!r}, expected {cell.label!r}"
    elif not isinstance(rows, list) or len(rows) != (len(fidelity_oracles(cell)) if cell.verb == "fidelity"
                                                     else len(cell.seeds)):
        found = f"{len(rows)} rows" if isinstance(rows, list) else repr(type(rows).__name__)
        why = (f"rows: found {found}, expected one per oracle ({len(fidelity_oracles(cell))})" if cell.verb == "fidelity"
               else f"rows: found {found}, expected one per seed ({len(cell.seeds)})")
    elif marker.get("error") is not None and not isinstance(marker.get("error"), str):
        why = f"error: found {type(marker['error']).__name__}, expected text or null"
    else:
        why = next((w for w in (_row_problem(r, i, cell) for i, r in enumerate(rows)) if w), None)
        if why is None and marker["status"] == CELL_FAILED and any(r["status"] != CELL_FAILED for r in rows):
            why = "a failed cell with rows that are not failed"
        if why is None and marker["status"] == CELL_OK and marker.get("run_folder", True) is not False:
            why = _run_problem(Path(folder) / cell.folder, cell, rows)
    if why is not None:
        return None, f"{where}: {why}; the cell runs again"
    return marker, None


def write_cell(folder: Path, cell: Cell, outcome: CellOutcome, spec=None) -> None:
    """Write a finished cell: its run folder (when it ran; ``spec`` is its `trajopt.spec.Spec`), then its marker.
    The cell's folder is made real first (`real_dir`): nothing is written through a link."""
    cell_dir = real_dir(Path(folder), cell.folder)
    for name in (CELL_JSON, runs.RESULT, FIDELITY_JSON):  # a stale marker or run folder must not outlive a failed rerun
        (cell_dir / name).unlink(missing_ok=True)
    run_folder = outcome.result is not None and outcome.summary is not None and spec is not None
    if cell.verb == "fidelity" and outcome.summary is not None:  # what trajopt fidelity writes, fidelity.json last
        runs.atomic_write_bytes(cell_dir / FIDELITY_CSV, csv_text(outcome.summary["rows"]).encode())
        runs.atomic_write_bytes(cell_dir / FIDELITY_JSON, runs.dumps_json(outcome.summary).encode())
        run_folder = True
    elif run_folder and cell.verb == "mpc":  # a closed-loop run folder: result {variant: MPCResult}
        runs_mpc.write_run(cell_dir, spec, outcome.result, outcome.summary, spec.closed_loop_problem().cost,
                           StepCosts.from_dict(outcome.summary["step_costs"]))
    elif run_folder:
        runs.write_run(cell_dir, spec, {cell.variant: outcome.result}, outcome.summary)
    marker = {"label": cell.label, "problem": cell.problem, "variant": cell.variant,
              "point": {k: v for k, v in cell.point}, "fingerprint": cell.fingerprint, "status": outcome.status,
              "error": outcome.error, "attempts": outcome.attempts, "overrides": list(cell.overrides),
              "files": dict(cell.files), "run_folder": run_folder, "rows": outcome.rows}
    runs.atomic_write_bytes(cell_dir / CELL_JSON, runs.dumps_json(marker).encode())


def table_bytes(rows: Sequence[Mapping], cols: Sequence[str], parquet: bool = True) -> tuple[bytes, Optional[bytes]]:
    """(CSV bytes, Parquet bytes or None when pyarrow is missing or ``parquet`` is False) of the rows, columns in
    ``cols`` order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(cols), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                             else r.get(k)) for k in cols})
    csv_bytes = buf.getvalue().encode()
    if not parquet:
        return csv_bytes, None
    try:  # imported when a table is written (and optional: CSV alone without it)
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return csv_bytes, None
    data = {}
    for k in cols:
        values = [r.get(k) for r in rows]
        if k in ("rollouts", "gradients", "seed", "plan_failures"):
            data[k] = pa.array(values, type=pa.int64())
        elif k in ("final_cost", "best_cost", "initial_cost", "run_seconds", "compile_seconds") or \
                (k in MPC_ROW_COLUMNS and k not in ("status", "error")) or k.startswith(PLANT_PREFIX):
            data[k] = pa.array(values, type=pa.float64())
        elif k in ("problem", "variant", "status", "error"):
            data[k] = pa.array(values, type=pa.string())
        else:  # a grid key: its values' own type (mixed types become strings)
            try:
                data[k] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                data[k] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    out = io.BytesIO()
    pq.write_table(pa.table(data), out)
    return csv_bytes, out.getvalue()


def write_table(folder: Path, study: StudySpec, rows: Sequence[Mapping], meta: Mapping) -> list[str]:
    """Write study.csv, study.parquet (when pyarrow is importable) and study.json (its ``columns``: the table's, a
    closed-loop study's plant draws included); returns the file names."""
    folder = Path(folder)
    cols = columns(study, rows)
    meta = {**meta, "columns": cols}
    csv_bytes, parquet = table_bytes(rows, cols)
    runs.atomic_write_bytes(folder / f"{TABLE}.csv", csv_bytes)
    written = [f"{TABLE}.csv"]
    if parquet is not None:
        runs.atomic_write_bytes(folder / f"{TABLE}.parquet", parquet)
        written.append(f"{TABLE}.parquet")
    runs.atomic_write_bytes(folder / STUDY_JSON, runs.dumps_json(meta).encode())
    return written + [STUDY_JSON]


def read_table(folder: Path) -> list[dict]:
    """The study's rows from study.csv (numbers as floats, empty cells as None). Raises ValueError for a
    study.csv that is not a regular file (a link, a FIFO: never opened)."""
    path = Path(folder) / f"{TABLE}.csv"
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise ValueError(f"{path}: not a regular file")
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: _number(v) for k, v in r.items()})
    return rows


def _number(v: str):
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def read_meta(folder: Path) -> dict:
    """study.json (`read_json`: bounded, a regular file). Raises ValueError."""
    meta = read_json(Path(folder) / STUDY_JSON)
    if not isinstance(meta, dict):
        raise ValueError(f"{Path(folder) / STUDY_JSON}: not a JSON object")
    return meta


def cell_settings(folder: Path, meta: Mapping) -> dict:
    """{problem: [{"title", "mpc", "seeds", "plant"}, ...]}: what each ok cell of a closed-loop study ran with, from its
    result.json (`trajopt.runs_mpc`: the [mpc] settings after the study's overrides, the seeds, what the plant
    changes), in cell order; a cell whose result.json does not read back is left out. The figures state them
    (`trajopt.studies.figures.task_settings_text`)."""
    out: dict = {}
    for c in meta.get("cells", []):
        if not isinstance(c, dict) or c.get("status") != CELL_OK or not isinstance(c.get("folder"), str):
            continue
        try:
            result = read_json(Path(folder) / c["folder"] / runs.RESULT)
        except ValueError:
            continue
        if isinstance(result, dict) and isinstance(result.get("mpc"), dict):
            out.setdefault(c.get("problem"), []).append({k: result.get(k) for k in ("title", "mpc", "seeds", "plant")})
    return out


def write_outputs(folder: Path, study: StudySpec, rows: Sequence[Mapping], meta: Mapping, dpi: int = 130) -> list[str]:
    """Write the figures (study_<key>.png) and report.html into the study folder (a closed-loop study's best.csv
    first); returns the file names."""
    # matplotlib (through the figures) is imported when the figures are drawn, not with the studies package
    from trajopt.plots import figure_bytes
    from trajopt.studies.figures import best_columns, best_rows, study_figures, study_html

    folder = Path(folder)
    best, written = [], []
    if study.closed_loop:
        best = best_rows(rows, study)
        runs.atomic_write_bytes(folder / BEST, table_bytes(best, best_columns(study), parquet=False)[0])
        written.append(BEST)
    settings = cell_settings(folder, meta) if study.closed_loop else None
    pngs = {name: figure_bytes(fig, "png", dpi) for name, fig in study_figures(rows, study, settings).items()}
    for name, png in pngs.items():
        runs.atomic_write_bytes(folder / f"{name}.png", png)
    runs.atomic_write_bytes(folder / REPORT, study_html(meta, rows, pngs, best).encode())
    return written + [f"{n}.png" for n in pngs] + [REPORT]
