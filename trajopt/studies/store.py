"""The study folder: what `trajopt study` writes, and reading it back (the study's counterpart of
`trajopt.runs`, and like it the only study module that touches files).

    study.json         the study's definition, the cells (label, folder, status), versions, status
    study.csv          one row per (cell, seed): problem, variant, each grid key, seed, status, final_cost,
                       best_cost, initial_cost, rollouts, gradients, run_seconds, compile_seconds, error
    study.parquet      the same table (when pyarrow is importable)
    study_<key>.png    final cost against each grid axis (one panel per problem, one line per variant)
    report.html        the study's page: figures, a table of cells, links to the cells' folders
    cells/<problem>/<variant>/<key=value,...>/
        config.toml, metrics.jsonl, result.json, trajectory.npz   a run folder (`trajopt.runs.write_run`)
        cell.json      the marker, written last: the cell's fingerprint, status, error and rows

A cell is finished when its cell.json exists and its fingerprint matches; a failed cell has a cell.json and
no run files. Every file is written atomically, and the table after each cell, so an interrupted study leaves
a folder that reads as it stands.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Mapping, Optional, Sequence

from trajopt import runs
from trajopt.studies.cells import LEAD_COLUMNS, ROW_COLUMNS, CellOutcome
from trajopt.studies.study import Cell, StudySpec

STUDY_JSON, TABLE, CELL_JSON, REPORT = "study.json", "study", "cell.json", "report.html"


class StudyFolderError(ValueError):
    """An --out folder that is not a study folder (and so is neither resumed nor emptied)."""


def is_study_dir(path: Path) -> bool:
    return (Path(path) / STUDY_JSON).is_file()


def prepare(folder: Path, *, fresh: bool) -> None:
    """Make ``folder`` ready: create it, or empty it with ``fresh``. A non-empty folder that is not a study
    folder is refused (never emptied)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise StudyFolderError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not is_study_dir(folder):
        raise StudyFolderError(f"{folder}: not empty and not a study folder (no {STUDY_JSON}); choose another --out")
    if fresh and folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def columns(study: StudySpec) -> list[str]:
    """The table's columns: problem, variant, each grid key, then seed ... error."""
    return [*LEAD_COLUMNS, *(a.key for a in study.grid), *ROW_COLUMNS]


def read_cell(folder: Path, cell: Cell) -> Optional[dict]:
    """The finished cell's marker (``status``, ``error``, ``rows``), or None when the cell must run: no marker,
    an unreadable one, or one with another fingerprint (the study changed)."""
    path = Path(folder) / cell.folder / CELL_JSON
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("fingerprint") != cell.fingerprint or not isinstance(marker.get("rows"), list):
        return None
    return marker


def write_cell(folder: Path, cell: Cell, outcome: CellOutcome, spec=None) -> None:
    """Write a finished cell: its run folder (when it ran; ``spec`` is its `trajopt.spec.Spec`), then its marker."""
    cell_dir = Path(folder) / cell.folder
    cell_dir.mkdir(parents=True, exist_ok=True)
    for name in (runs.RESULT,):  # a stale run folder of an earlier attempt must not outlive a failed rerun
        (cell_dir / name).unlink(missing_ok=True)
    if outcome.result is not None and outcome.summary is not None and spec is not None:
        runs.write_run(cell_dir, spec, {cell.variant: outcome.result}, outcome.summary)
    marker = {"label": cell.label, "problem": cell.problem, "variant": cell.variant,
              "point": {k: v for k, v in cell.point}, "fingerprint": cell.fingerprint, "status": outcome.status,
              "error": outcome.error, "attempts": outcome.attempts, "overrides": list(cell.overrides),
              "rows": outcome.rows}
    runs.atomic_write_bytes(cell_dir / CELL_JSON, runs.dumps_json(marker).encode())


def table_bytes(rows: Sequence[Mapping], cols: Sequence[str]) -> tuple[bytes, Optional[bytes]]:
    """(CSV bytes, Parquet bytes or None when pyarrow is missing) of the rows, columns in ``cols`` order."""
    import csv
    import math

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(cols), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                             else r.get(k)) for k in cols})
    csv_bytes = buf.getvalue().encode()
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return csv_bytes, None
    data = {}
    for k in cols:
        values = [r.get(k) for r in rows]
        if k in ("rollouts", "gradients", "seed"):
            data[k] = pa.array(values, type=pa.int64())
        elif k in ("final_cost", "best_cost", "initial_cost", "run_seconds", "compile_seconds"):
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
    """Write study.csv, study.parquet (when pyarrow is importable) and study.json; returns the file names."""
    folder = Path(folder)
    csv_bytes, parquet = table_bytes(rows, columns(study))
    runs.atomic_write_bytes(folder / f"{TABLE}.csv", csv_bytes)
    written = [f"{TABLE}.csv"]
    if parquet is not None:
        runs.atomic_write_bytes(folder / f"{TABLE}.parquet", parquet)
        written.append(f"{TABLE}.parquet")
    runs.atomic_write_bytes(folder / STUDY_JSON, runs.dumps_json(meta).encode())
    return written + [STUDY_JSON]


def read_table(folder: Path) -> list[dict]:
    """The study's rows from study.csv (numbers as floats, empty cells as None)."""
    import csv

    rows = []
    with open(Path(folder) / f"{TABLE}.csv", encoding="utf-8", newline="") as f:
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
    return json.loads((Path(folder) / STUDY_JSON).read_text(encoding="utf-8"))


def write_outputs(folder: Path, study: StudySpec, rows: Sequence[Mapping], meta: Mapping, dpi: int = 130) -> list[str]:
    """Write the figures (study_<key>.png) and report.html into the study folder; returns the file names."""
    from trajopt.plots import figure_bytes
    from trajopt.studies.figures import study_figures, study_html

    folder = Path(folder)
    pngs = {name: figure_bytes(fig, "png", dpi) for name, fig in study_figures(rows, study).items()}
    for name, png in pngs.items():
        runs.atomic_write_bytes(folder / f"{name}.png", png)
    runs.atomic_write_bytes(folder / REPORT, study_html(meta, rows, pngs).encode())
    return [f"{n}.png" for n in pngs] + [REPORT]
